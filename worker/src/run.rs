//! Starting and stopping a role: bind the ports, build the streams, run the tasks, and on
//! shutdown stop accepting, dump the buffers and close.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::app::{App, Role};
use crate::config::Settings;
use crate::{admin, routes, server};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        addr: SocketAddr,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// A running role; dropped handles keep running until [`Running::shutdown`].
pub struct Running {
    pub app: Arc<App>,
    pub listen_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

/// Listen with a deep accept queue (the kernel caps it at `somaxconn`): a reconnect storm after
/// a network blip must not overflow it, or clients wait a full SYN retry (1 s and more).
pub fn bind(addr: SocketAddr, what: &'static str) -> Result<TcpListener, RunError> {
    let err = |source| RunError::Bind { addr, what, source };
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(err)?;
    socket.set_reuseaddr(true).map_err(err)?;
    socket.bind(addr).map_err(err)?;
    socket.listen(4096).map_err(err)
}

/// Bind both ports and start serving `app`'s streams (already configured by the caller).
pub async fn start(app: Arc<App>) -> Result<Running, RunError> {
    let settings = &app.settings;
    let listener = bind(settings.listen, "listeners and sources")?;
    let admin = bind(settings.admin_listen, "admin API")?;
    let listen_addr = listener.local_addr().unwrap_or(settings.listen);
    let admin_addr = admin.local_addr().unwrap_or(settings.admin_listen);
    let mut tasks = vec![];
    tasks.push(tokio::spawn(server::serve(
        app.clone(),
        listener,
        routes::router(app.clone()),
    )));
    let admin_app = app.clone();
    tasks.push(tokio::spawn(async move {
        let shutdown = admin_app.shutdown.clone();
        let router = admin::router(admin_app.clone());
        if let Err(e) = axum::serve(admin, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
        {
            warn!(error = %e, "Admin server failed.");
        }
    }));
    if settings.dump_dir.is_some() && app.role.ingests() {
        let dump_app = app.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(dump_app.settings.dump_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => dump_app.dump_all().await,
                    _ = dump_app.shutdown.cancelled() => return,
                }
            }
        }));
    }
    info!(%listen_addr, %admin_addr, role = ?app.role, "Listening.");
    Ok(Running {
        app,
        listen_addr,
        admin_addr,
        tasks,
    })
}

impl Running {
    /// Stop accepting, end listeners and sources, dump buffers, wait for tasks (bounded).
    pub async fn shutdown(self) {
        let app = self.app;
        info!("Shutting down: closing connections and dumping buffers.");
        app.set_ready(false);
        app.shutdown.cancel();
        app.tasks.close();
        let grace = app.settings.shutdown_timeout;
        let wait = async {
            for t in self.tasks {
                let _ = t.await;
            }
            app.tasks.wait().await;
        };
        if tokio::time::timeout(grace, wait).await.is_err() {
            warn!(timeout = ?grace, "Some tasks did not stop in time.");
        }
        app.dump_all().await;
        info!("Stopped.");
    }
}

/// The standalone role: master and slave in one process, a config file instead of Redis, the
/// rewind buffer shared in memory instead of NATS.
pub async fn standalone(settings: Settings) -> Result<Running, RunError> {
    let app = App::new(settings, Role::Standalone, None, None);
    let streams = app.settings.streams.clone();
    app.apply_streams(&streams);
    let running = start(app).await?;
    running.app.set_ready(true);
    Ok(running)
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Used by tests to bound waits.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
