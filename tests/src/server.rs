//! The `streammachine` binary as a child process on loopback ports it picks itself (port 0; the
//! actual addresses are read from its JSON log), with its log kept for assertions.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

use crate::{binary, eventually};

pub const SOURCE_PASSWORD: &str = "e2e-source-pw";

pub struct Server {
    child: Option<Child>,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    pub http: reqwest::Client,
    admin_token: Option<String>,
}

fn collect(reader: impl std::io::Read + Send + 'static, logs: Arc<Mutex<Vec<String>>>, tag: u32) {
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            // Echoed so a failing test shows the server's side of the story.
            eprintln!("[server {tag}] {line}");
            logs.lock().expect("log lock").push(line);
        }
    });
}

impl Server {
    /// Start `streammachine <role> <args>`; listen and admin addresses default to port 0.
    pub async fn start(role: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(binary());
        cmd.arg(role).args(args);
        if !args.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        if !args.contains(&"--admin-listen") {
            cmd.args(["--admin-listen", "127.0.0.1:0"]);
        }
        cmd.args(["--log-format", "json"])
            .env("RUST_LOG", "info,streammachine=debug")
            .env("STREAMMACHINE_SOURCE_PASSWORD", SOURCE_PASSWORD)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut admin_token = None;
        for (k, v) in env {
            cmd.env(k, v);
            if *k == "STREAMMACHINE_ADMIN_TOKEN" || *k == "STREAMMACHINE_CLUSTER_TOKEN" {
                admin_token.get_or_insert_with(|| v.to_string());
            }
        }
        let mut child = cmd.spawn().expect("start streammachine");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let tag = child.id();
        collect(child.stdout.take().expect("stdout"), logs.clone(), tag);
        collect(child.stderr.take().expect("stderr"), logs.clone(), tag);
        streammachine::install_tls_provider();
        let mut server = Server {
            child: Some(child),
            listen: "0.0.0.0:0".parse().expect("addr"),
            admin: "0.0.0.0:0".parse().expect("addr"),
            logs,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
            admin_token,
        };
        let line = server
            .wait_log_timeout("Listening.", Duration::from_secs(60))
            .await;
        let v: Value = serde_json::from_str(&line).expect("json log line");
        server.listen = v["listen_addr"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .expect("listen_addr");
        server.admin = v["admin_addr"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .expect("admin_addr");
        server
    }

    pub async fn standalone(args: &[&str]) -> Server {
        Server::start("standalone", args, &[]).await
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The token the admin API takes (the cluster token on master and slaves).
    pub fn admin_token(&self) -> Option<&str> {
        self.admin_token.as_deref()
    }

    /// SIGSTOP: the process hangs, its sockets stay open. Continued (SIGCONT) when the guard
    /// is dropped, also when the test fails meanwhile.
    pub fn pause(&self) -> Paused {
        let pid = self.pid().expect("server running");
        kill(Pid::from_raw(pid as i32), Signal::SIGSTOP).expect("SIGSTOP");
        Paused(pid)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.listen)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    pub fn source_url(&self, key: &str) -> String {
        format!("icecast://source:{SOURCE_PASSWORD}@{}/{key}", self.listen)
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().expect("log lock").clone()
    }

    /// Log lines (JSON) whose message contains `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<Value> {
        self.logs()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["message"].as_str().is_some_and(|m| m.contains(needle)))
            .collect()
    }

    pub async fn wait_log(&self, needle: &str) -> String {
        self.wait_log_timeout(needle, Duration::from_secs(30)).await
    }

    pub async fn wait_log_timeout(&self, needle: &str, timeout: Duration) -> String {
        let logs = self.logs.clone();
        eventually(&format!("log line `{needle}`"), timeout, || {
            let found = logs
                .lock()
                .expect("log lock")
                .iter()
                .find(|l| l.contains(needle))
                .cloned();
            async move { found }
        })
        .await
    }

    fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.admin_token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    pub async fn admin_get(&self, path: &str) -> reqwest::Response {
        self.authed(self.http.get(self.admin_url(path)))
            .send()
            .await
            .expect("admin request")
    }

    pub async fn admin_post(&self, path: &str, body: Value) -> reqwest::Response {
        self.authed(self.http.post(self.admin_url(path)).json(&body))
            .send()
            .await
            .expect("admin request")
    }

    pub async fn status(&self, key: &str) -> Value {
        let r = self.admin_get(&format!("/api/streams/{key}")).await;
        assert!(r.status().is_success(), "status of {key}: {}", r.status());
        r.json().await.expect("status json")
    }

    /// Wait until the stream holds at least `seconds` of audio.
    pub async fn wait_buffer(&self, key: &str, seconds: f64, timeout: Duration) -> Value {
        eventually(
            &format!("{seconds}s of audio in `{key}`"),
            timeout,
            || async move {
                let s = self.status(key).await;
                (s["buffer_seconds"].as_f64().unwrap_or(0.0) >= seconds).then_some(s)
            },
        )
        .await
    }

    /// Wait until the newest chunk has not changed for `quiet` (the encoder finished).
    pub async fn wait_settled(&self, key: &str, quiet: Duration, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = None;
        let mut since = tokio::time::Instant::now();
        loop {
            let s = self.status(key).await;
            let seq = s["last_seq"].as_u64();
            if seq.is_none() || seq != last {
                last = seq;
                since = tokio::time::Instant::now();
            } else if since.elapsed() >= quiet {
                return s;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "`{key}` kept growing for {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("request")
    }

    pub async fn metrics(&self) -> String {
        self.get("/metrics").await.text().await.expect("metrics")
    }

    /// The value of one series in `/metrics`, e.g. `streammachine_listeners{stream="live",protocol="raw"}`.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .map(|v| v.trim().parse::<f64>().unwrap_or(f64::NAN))
            })
            .unwrap_or(0.0)
    }

    /// SIGTERM, then wait for a clean exit.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("server running");
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        eventually("server exit", Duration::from_secs(30), || {
            let r = child.try_wait().ok().flatten();
            async move { r }
        })
        .await
    }

    /// SIGKILL: a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }
}

/// A server stopped by [`Server::pause`]; dropping it continues the server.
pub struct Paused(u32);

impl Drop for Paused {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0 as i32), Signal::SIGCONT);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
