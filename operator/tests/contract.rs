//! The operator/worker contract end to end, with both crates' real code: every Stream the CRD and
//! the operator admit yields a document the worker's parser accepts (a Stream the CRD admits is a
//! stream the worker serves, or the CRD refuses it), and the master's stream status reads as the
//! operator's report.

// Helpers outside #[test] fns fail by panicking too; clippy only exempts the test fns.
#![allow(clippy::unwrap_used)]

use kube::CustomResourceExt;
use serde_json::Value;
use streammachine::cluster::store::parse_document;
use streammachine_operator::config::{
    Sensitive, StreamConfig, StreamSecrets, check_webhook_secret,
};
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

/// The OpenAPI checks the apiserver applies that `validate_cel` does not: numeric ranges,
/// string lengths, enums and list lengths (patterns are re-checked by the operator's
/// validation with the same rule).
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
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        problems.push(format!("{path} not in enum"));
    }
    if let Some(items) = value.as_array() {
        if schema["maxItems"]
            .as_u64()
            .is_some_and(|max| items.len() as u64 > max)
        {
            problems.push(format!("{path} too many items"));
        }
        for (i, item) in items.iter().enumerate() {
            schema_problems(&schema["items"], item, &format!("{path}[{i}]"), problems);
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
/// Every webhook with a `secretKeyRef` gets the shortest signing secret the operator accepts.
fn worker_accepts(stream: &Stream) -> Result<(), String> {
    let secrets = StreamSecrets {
        source_password: Sensitive::new("hackme"),
        webhook_secrets: stream
            .spec
            .webhooks
            .iter()
            .map(|h| {
                h.secret_key_ref
                    .as_ref()
                    .map(|_| Sensitive::new("0123456789abcdef"))
            })
            .collect(),
    };
    worker_accepts_with(stream, &secrets)
}

fn worker_accepts_with(stream: &Stream, secrets: &StreamSecrets) -> Result<(), String> {
    let valid = validate(stream).unwrap();
    let config = StreamConfig::build(stream, &valid, secrets);
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
    // Dead air: every edge of the levels and durations, the defaults taking part in
    // clear >= threshold.
    for (silence, ok) in [
        ("{}", true),
        ("{thresholdDbfs: -119, clearDbfs: -119}", true),
        ("{thresholdDbfs: 0, clearDbfs: 0}", true),
        ("{thresholdDbfs: -119, clearDbfs: 0}", true),
        ("{thresholdDbfs: -40}", true),
        ("{clearDbfs: -50}", true),
        ("{thresholdDbfs: -120}", false),
        ("{clearDbfs: 1}", false),
        ("{thresholdDbfs: -39}", false),
        ("{clearDbfs: -51}", false),
        ("{tripAfter: 1s, clearAfter: 100ms}", true),
        ("{tripAfter: 1h, clearAfter: 10m}", true),
        ("{tripAfter: 3600s, clearAfter: 600s}", true),
        ("{tripAfter: 999ms}", false),
        ("{tripAfter: 1h1s}", false),
        ("{clearAfter: 99ms}", false),
        ("{clearAfter: 10m1ms}", false),
        ("{tripAfter: 0s}", false),
        ("{action: alert}", true),
        ("{action: failover}", true),
    ] {
        cases.push(("live".into(), format!("silence: {silence}"), ok));
    }
    cases.push(("live".into(), "monitored: false".into(), true));
    cases.push(("live".into(), "monitored: true".into(), true));
    // Webhooks: URL forms, every type pattern the CRD lists, the most hooks, one more.
    let hook = |url: &str, extra: &str| format!("{{url: {url:?}{extra}}}");
    let all_patterns = streammachine_operator::crd::event_type_patterns()
        .iter()
        .map(|p| format!("{p:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    for (hooks, ok) in [
        (hook("https://hooks.example/in", ""), true),
        (hook("http://10.0.0.7:8080/x?y=1", ""), true),
        (
            hook(
                "https://h.example",
                ", secretKeyRef: {name: hooks, key: signing}",
            ),
            true,
        ),
        (
            hook("https://h.example", &format!(", types: [{all_patterns}]")),
            true,
        ),
        (hook(&format!("https://{}", long(2040, 'h')), ""), true),
        (hook(&format!("https://{}", long(2041, 'h')), ""), false),
        (hook("ftp://h.example", ""), false),
        (hook("http://", ""), false),
        (hook("http://:80/in", ""), false),
        (hook("https://exa mple.org", ""), false),
        (
            hook("https://h.example", ", types: [source.silence]"),
            false,
        ),
        (
            hook("https://h.example", ", types: [source.connected.*]"),
            false,
        ),
        (
            hook("https://h.example", ", types: [listener.joined]"),
            false,
        ),
    ] {
        cases.push(("live".into(), format!("webhooks: [{hooks}]"), ok));
    }
    let max = streammachine_contract::bounds::WEBHOOKS_MAX;
    let many = |n: usize| vec![hook("https://h.example", ""); n].join(", ");
    cases.push(("live".into(), format!("webhooks: [{}]", many(max)), true));
    cases.push((
        "live".into(),
        format!("webhooks: [{}]", many(max + 1)),
        false,
    ));

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

/// Signing secrets: what the operator accepts from a Secret, the worker signs with; what it
/// refuses (so the Stream gets a WebhookSecretUnavailable condition), the worker refuses too.
#[test]
fn webhook_secrets_the_operator_accepts_are_ones_the_worker_accepts() {
    let s = stream(
        "live",
        "webhooks: [{url: 'https://h.example', secretKeyRef: {name: hooks, key: signing}}]",
    );
    assert_eq!(admitted(&s), Ok(()));
    for (secret, ok) in [
        ("0123456789abcdef", true),
        ("a much longer signing secret of any characters: é€", true),
        ("whsec_MDEyMzQ1Njc4OWFiY2RlZg==", true),
        ("0123456789abcde", false),
        ("whsec_MDEyMzQ1Njc4OWFiY2Rl", false),
        ("whsec_0123456789abcdef0123456789abcdef!", false),
    ] {
        let operator = check_webhook_secret(secret);
        assert_eq!(operator.is_ok(), ok, "{secret}: {operator:?}");
        let secrets = StreamSecrets {
            source_password: Sensitive::new("hackme"),
            webhook_secrets: vec![Some(Sensitive::new(secret))],
        };
        assert_eq!(
            worker_accepts_with(&s, &secrets).is_ok(),
            ok,
            "the worker and the operator disagree on {secret:?}"
        );
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
