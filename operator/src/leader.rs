//! Leader election through a `coordination.k8s.io` Lease (kube-lease-manager).
//!
//! Only the leader runs the controller, so two replicas (or the old and the new pod of a
//! rolling update) never write the same objects. A replica that loses the lease stops and
//! exits; Kubernetes restarts it as a standby.

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder, LeaseManagerError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::warn;

/// Seconds a lease stays valid without renewal: how long a crashed leader blocks a standby.
pub const LEASE_DURATION_SECONDS: u64 = 15;
/// Seconds before expiry the leader renews.
pub const LEASE_GRACE_SECONDS: u64 = 5;

/// This replica's part in the election.
pub struct Leadership {
    state: watch::Receiver<bool>,
    task: JoinHandle<Result<LeaseManager, LeaseManagerError>>,
}

/// Starts campaigning for `lease_name` in `namespace`. `identity` must be unique per replica
/// (the pod name); a random one is used when unset.
pub async fn campaign(
    client: Client,
    namespace: &str,
    lease_name: &str,
    identity: Option<&str>,
) -> Result<Leadership, LeaseManagerError> {
    let mut builder = LeaseManagerBuilder::new(client, lease_name)
        .with_namespace(namespace)
        .with_duration(LEASE_DURATION_SECONDS)
        .with_grace(LEASE_GRACE_SECONDS);
    if let Some(identity) = identity {
        builder = builder.with_identity(identity);
    }
    let (state, task) = builder.build().await?.watch().await;
    Ok(Leadership { state, task })
}

impl Leadership {
    /// Waits until this replica holds the lease. Returns `false` if the election task ended
    /// first (it only does on errors it cannot recover from).
    pub async fn acquired(&mut self) -> bool {
        self.state.wait_for(|leader| *leader).await.is_ok()
    }

    /// A receiver that reports when the lease is lost (for the controller's shutdown trigger).
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.state.clone()
    }

    /// Gives the lease up so a standby takes over at once instead of after it expires.
    pub async fn release(self) {
        // Closing every receiver makes the manager's task release the lease and return.
        let Self { state, task } = self;
        drop(state);
        match tokio::time::timeout(std::time::Duration::from_secs(5), task).await {
            Ok(Ok(Ok(_))) => {}
            Ok(Ok(Err(error))) => warn!(%error, "Could not release the leader lease."),
            Ok(Err(error)) => warn!(%error, "Leader election task failed."),
            Err(_) => warn!("Releasing the leader lease timed out."),
        }
    }
}

/// Resolves when `state` turns false or its sender goes away: leadership is gone.
pub async fn lost(mut state: watch::Receiver<bool>) {
    // An error means the election task ended, which also ends the leadership.
    let _ = state.wait_for(|leader| !*leader).await;
}
