//! Reconciler scenarios against a mocked API server (tower-test), an in-memory config store
//! and a fake master. Each scenario lists the exact API calls it expects, in order, with the
//! answer to give; the verifier fails on any other call and returns what was sent.

use std::sync::Mutex;
use std::sync::atomic::Ordering;

use futures::future::BoxFuture;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use k8s_openapi::jiff::Timestamp;
use kube::client::Body;
use serde_json::{Value, json};

use super::*;
use crate::crd::{AutoscalingSpec, StreamStatus};
use crate::fixtures::{settings, stream};
use crate::master::{MasterError, StreamReport};
use crate::store::memory::{Entry, MemoryStore};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

const STREAMS: &str = "/apis/streammachine.io/v1alpha1/namespaces/radio/streams";
const SECRETS: &str = "/api/v1/namespaces/radio/secrets";
const SERVICES: &str = "/api/v1/namespaces/radio/services";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/radio/deployments";
const HPAS: &str = "/apis/autoscaling/v2/namespaces/radio/horizontalpodautoscalers";
const PDBS: &str = "/apis/policy/v1/namespaces/radio/poddisruptionbudgets";
const INGRESSES: &str = "/apis/networking.k8s.io/v1/namespaces/radio/ingresses";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/radio/events";

/// How the mock answers one call.
enum Reply {
    /// 200 with the request body (what server-side apply returns, roughly).
    Echo,
    /// 200 with the request body plus this `status`.
    EchoWithStatus(Value),
    /// 200 with this body.
    Json(Value),
    /// A `Status` failure with this code.
    Fail(u16),
}

struct Call {
    method: &'static str,
    path: String,
    reply: Reply,
}

fn call(method: &'static str, path: impl Into<String>, reply: Reply) -> Call {
    Call {
        method,
        path: path.into(),
        reply,
    }
}

/// One request the reconciler made.
#[derive(Debug)]
struct Sent {
    query: String,
    content_type: String,
    body: Value,
}

fn status_body(code: u16) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Status", "metadata": {},
        "status": if code < 300 { "Success" } else { "Failure" },
        "reason": match code { 404 => "NotFound", 409 => "Conflict", 403 => "Forbidden", _ => "InternalError" },
        "message": format!("mocked {code}"),
        "code": code,
    })
}

/// Answers `calls` in order and returns the requests; panics on an unexpected call.
async fn verify(mut handle: Handle, calls: Vec<Call>) -> Vec<Sent> {
    let mut sent = Vec::new();
    for expected in calls {
        let (request, respond) = handle.next_request().await.unwrap_or_else(|| {
            panic!(
                "expected {} {} but the reconciler stopped",
                expected.method, expected.path
            )
        });
        let (parts, body) = request.into_parts();
        assert_eq!(
            (parts.method.as_str(), parts.uri.path()),
            (expected.method, expected.path.as_str()),
            "unexpected call (query {:?})",
            parts.uri.query()
        );
        let bytes = body.collect().await.unwrap().to_bytes();
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        let (code, answer) = match expected.reply {
            Reply::Echo => (200, body.clone()),
            Reply::EchoWithStatus(status) => {
                let mut object = body.clone();
                object["status"] = status;
                (200, object)
            }
            Reply::Json(value) => (200, value),
            Reply::Fail(code) => (code, status_body(code)),
        };
        respond.send_response(
            Response::builder()
                .status(StatusCode::from_u16(code).unwrap())
                .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                .unwrap(),
        );
        sent.push(Sent {
            query: parts.uri.query().unwrap_or_default().to_owned(),
            content_type: parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default(),
            body,
        });
    }
    // The reconcile has returned (or is about to): any further call is one too many.
    if let Ok(Some((extra, _))) =
        tokio::time::timeout(Duration::from_millis(200), handle.next_request()).await
    {
        panic!("unexpected extra call {} {}", extra.method(), extra.uri());
    }
    sent
}

/// A master that answers whatever the test set.
struct FakeMaster(Mutex<Result<Option<StreamReport>, MasterError>>);

impl MasterApi for FakeMaster {
    fn stream_report<'a>(
        &'a self,
        _key: &'a str,
    ) -> BoxFuture<'a, Result<Option<StreamReport>, MasterError>> {
        let answer = self.0.lock().unwrap().clone();
        Box::pin(async move { answer })
    }
}

fn on_air() -> Result<Option<StreamReport>, MasterError> {
    Ok(Some(StreamReport {
        codec: Some("mp3-44100-128-s".into()),
        source_connected: true,
        buffer_seconds: 600.0,
        listeners: 12,
        slaves_alive: Some(2),
        title: "Morning Edition".into(),
        source_silent: false,
    }))
}

struct Harness {
    ctx: Arc<Context>,
    store: Arc<MemoryStore>,
    handle: Handle,
}

fn harness(master: Result<Option<StreamReport>, MasterError>, store: MemoryStore) -> Harness {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "radio");
    let store = Arc::new(store);
    let ctx = Arc::new(Context {
        client: client.clone(),
        store: store.clone(),
        master: Arc::new(FakeMaster(Mutex::new(master))),
        settings: settings(),
        recorder: Recorder::new(
            client,
            kube::runtime::events::Reporter {
                controller: "streammachine-operator".into(),
                instance: None,
            },
        ),
        metrics: Arc::new(Metrics::default()),
        status_refresh: Duration::from_secs(30),
        backoff: Backoff::default(),
    });
    Harness { ctx, store, handle }
}

/// Runs one reconcile against `calls`; returns its result and the requests made.
async fn run(
    stream: Stream,
    master: Result<Option<StreamReport>, MasterError>,
    store: MemoryStore,
    calls: Vec<Call>,
) -> (
    Result<Action, Error>,
    Vec<Sent>,
    Arc<MemoryStore>,
    Arc<Context>,
) {
    let Harness { ctx, store, handle } = harness(master, store);
    let verifier = tokio::spawn(verify(handle, calls));
    let result = tokio::time::timeout(
        Duration::from_secs(5),
        reconcile(Arc::new(DeserializeGuard(Ok(stream))), ctx.clone()),
    )
    .await
    .expect("reconcile hung: a mocked call was not answered");
    let sent = tokio::time::timeout(Duration::from_secs(5), verifier)
        .await
        .expect("the reconciler made fewer calls than expected")
        .unwrap();
    (result, sent, store, ctx)
}

fn guarded(s: Stream) -> Arc<WatchedStream> {
    Arc::new(DeserializeGuard(Ok(s)))
}

/// A store already holding key `live`, written by the Stream `owner`.
fn store_with_live(owner: &str, document: &str) -> MemoryStore {
    let store = MemoryStore::default();
    store.entries.lock().unwrap().insert(
        "live".into(),
        Entry {
            owner: owner.into(),
            document: document.into(),
        },
    );
    store
}

fn finalized(mut s: Stream) -> Stream {
    s.metadata.finalizers = Some(vec![REDIS_FINALIZER.to_owned()]);
    s
}

fn as_json(s: &Stream) -> Value {
    serde_json::to_value(s).unwrap()
}

fn encoder_secret() -> Reply {
    Reply::Json(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "encoder", "namespace": "radio"},
        "data": {"password": "aGFja21l"}  // "hackme"
    }))
}

fn ready_slaves(ready: i32) -> Reply {
    Reply::EchoWithStatus(json!({"replicas": 2, "readyReplicas": ready}))
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap()
}

/// The calls of a full apply of the default stream (2 fixed replicas, no ingress) when its
/// generation is new: children applied, absent optional children pruned.
fn first_apply_calls(s: &Stream) -> Vec<Call> {
    vec![
        call("GET", format!("{SECRETS}/encoder"), encoder_secret()),
        call("PATCH", format!("{SECRETS}/live-slave"), Reply::Echo),
        call("PATCH", format!("{SERVICES}/live-slave"), Reply::Echo),
        call(
            "PATCH",
            format!("{DEPLOYMENTS}/live-slave"),
            ready_slaves(2),
        ),
        call("DELETE", format!("{HPAS}/live-slave"), Reply::Fail(404)),
        call("PATCH", format!("{PDBS}/live-slave"), Reply::Echo),
        call(
            "DELETE",
            format!("{INGRESSES}/live-audio"),
            Reply::Fail(404),
        ),
        call("DELETE", format!("{INGRESSES}/live-hls"), Reply::Fail(404)),
        call(
            "PATCH",
            format!("{STREAMS}/live/status"),
            Reply::Json(as_json(s)),
        ),
        call("POST", EVENTS, Reply::Echo),
        call("POST", EVENTS, Reply::Echo),
    ]
}

#[tokio::test]
async fn a_new_stream_first_gets_the_finalizer() {
    let s = stream("live");
    let calls = vec![call(
        "PATCH",
        format!("{STREAMS}/live"),
        Reply::Json(as_json(&s)),
    )];
    let (result, sent, store, _) = run(s, on_air(), MemoryStore::default(), calls).await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert_eq!(sent[0].content_type, "application/json-patch+json");
    assert_eq!(
        sent[0].body[1],
        json!({"op": "add", "path": "/metadata/finalizers", "value": [REDIS_FINALIZER]})
    );
    assert!(
        store.entries.lock().unwrap().is_empty(),
        "nothing applied before the finalizer"
    );
}

#[tokio::test]
async fn first_apply_writes_config_children_status_and_events() {
    let s = finalized(stream("live"));
    let (result, sent, store, _) = run(
        s.clone(),
        on_air(),
        MemoryStore::default(),
        first_apply_calls(&s),
    )
    .await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(30)));

    // Redis: the config, owned by radio/live, announced once.
    let entries = store.entries.lock().unwrap();
    let document: Value = serde_json::from_str(&entries["live"].document).unwrap();
    assert_eq!(entries["live"].owner, "radio/live");
    assert_eq!(document["schema"], 1);
    assert_eq!(document["stream"]["source_password"], "hackme");
    assert_eq!(*store.published.lock().unwrap(), ["live"]);

    // Every child is a forced server-side apply with the operator's field manager.
    for applied in sent
        .iter()
        .filter(|s| s.content_type == "application/apply-patch+yaml")
    {
        assert!(
            applied
                .query
                .contains("fieldManager=streammachine-operator.streammachine.io"),
            "{applied:?}"
        );
        assert!(applied.query.contains("force=true"), "{applied:?}");
    }
    let deployment = &sent[3].body;
    assert_eq!(deployment["kind"], "Deployment");
    assert_eq!(
        deployment["metadata"]["ownerReferences"][0]["kind"],
        "Stream"
    );
    assert_eq!(deployment["spec"]["replicas"], 2);

    // The password went to Redis only: not into any object or the status.
    for request in &sent {
        assert!(!request.body.to_string().contains("hackme"), "{request:?}");
    }

    let status = &sent[8].body["status"];
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(status["listeners"], 12);
    assert_eq!(status["bufferedSeconds"], 600.0);
    assert_eq!(status["readyReplicas"], 2);
    assert_eq!(status["key"], "live");
    assert_eq!(condition(status, "Ready")["status"], "True");
    assert_eq!(condition(status, "SourceConnected")["status"], "True");
    assert_eq!(condition(status, "Degraded")["status"], "False");

    let reasons: Vec<_> = sent[9..].iter().map(|e| e.body["reason"].clone()).collect();
    assert_eq!(reasons, [json!("SlavesReady"), json!("SourceConnected")]);
}

/// The status the first apply of `s` writes, to start later scenarios from.
fn applied_status(s: &Stream, master: Result<Option<StreamReport>, MasterError>) -> StreamStatus {
    crate::status::compute(
        None,
        s.metadata.generation,
        "live",
        &Observed::Running {
            slaves: SlaveCounts {
                desired: 2,
                current: 2,
                ready: 2,
            },
            master,
        },
        Timestamp::now(),
    )
}

#[tokio::test]
async fn steady_state_reapplies_children_to_undo_drift_and_writes_nothing_else() {
    let mut s = finalized(stream("live"));
    s.status = Some(applied_status(&s, on_air()));
    let document = {
        let valid = validate(&s).unwrap();
        crate::config::StreamConfig::build(
            &s,
            &valid,
            &StreamSecrets::new(Sensitive::new("hackme")),
        )
        .to_document()
        .unwrap()
    };
    let calls = vec![
        call("GET", format!("{SECRETS}/encoder"), encoder_secret()),
        call("PATCH", format!("{SECRETS}/live-slave"), Reply::Echo),
        call("PATCH", format!("{SERVICES}/live-slave"), Reply::Echo),
        // Someone scaled the Deployment by hand: the forced apply puts replicas back to 2.
        call(
            "PATCH",
            format!("{DEPLOYMENTS}/live-slave"),
            ready_slaves(2),
        ),
        call("PATCH", format!("{PDBS}/live-slave"), Reply::Echo),
    ];
    let (result, sent, store, _) =
        run(s, on_air(), store_with_live("radio/live", &document), calls).await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(30)));
    assert_eq!(sent[3].body["spec"]["replicas"], 2);
    assert!(sent[3].query.contains("force=true"));
    assert!(
        store.published.lock().unwrap().is_empty(),
        "an unchanged config is not re-announced to the master"
    );
}

#[tokio::test]
async fn spec_update_applies_new_children_and_prunes_unwanted_ones() {
    let mut s = finalized(stream("live"));
    s.status = Some(applied_status(&s, on_air()));
    s.metadata.generation = Some(2);
    s.spec.slaves.autoscaling = Some(AutoscalingSpec {
        min_replicas: 1,
        max_replicas: 4,
        target_cpu_utilization_percentage: 70,
    });
    s.spec.ingress.enabled = true;
    s.spec.ingress.host = Some("radio.example.org".into());
    let calls = vec![
        call("GET", format!("{SECRETS}/encoder"), encoder_secret()),
        call("PATCH", format!("{SECRETS}/live-slave"), Reply::Echo),
        call("PATCH", format!("{SERVICES}/live-slave"), Reply::Echo),
        call(
            "PATCH",
            format!("{DEPLOYMENTS}/live-slave"),
            Reply::Json(json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "live-slave"},
                "spec": {"replicas": 2, "selector": {}, "template": {}},
                "status": {"replicas": 2, "readyReplicas": 2}
            })),
        ),
        call("PATCH", format!("{HPAS}/live-slave"), Reply::Echo),
        // min 1 pod: the disruption budget goes.
        call(
            "DELETE",
            format!("{PDBS}/live-slave"),
            Reply::Json(status_body(200)),
        ),
        call("PATCH", format!("{INGRESSES}/live-audio"), Reply::Echo),
        call("PATCH", format!("{INGRESSES}/live-hls"), Reply::Echo),
        call(
            "PATCH",
            format!("{STREAMS}/live/status"),
            Reply::Json(as_json(&s)),
        ),
    ];
    let (result, sent, _, _) = run(s, on_air(), MemoryStore::default(), calls).await;
    assert!(result.is_ok(), "{result:?}");
    assert!(
        sent[3].body["spec"].get("replicas").is_none(),
        "the HPA owns replicas"
    );
    assert_eq!(sent[4].body["spec"]["maxReplicas"], 4);
    assert_eq!(
        sent[6].body["spec"]["rules"][0]["host"],
        "radio.example.org"
    );
    assert_eq!(sent[8].body["status"]["observedGeneration"], 2);
}

#[tokio::test]
async fn deleting_removes_the_redis_entry_then_the_finalizer() {
    let mut s = finalized(stream("live"));
    s.status = Some(applied_status(&s, on_air()));
    s.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        Timestamp::now(),
    ));
    let calls = vec![call(
        "PATCH",
        format!("{STREAMS}/live"),
        Reply::Json(as_json(&s)),
    )];
    let (result, sent, store, _) =
        run(s, on_air(), store_with_live("radio/live", "{}"), calls).await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert!(store.entries.lock().unwrap().is_empty());
    assert_eq!(*store.published.lock().unwrap(), ["live"]);
    assert_eq!(
        sent[0].body[1],
        json!({"op": "remove", "path": "/metadata/finalizers/0"})
    );
}

#[tokio::test]
async fn deleting_keeps_a_key_another_stream_owns() {
    let mut s = finalized(stream("live"));
    s.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        Timestamp::now(),
    ));
    let calls = vec![call(
        "PATCH",
        format!("{STREAMS}/live"),
        Reply::Json(as_json(&s)),
    )];
    let (result, _, store, _) = run(s, on_air(), store_with_live("other/live", "{}"), calls).await;
    assert!(result.is_ok());
    assert_eq!(store.entries.lock().unwrap()["live"].owner, "other/live");
}

#[tokio::test]
async fn invalid_spec_gets_a_condition_and_one_warning_but_no_requeue() {
    let mut s = finalized(stream("live"));
    s.spec.rewind = "forever".into();
    let calls = vec![
        call(
            "PATCH",
            format!("{STREAMS}/live/status"),
            Reply::Json(as_json(&s)),
        ),
        call("POST", EVENTS, Reply::Echo),
    ];
    let (result, sent, store, ctx) = run(s.clone(), on_air(), MemoryStore::default(), calls).await;
    let error = result.unwrap_err();
    assert_eq!(error.class(), ErrorClass::InvalidSpec);
    assert_eq!(error.metric_label(), "invalid_spec");
    assert_eq!(
        error_policy(guarded(s), &error, ctx.clone()),
        Action::await_change()
    );
    let ready = condition(&sent[0].body["status"], "Ready");
    assert_eq!(ready["reason"], "InvalidSpec");
    assert!(ready["message"].as_str().unwrap().contains("spec.rewind"));
    assert_eq!(sent[1].body["type"], "Warning");
    assert_eq!(sent[1].body["reason"], "InvalidSpec");
    assert!(store.entries.lock().unwrap().is_empty());
    let metrics = ctx.metrics.encode().unwrap();
    assert!(
        metrics.contains(r#"failures_total{error="invalid_spec"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn missing_source_secret_blocks_with_a_condition_and_a_slow_retry() {
    let s = finalized(stream("live"));
    let calls = vec![
        call("GET", format!("{SECRETS}/encoder"), Reply::Fail(404)),
        call(
            "PATCH",
            format!("{STREAMS}/live/status"),
            Reply::Json(as_json(&s)),
        ),
        call("POST", EVENTS, Reply::Echo),
    ];
    let (result, sent, _, ctx) = run(s.clone(), on_air(), MemoryStore::default(), calls).await;
    let error = result.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Blocked);
    assert_eq!(
        error_policy(guarded(s), &error, ctx),
        Action::requeue(BLOCKED_RETRY)
    );
    assert_eq!(
        condition(&sent[1].body["status"], "Ready")["reason"],
        "SourceSecretUnavailable"
    );
}

#[tokio::test]
async fn a_key_used_by_another_stream_is_reported() {
    let s = finalized(stream("live"));
    let calls = vec![
        call("GET", format!("{SECRETS}/encoder"), encoder_secret()),
        call(
            "PATCH",
            format!("{STREAMS}/live/status"),
            Reply::Json(as_json(&s)),
        ),
        call("POST", EVENTS, Reply::Echo),
    ];
    let (result, sent, _, _) = run(s, on_air(), store_with_live("other/live", "{}"), calls).await;
    assert_eq!(result.unwrap_err().metric_label(), "key_in_use");
    let ready = condition(&sent[1].body["status"], "Ready");
    assert_eq!(ready["reason"], "KeyInUse");
    assert!(ready["message"].as_str().unwrap().contains("other/live"));
}

#[tokio::test]
async fn conflict_on_apply_is_transient_and_backs_off() {
    let s = finalized(stream("live"));
    let calls = vec![
        call("GET", format!("{SECRETS}/encoder"), encoder_secret()),
        call("PATCH", format!("{SECRETS}/live-slave"), Reply::Echo),
        call("PATCH", format!("{SERVICES}/live-slave"), Reply::Echo),
        call(
            "PATCH",
            format!("{DEPLOYMENTS}/live-slave"),
            Reply::Fail(409),
        ),
    ];
    let (result, _, _, ctx) = run(s.clone(), on_air(), MemoryStore::default(), calls).await;
    let error = result.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Transient);
    let s = guarded(s);
    let first = requeue_seconds(&error_policy(s.clone(), &error, ctx.clone()));
    let second = requeue_seconds(&error_policy(s, &error, ctx));
    assert!((2.0..=4.0).contains(&first), "{first}");
    assert!((4.0..=8.0).contains(&second), "{second}");
}

/// The delay of a requeue (`Action` has no getter; its `Debug` shows the `Duration`).
fn requeue_seconds(action: &Action) -> f64 {
    let text = format!("{action:?}");
    let inner = text
        .split("Some(")
        .nth(1)
        .and_then(|t| t.split(')').next())
        .unwrap_or_else(|| panic!("not a requeue: {text}"));
    let (number, unit) = inner.split_at(inner.find(|c: char| c.is_alphabetic()).unwrap());
    let n: f64 = number.parse().unwrap();
    match unit {
        "s" => n,
        "ms" => n / 1e3,
        other => panic!("unit {other} in {text}"),
    }
}

#[tokio::test]
async fn server_error_is_transient() {
    let s = finalized(stream("live"));
    let calls = vec![
        call("GET", format!("{SECRETS}/encoder"), encoder_secret()),
        call("PATCH", format!("{SECRETS}/live-slave"), Reply::Echo),
        call("PATCH", format!("{SERVICES}/live-slave"), Reply::Fail(500)),
    ];
    let (result, _, _, _) = run(s, on_air(), MemoryStore::default(), calls).await;
    let error = result.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Transient);
    assert_eq!(error.metric_label(), "kube");
}

#[tokio::test]
async fn forbidden_is_blocked() {
    let s = finalized(stream("live"));
    let calls = vec![call("GET", format!("{SECRETS}/encoder"), Reply::Fail(403))];
    let (result, _, _, _) = run(s, on_air(), MemoryStore::default(), calls).await;
    assert_eq!(result.unwrap_err().class(), ErrorClass::Blocked);
}

#[tokio::test]
async fn redis_down_is_transient_and_nothing_is_applied() {
    let s = finalized(stream("live"));
    let calls = vec![call("GET", format!("{SECRETS}/encoder"), encoder_secret())];
    let (result, _, _, _) = run(
        s,
        on_air(),
        {
            let store = MemoryStore::default();
            store.fail.store(true, Ordering::Relaxed);
            store
        },
        calls,
    )
    .await;
    let error = result.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Transient);
    assert_eq!(error.metric_label(), "redis");
}

#[tokio::test]
async fn unreachable_master_is_a_condition_not_a_failure() {
    let s = finalized(stream("live"));
    let mut calls = first_apply_calls(&s);
    // Ready (SlavesReady) and Degraded (MasterUnreachable) events; no SourceConnected event.
    let (result, sent, _, _) = run(
        s,
        Err(MasterError::Unreachable("connection refused".into())),
        MemoryStore::default(),
        {
            calls.truncate(calls.len() - 1);
            calls.push(call("POST", EVENTS, Reply::Echo));
            calls
        },
    )
    .await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(30)));
    let status = &sent[8].body["status"];
    assert_eq!(
        condition(status, "SourceConnected")["reason"],
        "MasterUnreachable"
    );
    assert_eq!(condition(status, "Degraded")["reason"], "MasterUnreachable");
    assert_eq!(sent[10].body["type"], "Warning");
}

#[tokio::test]
async fn a_malformed_object_gets_a_warning_and_waits_for_a_change() {
    let Harness { ctx, handle, .. } = harness(on_air(), MemoryStore::default());
    let malformed: Arc<WatchedStream> = Arc::new(
        serde_json::from_value(json!({
            "apiVersion": "streammachine.io/v1alpha1", "kind": "Stream",
            "metadata": {"name": "old", "namespace": "radio", "uid": "u1"},
            "spec": {"format": "ogg"}
        }))
        .unwrap(),
    );
    assert!(malformed.0.is_err(), "the guard catches the bad spec");
    let verifier = tokio::spawn(verify(handle, vec![call("POST", EVENTS, Reply::Echo)]));
    let error = reconcile(malformed.clone(), ctx.clone()).await.unwrap_err();
    let sent = verifier.await.unwrap();
    assert_eq!(sent[0].body["reason"], "Malformed");
    assert_eq!(sent[0].body["regarding"]["name"], "old");
    assert_eq!(error_policy(malformed, &error, ctx), Action::await_change());
}

#[test]
fn backoff_doubles_with_jitter_up_to_five_minutes() {
    let secs = |d: Duration| d.as_secs_f64();
    let backoff = Backoff::default();
    let a: Vec<f64> = (0..12)
        .map(|_| secs(backoff.next_delay("radio/a")))
        .collect();
    for (i, d) in a.iter().enumerate() {
        let base = (2.0 * 2f64.powi(i as i32)).min(300.0);
        assert!(
            *d >= base && *d <= 2.0 * base,
            "failure {i}: {d} s for base {base} s"
        );
    }
    let b = secs(backoff.next_delay("radio/b"));
    assert!((2.0..=4.0).contains(&b), "per Stream: {b}");
    backoff.reset("radio/a");
    assert!(secs(backoff.next_delay("radio/a")) <= 4.0);
    // Streams that fail together spread out.
    let firsts: Vec<f64> = (0..20)
        .map(|i| secs(backoff.next_delay(&format!("radio/s{i}"))))
        .collect();
    let spread = firsts.iter().cloned().fold(f64::MIN, f64::max)
        - firsts.iter().cloned().fold(f64::MAX, f64::min);
    assert!(spread > 0.2, "no jitter: {firsts:?}");
}

#[test]
fn error_classes() {
    let api = |code: u16| {
        Error::Kube(kube::Error::Api(Box::new(
            serde_json::from_value(status_body(code)).unwrap(),
        )))
    };
    assert_eq!(api(404).class(), ErrorClass::Transient);
    assert_eq!(api(409).class(), ErrorClass::Transient);
    assert_eq!(api(429).class(), ErrorClass::Transient);
    assert_eq!(api(503).class(), ErrorClass::Transient);
    assert_eq!(api(403).class(), ErrorClass::Blocked);
    assert_eq!(api(422).class(), ErrorClass::Blocked);
    let wrapped = Error::Finalizer(Box::new(finalizer::Error::ApplyFailed(
        Error::SourceSecret("x".into()),
    )));
    assert_eq!(wrapped.class(), ErrorClass::Blocked);
    assert_eq!(wrapped.metric_label(), "source_secret");
    let add = Error::Finalizer(Box::new(finalizer::Error::AddFinalizer(kube::Error::Api(
        Box::new(serde_json::from_value(status_body(409)).unwrap()),
    ))));
    assert_eq!(add.class(), ErrorClass::Transient);
    assert_eq!(add.metric_label(), "finalizer");
}

fn with_signed_hook(mut s: Stream) -> Stream {
    s.spec.webhooks = vec![
        crate::crd::WebhookSpec {
            url: "https://hooks.example/in".into(),
            types: vec!["source.silence.*".into()],
            secret_key_ref: Some(crate::crd::SecretKeyRef {
                name: "hooks".into(),
                key: "signing".into(),
            }),
        },
        crate::crd::WebhookSpec {
            url: "http://pager.internal/in".into(),
            types: vec![],
            secret_key_ref: None,
        },
    ];
    s
}

fn hooks_secret(value: &str) -> Reply {
    use base64::Engine;
    Reply::Json(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "hooks", "namespace": "radio"},
        "data": {"signing": base64::engine::general_purpose::STANDARD.encode(value)}
    }))
}

const SIGNING: &str = "whsec_c2VjcmV0LXNpZ25pbmcta2V5IQ==";

#[tokio::test]
async fn a_webhook_secret_is_read_into_the_stored_document_only() {
    let s = with_signed_hook(finalized(stream("live")));
    let mut calls = first_apply_calls(&s);
    calls.insert(
        1,
        call("GET", format!("{SECRETS}/hooks"), hooks_secret(SIGNING)),
    );
    let (result, sent, store, _) = run(s, on_air(), MemoryStore::default(), calls).await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(30)));
    let entries = store.entries.lock().unwrap();
    let document: Value = serde_json::from_str(&entries["live"].document).unwrap();
    assert_eq!(
        document["stream"]["webhooks"],
        json!([
            {"url": "https://hooks.example/in", "types": ["source.silence.*"], "secret": SIGNING},
            {"url": "http://pager.internal/in"}
        ])
    );
    // Neither the secret nor its base64 leaves for the API server (children, status, events).
    for request in &sent {
        let body = request.body.to_string();
        assert!(!body.contains("c2VjcmV0LXNpZ25pbmcta2V5IQ"), "{request:?}");
    }
}

#[tokio::test]
async fn a_missing_webhook_secret_blocks_and_writes_nothing() {
    for (reply, wanted) in [
        (Reply::Fail(404), "Secret \"hooks\" not found"),
        (
            Reply::Json(json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "hooks", "namespace": "radio"},
                "data": {"other": "eA=="}
            })),
            "has no key \"signing\"",
        ),
        (hooks_secret("short"), "too short"),
    ] {
        let s = with_signed_hook(finalized(stream("live")));
        let calls = vec![
            call("GET", format!("{SECRETS}/encoder"), encoder_secret()),
            call("GET", format!("{SECRETS}/hooks"), reply),
            call(
                "PATCH",
                format!("{STREAMS}/live/status"),
                Reply::Json(as_json(&s)),
            ),
            call("POST", EVENTS, Reply::Echo),
        ];
        let (result, sent, store, ctx) =
            run(s.clone(), on_air(), MemoryStore::default(), calls).await;
        let error = result.unwrap_err();
        assert_eq!(error.class(), ErrorClass::Blocked);
        assert_eq!(error.metric_label(), "webhook_secret");
        assert_eq!(
            error_policy(guarded(s), &error, ctx),
            Action::requeue(BLOCKED_RETRY)
        );
        let status = &sent[2].body["status"];
        let ready = condition(status, "Ready");
        assert_eq!(ready["reason"], "WebhookSecretUnavailable");
        let message = ready["message"].as_str().unwrap();
        assert!(
            message.contains("spec.webhooks[0].secretKeyRef"),
            "{message}"
        );
        assert!(message.contains(wanted), "{message}");
        assert!(
            !message.contains("short\""),
            "the value is not quoted: {message}"
        );
        assert_eq!(condition(status, "SourceSilent")["status"], "Unknown");
        assert_eq!(sent[3].body["reason"], "WebhookSecretUnavailable");
        assert!(
            store.entries.lock().unwrap().is_empty(),
            "nothing written to Redis"
        );
    }
}

#[tokio::test]
async fn dead_air_reported_by_the_master_sets_source_silent_and_warns() {
    let s = finalized(stream("live"));
    let mut master = on_air();
    if let Ok(Some(report)) = &mut master {
        report.source_silent = true;
    }
    let mut calls = first_apply_calls(&s);
    calls.push(call("POST", EVENTS, Reply::Echo));
    let (result, sent, _, _) = run(s, master, MemoryStore::default(), calls).await;
    assert!(result.is_ok(), "{result:?}");
    let status = &sent[8].body["status"];
    let silent = condition(status, "SourceSilent");
    assert_eq!(silent["status"], "True");
    assert_eq!(silent["reason"], "DeadAir");
    assert_eq!(silent["observedGeneration"], 1);
    let reasons: Vec<_> = sent[9..].iter().map(|e| e.body["reason"].clone()).collect();
    assert_eq!(
        reasons,
        [
            json!("SlavesReady"),
            json!("SourceConnected"),
            json!("DeadAir")
        ]
    );
    assert_eq!(sent[11].body["type"], "Warning");
}
