//! Starting and stopping a role: bind the ports, build the streams, run the tasks, and on
//! shutdown stop accepting, dump the buffers and close.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::admin;
use crate::app::{App, Cluster, Role};
use crate::cluster::bus::{Bus, BusError, NatsSink, Subjects};
use crate::cluster::store::{
    ConfigStore, ConfigWatch, Configs, RedisStore, StaticStore, StoreError,
};
use crate::cluster::transport;
use crate::cluster::transport::{TransportClient, TransportError};
use crate::cluster::{self, ClusterOptions, SlaveOptions};
use crate::config::Settings;
use crate::events::webhook::Retry;
use crate::serve::{routes, server};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        addr: SocketAddr,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("config store: {0}")]
    Store(#[from] StoreError),
    #[error("NATS: {0}")]
    Bus(#[from] BusError),
    #[error("master transport: {0}")]
    Transport(#[from] TransportError),
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
    let mut listener_routes = routes::router(app.clone());
    if app.role == Role::Slave {
        // A restarted master pulls the chunks it lacks from slaves, through their public port
        // (the admin port of a slave listens on loopback only).
        listener_routes = listener_routes.merge(transport::router(app.clone()));
    }
    tasks.push(tokio::spawn(server::serve(
        app.clone(),
        listener,
        listener_routes,
    )));
    let admin_app = app.clone();
    tasks.push(tokio::spawn(async move {
        let shutdown = admin_app.shutdown.clone();
        let mut router = admin::router(admin_app.clone());
        if admin_app.cluster.is_some() {
            router = router.merge(transport::router(admin_app.clone()));
        }
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
    if app.role != Role::Slave {
        // Slaves hand their events to the master, which delivers each once per cluster.
        app.start_webhooks(webhook_retry());
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
    /// Graceful stop of a slave: refuse new listeners and report not ready, then wait up to
    /// `timeout` for connected listeners to leave (they keep receiving audio meanwhile).
    pub async fn drain(&self, timeout: Duration) {
        let app = &self.app;
        app.start_draining();
        info!(
            listeners = app.listener_count(),
            timeout = %humantime::format_duration(timeout),
            "Draining: not ready, refusing new listeners, waiting for connected ones to leave."
        );
        let deadline = tokio::time::Instant::now() + timeout;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        while app.listener_count() > 0 && tokio::time::Instant::now() < deadline {
            tick.tick().await;
        }
        info!(remaining = app.listener_count(), "Drain finished.");
    }

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
    let store = Arc::new(StaticStore::new(settings.streams.clone()));
    let app = App::new(settings, Role::Standalone, None, None);
    app.set_store(store.clone());
    let mut configs = store.watch();
    // The file's streams exist before the ports open, as they always did.
    let snapshot = configs.borrow_and_update().clone();
    if let Some(c) = snapshot {
        app.apply_streams(&c);
    }
    let running = start(app.clone()).await?;
    app.tasks.spawn(apply_configs(app.clone(), configs));
    running.app.set_ready(true);
    Ok(running)
}

/// Apply every later config change (the admin API writing to the store).
async fn apply_configs(app: Arc<App>, mut rx: ConfigWatch) {
    loop {
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = app.shutdown.cancelled() => return,
        }
        let snapshot = rx.borrow_and_update().clone();
        if let Some(c) = snapshot {
            app.apply_streams(&c);
        }
    }
}

/// The master role: ingest, the authoritative buffers and dumps, chunks to NATS, the transport
/// on the admin port, configs from Redis. `declared`: streams from flags or the config file,
/// written to Redis when absent there.
pub async fn master(
    settings: Settings,
    declared: Configs,
    opts: ClusterOptions,
) -> Result<Running, RunError> {
    let subjects = Subjects::new(&opts.nats_prefix)?;
    let bus = Bus::connect(&opts.nats_url, "streammachine-master", subjects.clone()).await?;
    let (sink, queue) = NatsSink::new(subjects);
    let app = App::new(
        settings,
        Role::Master,
        Some(sink.clone()),
        Some(Cluster::new(opts.token.clone())),
    );
    sink.register(&app.metrics);
    app.tasks
        .spawn(sink.run(bus.clone(), queue, app.shutdown.clone()));
    // Slaves fill in the master's defaults themselves, so write them out: every role then runs
    // the stream with the same rewind length and burst.
    let seed = declared
        .into_iter()
        .map(|(key, mut c)| {
            c.rewind = c.rewind.or(Some(app.settings.rewind));
            c.burst = c.burst.or(Some(app.settings.burst));
            (key, c)
        })
        .collect();
    let store = RedisStore::start(
        &opts.redis_url,
        &opts.redis_prefix,
        seed,
        app.shutdown.clone(),
    )?;
    app.set_store(store.clone());
    let running = start(app.clone()).await?;
    cluster::master::spawn(app, store.watch(), bus);
    Ok(running)
}

/// The slave role: follow the master's streams and serve listeners.
pub async fn slave(
    settings: Settings,
    opts: ClusterOptions,
    slave: SlaveOptions,
) -> Result<Running, RunError> {
    let subjects = Subjects::new(&opts.nats_prefix)?;
    let id = cluster::node_id();
    let bus = Bus::connect(
        &opts.nats_url,
        &format!("streammachine-slave-{id}"),
        subjects,
    )
    .await?;
    let transport = TransportClient::new(&slave.master_url, &opts.token)?;
    let app = App::named(
        settings,
        Role::Slave,
        None,
        Some(Cluster::new(opts.token.clone())),
        &id,
    );
    // Before anything raises an event: the master delivers them (slaves start no webhooks).
    cluster::forward::spawn_slave(&app, bus.clone());
    let store = RedisStore::start(
        &opts.redis_url,
        &opts.redis_prefix,
        Configs::new(),
        app.shutdown.clone(),
    )?;
    app.set_store(store.clone());
    app.set_master_url(&slave.master_url);
    let running = start(app.clone()).await?;
    let url = match &slave.advertise_url {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => cluster::slave::advertise_url(running.listen_addr, &slave.master_url).await,
    };
    cluster::slave::spawn(app, store.watch(), bus, transport, slave.streams, id, url);
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

/// Webhook retry timing. `STREAMMACHINE_WEBHOOK_RETRY_FIRST` and `..._GIVE_UP_AFTER`
/// (humantime) shorten it for tests; production keeps the defaults (1 s doubling to 5 min, for
/// up to an hour).
fn webhook_retry() -> Retry {
    let mut retry = Retry::default();
    let var = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| humantime::parse_duration(&v).ok())
    };
    if let Some(d) = var("STREAMMACHINE_WEBHOOK_RETRY_FIRST") {
        retry.first = d;
    }
    if let Some(d) = var("STREAMMACHINE_WEBHOOK_GIVE_UP_AFTER") {
        retry.give_up_after = d;
    }
    retry
}
