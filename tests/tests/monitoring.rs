//! The chart's monitoring against real servers: every `streammachine_*` series the alert rules
//! (`charts/streammachine/files/alerts.yaml`) and the Grafana dashboard (`files/dashboard.json`)
//! query is exported, with samples, by a running standalone server with a source and listeners,
//! or, for the cluster-only ones, by a master with a slave. (That the rules are valid and
//! behave is `operator/tests/alerts.rs`.)

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use streammachine::core::codec::Format;
use streammachine_e2e::audio::{Encoder, Pace, fixture};
use streammachine_e2e::cluster::Services;
use streammachine_e2e::listener::Listener;
use streammachine_e2e::repo_root;
use streammachine_e2e::server::Server;

const T: Duration = Duration::from_secs(60);

/// Exported by a master about its slaves only.
const CLUSTER_ONLY: &[&str] = &["streammachine_replica_lag_seconds"];

/// The `streammachine_*` names in a PromQL expression (or any text).
fn names_in(text: &str, out: &mut BTreeSet<String>) {
    let mut rest = text;
    while let Some(i) = rest.find("streammachine_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        out.insert(name);
    }
}

/// Every metric the chart's alert rules and dashboard query.
fn chart_metrics() -> BTreeSet<String> {
    let files = repo_root().join("charts/streammachine/files");
    let mut names = BTreeSet::new();
    // The rules are a Helm template: read the `expr:` values (one line, or a `|` block).
    let rules = std::fs::read_to_string(files.join("alerts.yaml")).unwrap();
    let mut in_expr = None;
    for line in rules.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(block_indent) = in_expr {
            if indent > block_indent || line.trim().is_empty() {
                names_in(line, &mut names);
                continue;
            }
            in_expr = None;
        }
        if let Some(v) = line.trim_start().strip_prefix("expr:") {
            names_in(v, &mut names);
            if v.trim() == "|" || v.trim() == ">" {
                in_expr = Some(indent);
            }
        }
    }
    let before = names.len();
    assert!(before >= 3, "alert expressions found: {names:?}");
    // The dashboard: every query string (panel targets and template variables).
    fn walk(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("expr" | "query" | "definition", Value::String(s)) => names_in(s, out),
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(files.join("dashboard.json")).unwrap())
            .unwrap();
    walk(&dashboard, &mut names);
    assert!(names.len() > before, "dashboard queries found: {names:?}");
    names
}

/// Names with at least one sample in an exposition (comments left out).
fn exported(metrics: &str) -> BTreeSet<String> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap_or_default().to_string())
        .collect()
}

fn missing(wanted: &BTreeSet<String>, metrics: &str) -> Vec<String> {
    let have = exported(metrics);
    wanted
        .iter()
        .filter(|n| !have.contains(*n))
        .cloned()
        .collect()
}

/// Wait until `server` exports every name in `wanted`; the exposition then. Fails naming what is
/// still missing.
async fn wait_exported(server: &Server, wanted: &BTreeSet<String>, what: &str) -> String {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let text = server.metrics().await;
        let gone = missing(wanted, &text);
        if gone.is_empty() {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} does not export {gone:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn every_metric_the_chart_queries_is_exported() {
    let wanted = chart_metrics();
    let (cluster, standalone): (BTreeSet<String>, BTreeSet<String>) = wanted
        .iter()
        .cloned()
        .partition(|n| CLUSTER_ONLY.contains(&n.as_str()));

    // Standalone: a source and a listener make every per-stream series.
    let server = Server::standalone(&["--stream", "live"]).await;
    let _enc = Encoder::push(
        &fixture(Format::Mp3, 60, 41),
        Format::Mp3,
        &server.source_url("live"),
        Pace::Rate(2),
        false,
    );
    server.wait_buffer("live", 2.0, T).await;
    let mut l = Listener::connect(server.listen, "/live", &[]).await;
    assert_eq!(l.read_bytes(10_000, T).await.len(), 10_000);
    let text = wait_exported(&server, &standalone, "a standalone server").await;
    // Guard against a vacuous check: the exposition was read and parsed.
    assert!(exported(&text).len() > standalone.len());

    // Cluster: a master with a slave following it.
    let services = Services::start().await;
    let master = services.master(&["--stream", "live"]).await;
    let _slave = services.slave(master.admin, &[]).await;
    let _enc = Encoder::push(
        &fixture(Format::Mp3, 60, 42),
        Format::Mp3,
        &master.source_url("live"),
        Pace::Rate(2),
        false,
    );
    master.wait_buffer("live", 2.0, T).await;
    wait_exported(&master, &cluster, "a master with a slave").await;
    assert!(
        cluster.is_empty() || !missing(&cluster, &text).is_empty(),
        "a cluster-only metric is exported by a standalone server; move it out of CLUSTER_ONLY"
    );
}
