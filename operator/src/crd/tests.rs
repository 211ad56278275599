use super::*;

/// The checked-in CRDs are what the types generate. `UPDATE_CRDS=1 cargo test` rewrites them.
#[test]
fn checked_in_crds_match_the_types() {
    let want = crds_yaml();
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    for path in ["crds/riffle.dev.yaml", "charts/riffle/crds/riffle.dev.yaml"] {
        let path = format!("{root}/{path}");
        if std::env::var_os("UPDATE_CRDS").is_some() {
            std::fs::write(&path, &want).unwrap();
            continue;
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "{path} is not what the Rust types generate: run \
             `cargo run -p riffle-operator -- crdgen > crds/riffle.dev.yaml` and copy it to \
             charts/riffle/crds/ (or `UPDATE_CRDS=1 cargo test -p riffle-operator crd`)"
        );
    }
}

#[test]
fn durations_parse_and_print_compactly() {
    let d: HumanDuration = "1h30m".parse().unwrap();
    assert_eq!(d.0, Duration::from_secs(5400));
    assert_eq!(d.to_string(), "1h30m");
    assert_eq!("90s".parse::<HumanDuration>().unwrap().to_string(), "1m30s");
    assert!("soon".parse::<HumanDuration>().is_err());
}

#[test]
fn a_minimal_stream_gets_defaults() {
    let s: Stream = serde_json::from_value(serde_json::json!({
        "apiVersion": "riffle.dev/v1alpha1", "kind": "Stream",
        "metadata": {"name": "orders"},
        "spec": {"shardCount": 2, "autoscaling": {"enabled": true}}
    }))
    .unwrap();
    assert_eq!(s.stream_name(), "orders");
    assert_eq!(s.spec.retention_hours, 24);
    assert_eq!(s.spec.capacity_mode, CapacityMode::Provisioned);
    assert_eq!(s.spec.deletion_policy, DeletionPolicy::Retain);
    assert_eq!(s.spec.shard_limits, ShardLimits::default());
    let a = s.spec.autoscaling_enabled().unwrap();
    assert_eq!(
        a,
        &AutoscalingSpec {
            enabled: true,
            ..AutoscalingSpec::default()
        }
    );
    assert_eq!(s.spec.reshard_limit(), 10);
}

#[test]
fn the_stream_crd_has_scale_status_and_list_map_conditions() {
    use kube::CustomResourceExt;
    let crd = serde_json::to_value(Stream::crd()).unwrap();
    let v = &crd["spec"]["versions"][0];
    assert_eq!(
        v["subresources"]["scale"]["specReplicasPath"],
        ".spec.shardCount"
    );
    assert_eq!(
        v["subresources"]["scale"]["statusReplicasPath"],
        ".status.openShards"
    );
    assert_eq!(
        v["subresources"]["scale"]["labelSelectorPath"],
        ".status.selector"
    );
    let conditions =
        &v["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(conditions["x-kubernetes-list-map-keys"][0], "type");
    let columns: Vec<&str> = v["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["Shards", "Target", "Status", "Ready", "Age"]);
    let spec = &v["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(
        spec["properties"]["autoscaling"]["properties"]["maxReshardsPer24h"]["maximum"].as_f64(),
        Some(10.0)
    );
}
