//! Wiring of the operator process: admin server, CRD check, leader election, controller and
//! graceful shutdown.

use std::sync::Arc;

use kube::api::ListParams;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Api, Client};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::admin::{self, AdminState};
use crate::cli::Args;
use crate::controller::{self, Backoff, Context, WatchedStream, scoped_api};
use crate::crd::CRD_NAME;
use crate::leader;
use crate::master::MasterClient;
use crate::metrics::Metrics;
use crate::resources::{SlaveSecurity, WorkerSettings};
use crate::store::{RedisStore, StoreError};

/// Why the operator could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The admin server could not bind its address.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// Address from `--listen`.
        addr: std::net::SocketAddr,
        /// The bind error.
        #[source]
        source: std::io::Error,
    },
    /// No Kubernetes configuration or API server.
    #[error("Kubernetes client: {0}")]
    Kube(#[from] kube::Error),
    /// The Stream CRD is not installed.
    #[error(
        "the CustomResourceDefinition {CRD_NAME} is not installed: install the chart with \
         crds.enabled=true or run `kubectl apply -f crds/{CRD_NAME}.yaml`"
    )]
    CrdMissing,
    /// The Redis URL is malformed.
    #[error("config store: {0}")]
    Store(#[from] StoreError),
    /// The Lease could not be set up.
    #[error("leader election: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    /// Another replica took over; exiting lets Kubernetes restart this one as a standby.
    #[error("lost the leader lease")]
    LostLeadership,
    /// The election task ended before this replica became leader (see its logged error).
    #[error("leader election stopped before the lease was acquired")]
    ElectionFailed,
}

/// Why the controller stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    Signal,
    LostLeadership,
}

/// Runs the operator until SIGTERM/ctrl-c (Ok) or a fatal error.
pub async fn run(args: Args) -> Result<(), AppError> {
    let metrics = Arc::new(Metrics::default());
    let admin_state = AdminState::new(metrics.clone());
    let (stop_tx, stop_rx) = watch::channel(None::<Stop>);

    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|source| AppError::Listen {
            addr: args.listen,
            source,
        })?;
    info!(addr = %args.listen, "Serving /healthz, /readyz and /metrics.");
    let admin_server = tokio::spawn(
        axum::serve(listener, admin::router(admin_state.clone()))
            .with_graceful_shutdown(stopped(stop_rx.clone()))
            .into_future(),
    );
    // Signals are watched from the start, so a SIGTERM during start-up is honoured too.
    tokio::spawn({
        let stop_tx = stop_tx.clone();
        async move {
            shutdown_signal().await;
            info!("Shutdown requested.");
            request_stop(&stop_tx, Stop::Signal);
        }
    });

    let result = operate(&args, metrics, &admin_state, &stop_tx, stop_rx).await;
    // Whatever ended the controller, the admin server goes too.
    request_stop(&stop_tx, Stop::Signal);
    if let Ok(Err(error)) = admin_server.await {
        warn!(%error, "Admin server failed.");
    }
    result
}

async fn operate(
    args: &Args,
    metrics: Arc<Metrics>,
    admin_state: &AdminState,
    stop_tx: &watch::Sender<Option<Stop>>,
    stop_rx: watch::Receiver<Option<Stop>>,
) -> Result<(), AppError> {
    let client = Client::try_default().await?;
    ensure_crd(&client, args.watch_namespace.as_deref()).await?;
    admin_state.set_ready();

    let ctx = Arc::new(Context {
        client: client.clone(),
        store: Arc::new(RedisStore::new(
            args.redis_url.expose(),
            &args.redis_prefix,
        )?),
        master: Arc::new(MasterClient::new(
            &args.master_admin_url,
            args.cluster_token.clone(),
            args.master_timeout,
        )),
        settings: WorkerSettings {
            image: args.slave_image.clone(),
            image_pull_policy: args.slave_image_pull_policy.clone(),
            master_admin_url: args.master_admin_url.clone(),
            redis_url: args.redis_url.clone(),
            nats_url: args.nats_url.clone(),
            redis_prefix: args.redis_prefix.clone(),
            nats_prefix: args.nats_prefix.clone(),
            cluster_token: args.cluster_token.clone(),
            security: SlaveSecurity {
                pod: args
                    .slave_pod_security_context
                    .clone()
                    .unwrap_or_else(|| SlaveSecurity::default().pod),
                container: args
                    .slave_security_context
                    .clone()
                    .unwrap_or_else(|| SlaveSecurity::default().container),
            },
        },
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "streammachine-operator".to_owned(),
                instance: args.pod_name.clone(),
            },
        ),
        metrics: metrics.clone(),
        status_refresh: args.status_refresh,
        backoff: Backoff::default(),
    });

    let leadership = if args.leader_election {
        let namespace = args
            .lease_namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_owned());
        let mut leadership = leader::campaign(
            client.clone(),
            &namespace,
            &args.lease_name,
            args.pod_name.as_deref(),
        )
        .await?;
        info!(lease = %args.lease_name, %namespace, "Waiting for the leader lease.");
        tokio::select! {
            acquired = leadership.acquired() => {
                if !acquired {
                    return Err(AppError::ElectionFailed);
                }
            }
            () = stopped(stop_rx.clone()) => {
                leadership.release().await;
                return Ok(());
            }
        }
        info!("Acquired the leader lease.");
        metrics.leader.set(1);
        // Watch for a lost lease until the operator stops. The task must end on stop: it holds
        // a receiver of the lease state, and the lease is only released once all are dropped.
        let lost = leader::lost(leadership.subscribe());
        tokio::spawn({
            let stop_tx = stop_tx.clone();
            let stopping = stopped(stop_rx.clone());
            async move {
                tokio::select! {
                    () = lost => request_stop(&stop_tx, Stop::LostLeadership),
                    () = stopping => {}
                }
            }
        });
        Some(leadership)
    } else {
        metrics.leader.set(1);
        None
    };

    info!(
        namespace = args.watch_namespace.as_deref().unwrap_or("<all>"),
        "Starting the Stream controller."
    );
    controller::run(ctx, args.watch_namespace.clone(), stopped(stop_rx.clone())).await;
    metrics.leader.set(0);
    let reason = *stop_rx.borrow();
    info!(?reason, "Stream controller stopped.");
    if let Some(leadership) = leadership {
        leadership.release().await;
    }
    match reason {
        Some(Stop::LostLeadership) => Err(AppError::LostLeadership),
        _ => Ok(()),
    }
}

/// Fails with `CrdMissing` unless Streams can be listed. Listed through the guard, so a
/// malformed Stream does not stop the operator from starting.
async fn ensure_crd(client: &Client, namespace: Option<&str>) -> Result<(), AppError> {
    let streams: Api<WatchedStream> = scoped_api(client, namespace);
    match streams.list(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.is_not_found() => Err(AppError::CrdMissing),
        Err(e) => Err(e.into()),
    }
}

/// Sets the stop reason unless one is set already: the first reason is the one reported.
fn request_stop(stop: &watch::Sender<Option<Stop>>, reason: Stop) {
    stop.send_if_modified(|current| {
        let first = current.is_none();
        current.get_or_insert(reason);
        first
    });
}

/// Resolves once a stop reason is set (or the sender is gone).
async fn stopped(mut stop: watch::Receiver<Option<Stop>>) {
    let _ = stop.wait_for(Option::is_some).await;
}

/// SIGTERM (Kubernetes) or ctrl-c (a terminal).
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
