//! The master and slave roles: the tasks that connect one `App` to the cluster. Both roles run
//! the same streams, buffers, listeners and admin API as standalone; what differs is where
//! configs come from (Redis instead of a file) and where chunks come from (a slave follows the
//! master over NATS and the HTTP transport instead of ingesting). See `docs/cluster.md`.

pub(crate) mod bus;
pub(crate) mod check;
pub(crate) mod forward;
pub(crate) mod lag;
pub(crate) mod master;
pub(crate) mod repair;
pub(crate) mod slave;
pub mod store;
pub mod transport;

use std::collections::BTreeSet;
use std::time::Duration;

use crate::app::App;
use crate::cluster::store::Configs;

/// What both cluster roles need.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub redis_url: String,
    pub nats_url: String,
    pub token: String,
    pub redis_prefix: String,
    pub nats_prefix: String,
}

/// What only a slave needs.
#[derive(Debug, Clone)]
pub struct SlaveOptions {
    /// The master's admin base URL (its transport).
    pub master_url: String,
    /// Serve only these streams (empty: all).
    pub streams: BTreeSet<String>,
    pub drain_timeout: Duration,
    /// How a restarted master reaches this slave's transport (default: derived).
    pub advertise_url: Option<String>,
}

/// How often slaves report listener counts.
pub const STATS_INTERVAL: Duration = Duration::from_secs(2);

/// The configs a role serves: every stream, or only the `only` keys.
pub fn select(configs: &Configs, only: &BTreeSet<String>) -> Configs {
    configs
        .iter()
        .filter(|(k, _)| only.is_empty() || only.contains(*k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A name for this process in the cluster: the host (the pod name on Kubernetes) plus a random
/// suffix, so two processes on one host differ.
pub fn node_id() -> String {
    let host = crate::events::this_host();
    let suffix: String = crate::auth::random_password().chars().take(6).collect();
    format!("{host}-{suffix}")
}

/// Wait for the role's shutdown; used in `select!`s of long-running tasks.
pub async fn stopped(app: &App) {
    app.shutdown.cancelled().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StreamConfig;

    #[test]
    fn select_filters_by_key() {
        let all = Configs::from([
            ("a".into(), StreamConfig::default()),
            ("b".into(), StreamConfig::default()),
        ]);
        assert_eq!(select(&all, &BTreeSet::new()).len(), 2);
        let only = BTreeSet::from(["b".to_string(), "c".to_string()]);
        assert_eq!(select(&all, &only).keys().collect::<Vec<_>>(), vec!["b"]);
    }

    #[test]
    fn node_ids_differ() {
        assert_ne!(node_id(), node_id());
    }
}
