//! The Helm chart and the operator's children as Kubernetes sees them: `helm lint --strict`,
//! `helm template` for several scenarios, and `kubernetes-validate --strict` of everything that
//! reaches a cluster, for the oldest supported Kubernetes and the newest.
//!
//! Needs the tools of `scripts/k8s-tools.sh`; the tests fail (never skip) without them.

// Helpers outside #[test] fns fail by panicking too; clippy only exempts the test fns.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use clap::Parser;
use serde_json::Value;
use streammachine_operator::config::{Sensitive, StreamSecrets};
use streammachine_operator::crd::Stream;
use streammachine_operator::resources::{self, WorkerSettings};
use streammachine_operator::validate::validate;
use support::{helm, kubernetes_validate, repo_root, run};

/// Oldest Kubernetes the chart supports (Chart.yaml `kubeVersion`) and the newest we validate.
const KUBE_VERSIONS: [&str; 2] = ["1.30.0", "1.37.0"];
const TIMEOUT: Duration = Duration::from_secs(120);

fn chart() -> PathBuf {
    repo_root().join("charts/streammachine")
}

/// Install scenarios: (name, values files, extra --set flags).
fn scenarios() -> Vec<(&'static str, Vec<PathBuf>, Vec<&'static str>)> {
    let ci = chart().join("ci");
    vec![
        ("defaults", vec![], vec![]),
        ("external", vec![ci.join("external-values.yaml")], vec![]),
        (
            "minimal",
            vec![],
            vec![
                "crds.enabled=false",
                "operator.leaderElection.enabled=false",
                "operator.serviceAccount.create=false",
                "master.service.type=NodePort",
            ],
        ),
    ]
}

/// `helm template` of the chart; returns stdout, panics with stderr on failure.
fn template(values: &[PathBuf], set: &[&str], kube_version: &str) -> String {
    let output = helm_template(values, set, kube_version);
    assert!(
        output.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn helm_template(values: &[PathBuf], set: &[&str], kube_version: &str) -> std::process::Output {
    let mut command = Command::new(helm());
    command
        .args([
            "template",
            "sm",
            "--namespace",
            "streaming",
            "--kube-version",
            kube_version,
        ])
        .arg(chart());
    for file in values {
        command.arg("--values").arg(file);
    }
    for flag in set {
        command.args(["--set", flag]);
    }
    run(&mut command, TIMEOUT)
}

fn documents(yaml: &str) -> Vec<Value> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(yaml).unwrap();
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// Runs `kubernetes-validate --strict` for `version` on `yaml`; panics with its report.
fn assert_valid(yaml: &str, version: &str, what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("manifests.yaml");
    std::fs::write(&file, yaml).unwrap();
    let output = run(
        Command::new(kubernetes_validate())
            .args(["--strict", "--quiet", "-k", version])
            .arg(&file),
        TIMEOUT,
    );
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && !report.contains("ERROR"),
        "{what} is not valid for Kubernetes {version}:\n{report}"
    );
}

#[test]
fn chart_lints_strictly() {
    let ci = chart().join("ci");
    for values in [None, Some(ci.join("external-values.yaml"))] {
        let mut command = Command::new(helm());
        command.args(["lint", "--strict"]).arg(chart());
        if let Some(values) = &values {
            command.arg("--values").arg(values);
        }
        let output = run(&mut command, TIMEOUT);
        assert!(
            output.status.success(),
            "helm lint --strict ({values:?}):\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn rendered_chart_is_valid_for_the_oldest_and_newest_kubernetes() {
    for (name, values, set) in scenarios() {
        for version in KUBE_VERSIONS {
            let yaml = template(&values, &set, version);
            assert_valid(&yaml, version, &format!("chart scenario {name}"));
        }
    }
}

#[test]
fn kubernetes_older_than_supported_is_refused() {
    let output = helm_template(&[], &[], "1.29.0");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("kubeVersion"));
}

/// Settings as the chart passes them to the operator.
fn settings() -> WorkerSettings {
    WorkerSettings {
        image: "ghcr.io/streammachine/streammachine:0.1.0".into(),
        image_pull_policy: "IfNotPresent".into(),
        master_admin_url: "http://sm-streammachine-master-admin.streaming.svc:8001".into(),
        redis_url: Sensitive::new("redis://sm-streammachine-redis.streaming.svc:6379/0"),
        nats_url: Sensitive::new("nats://sm-streammachine-nats.streaming.svc:4222"),
        redis_prefix: "streammachine".into(),
        nats_prefix: "streammachine".into(),
        cluster_token: Sensitive::new("token"),
        security: Default::default(),
    }
}

/// The children the operator applies for the example Streams, as a YAML stream.
fn operator_children(example: &Path) -> (String, usize) {
    let docs = documents(&std::fs::read_to_string(example).unwrap());
    let mut out = String::new();
    let mut count = 0;
    for doc in docs.into_iter().filter(|d| d["kind"] == "Stream") {
        let mut stream: Stream = serde_json::from_value(doc).unwrap();
        stream.metadata.namespace = Some("radio".into());
        stream.metadata.uid = Some("0b6c4d0e-5c3f-4f43-9d4e-2a8d0c1f7e11".into());
        let valid = validate(&stream).unwrap();
        let desired = resources::build(
            &stream,
            &valid,
            &settings(),
            &StreamSecrets::new(Sensitive::new("pw")),
        )
        .unwrap();
        let mut objects = vec![
            serde_json::to_value(&desired.secret).unwrap(),
            serde_json::to_value(&desired.service).unwrap(),
            serde_json::to_value(&desired.deployment).unwrap(),
        ];
        objects.extend(
            desired
                .autoscaler
                .iter()
                .map(|o| serde_json::to_value(o).unwrap()),
        );
        objects.extend(
            desired
                .disruption_budget
                .iter()
                .map(|o| serde_json::to_value(o).unwrap()),
        );
        for ingress in [&desired.audio_ingress, &desired.hls_ingress]
            .into_iter()
            .flatten()
        {
            objects.push(serde_json::to_value(ingress).unwrap());
        }
        for object in objects {
            out.push_str("---\n");
            out.push_str(&serde_saphyr::to_string(&object).unwrap());
            count += 1;
        }
    }
    (out, count)
}

#[test]
fn operator_children_with_ingress_and_autoscaling_are_valid_manifests() {
    let examples = repo_root().join("examples");
    let (mp3, mp3_count) = operator_children(&examples.join("stream-mp3.yaml"));
    // Secret, Service, Deployment, PDB.
    assert_eq!(mp3_count, 4);
    let (group, group_count) = operator_children(&examples.join("stream-aac-group-ingress.yaml"));
    // Per variant: Secret, Service, Deployment, HPA, PDB, two Ingresses.
    assert_eq!(group_count, 14);
    for version in KUBE_VERSIONS {
        assert_valid(&mp3, version, "children of examples/stream-mp3.yaml");
        assert_valid(
            &group,
            version,
            "children of examples/stream-aac-group-ingress.yaml",
        );
    }
}

#[test]
fn chart_crd_is_the_committed_crd_and_is_kept_on_uninstall() {
    let committed: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo_root().join("crds/streams.streammachine.io.yaml")).unwrap(),
    )
    .unwrap();
    let rendered = documents(&template(&[], &[], KUBE_VERSIONS[1]));
    let crd = rendered
        .iter()
        .find(|d| d["kind"] == "CustomResourceDefinition")
        .expect("the chart renders the CRD by default");
    // Helm's fromYaml/toYaml writes `640.0` as `640`: compare numbers by value.
    if let Some(path) = first_difference(&crd["spec"], &committed["spec"], "spec") {
        panic!("the chart's CRD differs from crds/ at {path}");
    }
    assert_eq!(crd["metadata"]["name"], committed["metadata"]["name"]);
    assert_eq!(
        crd["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );

    let without = documents(&template(&[], &["crds.enabled=false"], KUBE_VERSIONS[1]));
    assert!(
        without
            .iter()
            .all(|d| d["kind"] != "CustomResourceDefinition")
    );
    let not_kept = documents(&template(&[], &["crds.keep=false"], KUBE_VERSIONS[1]));
    let crd = not_kept
        .iter()
        .find(|d| d["kind"] == "CustomResourceDefinition")
        .unwrap();
    assert!(crd["metadata"].get("annotations").is_none());
}

/// Path of the first difference between two JSON values, numbers compared as f64.
fn first_difference(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => (x.as_f64() != y.as_f64()).then(|| path.to_owned()),
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<_> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| match (x.get(k), y.get(k)) {
                (Some(xv), Some(yv)) => first_difference(xv, yv, &format!("{path}.{k}")),
                _ => Some(format!("{path}.{k}")),
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (xv, yv))| first_difference(xv, yv, &format!("{path}[{i}]"))),
        _ => (a != b).then(|| path.to_owned()),
    }
}

#[test]
fn bad_values_are_rejected() {
    let data = repo_root().join("operator/tests/data");
    for (file, message) in [
        (
            "bad-values-typo.yaml",
            "additional properties 'enabeld' not allowed",
        ),
        ("bad-values-type.yaml", "/operator/replicaCount"),
        (
            "bad-values-missing-url.yaml",
            "externalRedis.url is required when redis.enabled=false",
        ),
        (
            "bad-values-two-leaders.yaml",
            "needs operator.leaderElection.enabled=true",
        ),
    ] {
        let output = helm_template(&[data.join(file)], &[], KUBE_VERSIONS[1]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{file} was accepted");
        assert!(stderr.contains(message), "{file}: {stderr}");
    }
}

fn workloads(docs: &[Value]) -> impl Iterator<Item = &Value> {
    docs.iter()
        .filter(|d| matches!(d["kind"].as_str(), Some("Deployment" | "StatefulSet")))
}

#[test]
fn workloads_are_labelled_selected_and_locked_down() {
    for (name, values, set) in scenarios() {
        let docs = documents(&template(&values, &set, KUBE_VERSIONS[1]));
        for workload in workloads(&docs) {
            let what = format!("{name}: {}", workload["metadata"]["name"]);
            let selector = workload["spec"]["selector"]["matchLabels"]
                .as_object()
                .unwrap();
            let pod_labels = &workload["spec"]["template"]["metadata"]["labels"];
            for (key, value) in selector {
                assert_eq!(&pod_labels[key], value, "{what}: selector {key}");
            }
            // Selectors are immutable: nothing that changes per release may be in them.
            assert!(!selector.contains_key("helm.sh/chart"), "{what}");
            assert!(
                !selector.contains_key("app.kubernetes.io/version"),
                "{what}"
            );
            for label in [
                "app.kubernetes.io/name",
                "app.kubernetes.io/instance",
                "app.kubernetes.io/component",
                "app.kubernetes.io/version",
                "app.kubernetes.io/managed-by",
            ] {
                assert!(pod_labels.get(label).is_some(), "{what}: no {label}");
            }

            let pod = &workload["spec"]["template"]["spec"];
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{what}");
            for container in pod["containers"].as_array().unwrap() {
                let sc = &container["securityContext"];
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{what}");
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{what}");
                assert!(container.get("resources").is_some(), "{what}: no resources");
                assert!(container.get("livenessProbe").is_some(), "{what}");
                assert!(container.get("readinessProbe").is_some(), "{what}");
            }
        }
    }
}

#[test]
fn master_and_operator_follow_the_worker_contract() {
    let docs = documents(&template(&[], &[], KUBE_VERSIONS[1]));
    let by_name = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
            .clone()
    };

    let master = by_name("StatefulSet", "sm-streammachine-master");
    let container = &master["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args.join(" "),
        "master --redis $(STREAMMACHINE_REDIS_URL) --nats $(STREAMMACHINE_NATS_URL) \
         --listen 0.0.0.0:8000 --admin-listen 0.0.0.0:8001 --dump-dir /data --log-format json"
    );
    assert_eq!(
        master["spec"]["volumeClaimTemplates"][0]["metadata"]["name"],
        "data"
    );
    let env: Vec<&str> = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(env.contains(&"STREAMMACHINE_CLUSTER_TOKEN"));

    let admin = by_name("Service", "sm-streammachine-master-admin");
    assert_eq!(admin["spec"]["ports"][0]["port"], 8001);
    let source = by_name("Service", "sm-streammachine-master");
    assert_eq!(source["spec"]["ports"][0]["port"], 8000);

    let operator = by_name("Deployment", "sm-streammachine-operator");
    let env = &operator["spec"]["template"]["spec"]["containers"][0]["env"];
    let value = |name: &str| {
        env.as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("operator env {name}"))
            .clone()
    };
    assert_eq!(
        value("STREAMMACHINE_MASTER_ADMIN_URL")["value"],
        "http://sm-streammachine-master-admin.streaming.svc:8001"
    );
    assert_eq!(
        value("STREAMMACHINE_SLAVE_IMAGE")["value"],
        "ghcr.io/streammachine/streammachine:0.1.0"
    );
    assert_eq!(
        value("STREAMMACHINE_CLUSTER_TOKEN")["valueFrom"]["secretKeyRef"]["key"],
        "cluster-token"
    );

    let secret = by_name("Secret", "sm-streammachine");
    let url = secret["data"]["redis-url"].as_str().unwrap();
    assert_eq!(
        url, "cmVkaXM6Ly9zbS1zdHJlYW1tYWNoaW5lLXJlZGlzLnN0cmVhbWluZy5zdmM6NjM3OS8w",
        "redis://sm-streammachine-redis.streaming.svc:6379/0"
    );
    assert!(secret["data"]["cluster-token"].as_str().unwrap().len() >= 64);
}

#[test]
fn credentials_appear_only_inside_the_secret() {
    let values = vec![chart().join("ci/external-values.yaml")];
    let yaml = template(&values, &[], KUBE_VERSIONS[1]);
    for plaintext in [
        "not-a-real-token",
        "not-a-real-admin-token",
        "redis://:secret@",
        "nats://streammachine:secret@",
    ] {
        assert!(
            !yaml.contains(plaintext),
            "{plaintext} is in the rendered manifests"
        );
    }
}

#[test]
fn notes_explain_encoder_and_listener() {
    let output = run(
        Command::new(helm())
            .args([
                "install",
                "sm",
                "--dry-run=client",
                "--namespace",
                "streaming",
            ])
            .arg(chart()),
        TIMEOUT,
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("ffmpeg -re -i song.mp3 -c copy -f mp3"),
        "{stdout}"
    );
    assert!(stdout.contains("icecast://source:"), "{stdout}");
    assert!(stdout.contains("svc/live-slave"), "{stdout}");
}

/// `$(NAME)` expansions as the kubelet does them, with stand-in values for secret references.
fn expand(args: &[Value], env: &[Value]) -> Vec<String> {
    let mut out = vec!["streammachine".to_string()];
    for a in args {
        let mut s = a.as_str().unwrap().to_string();
        for e in env {
            let name = e["name"].as_str().unwrap();
            let value = e["value"].as_str().unwrap_or("redis://stand-in:6379/");
            let value = if name.ends_with("NATS_URL") {
                "nats://stand-in:4222"
            } else {
                value
            };
            s = s.replace(&format!("$({name})"), value);
        }
        assert!(!s.contains("$("), "unexpanded variable in `{s}`");
        out.push(s);
    }
    // The token reaches the worker through its environment (clap reads it from there); this
    // process cannot set environment variables safely, so pass it as the flag it stands for.
    assert!(
        env.iter()
            .any(|e| e["name"] == "STREAMMACHINE_CLUSTER_TOKEN"),
        "the pod must get STREAMMACHINE_CLUSTER_TOKEN"
    );
    out.extend(["--cluster-token".to_string(), "stand-in".to_string()]);
    out
}

/// The slave pods' command line is parsed by the real worker CLI, so a renamed flag on either
/// side fails here rather than in a cluster.
#[test]
fn slave_command_lines_parse_with_the_worker_cli() {
    for example in [
        "examples/stream-mp3.yaml",
        "examples/stream-aac-group-ingress.yaml",
    ] {
        let docs = documents(&std::fs::read_to_string(repo_root().join(example)).unwrap());
        for doc in docs.into_iter().filter(|d| d["kind"] == "Stream") {
            let mut stream: Stream = serde_json::from_value(doc).unwrap();
            stream.metadata.namespace = Some("radio".into());
            stream.metadata.uid = Some("0b6c4d0e-5c3f-4f43-9d4e-2a8d0c1f7e11".into());
            let valid = validate(&stream).unwrap();
            let desired = resources::build(
                &stream,
                &valid,
                &settings(),
                &StreamSecrets::new(Sensitive::new("pw")),
            )
            .unwrap();
            let deployment = serde_json::to_value(&desired.deployment).unwrap();
            let container = &deployment["spec"]["template"]["spec"]["containers"][0];
            let argv = expand(
                container["args"].as_array().unwrap(),
                container["env"].as_array().unwrap(),
            );
            let cli = streammachine::cli::Cli::try_parse_from(&argv)
                .unwrap_or_else(|e| panic!("{example}: {argv:?}: {e}"));
            assert!(
                matches!(cli.command(), streammachine::cli::Command::Slave(_)),
                "{argv:?}"
            );
        }
    }
}

/// The master StatefulSet's command line, as rendered by the chart, is parsed by the worker CLI.
#[test]
fn master_command_line_parses_with_the_worker_cli() {
    let rendered = template(&[], &[], KUBE_VERSIONS[1]);
    let master = documents(&rendered)
        .into_iter()
        .find(|d| d["kind"] == "StatefulSet")
        .expect("a master StatefulSet");
    let container = &master["spec"]["template"]["spec"]["containers"][0];
    let argv = expand(
        container["args"].as_array().unwrap(),
        container["env"].as_array().unwrap(),
    );
    let cli =
        streammachine::cli::Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    assert!(
        matches!(cli.command(), streammachine::cli::Command::Master(_)),
        "{argv:?}"
    );
}

#[test]
fn slave_security_contexts_follow_the_chart_values_and_redis_nats_have_their_own() {
    let docs = documents(&template(
        &[],
        &[
            "podSecurityContext.runAsUser=2000",
            "securityContext.readOnlyRootFilesystem=true",
        ],
        KUBE_VERSIONS[1],
    ));
    let by_name = |kind: &str, name: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
            .clone()
    };
    let operator = by_name("Deployment", "sm-streammachine-operator");
    let env = operator["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .clone();
    let value_of = |name: &str| -> String {
        env.iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("operator env {name} missing"))["value"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // Parsed exactly as the operator's command line parses it.
    let args = streammachine_operator::cli::Args::try_parse_from([
        "streammachine-operator",
        "--redis-url=redis://r:6379",
        "--nats-url=nats://n:4222",
        "--master-admin-url=http://m:8001",
        "--cluster-token=t",
        "--slave-image=img:1",
        &format!(
            "--slave-pod-security-context={}",
            value_of("STREAMMACHINE_SLAVE_POD_SECURITY_CONTEXT")
        ),
        &format!(
            "--slave-security-context={}",
            value_of("STREAMMACHINE_SLAVE_SECURITY_CONTEXT")
        ),
    ])
    .unwrap();
    let pod = args.slave_pod_security_context.unwrap();
    assert_eq!(pod.run_as_user, Some(2000));
    assert_eq!(pod.run_as_non_root, Some(true));
    let container = args.slave_security_context.unwrap();
    assert_eq!(container.read_only_root_filesystem, Some(true));
    assert_eq!(container.allow_privilege_escalation, Some(false));

    // Redis and NATS run as their images' users, not the worker's.
    let redis = by_name("Deployment", "sm-streammachine-redis");
    assert_eq!(
        redis["spec"]["template"]["spec"]["securityContext"]["runAsUser"],
        999
    );
    let nats = by_name("Deployment", "sm-streammachine-nats");
    assert_eq!(
        nats["spec"]["template"]["spec"]["securityContext"]["runAsUser"],
        1000
    );
    for workload in [&redis, &nats] {
        assert_eq!(
            workload["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"],
            true
        );
    }
}
