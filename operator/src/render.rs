//! Pure rendering of a [`RiffleBroker`] into the objects that run it: a ConfigMap with the
//! broker's TOML config, a headless Service (stable pod DNS), a client Service (Kinesis API
//! and metrics), a StatefulSet with a volume per pod, a PodDisruptionBudget and, when the
//! Prometheus operator's CRD exists, a ServiceMonitor. Every object carries an owner
//! reference to the broker, so deleting it deletes them.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, HTTPGetAction,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSpec, PodTemplateSpec, Probe,
    SecretVolumeSource, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};

use crate::crd::{RiffleBroker, ShardLimits, INSTANCE_LABEL};

/// Kinesis API port.
pub const API_PORT: i32 = 4567;
/// TLS Kinesis API port (with `tlsSecret`).
pub const TLS_PORT: i32 = 4568;
/// Admin port (`/metrics`, `/healthz`, `/readyz`).
pub const ADMIN_PORT: i32 = 9567;

/// A stream served by the broker, with the per-shard limits it is to be configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamLimits {
    /// Kinesis stream name.
    pub stream: String,
    /// Its per-shard limits.
    pub limits: ShardLimits,
}

/// Everything rendered for one broker.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerManifests {
    /// `riffle.toml`.
    pub config_map: ConfigMap,
    /// `<name>-headless`.
    pub headless: Service,
    /// `<name>`: the client Service.
    pub client: Service,
    /// `<name>`.
    pub statefulset: StatefulSet,
    /// `<name>`.
    pub pdb: PodDisruptionBudget,
    /// `<name>` (`monitoring.coreos.com/v1`), when requested.
    pub service_monitor: Option<serde_json::Value>,
}

/// Where the broker pod mounts `encryptionKeysSecret`.
pub const KEYS_DIR: &str = "/etc/riffle/keys";

/// Where the broker pod mounts its access Secret ([`access_secret_name`]): the broker's
/// `auth.credentials_dir`.
pub const ACCESS_DIR: &str = "/etc/riffle/access";

/// The Secret with the broker's generated credentials: `operator.toml` (the operator's own
/// administrator key) and one `<consumer>.toml` per Consumer of its streams.
pub fn access_secret_name(b: &RiffleBroker) -> String {
    format!("{}-access", b.name_any())
}

/// The access Secret's data: the operator's fragment and each Consumer's (by Consumer
/// name), plus the operator's key pair so it stays the same across reconciles.
pub fn access_secret_data(
    operator_key: (&str, &str),
    consumers: &[(String, String)],
) -> BTreeMap<String, String> {
    let q = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let mut data = BTreeMap::from([
        (
            "operator.toml".to_string(),
            format!(
                "[[users]]\nname = \"riffle-operator\"\naccess_key_id = {}\nsecret_access_key = {}\n\
                 policies = [\"administrator\"]\n",
                q(operator_key.0),
                q(operator_key.1)
            ),
        ),
        ("OPERATOR_ACCESS_KEY_ID".to_string(), operator_key.0.to_owned()),
        ("OPERATOR_SECRET_ACCESS_KEY".to_string(), operator_key.1.to_owned()),
    ]);
    for (consumer, fragment) in consumers {
        data.insert(format!("consumer-{consumer}.toml"), fragment.clone());
    }
    data
}

/// Labels selecting the broker's pods.
pub fn selector_labels(b: &RiffleBroker) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "riffle-broker".to_string(),
        ),
        (INSTANCE_LABEL.to_string(), b.name_any()),
    ])
}

fn labels(b: &RiffleBroker) -> BTreeMap<String, String> {
    let mut l = selector_labels(b);
    l.insert(
        "app.kubernetes.io/managed-by".to_string(),
        "riffle-operator".to_string(),
    );
    l.insert(
        "app.kubernetes.io/component".to_string(),
        "broker".to_string(),
    );
    l
}

fn meta(b: &RiffleBroker, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: b.namespace(),
        labels: Some(labels(b)),
        owner_references: b.controller_owner_ref(&()).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

/// The Kinesis API URL of the broker's client Service.
pub fn endpoint_url(b: &RiffleBroker) -> String {
    format!(
        "http://{}.{}.svc:{API_PORT}",
        b.name_any(),
        b.namespace().unwrap_or_default()
    )
}

/// The metrics URL of the broker's client Service.
pub fn metrics_url(b: &RiffleBroker) -> String {
    format!(
        "http://{}.{}.svc:{ADMIN_PORT}/metrics",
        b.name_any(),
        b.namespace().unwrap_or_default()
    )
}

/// The broker's signing region: `config.region`, or `us-east-1`.
pub fn region(b: &RiffleBroker) -> String {
    b.spec
        .config
        .as_ref()
        .and_then(|c| c.get("region"))
        .and_then(|v| v.as_str())
        .unwrap_or("us-east-1")
        .to_string()
}

/// The broker's TOML config: the user's settings, the operator's listeners and data
/// directory, TLS when a secret is given, and `[limits.streams.<name>]` for every stream
/// that names this broker.
pub fn config_toml(b: &RiffleBroker, streams: &[StreamLimits]) -> String {
    let mut root = toml::Table::new();
    if let Some(cfg) = &b.spec.config {
        for (k, v) in cfg {
            if let Some(v) = json_to_toml(v) {
                root.insert(k.clone(), v);
            }
        }
    }
    root.insert("listen".into(), format!("0.0.0.0:{API_PORT}").into());
    root.insert(
        "admin_listen".into(),
        format!("0.0.0.0:{ADMIN_PORT}").into(),
    );
    root.insert("data_dir".into(), "/var/lib/riffle".into());
    // The generated credentials (the operator's key, each Consumer's), beside whatever
    // `auth` the user configured.
    let auth = root
        .entry("auth")
        .or_insert_with(|| toml::Table::new().into());
    if let Some(auth) = auth.as_table_mut() {
        auth.insert("credentials_dir".into(), ACCESS_DIR.into());
    }
    if b.spec.encryption_keys_secret.is_some() {
        let enc = root
            .entry("encryption")
            .or_insert_with(|| toml::Table::new().into());
        if let Some(enc) = enc.as_table_mut() {
            enc.insert("key_file".into(), format!("{KEYS_DIR}/keys.toml").into());
        }
    }
    if b.spec.tls_secret.is_some() {
        let mut tls = toml::Table::new();
        tls.insert("listen".into(), format!("0.0.0.0:{TLS_PORT}").into());
        tls.insert("cert_file".into(), "/etc/riffle/tls/tls.crt".into());
        tls.insert("key_file".into(), "/etc/riffle/tls/tls.key".into());
        root.insert("tls".into(), tls.into());
    }
    if !streams.is_empty() {
        let limits = root
            .entry("limits")
            .or_insert_with(|| toml::Table::new().into());
        if let Some(limits) = limits.as_table_mut() {
            let mut per = toml::Table::new();
            for s in streams {
                let mut t = toml::Table::new();
                let int = |v: u64| toml::Value::Integer(i64::try_from(v).unwrap_or(i64::MAX));
                t.insert(
                    "write_bytes_per_second".into(),
                    int(s.limits.write_bytes_per_second),
                );
                t.insert(
                    "write_records_per_second".into(),
                    int(s.limits.write_records_per_second),
                );
                t.insert(
                    "read_bytes_per_second".into(),
                    int(s.limits.read_bytes_per_second),
                );
                per.insert(s.stream.clone(), t.into());
            }
            limits.insert("streams".into(), per.into());
        }
    }
    toml::to_string(&root).expect("a TOML table serializes")
}

fn json_to_toml(v: &serde_json::Value) -> Option<toml::Value> {
    use serde_json::Value as J;
    Some(match v {
        J::Null => return None,
        J::Bool(b) => toml::Value::Boolean(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(n.as_f64()?),
        },
        J::String(s) => toml::Value::String(s.clone()),
        J::Array(a) => toml::Value::Array(a.iter().filter_map(json_to_toml).collect()),
        J::Object(o) => toml::Value::Table(
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), json_to_toml(v)?)))
                .collect(),
        ),
    })
}

/// A short, stable hash of the config, put on the pod template so a config change rolls
/// the pods (FNV-1a, 64 bit).
pub fn config_hash(toml: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in toml.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn port(name: &str, p: i32) -> ServicePort {
    ServicePort {
        name: Some(name.into()),
        port: p,
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    }
}

/// Renders every object of broker `b`; `streams` are the streams naming it and
/// `service_monitor` says whether the ServiceMonitor CRD exists.
pub fn render(
    b: &RiffleBroker,
    streams: &[StreamLimits],
    service_monitor: bool,
) -> BrokerManifests {
    let name = b.name_any();
    let config = config_toml(b, streams);
    let hash = config_hash(&config);
    let config_map = ConfigMap {
        metadata: meta(b, format!("{name}-config")),
        data: Some(BTreeMap::from([("riffle.toml".to_string(), config)])),
        ..ConfigMap::default()
    };
    let mut ports = vec![port("kinesis", API_PORT), port("admin", ADMIN_PORT)];
    if b.spec.tls_secret.is_some() {
        ports.insert(1, port("kinesis-tls", TLS_PORT));
    }
    let headless = Service {
        metadata: meta(b, format!("{name}-headless")),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(b)),
            ports: Some(ports.clone()),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    let client = Service {
        metadata: meta(b, name.clone()),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(selector_labels(b)),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    let mut mounts = vec![
        VolumeMount {
            name: "data".into(),
            mount_path: "/var/lib/riffle".into(),
            ..VolumeMount::default()
        },
        VolumeMount {
            name: "config".into(),
            mount_path: "/etc/riffle/config".into(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
    ];
    mounts.push(VolumeMount {
        name: "access".into(),
        mount_path: ACCESS_DIR.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    });
    let mut volumes = vec![
        Volume {
            name: "config".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: format!("{name}-config"),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        // Updated in place by the kubelet when Consumers come and go: no pod restart.
        Volume {
            name: "access".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(access_secret_name(b)),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
    ];
    let mut container_ports = vec![
        ContainerPort {
            name: Some("kinesis".into()),
            container_port: API_PORT,
            ..ContainerPort::default()
        },
        ContainerPort {
            name: Some("admin".into()),
            container_port: ADMIN_PORT,
            ..ContainerPort::default()
        },
    ];
    if let Some(secret) = &b.spec.encryption_keys_secret {
        mounts.push(VolumeMount {
            name: "keys".into(),
            mount_path: KEYS_DIR.into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        volumes.push(Volume {
            name: "keys".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.clone()),
                default_mode: Some(0o400),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
    if let Some(secret) = &b.spec.tls_secret {
        mounts.push(VolumeMount {
            name: "tls".into(),
            mount_path: "/etc/riffle/tls".into(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
        volumes.push(Volume {
            name: "tls".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.clone()),
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        });
        container_ports.push(ContainerPort {
            name: Some("kinesis-tls".into()),
            container_port: TLS_PORT,
            ..ContainerPort::default()
        });
    }
    let probe = |path: &str| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("admin".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(5),
        ..Probe::default()
    };
    let container = Container {
        name: "broker".into(),
        image: Some(b.spec.image.clone()),
        image_pull_policy: b.spec.image_pull_policy.clone(),
        args: Some(vec![
            "--config".into(),
            "/etc/riffle/config/riffle.toml".into(),
        ]),
        ports: Some(container_ports),
        volume_mounts: Some(mounts),
        resources: b.spec.resources.clone(),
        readiness_probe: Some(probe("/readyz")),
        liveness_probe: Some(Probe {
            failure_threshold: Some(6),
            ..probe("/healthz")
        }),
        ..Container::default()
    };
    let mut template_labels = labels(b);
    template_labels.extend(selector_labels(b));
    let statefulset = StatefulSet {
        metadata: meta(b, name.clone()),
        spec: Some(StatefulSetSpec {
            replicas: Some(b.spec.replicas),
            service_name: Some(format!("{name}-headless")),
            selector: LabelSelector {
                match_labels: Some(selector_labels(b)),
                ..LabelSelector::default()
            },
            // The broker fsyncs and seals its shards on SIGTERM within its shutdown grace.
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(template_labels),
                    annotations: Some(BTreeMap::from([(
                        "riffle.dev/config-hash".to_string(),
                        hash,
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(volumes),
                    termination_grace_period_seconds: Some(30),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some("data".into()),
                    labels: Some(selector_labels(b)),
                    ..ObjectMeta::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    storage_class_name: b.spec.storage.storage_class_name.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "storage".to_string(),
                            Quantity(b.spec.storage.size.clone()),
                        )])),
                        ..VolumeResourceRequirements::default()
                    }),
                    ..PersistentVolumeClaimSpec::default()
                }),
                ..PersistentVolumeClaim::default()
            }]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    };
    let pdb = PodDisruptionBudget {
        metadata: meta(b, name.clone()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(b)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    };
    let service_monitor = service_monitor.then(|| {
        let mut l = labels(b);
        l.extend(b.spec.service_monitor_labels.clone());
        serde_json::json!({
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "ServiceMonitor",
            "metadata": {
                "name": name,
                "namespace": b.namespace(),
                "labels": l,
                "ownerReferences": b.controller_owner_ref(&()).map(|o| vec![o]),
            },
            "spec": {
                // job="riffle-broker", which the chart's alert rules and dashboard select.
                "jobLabel": "app.kubernetes.io/name",
                "selector": {"matchLabels": selector_labels(b)},
                "endpoints": [{"port": "admin", "path": "/metrics", "interval": "15s"}],
            }
        })
    });
    BrokerManifests {
        config_map,
        headless,
        client,
        statefulset,
        pdb,
        service_monitor,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(extra: serde_json::Value) -> RiffleBroker {
        let mut spec = serde_json::json!({"image": "riffle/broker:0.1.0"});
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let mut b: RiffleBroker = serde_json::from_value(serde_json::json!({
            "apiVersion": "riffle.dev/v1alpha1", "kind": "RiffleBroker",
            "metadata": {"name": "riffle", "namespace": "streams", "uid": "u-1"},
            "spec": spec,
        }))
        .unwrap();
        b.metadata.uid = Some("u-1".into());
        b
    }

    #[test]
    fn an_encryption_keys_secret_is_mounted_as_the_key_file() {
        let b = broker(serde_json::json!({"encryptionKeysSecret": "riffle-keys"}));
        let m = render(&b, &[], false);
        let config: toml::Table =
            toml::from_str(&m.config_map.data.as_ref().unwrap()["riffle.toml"]).unwrap();
        assert_eq!(
            config["encryption"]["key_file"].as_str(),
            Some("/etc/riffle/keys/keys.toml")
        );
        let pod = m.statefulset.spec.unwrap().template.spec.unwrap();
        let keys = pod
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == "keys")
            .expect("a keys volume");
        let secret = keys.secret.unwrap();
        assert_eq!(secret.secret_name.as_deref(), Some("riffle-keys"));
        assert_eq!(secret.default_mode, Some(0o400));
        let without = render(&broker(serde_json::json!({})), &[], false);
        assert!(!without.config_map.data.unwrap()["riffle.toml"].contains("[encryption]"));
    }

    #[test]
    fn the_access_secret_holds_the_operators_key_and_each_consumers_fragment() {
        let data = access_secret_data(
            ("RFLOPKEY", "op-secret"),
            &[(
                "billing".into(),
                "[[users]]\nname = \"consumer-ns-billing\"\n".into(),
            )],
        );
        let op: toml::Table = toml::from_str(&data["operator.toml"]).unwrap();
        assert_eq!(op["users"][0]["access_key_id"].as_str(), Some("RFLOPKEY"));
        assert_eq!(
            op["users"][0]["secret_access_key"].as_str(),
            Some("op-secret")
        );
        assert_eq!(
            op["users"][0]["policies"][0].as_str(),
            Some("administrator")
        );
        assert_eq!(data["OPERATOR_ACCESS_KEY_ID"], "RFLOPKEY");
        assert!(data["consumer-billing.toml"].contains("consumer-ns-billing"));
        // Only the fragments are *.toml: the broker reads nothing else of the directory.
        let tomls: Vec<_> = data.keys().filter(|k| k.ends_with(".toml")).collect();
        assert_eq!(tomls, ["consumer-billing.toml", "operator.toml"]);
    }

    #[test]
    fn config_has_the_operators_listeners_user_settings_and_stream_limits() {
        let b = broker(serde_json::json!({
            "config": {"region": "eu-west-1", "listen": "127.0.0.1:1", "storage": {"fsync": "always"}},
        }));
        let toml = config_toml(
            &b,
            &[StreamLimits {
                stream: "orders".into(),
                limits: ShardLimits::default(),
            }],
        );
        let t: toml::Table = toml.parse().unwrap();
        assert_eq!(t["listen"].as_str(), Some("0.0.0.0:4567"), "operator-owned");
        assert_eq!(t["admin_listen"].as_str(), Some("0.0.0.0:9567"));
        assert_eq!(t["data_dir"].as_str(), Some("/var/lib/riffle"));
        assert_eq!(t["region"].as_str(), Some("eu-west-1"));
        assert_eq!(t["storage"]["fsync"].as_str(), Some("always"));
        let o = &t["limits"]["streams"]["orders"];
        assert_eq!(o["write_bytes_per_second"].as_integer(), Some(1 << 20));
        assert_eq!(o["write_records_per_second"].as_integer(), Some(1000));
        assert_eq!(o["read_bytes_per_second"].as_integer(), Some(2 << 20));
        assert!(t.get("tls").is_none());
        assert_eq!(region(&b), "eu-west-1");
    }

    #[test]
    fn renders_a_statefulset_with_a_volume_per_pod_and_owned_services() {
        let b = broker(serde_json::json!({
            "storage": {"size": "50Gi", "storageClassName": "fast"},
            "tlsSecret": "riffle-tls",
        }));
        let m = render(&b, &[], false);
        let sts = m.statefulset.spec.as_ref().unwrap();
        assert_eq!(sts.replicas, Some(1));
        assert_eq!(sts.service_name.as_deref(), Some("riffle-headless"));
        let pvc = &sts.volume_claim_templates.as_ref().unwrap()[0];
        let pvc_spec = pvc.spec.as_ref().unwrap();
        assert_eq!(pvc_spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            pvc_spec
                .resources
                .as_ref()
                .unwrap()
                .requests
                .as_ref()
                .unwrap()["storage"],
            Quantity("50Gi".into())
        );
        let pod = sts.template.spec.as_ref().unwrap();
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some("riffle/broker:0.1.0"));
        let mounts: Vec<_> = c
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| m.mount_path.as_str())
            .collect();
        assert_eq!(
            mounts,
            [
                "/var/lib/riffle",
                "/etc/riffle/config",
                ACCESS_DIR,
                "/etc/riffle/tls"
            ]
        );
        let access = pod
            .volumes
            .as_ref()
            .unwrap()
            .iter()
            .find(|v| v.name == "access")
            .expect("the access volume");
        assert_eq!(
            access.secret.as_ref().unwrap().secret_name.as_deref(),
            Some(access_secret_name(&b).as_str())
        );
        let config = &m.config_map.data.as_ref().unwrap()["riffle.toml"];
        assert!(config.contains("[tls]"));
        let parsed: toml::Table = toml::from_str(config).unwrap();
        assert_eq!(parsed["auth"]["credentials_dir"].as_str(), Some(ACCESS_DIR));
        assert_eq!(
            m.headless.spec.as_ref().unwrap().cluster_ip.as_deref(),
            Some("None")
        );
        let ports: Vec<i32> = m
            .client
            .spec
            .as_ref()
            .unwrap()
            .ports
            .as_ref()
            .unwrap()
            .iter()
            .map(|p| p.port)
            .collect();
        assert_eq!(ports, [4567, 4568, 9567]);
        for owner in [
            &m.statefulset.metadata,
            &m.client.metadata,
            &m.headless.metadata,
            &m.config_map.metadata,
            &m.pdb.metadata,
        ]
        .map(|md| md.owner_references.as_ref().unwrap()[0].clone())
        {
            assert_eq!(
                (owner.kind.as_str(), owner.name.as_str(), owner.controller),
                ("RiffleBroker", "riffle", Some(true))
            );
        }
        assert_eq!(
            m.pdb.spec.as_ref().unwrap().max_unavailable,
            Some(IntOrString::Int(1))
        );
        assert!(m.service_monitor.is_none());
        assert_eq!(endpoint_url(&b), "http://riffle.streams.svc:4567");
        assert_eq!(metrics_url(&b), "http://riffle.streams.svc:9567/metrics");
    }

    #[test]
    fn a_config_change_changes_the_pod_template_hash_and_the_monitor_is_optional() {
        let b = broker(serde_json::json!({"serviceMonitorLabels": {"release": "prom"}}));
        let hash = |m: &BrokerManifests| {
            m.statefulset
                .spec
                .as_ref()
                .unwrap()
                .template
                .metadata
                .as_ref()
                .unwrap()
                .annotations
                .as_ref()
                .unwrap()["riffle.dev/config-hash"]
                .clone()
        };
        let a = render(&b, &[], true);
        let with_stream = render(
            &b,
            &[StreamLimits {
                stream: "s".into(),
                limits: ShardLimits::default(),
            }],
            true,
        );
        assert_ne!(hash(&a), hash(&with_stream));
        assert_eq!(
            hash(&a),
            hash(&render(&b, &[], true)),
            "rendering is deterministic"
        );
        let sm = a.service_monitor.unwrap();
        assert_eq!(sm["metadata"]["labels"]["release"], "prom");
        assert_eq!(sm["spec"]["endpoints"][0]["port"], "admin");
        assert_eq!(sm["spec"]["jobLabel"], "app.kubernetes.io/name");
        assert_eq!(
            sm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"],
            "riffle"
        );
    }
}
