//! The chart's monitoring: the PrometheusRule's alerts pass `promtool check rules` and the unit
//! tests in `tests/data/alerts_test.yaml` (`promtool test rules`), every alert has a summary, a
//! description and a runbook link to a section of `docs/alerts.md`; the PodMonitor scrapes the
//! ports the pods have; the Grafana dashboard is valid JSON whose panels all query something.
//! (That every metric used is one a running server exports is checked by the e2e test
//! `tests/tests/monitoring.rs`.)
//!
//! Needs helm (`scripts/k8s-tools.sh`) and promtool (`scripts/install/base.sh`).

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::{helm, repo_root, run};

const TIMEOUT: Duration = Duration::from_secs(120);

/// The objects `helm template` renders with the monitoring switched on.
fn render(extra: &[&str]) -> Vec<Value> {
    let mut cmd = Command::new(helm());
    cmd.arg("template")
        .arg("t")
        .arg(repo_root().join("charts/streammachine"))
        .args(["--namespace", "radio", "--set", "clusterToken=test-token"])
        .args([
            "--set",
            "monitoring.prometheusRule.enabled=true",
            "--set",
            "monitoring.podMonitor.enabled=true",
            "--set",
            "monitoring.dashboard.enabled=true",
        ]);
    for s in extra {
        cmd.args(["--set", s]);
    }
    let out = run(&mut cmd, TIMEOUT);
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.split("\n---")
        .filter_map(|doc| serde_saphyr::from_str::<Value>(doc).ok())
        .filter(|v| v.is_object())
        .collect()
}

fn kind<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} rendered"))
}

fn promtool(dir: &Path, args: &[&str]) -> String {
    let out = run(
        Command::new("promtool").args(args).current_dir(dir),
        TIMEOUT,
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}: {text}");
    text
}

/// GitHub's anchor of a Markdown heading: lower case, spaces to dashes, punctuation dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    let objects = render(&[]);
    let rule = kind(&objects, "PrometheusRule");
    let groups = rule["spec"]["groups"].clone();
    let dir = tempfile::tempdir().unwrap();

    // Whole rules, annotations included: syntax and templates.
    std::fs::write(
        dir.path().join("full.yaml"),
        serde_json::json!({ "groups": groups }).to_string(),
    )
    .unwrap();
    let checked = promtool(dir.path(), &["check", "rules", "full.yaml"]);
    assert!(checked.contains("SUCCESS: 10 rules found"), "{checked}");

    // Annotations: present, and every runbook link lands on a section of docs/alerts.md.
    let docs = std::fs::read_to_string(repo_root().join("docs/alerts.md")).unwrap();
    let anchors: Vec<String> = docs
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(anchor)
        .collect();
    let mut bare = groups.clone();
    for rule in bare[0]["rules"].as_array_mut().unwrap() {
        let name = rule["alert"].as_str().unwrap().to_string();
        let annotations = rule.as_object_mut().unwrap().remove("annotations").unwrap();
        for key in ["summary", "description", "runbook_url"] {
            assert!(
                annotations[key].as_str().is_some_and(|s| !s.is_empty()),
                "{name} has no {key}"
            );
        }
        let url = annotations["runbook_url"].as_str().unwrap();
        let (_, fragment) = url.split_once('#').unwrap();
        assert_eq!(fragment, name.to_lowercase(), "{name}: {url}");
        assert!(
            anchors.iter().any(|a| a == fragment),
            "{name}: docs/alerts.md has no section `## {name}`"
        );
    }

    // The unit tests compare labels; annotation texts are checked above.
    std::fs::write(
        dir.path().join("rules.yaml"),
        serde_json::json!({ "groups": bare }).to_string(),
    )
    .unwrap();
    std::fs::copy(
        repo_root().join("operator/tests/data/alerts_test.yaml"),
        dir.path().join("alerts_test.yaml"),
    )
    .unwrap();
    let tested = promtool(dir.path(), &["test", "rules", "alerts_test.yaml"]);
    assert!(tested.contains("SUCCESS"), "{tested}");
}

#[test]
fn thresholds_come_from_the_values() {
    let objects = render(&[
        "monitoring.prometheusRule.thresholds.slaveLagSeconds=30",
        "monitoring.prometheusRule.additionalLabels.release=kube-prometheus",
    ]);
    let rule = kind(&objects, "PrometheusRule");
    assert_eq!(rule["metadata"]["labels"]["release"], "kube-prometheus");
    let behind = rule["spec"]["groups"][0]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["alert"] == "StreamMachineSlaveBehind")
        .unwrap();
    assert!(
        behind["expr"].as_str().unwrap().ends_with("> 30"),
        "{behind}"
    );
}

#[test]
fn pod_monitor_scrapes_master_slaves_and_operator() {
    let objects = render(&[]);
    let monitor = kind(&objects, "PodMonitor");
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/part-of"],
        "streammachine"
    );
    let ports: Vec<&str> = monitor["spec"]["podMetricsEndpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["port"].as_str().unwrap())
        .collect();
    // The master's public port, the slaves' (operator/src/resources: SLAVE_PORT_NAME), the
    // operator's; each must be a named port of a pod the chart or the operator creates.
    let container_ports: Vec<String> = objects
        .iter()
        .flat_map(|o| {
            o["spec"]["template"]["spec"]["containers"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|c| c["ports"].as_array().cloned().unwrap_or_default())
        .filter_map(|p| p["name"].as_str().map(String::from))
        .collect();
    for port in &ports {
        assert!(
            *port == streammachine_operator::resources::SLAVE_PORT_NAME
                || container_ports.iter().any(|p| p == port),
            "PodMonitor port {port} is on no pod ({container_ports:?})"
        );
    }
    assert_eq!(ports, ["source", "http", "http-metrics"]);
}

#[test]
fn dashboard_is_grafana_json_with_a_query_in_every_panel() {
    let objects = render(&[]);
    let config_map = objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "t-streammachine-dashboard")
        .expect("dashboard ConfigMap");
    assert_eq!(config_map["metadata"]["labels"]["grafana_dashboard"], "1");
    let json: Value =
        serde_json::from_str(config_map["data"]["streammachine.json"].as_str().unwrap()).unwrap();
    assert_eq!(json["uid"], "streammachine");
    let panels = json["panels"].as_array().unwrap();
    assert!(panels.len() >= 6);
    for p in panels {
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        for t in targets {
            assert!(
                t["expr"].as_str().unwrap().contains("streammachine_"),
                "{t}"
            );
        }
    }
    // Off by default: nothing monitoring-related without the switches.
    let mut cmd = Command::new(helm());
    cmd.arg("template")
        .arg("t")
        .arg(repo_root().join("charts/streammachine"))
        .args(["--set", "clusterToken=test-token"]);
    let out = run(&mut cmd, TIMEOUT);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("kind: PrometheusRule") && !text.contains("kind: PodMonitor"));
    assert!(!text.contains("-dashboard"));
}
