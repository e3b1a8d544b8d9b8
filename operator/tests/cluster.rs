//! Tests on a real cluster (kind or k3d): install the chart, stream through the ingress, scale,
//! roll the slaves while a listener is connected. They are ignored by default because no
//! cluster exists on the build machines; operator/README-k8s.md ("Tests on a real cluster") has the
//! commands that create one and run them:
//!
//! ```sh
//! kind create cluster --config operator/tests/data/kind-config.yaml
//! docker build -t streammachine:dev . && kind load docker-image streammachine:dev
//! kubectl apply -f https://raw.githubusercontent.com/kubernetes/ingress-nginx/main/deploy/static/provider/kind/deploy.yaml
//! cargo test -p streammachine-operator --test cluster -- --ignored --test-threads=1
//! ```
//!
//! They use the current kubectl context, `helm` from `.tools/` and `ffmpeg` from PATH, install
//! into namespace `streammachine-e2e`, and expect ingress-nginx on `STREAMMACHINE_E2E_INGRESS`
//! (default `http://127.0.0.1:18080`).

// Helpers outside #[test] fns fail by panicking too; clippy only exempts the test fns.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Read;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use streammachine_testkit::{ChildGuard, free_port, repo_root, wait_until};
use support::{helm, run};

const NAMESPACE: &str = "streammachine-e2e";
const RELEASE: &str = "sm";
const HOST: &str = "radio.e2e.test";

fn kubectl(args: &[&str]) -> String {
    let output = run(
        Command::new("kubectl")
            .args(["--namespace", NAMESPACE])
            .args(args),
        Duration::from_secs(600),
    );
    assert!(
        output.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn apply(yaml: &str) {
    let mut child = Command::new("kubectl")
        .args(["--namespace", NAMESPACE, "apply", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), yaml.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success(), "kubectl apply failed");
}

fn ingress_address() -> String {
    std::env::var("STREAMMACHINE_E2E_INGRESS")
        .unwrap_or_else(|_| "http://127.0.0.1:18080".into())
        .trim_start_matches("http://")
        .to_owned()
}

/// Installs (or upgrades) the chart with the locally built image and waits for it.
fn install() {
    let output = run(
        Command::new(helm())
            .args(["upgrade", "--install", RELEASE])
            .arg(repo_root().join("charts/streammachine"))
            .args([
                "--namespace",
                NAMESPACE,
                "--create-namespace",
                "--wait",
                "--timeout",
                "5m",
            ])
            .args([
                "--set",
                "image.repository=streammachine",
                "--set",
                "image.tag=dev",
            ])
            .args(["--set", "image.pullPolicy=Never"]),
        Duration::from_secs(400),
    );
    assert!(
        output.status.success(),
        "helm install: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Creates the `e2e` Stream (key `e2e`, ingress on HOST) and waits for Ready.
fn declare_stream(replicas: u32) {
    apply(&format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: e2e-encoder}}
stringData: {{password: e2e-password}}
---
apiVersion: streammachine.io/v1alpha1
kind: Stream
metadata: {{name: e2e}}
spec:
  format: mp3
  rewind: 10m
  source: {{passwordSecretRef: {{name: e2e-encoder, key: password}}}}
  slaves: {{replicas: {replicas}, drainSeconds: 20}}
  ingress: {{enabled: true, className: nginx, host: {HOST}}}
"#
    ));
    kubectl(&[
        "wait",
        "stream/e2e",
        "--for=condition=Ready",
        "--timeout=5m",
    ]);
}

/// Streams a sine tone to the master through a port-forward for as long as the guards live.
fn start_encoder() -> (ChildGuard, ChildGuard) {
    let port = free_port();
    let forward = ChildGuard::new(
        Command::new("kubectl")
            .args(["--namespace", NAMESPACE, "port-forward"])
            .arg(format!("svc/{RELEASE}-streammachine-master"))
            .arg(format!("{port}:8000"))
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_until(
        "the port-forward to the master",
        Duration::from_secs(30),
        || TcpStream::connect(("127.0.0.1", port)).ok(),
    );
    let encoder = ChildGuard::new(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-re"])
            .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
            .args(["-c:a", "libmp3lame", "-b:a", "128k", "-f", "mp3"])
            .arg(format!(
                "icecast://source:e2e-password@127.0.0.1:{port}/e2e"
            ))
            .stdin(Stdio::null())
            .spawn()
            .expect("ffmpeg is needed for the cluster tests"),
    );
    kubectl(&[
        "wait",
        "stream/e2e",
        "--for=condition=SourceConnected",
        "--timeout=2m",
    ]);
    (forward, encoder)
}

/// Opens `/e2e` through the ingress and returns the connection after the response headers.
fn listen() -> TcpStream {
    let mut stream = TcpStream::connect(ingress_address()).expect("ingress-nginx reachable");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    std::io::Write::write_all(
        &mut stream,
        format!("GET /e2e HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    stream
}

fn read_audio(stream: &mut TcpStream, bytes: usize) -> Vec<u8> {
    let mut audio = vec![0u8; bytes];
    stream.read_exact(&mut audio).expect("audio keeps flowing");
    audio
}

fn has_mp3_frame_sync(audio: &[u8]) -> bool {
    audio
        .windows(2)
        .any(|w| w[0] == 0xFF && w[1] & 0xE0 == 0xE0)
}

#[test]
#[ignore = "needs a kind/k3d cluster: see operator/README-k8s.md, Tests on a real cluster"]
fn chart_installs_and_a_stream_plays_through_the_ingress() {
    install();
    declare_stream(2);
    let (_forward, _encoder) = start_encoder();
    let mut listener = listen();
    assert!(has_mp3_frame_sync(&read_audio(&mut listener, 16 * 1024)));

    let playlist = run(
        Command::new("curl")
            .args(["-sf", "-H", &format!("Host: {HOST}")])
            .arg(format!("http://{}/e2e.m3u8", ingress_address())),
        Duration::from_secs(30),
    );
    assert!(String::from_utf8_lossy(&playlist.stdout).starts_with("#EXTM3U"));
    let status = kubectl(&["get", "stream/e2e", "-o", "jsonpath={.status.listeners}"]);
    assert!(!status.is_empty(), "the master reports listeners");
}

#[test]
#[ignore = "needs a kind/k3d cluster: see operator/README-k8s.md, Tests on a real cluster"]
fn scaling_the_stream_scales_the_slaves() {
    install();
    declare_stream(2);
    kubectl(&[
        "patch",
        "stream/e2e",
        "--type=merge",
        "-p",
        r#"{"spec":{"slaves":{"replicas":3}}}"#,
    ]);
    kubectl(&[
        "wait",
        "deployment/e2e-slave",
        "--for=jsonpath={.status.readyReplicas}=3",
        "--timeout=5m",
    ]);
    kubectl(&[
        "wait",
        "stream/e2e",
        "--for=jsonpath={.status.readyReplicas}=3",
        "--timeout=2m",
    ]);
}

#[test]
#[ignore = "needs a kind/k3d cluster: see operator/README-k8s.md, Tests on a real cluster"]
fn a_rolling_update_drains_listeners_instead_of_cutting_them() {
    install();
    declare_stream(2);
    let (_forward, _encoder) = start_encoder();
    let mut listener = listen();
    read_audio(&mut listener, 4096);

    // A pod template change rolls the Deployment: one new pod at a time, old ones drain.
    kubectl(&["rollout", "restart", "deployment/e2e-slave"]);
    // Throughout the rollout (until every replica is updated and the old pods are gone), not
    // for a fixed window.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        // The listener's pod is terminating but drains: audio keeps coming.
        read_audio(&mut listener, 4096);
        let status = kubectl(&[
            "get",
            "deployment/e2e-slave",
            "-o",
            "jsonpath={.status.readyReplicas} {.status.updatedReplicas} {.status.replicas} \
             {.metadata.generation} {.status.observedGeneration}",
        ]);
        let counts: Vec<u32> = status
            .split_whitespace()
            .map(|n| n.parse().unwrap_or(0))
            .collect();
        let ready = counts.first().copied().unwrap_or(0);
        assert!(
            ready >= 2,
            "maxUnavailable 0: capacity never drops (ready, updated, total, generation, \
             observed: {status})"
        );
        // The controller has seen the restart (observed == generation) and finished it.
        if counts.len() == 5 && counts[..3] == [2, 2, 2] && counts[3] == counts[4] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rollout did not finish: {status}"
        );
    }
    kubectl(&["rollout", "status", "deployment/e2e-slave", "--timeout=5m"]);
    // After the drain a new connection is served by a new pod.
    let mut again = listen();
    assert!(has_mp3_frame_sync(&read_audio(&mut again, 16 * 1024)));
}
