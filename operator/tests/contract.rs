//! The operator/worker contract end to end, with both crates' real code: every Stream the CRD and
//! the operator admit yields a document the worker's parser accepts (a Stream the CRD admits is a
//! stream the worker serves, or the CRD refuses it), and the master's stream status reads as the
//! operator's report.

// Helpers outside #[test] fns fail by panicking too; clippy only exempts the test fns.
#![allow(clippy::unwrap_used)]

use kube::CustomResourceExt;
use serde_json::Value;
use streammachine::cluster::store::parse_document;
use streammachine_operator::config::{Sensitive, StreamConfig, StreamSecrets};
use streammachine_operator::crd::Stream;
use streammachine_operator::master::StreamReport;
use streammachine_operator::validate::validate;

const BASE: &str = "source:\n  passwordSecretRef: {name: encoder, key: password}\n";

fn stream(name: &str, extra: &str) -> Stream {
    let format = if extra.contains("format:") {
        ""
    } else {
        "format: mp3\n"
    };
    let spec: String = format!("{format}{BASE}{extra}")
        .lines()
        .map(|l| format!("  {l}\n"))
        .collect();
    let yaml = format!(
        "apiVersion: streammachine.io/v1alpha1\nkind: Stream\nmetadata:\n  name: {name}\n  namespace: radio\nspec:\n{spec}"
    );
    serde_saphyr::from_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// The OpenAPI checks the apiserver applies that `validate_cel` does not: numeric ranges and
/// string lengths (patterns are re-checked by the operator's validation with the same rule).
fn schema_problems(schema: &Value, value: &Value, path: &str, problems: &mut Vec<String>) {
    if let Some(n) = value.as_f64() {
        if schema["minimum"].as_f64().is_some_and(|min| n < min) {
            problems.push(format!("{path} below minimum"));
        }
        if schema["maximum"].as_f64().is_some_and(|max| n > max) {
            problems.push(format!("{path} above maximum"));
        }
    }
    if let Some(s) = value.as_str() {
        let chars = s.chars().count() as u64;
        if schema["maxLength"].as_u64().is_some_and(|max| chars > max) {
            problems.push(format!("{path} too long"));
        }
        if schema["minLength"].as_u64().is_some_and(|min| chars < min) {
            problems.push(format!("{path} too short"));
        }
    }
    if let (Some(properties), Some(object)) = (schema["properties"].as_object(), value.as_object())
    {
        for (name, v) in object {
            if let Some(s) = properties.get(name) {
                schema_problems(s, v, &format!("{path}.{name}"), problems);
            }
        }
    }
}

/// Whether the apiserver (schema and CEL) and the operator's validation admit the Stream.
fn admitted(stream: &Stream) -> Result<(), String> {
    let crd = serde_json::to_value(Stream::crd()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let mut problems = vec![];
    schema_problems(
        schema,
        &serde_json::to_value(&stream.spec).unwrap(),
        "spec",
        &mut problems,
    );
    if !problems.is_empty() {
        return Err(format!("schema: {problems:?}"));
    }
    stream.validate_cel().map_err(|e| format!("CEL: {e:?}"))?;
    validate(stream).map_err(|e| format!("operator: {e}"))?;
    Ok(())
}

/// The document the operator would write for an admitted Stream, read by the worker's parser.
fn worker_accepts(stream: &Stream) -> Result<(), String> {
    let valid = validate(stream).unwrap();
    let config = StreamConfig::build(
        stream,
        &valid,
        &StreamSecrets::new(Sensitive::new("hackme")),
    );
    let document = config.to_document().unwrap();
    parse_document(&valid.key, &document)
        .map(|_| ())
        .map_err(|e| format!("{e}: {document}"))
}

#[test]
fn every_stream_the_crd_admits_is_one_the_worker_serves() {
    let long = |n: usize, c: char| std::iter::repeat_n(c, n).collect::<String>();
    // (metadata.name, spec lines, whether the CRD/operator must admit it)
    let mut cases: Vec<(String, String, bool)> = vec![
        ("live".into(), String::new(), true),
        ("live".into(), "format: aac".into(), true),
        // icyMetaInterval: the CRD's floor, the worker's ceiling, just outside both.
        (
            "live".into(),
            "outputs: {icyMetaInterval: 256}".into(),
            true,
        ),
        (
            "live".into(),
            "outputs: {icyMetaInterval: 65535}".into(),
            true,
        ),
        (
            "live".into(),
            "outputs: {icyMetaInterval: 255}".into(),
            false,
        ),
        (
            "live".into(),
            "outputs: {icyMetaInterval: 65536}".into(),
            false,
        ),
        (
            "live".into(),
            "outputs: {icyMetaInterval: 262144}".into(),
            false,
        ),
        // HLS segment length.
        (
            "live".into(),
            "outputs: {hlsSegmentSeconds: 1}".into(),
            true,
        ),
        (
            "live".into(),
            "outputs: {hlsSegmentSeconds: 60}".into(),
            true,
        ),
        (
            "live".into(),
            "outputs: {hlsSegmentSeconds: 0}".into(),
            false,
        ),
        (
            "live".into(),
            "outputs: {hlsSegmentSeconds: 61}".into(),
            false,
        ),
        // Rewind and burst.
        ("live".into(), "rewind: 1m\nburst: 1m".into(), true),
        ("live".into(), "rewind: 24h\nburst: 1s".into(), true),
        ("live".into(), "rewind: 1h30m".into(), true),
        ("live".into(), "rewind: 59s\nburst: 1s".into(), false),
        ("live".into(), "rewind: 25h".into(), false),
        // Keys: longest, shortest, odd characters.
        ("live".into(), format!("key: {}", long(63, 'k')), true),
        ("live".into(), format!("key: {}", long(64, 'k')), false),
        ("live".into(), "key: a".into(), true),
        ("live".into(), "key: A_b-9".into(), true),
        ("live".into(), "key: a.b".into(), false),
        // Every optional field, present at its largest.
        (
            "live".into(),
            format!(
                "streamTitle: {t:?}\nstreamUrl: {u:?}\nfallback: {f:?}\ngroup: {g}\n\
                 listeners: {{maxListeners: 1, maxLag: 2m}}",
                t = long(1024, 'é'),
                u = format!("https://{}", long(2040, 'u')),
                f = format!("file://{}", long(2041, 'f')),
                g = long(63, 'g'),
            ),
            true,
        ),
        (
            "live".into(),
            "fallback: http://relay.example/live\nlisteners: {maxListeners: 4294967295}".into(),
            true,
        ),
        ("live".into(), "fallback: ftp://x".into(), false),
        ("live".into(), "listeners: {maxListeners: 0}".into(), false),
        // A URL of multi-byte characters within the CRD's 2048 characters but over the
        // worker's 4096 bytes: the operator refuses it.
        (
            "live".into(),
            format!("streamUrl: {:?}", long(2048, '€')),
            false,
        ),
    ];
    for name in streammachine_contract::RESERVED_KEYS {
        cases.push(("live".into(), format!("key: {name:?}"), false));
        cases.push(("live".into(), format!("group: {name:?}"), false));
        // The key defaults to the name; names with dots are not DNS labels anyway.
        if !name.contains('.') {
            cases.push(((*name).to_owned(), String::new(), false));
        }
    }

    for (name, extra, expected) in &cases {
        let s = stream(name, extra);
        let verdict = admitted(&s);
        assert_eq!(
            verdict.is_ok(),
            *expected,
            "name {name}, spec {extra:?}: {verdict:?}"
        );
        if verdict.is_ok() {
            assert_eq!(
                worker_accepts(&s),
                Ok(()),
                "the CRD admits name {name}, spec {extra:?}, the worker refuses it"
            );
        }
    }
}

#[test]
fn the_masters_stream_status_reads_as_the_operators_report() {
    let report = streammachine_contract::StreamReport {
        codec: Some("mp3-44100-128-s".into()),
        source_connected: true,
        buffer_seconds: 3725.5,
        listeners: 42,
        slaves_alive: Some(3),
        title: "Morning Edition".into(),
        source_silent: true,
    };
    // The type the master's admin API answers `GET /api/streams/{key}` with.
    let status = streammachine::admin::StreamStatus {
        key: "live".into(),
        format: "mp3".into(),
        report: report.clone(),
        sources: vec![],
        buffer_bytes: 1234,
        buffer_start: Some("2026-01-01T00:00:00Z".into()),
        buffer_end: None,
        first_seq: Some(1),
        last_seq: Some(9),
        url: "https://kpcc.org".into(),
    };
    let json = serde_json::to_string(&status).unwrap();
    let read: StreamReport = serde_json::from_str(&json).unwrap();
    assert_eq!(read, report, "{json}");

    // A standalone worker reports no slaves.
    let status = streammachine::admin::StreamStatus {
        report: streammachine_contract::StreamReport::default(),
        ..status
    };
    let json = serde_json::to_string(&status).unwrap();
    assert!(!json.contains("slaves_alive"), "{json}");
    let read: StreamReport = serde_json::from_str(&json).unwrap();
    assert_eq!(read, streammachine_contract::StreamReport::default());
}
