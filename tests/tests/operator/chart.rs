//! The Helm chart (charts/riffle) linted and rendered by a real helm, the rendered manifests
//! checked by kubernetes-validate --strict, the example and rendered custom resources checked
//! against our generated CRD schemas, and the alert rules by promtool. The tools come from
//! `tests/k8s/tools.sh` (cached outside the repository).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;

/// Paths of the external tools.
#[derive(Debug)]
pub(crate) struct Tools {
    pub(crate) helm: PathBuf,
    pub(crate) kubernetes_validate: PathBuf,
    pub(crate) chart_python: PathBuf,
    pub(crate) prometheus: PathBuf,
    pub(crate) promtool: PathBuf,
}

/// Installs (first call) and finds the tools.
pub(crate) fn tools() -> &'static Tools {
    static TOOLS: OnceLock<Tools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let out = std::process::Command::new("bash")
            .arg(root().join("tests/k8s/tools.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("run tests/k8s/tools.sh");
        assert!(out.status.success(), "tests/k8s/tools.sh failed");
        let text = String::from_utf8(out.stdout).unwrap();
        let get = |name: &str| -> PathBuf {
            let line = text
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("tools.sh printed no {name}: {text}"));
            let p = PathBuf::from(line);
            assert!(p.is_file(), "{name} {} is missing", p.display());
            p
        };
        Tools {
            helm: get("HELM"),
            kubernetes_validate: get("KUBERNETES_VALIDATE"),
            chart_python: get("CHART_PYTHON"),
            prometheus: get("PROMETHEUS"),
            promtool: get("PROMTOOL"),
        }
    })
}

/// The repository root.
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn chart() -> PathBuf {
    root().join("charts/riffle")
}

/// Runs a tool: (success, stdout + stderr).
pub(crate) fn run(program: &Path, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(program)
        .args(args)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn ok(program: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let (success, text) = run(program, args, stdin);
    assert!(success, "{} {args:?} failed:\n{text}", program.display());
    text
}

/// `helm template` of the chart as release `rel` in `namespace`, with `--set` values and
/// the API versions the cluster is said to serve.
pub(crate) fn helm_template(namespace: &str, sets: &[&str], api_versions: &[&str]) -> String {
    let chart = chart();
    let mut args = vec![
        "template",
        "rel",
        chart.to_str().unwrap(),
        "--namespace",
        namespace,
        "--kube-version",
        "1.36.0",
    ];
    for s in sets {
        args.extend(["--set", s]);
    }
    for a in api_versions {
        args.extend(["--api-versions", a]);
    }
    let (success, text) = run(&tools().helm, &args, None);
    assert!(success, "helm template failed:\n{text}");
    text
}

fn kinds(yaml: &str) -> Vec<String> {
    let mut k: Vec<String> = yaml
        .lines()
        .filter_map(|l| l.strip_prefix("kind: "))
        .map(str::to_string)
        .collect();
    k.sort();
    k
}

const MONITORING: [&str; 2] = [
    "monitoring.coreos.com/v1/ServiceMonitor",
    "monitoring.coreos.com/v1/PrometheusRule",
];

#[test]
fn chart_lints_renders_and_validates() {
    let t = tools();
    let chart = chart();
    let chart = chart.to_str().unwrap();
    ok(
        &t.helm,
        &["lint", "--strict", chart, "--kube-version", "1.36.0"],
        None,
    );
    // values.schema.json is enforced: a second broker replica, or an unknown key, fails.
    for bad in ["broker.replicas=2", "operator.bogus=1"] {
        let (success, text) = run(&t.helm, &["lint", "--strict", chart, "--set", bad], None);
        assert!(!success, "helm lint accepted --set {bad}:\n{text}");
        assert!(
            text.contains("values don't meet the specifications of the schema"),
            "{text}"
        );
    }

    // Without the Prometheus operator's CRDs: no ServiceMonitor, no PrometheusRule.
    let plain = helm_template("ops", &[], &[]);
    assert_eq!(
        kinds(&plain),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "Deployment",
            "RiffleBroker",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );
    // With them, both; the dashboard ConfigMap carries the sidecar label.
    let full = helm_template("ops", &[], &MONITORING);
    let k = kinds(&full);
    assert!(
        k.contains(&"ServiceMonitor".into()) && k.contains(&"PrometheusRule".into()),
        "{k:?}"
    );
    assert!(
        full.contains("grafana_dashboard: \"1\""),
        "dashboard sidecar label"
    );
    assert!(
        full.contains("alert: RiffleReshardBudgetExhausted"),
        "alert rules rendered"
    );
    // Web identity on by default: the broker fetches the cluster's JWKS with its own token.
    assert!(
        full.contains("jwks_url: https://kubernetes.default.svc/openid/v1/jwks")
            && full
                .contains("jwks_token_file: /var/run/secrets/kubernetes.io/serviceaccount/token"),
        "{full}"
    );
    let without = helm_template("ops", &["broker.webIdentity.enabled=false"], &[]);
    assert!(!without.contains("web_identity"), "{without}");
    // Leader election off: one replica, Recreate, --no-leader-election, no leader Role.
    let single = helm_template("ops", &["operator.leaderElection=false"], &[]);
    assert!(single.contains("type: Recreate") && single.contains("--no-leader-election"));
    assert!(!kinds(&single).contains(&"Role".into()));

    // The built-in kinds against Kubernetes' own schemas, strictly (unknown fields fail).
    let path = std::env::temp_dir().join(format!("riffle-chart-{}.yaml", std::process::id()));
    std::fs::write(&path, &full).unwrap();
    let out = ok(
        &t.kubernetes_validate,
        &["--strict", "-k", "1.36.0", path.to_str().unwrap()],
        None,
    );
    assert!(
        out.contains("passed for resource deployment/rel-riffle"),
        "{out}"
    );
    assert!(!out.contains("ERROR"), "{out}");
    // The example application that assumes a Consumer's role with a projected token.
    let app = root().join("examples/consumer-app.yaml");
    let out = ok(
        &t.kubernetes_validate,
        &["--strict", "-k", "1.36.0", app.to_str().unwrap()],
        None,
    );
    assert!(
        out.contains("passed for resource deployment/analytics"),
        "{out}"
    );
    // kubernetes-validate does fail on a wrong field, so the pass above means something.
    let broken = full.replace("serviceAccountName:", "serviceAcountName:");
    std::fs::write(&path, &broken).unwrap();
    let (success, out) = run(
        &t.kubernetes_validate,
        &["--strict", "-k", "1.36.0", path.to_str().unwrap()],
        None,
    );
    assert!(
        !success,
        "a misspelt field passed kubernetes-validate:\n{out}"
    );
    let _ = std::fs::remove_file(&path);

    // The chart's CRDs are the generated ones (the riffle-operator unit test checks those
    // against the Rust types), and the custom resources validate against them.
    let crds = std::fs::read_to_string(root().join("crds/riffle.dev.yaml")).unwrap();
    let in_chart =
        std::fs::read_to_string(root().join("charts/riffle/crds/riffle.dev.yaml")).unwrap();
    assert_eq!(crds, in_chart, "charts/riffle/crds/ is a copy of crds/");
    let validate = root().join("tests/k8s/validate_cr.py");
    let validate = validate.to_str().unwrap();
    let out = ok(
        &t.chart_python,
        &[
            validate,
            "crds/riffle.dev.yaml",
            "examples/stream.yaml",
            "examples/consumer.yaml",
            "-",
        ],
        Some(&full),
    );
    assert_eq!(
        out.trim(),
        "checked 5",
        "2 Streams, 2 Consumers, the chart's RiffleBroker"
    );
    let bad = "apiVersion: riffle.dev/v1alpha1\nkind: Stream\nmetadata: {name: x}\n\
               spec: {shardCount: 0, autoscaling: {maxReshardsPer24h: 11}}\n";
    let (success, out) = run(
        &t.chart_python,
        &[validate, "crds/riffle.dev.yaml", "-"],
        Some(bad),
    );
    assert!(
        !success && out.contains("maxReshardsPer24h: 11 is greater than the maximum of 10"),
        "{out}"
    );

    // The alert rules: valid, and each fires on its own series (files/alerts_test.yaml).
    ok(
        &t.promtool,
        &["check", "rules", "charts/riffle/files/alerts.yaml"],
        None,
    );
    let out = ok(
        &t.promtool,
        &["test", "rules", "charts/riffle/files/alerts_test.yaml"],
        None,
    );
    assert!(out.contains("SUCCESS"), "{out}");
}
