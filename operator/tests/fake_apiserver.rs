//! The real `streammachine-operator` binary against a fake API server (kmock 0.8 + the shim in
//! `support/kmock_shim.py`), a real `redis-server` and a fake master admin API, all on loopback
//! ports of their own: Streams in, children, Redis config and status out; drift repaired; no
//! hot loop; deletion cleans Redis up; SIGTERM releases the lease and exits cleanly.
//!
//! Needs the tools of `scripts/k8s-tools.sh`; fails (never skips) without them.

// Helpers outside #[test] fns fail by panicking too; clippy only exempts the test fns.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config, ResourceExt};
use redis::AsyncCommands;
use serde_json::json;
use streammachine_operator::crd::Stream;
use streammachine_testkit::{ChildGuard, Service as Redis, eventually as wait_for, free_port};
use support::venv_python;

const WAIT: Duration = Duration::from_secs(30);
const TOKEN: &str = "cluster-token-for-tests";

/// The fake API server process and its kubeconfig.
struct FakeApiServer {
    _process: ChildGuard,
    kubeconfig: PathBuf,
    log: PathBuf,
}

impl FakeApiServer {
    fn start(dir: &Path) -> Self {
        let shim = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/kmock_shim.py");
        let log = dir.join("apiserver.log");
        let mut child = Command::new(venv_python())
            .arg(shim)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let guard = ChildGuard::new(child);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(port) = line.strip_prefix("READY ") {
                    let _ = tx.send(port.trim().to_owned());
                }
            }
        });
        let port = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("the fake API server did not start; see {}", log.display()));
        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\ncurrent-context: fake\n\
                 clusters:\n- name: fake\n  cluster:\n    server: http://127.0.0.1:{port}\n\
                 users:\n- name: fake\n  user: {{}}\n\
                 contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: radio\n"
            ),
        )
        .unwrap();
        Self {
            _process: guard,
            kubeconfig,
            log,
        }
    }

    async fn client(&self) -> Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).unwrap();
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap();
        Client::try_from(config).unwrap()
    }
}

/// A master admin API that reports `live` on air with 7 listeners; counts its requests.
async fn fake_master() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let router = Router::new()
        .route(
            "/api/streams/{key}",
            get(
                |State(hits): State<Arc<AtomicUsize>>,
                 UrlPath(key): UrlPath<String>,
                 headers: HeaderMap| async move {
                    // Like a real master the buffer grows between two calls, so every status
                    // the operator writes differs: a status write that triggered another
                    // reconcile would show up as a hot loop below.
                    let calls = hits.fetch_add(1, Ordering::Relaxed);
                    if headers.get("authorization").and_then(|v| v.to_str().ok())
                        != Some(&format!("Bearer {TOKEN}"))
                    {
                        return (StatusCode::UNAUTHORIZED, String::new());
                    }
                    if key != "live" {
                        return (
                            StatusCode::NOT_FOUND,
                            r#"{"error":"unknown stream"}"#.into(),
                        );
                    }
                    let report = json!({
                        "key": "live", "format": "mp3", "codec": "mp3-44100-128-s",
                        "source_connected": true, "sources": [],
                        "buffer_seconds": 754.5 + calls as f64,
                        "listeners": 7, "slaves_alive": 2, "title": "Morning"
                    });
                    (StatusCode::OK, report.to_string())
                },
            ),
        )
        .with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, hits)
}

/// The operator process; prints its log and the fake API server's when a test fails.
struct Operator {
    process: ChildGuard,
    metrics_url: String,
    log: PathBuf,
    apiserver_log: PathBuf,
}

impl Operator {
    fn start(dir: &Path, api: &FakeApiServer, redis_url: &str, master_url: &str) -> Self {
        let port = free_port();
        let log = dir.join("operator.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_streammachine-operator"))
            .env("KUBECONFIG", &api.kubeconfig)
            .env("RUST_LOG", "info,streammachine_operator=debug")
            .args(["--redis-url", redis_url])
            .args(["--nats-url", "nats://127.0.0.1:4222"])
            .args(["--master-admin-url", master_url])
            .args(["--cluster-token", TOKEN])
            .args(["--slave-image", "streammachine:test"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--status-refresh", "60s"])
            .args(["--log-format", "text"])
            .args(["--lease-namespace", "radio", "--pod-name", "operator-0"])
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Self {
            process: ChildGuard::new(child),
            metrics_url: format!("http://127.0.0.1:{port}"),
            log,
            apiserver_log: api.log.clone(),
        }
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream =
            tokio::net::TcpStream::connect(self.metrics_url.trim_start_matches("http://"))
                .await
                .ok()?;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let request = format!("GET {path} HTTP/1.1\r\nHost: operator\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await.ok()?;
        let code = response.get(9..12)?.parse().ok()?;
        let body = response.split_once("\r\n\r\n")?.1.to_owned();
        Some((code, body))
    }

    /// Value of a metric line (`name value`), 0 when absent.
    async fn metric(&self, name: &str) -> f64 {
        let (_, body) = self.get("/metrics").await.unwrap_or_default();
        body.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for (name, path) in [
                ("operator", &self.log),
                ("fake API server", &self.apiserver_log),
            ] {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(80).collect();
                eprintln!("----- last lines of the {name} log -----");
                for line in tail.into_iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

fn stream_manifest(name: &str, ingress: bool) -> Stream {
    serde_json::from_value(json!({
        "apiVersion": "streammachine.io/v1alpha1",
        "kind": "Stream",
        "metadata": {"name": name},
        "spec": {
            "format": "mp3",
            "key": "live",
            "rewind": "2h",
            "source": {"passwordSecretRef": {"name": "encoder", "key": "password"}},
            "slaves": {"replicas": 2},
            "ingress": {"enabled": ingress, "host": "radio.test"}
        }
    }))
    .unwrap()
}

fn condition(stream: &Stream, type_: &str) -> Option<(String, String)> {
    let condition = stream
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((condition.status.clone(), condition.reason.clone()))
}

async fn exists<K>(api: &Api<K>, name: &str) -> bool
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name).await.unwrap().is_some()
}

async fn create_encoder_secret(client: &Client, namespace: &str) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "encoder"},
        "data": {"password": "aGFja21l"}
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_binary_reconciles_streams_against_a_fake_api_server() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::redis().await;
    let api = FakeApiServer::start(dir.path());
    let (master_url, master_hits) = fake_master().await;
    let client = api.client().await;
    create_encoder_secret(&client, "radio").await;

    let redis_client = redis::Client::open(redis.url().as_str()).unwrap();
    let mut redis_conn = redis_client
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut pubsub = redis_client.get_async_pubsub().await.unwrap();
    pubsub.subscribe("streammachine:config").await.unwrap();

    // --- an object stored under another schema (the fake has no schema validation) must not
    // stop the operator from starting, nor the controller for the other Streams ---------------
    let raw: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "radio", &ApiResource::erase::<Stream>(&()));
    let malformed: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "streammachine.io/v1alpha1", "kind": "Stream",
        "metadata": {"name": "legacy"},
        "spec": {"format": "ogg", "mount": "/legacy"}
    }))
    .unwrap();
    raw.create(&PostParams::default(), &malformed)
        .await
        .unwrap();

    let mut operator = Operator::start(dir.path(), &api, &redis.url(), &master_url);
    wait_for("the operator to be ready", WAIT, || async {
        (operator.get("/readyz").await?.0 == 200).then_some(())
    })
    .await;
    wait_for("the operator to lead", WAIT, || async {
        (operator.metric("streammachine_operator_leader").await == 1.0).then_some(())
    })
    .await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "radio");
    let lease = leases.get("streammachine-operator").await.unwrap();
    assert_eq!(
        lease.spec.unwrap().holder_identity.as_deref(),
        Some("operator-0")
    );

    // --- a Stream is applied: config in Redis, children, status -------------------------------
    let streams: Api<Stream> = Api::namespaced(client.clone(), "radio");
    streams
        .create(&PostParams::default(), &stream_manifest("morning", true))
        .await
        .unwrap();

    let announced = tokio::time::timeout(WAIT, pubsub.on_message().next())
        .await
        .expect("no PUBLISH on streammachine:config")
        .unwrap();
    assert_eq!(announced.get_payload::<String>().unwrap(), "live");
    let document: String = redis_conn.get("streammachine:stream:live").await.unwrap();
    let document: serde_json::Value = serde_json::from_str(&document).unwrap();
    assert_eq!(document["schema"], 1);
    assert_eq!(document["stream"]["format"], "mp3");
    assert_eq!(document["stream"]["rewind"], "2h");
    assert_eq!(document["stream"]["source_password"], "hackme");
    let members: Vec<String> = redis_conn.smembers("streammachine:streams").await.unwrap();
    assert_eq!(members, ["live"]);

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "radio");
    let services: Api<Service> = Api::namespaced(client.clone(), "radio");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "radio");
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "radio");
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), "radio");
    wait_for("the children", WAIT, || async {
        let all = exists(&deployments, "morning-slave").await
            && exists(&services, "morning-slave").await
            && exists(&secrets, "morning-slave").await
            && exists(&budgets, "morning-slave").await
            && exists(&ingresses, "morning-audio").await
            && exists(&ingresses, "morning-hls").await;
        all.then_some(())
    })
    .await;
    let stream = streams.get("morning").await.unwrap();
    assert_eq!(stream.finalizers(), ["streams.streammachine.io/redis"]);
    let deployment = deployments.get("morning-slave").await.unwrap();
    let owner = &deployment.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("Stream", stream.uid().unwrap().as_str())
    );
    assert_eq!(deployment.spec.replicas, Some(2));

    let stream = wait_for("the status", WAIT, || async {
        let s = streams.get("morning").await.ok()?;
        (s.status.as_ref()?.observed_generation == Some(1)).then_some(s)
    })
    .await;
    let status = stream.status.as_ref().unwrap();
    assert_eq!(status.listeners, Some(7));
    assert!(status.buffered_seconds.unwrap() >= 754.5);
    assert_eq!(status.key.as_deref(), Some("live"));
    assert_eq!(condition(&stream, "SourceConnected").unwrap().0, "True");
    assert_eq!(
        condition(&stream, "SourceSilent").unwrap(),
        ("False".into(), "AudioPresent".into())
    );
    // No Deployment controller in the fake: no pod is ready yet.
    assert_eq!(
        condition(&stream, "Ready").unwrap(),
        ("False".into(), "SlavesNotReady".into())
    );
    assert!(master_hits.load(Ordering::Relaxed) >= 1);

    // --- the Deployment reports ready pods: the owned-object watch updates the Stream ----------
    deployments
        .patch_status(
            "morning-slave",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 2, "readyReplicas": 2}})),
        )
        .await
        .unwrap();
    wait_for("Ready=True", WAIT, || async {
        let s = streams.get("morning").await.ok()?;
        (condition(&s, "Ready")? == ("True".into(), "SlavesReady".into())).then_some(())
    })
    .await;

    // --- drift: someone scales the Deployment by hand; the operator puts it back --------------
    deployments
        .patch(
            "morning-slave",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .unwrap();
    wait_for("replicas restored to 2", WAIT, || async {
        let d = deployments.get("morning-slave").await.ok()?;
        (d.spec.replicas == Some(2)).then_some(())
    })
    .await;

    // --- no hot loop: once settled, nothing reconciles until the 60 s status refresh ----------
    let runs = "streammachine_operator_reconcile_runs_total";
    let settled = operator.metric(runs).await;
    // About time passing: nothing must happen while time goes by, so there is no condition to
    // wait for; 3 s is many reconcile periods of a hot loop.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = operator.metric(runs).await;
    assert!(
        later - settled <= 1.0,
        "reconciles kept running while nothing changed: {settled} -> {later}"
    );
    assert!(
        later < 40.0,
        "far too many reconciles for a few changes: {later}"
    );

    // --- the same key in another namespace is refused, the first stream keeps it --------------
    create_encoder_secret(&client, "other").await;
    let others: Api<Stream> = Api::namespaced(client.clone(), "other");
    others
        .create(&PostParams::default(), &stream_manifest("morning", false))
        .await
        .unwrap();
    wait_for("KeyInUse", WAIT, || async {
        let s = others.get("morning").await.ok()?;
        (condition(&s, "Ready")?.1 == "KeyInUse").then_some(())
    })
    .await;
    let owner: String = redis_conn
        .hget("streammachine:stream-owners", "live")
        .await
        .unwrap();
    assert_eq!(owner, "radio/morning");

    // --- an invalid spec (the fake runs no CEL) gets a condition and a Warning event ----------
    let mut broken = stream_manifest("broken", false);
    broken.spec.key = Some("broken".into());
    broken.spec.rewind = "forever".into();
    streams
        .create(&PostParams::default(), &broken)
        .await
        .unwrap();
    wait_for("InvalidSpec", WAIT, || async {
        let s = streams.get("broken").await.ok()?;
        (condition(&s, "Ready")?.1 == "InvalidSpec").then_some(())
    })
    .await;
    let events: Api<Event> = Api::namespaced(client.clone(), "radio");
    let warnings = wait_for("the InvalidSpec event", WAIT, || async {
        let list = events.list(&Default::default()).await.ok()?;
        let found: Vec<Event> = list
            .items
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("InvalidSpec"))
            .collect();
        (!found.is_empty()).then_some(found)
    })
    .await;
    assert_eq!(warnings[0].type_.as_deref(), Some("Warning"));
    let malformed_events = events.list(&Default::default()).await.unwrap();
    assert!(
        malformed_events
            .items
            .iter()
            .any(|e| e.reason.as_deref() == Some("Malformed")),
        "the malformed Stream gets a Warning event"
    );
    assert!(!exists(&deployments, "broken-slave").await);

    // --- spec update: the ingress is switched off and its Ingresses pruned --------------------
    streams
        .patch(
            "morning",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"ingress": {"enabled": false}}})),
        )
        .await
        .unwrap();
    wait_for("the Ingresses to be pruned", WAIT, || async {
        let gone =
            !exists(&ingresses, "morning-audio").await && !exists(&ingresses, "morning-hls").await;
        gone.then_some(())
    })
    .await;
    wait_for("observedGeneration 2", WAIT, || async {
        let s = streams.get("morning").await.ok()?;
        (s.status?.observed_generation == Some(2)).then_some(())
    })
    .await;

    // --- deletion: the Redis entry goes, then the finalizer, then (GC) the children -----------
    streams
        .delete("morning", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the Stream to be gone", WAIT, || async {
        (!exists(&streams, "morning").await).then_some(())
    })
    .await;
    let document: Option<String> = redis_conn.get("streammachine:stream:live").await.unwrap();
    assert_eq!(document, None);
    let members: Vec<String> = redis_conn.smembers("streammachine:streams").await.unwrap();
    assert!(members.is_empty(), "{members:?}");
    wait_for("the children to be collected", WAIT, || async {
        (!exists(&deployments, "morning-slave").await).then_some(())
    })
    .await;

    // --- SIGTERM: the operator stops, releases the lease, exits 0 -----------------------------
    let status = operator
        .process
        .terminate(Duration::from_secs(15))
        .expect("the operator did not exit within 15 s of SIGTERM");
    assert!(status.success(), "exit status {status}");
    let lease = leases.get("streammachine-operator").await.unwrap();
    assert_eq!(lease.spec.and_then(|s| s.holder_identity), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_master_and_missing_secret_become_conditions() {
    let dir = tempfile::tempdir().unwrap();
    let redis = Redis::redis().await;
    let api = FakeApiServer::start(dir.path());
    let client = api.client().await;
    // Nobody listens on this port: the master is down.
    let master_url = format!("http://127.0.0.1:{}", free_port());
    let operator = Operator::start(dir.path(), &api, &redis.url(), &master_url);
    wait_for("the operator to lead", WAIT, || async {
        (operator.metric("streammachine_operator_leader").await == 1.0).then_some(())
    })
    .await;

    let streams: Api<Stream> = Api::namespaced(client.clone(), "radio");
    streams
        .create(&PostParams::default(), &stream_manifest("morning", false))
        .await
        .unwrap();
    wait_for("SourceSecretUnavailable", WAIT, || async {
        let s = streams.get("morning").await.ok()?;
        (condition(&s, "Ready")?.1 == "SourceSecretUnavailable").then_some(())
    })
    .await;

    // The Secret appears; the blocked Stream is retried (after BLOCKED_RETRY at the latest)
    // and a spec touch makes it immediate.
    create_encoder_secret(&client, "radio").await;
    streams
        .patch(
            "morning",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"streamTitle": "Morning"}})),
        )
        .await
        .unwrap();
    let stream = wait_for("MasterUnreachable", WAIT, || async {
        let s = streams.get("morning").await.ok()?;
        (condition(&s, "SourceConnected")?.1 == "MasterUnreachable").then_some(s)
    })
    .await;
    assert_eq!(
        condition(&stream, "Degraded").unwrap().1,
        "MasterUnreachable"
    );
    assert_eq!(
        condition(&stream, "SourceSilent").unwrap(),
        ("Unknown".into(), "MasterUnreachable".into())
    );
    assert_eq!(stream.status.unwrap().observed_generation, Some(2));

    // A signed webhook whose Secret does not exist yet: a condition, and the stored document
    // keeps the last good config.
    let redis_conn = redis::Client::open(redis.url().as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let stored = || {
        let mut conn = redis_conn.clone();
        async move {
            let document: String = conn.get("streammachine:stream:live").await.unwrap();
            serde_json::from_str::<serde_json::Value>(&document).unwrap()
        }
    };
    assert!(stored().await["stream"].get("webhooks").is_none());
    streams
        .patch(
            "morning",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"webhooks": [{
                "url": "https://hooks.test/in",
                "types": ["source.silence.*"],
                "secretKeyRef": {"name": "hooks", "key": "signing"}
            }]}})),
        )
        .await
        .unwrap();
    let stream = wait_for("WebhookSecretUnavailable", WAIT, || async {
        let s = streams.get("morning").await.ok()?;
        (condition(&s, "Ready")?.1 == "WebhookSecretUnavailable").then_some(s)
    })
    .await;
    let ready = stream
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap()
        .message
        .clone();
    assert!(ready.contains("Secret \"hooks\" not found"), "{ready}");
    assert!(stored().await["stream"].get("webhooks").is_none());

    // The Secret appears: the next reconcile (a spec touch makes it immediate) stores the hook
    // with its signing secret.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "radio");
    let hooks: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "hooks"},
        "data": {"signing": "MDEyMzQ1Njc4OWFiY2RlZg=="}  // "0123456789abcdef"
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &hooks)
        .await
        .unwrap();
    streams
        .patch(
            "morning",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"streamTitle": "Morning Edition"}})),
        )
        .await
        .unwrap();
    let document = wait_for("the webhook in the stored config", WAIT, || async {
        let document = stored().await;
        document["stream"]
            .get("webhooks")
            .is_some()
            .then_some(document)
    })
    .await;
    assert_eq!(
        document["stream"]["webhooks"],
        json!([{
            "url": "https://hooks.test/in",
            "types": ["source.silence.*"],
            "secret": "0123456789abcdef"
        }])
    );
    let log = std::fs::read_to_string(&operator.log).unwrap();
    assert!(
        !log.contains("0123456789abcdef"),
        "the secret reached the log"
    );
    let failures = operator
        .metric(r#"streammachine_operator_reconcile_failures_total{error="webhook_secret"}"#)
        .await;
    assert!(failures >= 1.0);
    let failures = operator
        .metric(r#"streammachine_operator_reconcile_failures_total{error="source_secret"}"#)
        .await;
    assert!(failures >= 1.0);
    // An unreachable master is not a reconcile failure: nothing else failed.
    let (_, metrics) = operator.get("/metrics").await.unwrap();
    assert!(!metrics.contains(r#"error="kube""#), "{metrics}");
}
