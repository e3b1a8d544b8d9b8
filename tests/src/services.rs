//! redis-server and nats-server started on free loopback ports for one test, stopped by PID.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{eventually, require};

/// A port the kernel just handed out (then released for the service to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub struct Service {
    child: Option<Child>,
    pub port: u16,
    program: &'static str,
    args: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Service {
    fn spawn(
        program: &'static str,
        args: Vec<String>,
        port: u16,
        dir: tempfile::TempDir,
    ) -> Service {
        require(program);
        let child = Command::new(program)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {program}: {e}"));
        Service {
            child: Some(child),
            port,
            program,
            args,
            _dir: dir,
        }
    }

    async fn wait_up(&self) {
        let addr: SocketAddr = format!("127.0.0.1:{}", self.port).parse().expect("addr");
        eventually(
            &format!("{} on {addr}", self.program),
            Duration::from_secs(20),
            || async move { TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok() },
        )
        .await;
    }

    pub async fn redis() -> Service {
        let port = free_port();
        let dir = crate::temp_dir();
        let args = vec![
            "--port".into(),
            port.to_string(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--save".into(),
            String::new(),
            "--appendonly".into(),
            "no".into(),
            "--dir".into(),
            dir.path().display().to_string(),
        ];
        let s = Service::spawn("redis-server", args, port, dir);
        s.wait_up().await;
        s
    }

    pub async fn nats() -> Service {
        let port = free_port();
        let dir = crate::temp_dir();
        let args = vec![
            "-a".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
        ];
        let s = Service::spawn("nats-server", args, port, dir);
        s.wait_up().await;
        s
    }

    pub fn url(&self) -> String {
        match self.program {
            "redis-server" => format!("redis://127.0.0.1:{}/", self.port),
            _ => format!("nats://127.0.0.1:{}", self.port),
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again on the same port (after [`Service::stop`]).
    pub async fn restart(&mut self) {
        self.stop();
        let child = Command::new(self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("restart service");
        self.child = Some(child);
        self.wait_up().await;
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop();
    }
}
