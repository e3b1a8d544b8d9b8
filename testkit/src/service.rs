//! `redis-server` and `nats-server` of a test's own, on a free loopback port with their own temp
//! dir (never the system ones on the standard ports), killed by PID when dropped.

use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::ChildGuard;
use crate::{free_port, require};

/// How long a service may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Ports tried before giving up (another process may take a free port before the service does).
const ATTEMPTS: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Redis,
    Nats,
}

impl Kind {
    fn program(self) -> &'static str {
        match self {
            Kind::Redis => "redis-server",
            Kind::Nats => "nats-server",
        }
    }

    fn args(self, port: u16, dir: &std::path::Path) -> Vec<String> {
        let port = port.to_string();
        let dir = dir.display().to_string();
        let args: &[&str] = match self {
            Kind::Redis => &[
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                &dir,
            ],
            Kind::Nats => &["-a", "127.0.0.1", "-p", &port],
        };
        args.iter().map(|a| a.to_string()).collect()
    }
}

/// What a starting service is doing.
enum Up {
    Yes,
    /// It exited: most likely someone else took the port.
    Exited,
    NotYet,
}

/// A service process of one test.
pub struct Service {
    kind: Kind,
    child: Option<ChildGuard>,
    /// The loopback port it listens on.
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Service {
    /// A `redis-server` without persistence, accepting connections.
    pub async fn redis() -> Service {
        Service::start(Kind::Redis).await
    }

    /// A `nats-server`, accepting connections.
    pub async fn nats() -> Service {
        Service::start(Kind::Nats).await
    }

    /// [`Service::redis`] for tests without a runtime.
    pub fn redis_blocking() -> Service {
        Service::start_blocking(Kind::Redis)
    }

    /// [`Service::nats`] for tests without a runtime.
    pub fn nats_blocking() -> Service {
        Service::start_blocking(Kind::Nats)
    }

    /// `redis://127.0.0.1:<port>/` or `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        match self.kind {
            Kind::Redis => format!("redis://127.0.0.1:{}/", self.port),
            Kind::Nats => format!("nats://127.0.0.1:{}", self.port),
        }
    }

    /// The server's PID, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(ChildGuard::id)
    }

    /// Kills it (an outage); [`Service::restart`] brings it back on the same port.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill();
        }
    }

    /// Starts it again on the same port (after [`Service::stop`]) and waits until it is up.
    pub async fn restart(&mut self) {
        self.stop();
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        // The old process's port may linger briefly; retry the same port until the deadline.
        loop {
            self.spawn();
            loop {
                match self.poll_up() {
                    Up::Yes => return,
                    Up::Exited => break,
                    Up::NotYet => {}
                }
                self.check_deadline(tokio::time::Instant::now() >= deadline);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            self.check_deadline(tokio::time::Instant::now() >= deadline);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn new(kind: Kind) -> Service {
        require(kind.program());
        Service {
            kind,
            child: None,
            port: free_port(),
            dir: crate::temp_dir(&format!("sm-{}-", kind.program())),
        }
    }

    async fn start(kind: Kind) -> Service {
        let mut service = Service::new(kind);
        for _ in 0..ATTEMPTS {
            service.spawn();
            let deadline = tokio::time::Instant::now() + START_TIMEOUT;
            loop {
                match service.poll_up() {
                    Up::Yes => return service,
                    Up::Exited => break,
                    Up::NotYet => {}
                }
                service.check_deadline(tokio::time::Instant::now() >= deadline);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            service.port = free_port();
        }
        panic!("{} exited {ATTEMPTS} times on start", kind.program());
    }

    fn start_blocking(kind: Kind) -> Service {
        let mut service = Service::new(kind);
        for _ in 0..ATTEMPTS {
            service.spawn();
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                match service.poll_up() {
                    Up::Yes => return service,
                    Up::Exited => break,
                    Up::NotYet => {}
                }
                service.check_deadline(Instant::now() >= deadline);
                std::thread::sleep(Duration::from_millis(20));
            }
            service.port = free_port();
        }
        panic!("{} exited {ATTEMPTS} times on start", kind.program());
    }

    fn spawn(&mut self) {
        let child = Command::new(self.kind.program())
            .args(self.kind.args(self.port, self.dir.path()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.kind.program()));
        self.child = Some(ChildGuard::new(child));
    }

    fn poll_up(&mut self) -> Up {
        let Some(child) = self.child.as_mut() else {
            return Up::Exited;
        };
        if child.try_wait().is_some() {
            self.child = None;
            return Up::Exited;
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            return Up::NotYet;
        }
        // Someone else may hold the port while ours is about to exit for that reason: only a
        // child that is still alive after the connect counts.
        match child.try_wait() {
            None => Up::Yes,
            Some(_) => {
                self.child = None;
                Up::Exited
            }
        }
    }

    #[track_caller]
    fn check_deadline(&self, passed: bool) {
        assert!(
            !passed,
            "{} did not accept connections on 127.0.0.1:{} within {START_TIMEOUT:?}",
            self.kind.program(),
            self.port
        );
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts(port: u16) -> bool {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    }

    #[tokio::test]
    async fn redis_stops_restarts_on_its_port_and_dies_with_the_guard() {
        let mut redis = Service::redis().await;
        let port = redis.port;
        assert_eq!(redis.url(), format!("redis://127.0.0.1:{port}/"));
        assert!(accepts(port));
        redis.stop();
        assert!(!accepts(port), "stopped means the port is closed");
        redis.restart().await;
        assert!(accepts(port));
        drop(redis);
        assert!(!accepts(port), "dropped means killed");
    }

    #[test]
    fn nats_starts_without_a_runtime() {
        let nats = Service::nats_blocking();
        assert!(nats.url().starts_with("nats://127.0.0.1:"));
        assert!(accepts(nats.port));
    }

    #[test]
    fn two_services_get_two_ports() {
        let (a, b) = (Service::redis_blocking(), Service::redis_blocking());
        assert_ne!(a.port, b.port);
    }
}
