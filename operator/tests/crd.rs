//! The Stream CRD contract: the committed YAML equals the code, the schema is structural, the
//! CEL rules accept good specs and reject bad ones, and the examples are valid Streams.

// Helpers outside #[test] fns fail by panicking too; clippy only exempts the test fns.
#![allow(clippy::unwrap_used)]

mod support;

use kube::CustomResourceExt;
use serde_json::Value;
use streammachine_operator::crd::{Stream, crd_yaml};
use streammachine_operator::validate::validate;
use support::repo_root;

const CRD_FILE: &str = "crds/streams.streammachine.io.yaml";
const CHART_CRD_FILE: &str = "charts/streammachine/files/streams.streammachine.io.yaml";
const REGENERATE: &str = "regenerate with `cargo run -p streammachine-operator --bin crdgen > \
     crds/streams.streammachine.io.yaml && cp crds/streams.streammachine.io.yaml \
     charts/streammachine/files/`";

fn read(relative: &str) -> String {
    std::fs::read_to_string(repo_root().join(relative))
        .unwrap_or_else(|e| panic!("reading {relative}: {e}"))
}

#[test]
fn committed_crd_equals_the_code() {
    let generated = crd_yaml().unwrap();
    assert!(
        generated == read(CRD_FILE),
        "{CRD_FILE} is stale: {REGENERATE}"
    );
    assert!(
        generated == read(CHART_CRD_FILE),
        "{CHART_CRD_FILE} is stale: {REGENERATE}"
    );
}

#[test]
fn crdgen_binary_prints_the_committed_crd() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_crdgen"))
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(
        String::from_utf8(output.stdout).unwrap() == read(CRD_FILE),
        "crdgen output differs from {CRD_FILE}: {REGENERATE}"
    );
}

#[test]
fn crd_identity_columns_and_subresources() {
    let crd = serde_json::to_value(Stream::crd()).unwrap();
    let spec = &crd["spec"];
    assert_eq!(crd["metadata"]["name"], "streams.streammachine.io");
    assert_eq!(spec["group"], "streammachine.io");
    assert_eq!(spec["scope"], "Namespaced");
    assert_eq!(spec["names"]["kind"], "Stream");
    assert_eq!(spec["names"]["shortNames"][0], "sms");
    assert_eq!(spec["names"]["categories"][0], "streammachine");
    let version = &spec["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    assert_eq!(version["subresources"]["status"], serde_json::json!({}));
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for wanted in [
        "Format",
        "Source",
        "Silent",
        "Listeners",
        "Buffered",
        "Ready",
        "Age",
    ] {
        assert!(
            columns.contains(&wanted),
            "missing column {wanted}: {columns:?}"
        );
    }
}

// --- structural schema ------------------------------------------------------------------------

/// Keys a structural schema must not use inside `allOf`/`anyOf`/`oneOf`/`not`.
const FORBIDDEN_IN_JUNCTORS: [&str; 7] = [
    "type",
    "description",
    "default",
    "nullable",
    "additionalProperties",
    "x-kubernetes-preserve-unknown-fields",
    "title",
];

/// Walks a schema and collects every violation of the structural-schema rules that can be
/// checked offline (the apiserver enforces them when the CRD is applied).
fn structural_problems(node: &Value, path: &str, in_junctor: bool, problems: &mut Vec<String>) {
    let Some(object) = node.as_object() else {
        problems.push(format!("{path}: schema is not an object"));
        return;
    };
    for key in ["$ref", "definitions", "$defs", "$schema"] {
        if object.contains_key(key) {
            problems.push(format!("{path}: {key} is not allowed"));
        }
    }
    if in_junctor {
        for key in FORBIDDEN_IN_JUNCTORS {
            if object.contains_key(key) {
                problems.push(format!("{path}: {key} inside a logical junctor"));
            }
        }
    } else {
        let typed = object.contains_key("type")
            || object.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
            || object.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
        if !typed {
            problems.push(format!("{path}: no type"));
        }
    }
    if object.contains_key("properties") && object.contains_key("additionalProperties") {
        problems.push(format!(
            "{path}: properties and additionalProperties together"
        ));
    }
    if object.get("type") == Some(&Value::String("array".into())) && !object.contains_key("items") {
        problems.push(format!("{path}: array without items"));
    }
    if object.get("x-kubernetes-list-type") == Some(&Value::String("map".into())) {
        let keys = object["x-kubernetes-list-map-keys"].as_array();
        let required = object["items"]["required"].as_array();
        match (keys, required) {
            (Some(keys), Some(required)) if keys.iter().all(|k| required.contains(k)) => {}
            _ => problems.push(format!(
                "{path}: list-map keys must be required item fields"
            )),
        }
    }
    if let Some(Value::Array(values)) = object.get("enum")
        && let Some(Value::String(t)) = object.get("type")
    {
        for v in values {
            let matches = match t.as_str() {
                "string" => v.is_string(),
                "integer" => v.is_i64() || v.is_u64(),
                _ => true,
            };
            if !matches {
                problems.push(format!("{path}: enum value {v} is not a {t}"));
            }
        }
    }

    if let Some(Value::Object(properties)) = object.get("properties") {
        for (name, child) in properties {
            structural_problems(child, &format!("{path}.{name}"), in_junctor, problems);
        }
    }
    if let Some(items) = object.get("items") {
        structural_problems(items, &format!("{path}[]"), in_junctor, problems);
    }
    if let Some(additional @ Value::Object(_)) = object.get("additionalProperties") {
        structural_problems(additional, &format!("{path}{{}}"), in_junctor, problems);
    }
    for junctor in ["allOf", "anyOf", "oneOf"] {
        for (i, child) in object
            .get(junctor)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            structural_problems(child, &format!("{path}.{junctor}[{i}]"), true, problems);
        }
    }
    if let Some(not) = object.get("not") {
        structural_problems(not, &format!("{path}.not"), true, problems);
    }
}

#[test]
fn schema_is_structural() {
    let crd = serde_json::to_value(Stream::crd()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut problems = Vec::new();
    structural_problems(schema, "", false, &mut problems);
    // metadata may only constrain name/generateName; the generated schema leaves it alone.
    assert!(schema["properties"].get("metadata").is_none());
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_walker_catches_non_structural_schemas() {
    let bad = serde_json::json!({
        "type": "object",
        "properties": {
            "untyped": {"description": "no type"},
            "both": {"type": "object", "properties": {}, "additionalProperties": {"type": "string"}},
            "junctor": {"type": "string", "anyOf": [{"type": "string"}]},
            "reference": {"$ref": "#/definitions/x"}
        }
    });
    let mut problems = Vec::new();
    structural_problems(&bad, "", false, &mut problems);
    for expected in [
        ".untyped: no type",
        ".both: properties and additionalProperties together",
        ".junctor.anyOf[0]: type inside a logical junctor",
        ".reference: $ref is not allowed",
    ] {
        assert!(
            problems.iter().any(|p| p == expected),
            "{expected}: {problems:#?}"
        );
    }
}

// --- CEL --------------------------------------------------------------------------------------

fn stream_from_yaml(spec: &str) -> Stream {
    let yaml = format!(
        "apiVersion: streammachine.io/v1alpha1\nkind: Stream\nmetadata:\n  name: live\n  namespace: radio\nspec:\n{}",
        indent(spec)
    );
    serde_saphyr::from_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}\n")).collect()
}

const BASE: &str = "format: mp3\nsource:\n  passwordSecretRef: {name: encoder, key: password}\n";

#[test]
fn cel_rules_accept_good_specs() {
    let good = [
        "",
        "rewind: 1m\nburst: 1m",
        "rewind: 24h",
        "rewind: 2h30m\nburst: 45s",
        "key: kpcc_live",
        "slaves: {replicas: 3}",
        "slaves: {autoscaling: {minReplicas: 2, maxReplicas: 2}}",
        "ingress: {enabled: true, host: radio.example.org}",
        "group: kpcc\ningress: {enabled: true, host: radio.example.org, groupPlaylist: true}",
        "silence: {}",
        "silence: {thresholdDbfs: -50, clearDbfs: -40, tripAfter: 20s, clearAfter: 3s, action: alert}",
        "silence: {thresholdDbfs: -30, clearDbfs: -30, action: failover}",
        "silence: {clearDbfs: -50}",
        "silence: {tripAfter: 1s, clearAfter: 100ms}",
        "silence: {tripAfter: 1h, clearAfter: 10m}",
        "monitored: false",
        "webhooks: [{url: 'https://hooks.example/in'}]",
        "webhooks: [{url: 'http://pager:8080', types: ['*', source.*, stream.sourceless.started], \
         secretKeyRef: {name: hooks, key: signing}}]",
    ];
    for extra in good {
        let stream = stream_from_yaml(&format!("{BASE}{extra}"));
        assert!(
            stream.validate_cel().is_ok(),
            "{extra}: {:?}",
            stream.validate_cel()
        );
        assert!(
            validate(&stream).is_ok(),
            "{extra}: {:?}",
            validate(&stream)
        );
    }
}

#[test]
fn cel_rules_reject_bad_specs() {
    let bad = [
        (
            "rewind: 59s\nburst: 10s",
            "rewind must be between 1m and 24h",
        ),
        ("rewind: 25h", "rewind must be between 1m and 24h"),
        ("rewind: 1m\nburst: 2m", "burst must not be longer"),
        (
            "slaves: {autoscaling: {minReplicas: 5, maxReplicas: 2}}",
            "must not exceed",
        ),
        (
            "slaves: {replicas: 2, autoscaling: {maxReplicas: 4}}",
            "either slaves.replicas or slaves.autoscaling",
        ),
        ("ingress: {enabled: true}", "ingress.host is required"),
        (
            "ingress: {groupPlaylist: true}",
            "groupPlaylist needs spec.group",
        ),
        ("key: admin", "spec.key is reserved"),
        ("key: metrics", "spec.key is reserved"),
        ("group: sg", "spec.group is reserved"),
        (
            "silence: {thresholdDbfs: -30}",
            "clearDbfs must be at least silence.thresholdDbfs",
        ),
        (
            "silence: {thresholdDbfs: -45, clearDbfs: -46}",
            "clearDbfs must be at least silence.thresholdDbfs",
        ),
        (
            "silence: {clearDbfs: -51}",
            "clearDbfs must be at least silence.thresholdDbfs",
        ),
        (
            "silence: {tripAfter: 999ms}",
            "tripAfter must be between 1s and 1h",
        ),
        (
            "silence: {tripAfter: 61m}",
            "tripAfter must be between 1s and 1h",
        ),
        (
            "silence: {clearAfter: 99ms}",
            "clearAfter must be between 100ms and 10m",
        ),
        (
            "silence: {clearAfter: 601s}",
            "clearAfter must be between 100ms and 10m",
        ),
    ];
    for (extra, message) in bad {
        let stream = stream_from_yaml(&format!("{BASE}{extra}"));
        let errors = stream
            .validate_cel()
            .expect_err(&format!("{extra} should be rejected"));
        assert!(
            format!("{errors:?}").contains(message),
            "{extra}: expected {message:?} in {errors:?}"
        );
        // The operator's own validation agrees, for Streams admitted without CEL.
        assert!(validate(&stream).is_err(), "{extra}");
    }
}

/// What the OpenAPI part of the schema (not CEL) refuses in the new fields: the dBFS range, the
/// number of webhooks, URL schemes and unknown event types.
#[test]
fn schema_bounds_of_silence_and_webhooks() {
    let crd = serde_json::to_value(Stream::crd()).unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    for level in ["thresholdDbfs", "clearDbfs"] {
        let field = &spec["silence"]["properties"][level];
        assert_eq!(field["minimum"], -119.0, "{level}");
        assert_eq!(field["maximum"], 0.0, "{level}");
    }
    assert_eq!(
        spec["silence"]["properties"]["action"]["enum"],
        serde_json::json!(["alert", "failover"])
    );
    let hooks = &spec["webhooks"];
    assert_eq!(
        hooks["maxItems"],
        streammachine_contract::bounds::WEBHOOKS_MAX
    );
    let pattern = hooks["items"]["properties"]["url"]["pattern"]
        .as_str()
        .unwrap();
    assert_eq!(pattern, "^https?://[^/?#]+");
    let types: Vec<&str> = hooks["items"]["properties"]["types"]["items"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for name in streammachine_contract::EVENT_TYPES {
        assert!(types.contains(name), "{name}");
    }
    for prefix in ["*", "source.*", "source.silence.*", "stream.sourceless.*"] {
        assert!(types.contains(&prefix), "{prefix}");
    }
    assert!(!types.contains(&"source.connected.*"));
    assert_eq!(
        hooks["items"]["properties"]["secretKeyRef"]["required"],
        serde_json::json!(["key", "name"])
    );
}

/// The CRD's reserved-name rules list exactly the contract's names that the key pattern admits.
#[test]
fn cel_refuses_every_reserved_name() {
    for name in streammachine_contract::RESERVED_KEYS {
        for field in ["key", "group"] {
            let stream = stream_from_yaml(&format!("{BASE}{field}: {name:?}"));
            let admitted = stream.validate_cel().is_ok() && schema_admits_key(name);
            assert!(!admitted, "{field}: {name} is admitted by the CRD");
            assert!(validate(&stream).is_err(), "{field}: {name}");
        }
    }
}

/// Whether the CRD's key pattern admits `key` (dots never are).
fn schema_admits_key(key: &str) -> bool {
    let crd = serde_json::to_value(Stream::crd()).unwrap();
    let pattern =
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            ["key"]["pattern"]
            .as_str()
            .unwrap()
            .to_owned();
    assert_eq!(
        pattern, "^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$",
        "update schema_admits_key"
    );
    let bytes = key.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
}

#[test]
fn the_stream_key_is_immutable() {
    let old = stream_from_yaml(&format!("{BASE}key: live"));
    let same = stream_from_yaml(&format!("{BASE}key: live\nrewind: 2h"));
    assert!(same.validate_cel_update(&old).is_ok());

    let changed = stream_from_yaml(&format!("{BASE}key: other"));
    let errors = changed.validate_cel_update(&old).unwrap_err();
    assert!(
        format!("{errors:?}").contains("spec.key is immutable"),
        "{errors:?}"
    );

    let implicit = stream_from_yaml(BASE);
    assert!(
        stream_from_yaml(&format!("{BASE}key: added"))
            .validate_cel_update(&implicit)
            .is_err()
    );
    assert!(
        implicit.validate_cel_update(&old).is_err(),
        "removing the key"
    );
}

// --- examples ---------------------------------------------------------------------------------

fn streams_in(relative: &str) -> Vec<Stream> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(&read(relative)).unwrap();
    documents
        .into_iter()
        .filter(|d| d["kind"] == "Stream")
        .map(|d| serde_json::from_value(d).unwrap())
        .collect()
}

#[test]
fn examples_are_valid_streams() {
    let mp3 = streams_in("examples/stream-mp3.yaml");
    assert_eq!(mp3.len(), 1);
    let group = streams_in("examples/stream-aac-group-ingress.yaml");
    assert!(group.len() >= 2, "an AAC group has several variants");
    for stream in mp3.iter().chain(&group) {
        assert!(stream.validate_cel().is_ok(), "{:?}", stream.validate_cel());
        let mut with_ns = stream.clone();
        with_ns
            .metadata
            .namespace
            .get_or_insert_with(|| "radio".into());
        assert!(validate(&with_ns).is_ok(), "{:?}", validate(&with_ns));
    }
    assert!(
        group
            .iter()
            .all(|s| s.spec.ingress.enabled && s.spec.group.is_some())
    );
    assert_eq!(
        group
            .iter()
            .filter(|s| s.spec.ingress.group_playlist)
            .count(),
        1,
        "exactly one variant routes the group playlist"
    );
}
