//! Prometheus metrics of the operator, served on `/metrics` of the admin port.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of the failure counter: the error kind only, so cardinality stays small.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// `Error::metric_label()`.
    pub error: String,
}

/// All operator metrics and their registry.
pub struct Metrics {
    registry: Registry,
    /// Reconcile runs, failures and durations.
    pub reconcile: ReconcileMetrics,
    /// 1 while this replica holds the leader lease.
    pub leader: Gauge,
}

/// The reconcile trio (kube-rs controller-rs style).
#[derive(Clone)]
pub struct ReconcileMetrics {
    /// Reconciles started.
    pub runs: Counter,
    /// Reconciles that failed, by error kind.
    pub failures: Family<ErrorLabels, Counter>,
    /// Reconcile durations in seconds.
    pub duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("streammachine_operator");
        let reconcile = ReconcileMetrics {
            runs: Counter::default(),
            failures: Family::default(),
            duration: Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0]),
        };
        let leader = Gauge::default();
        let sub = registry.sub_registry_with_prefix("reconcile");
        sub.register("runs", "Reconciles started", reconcile.runs.clone());
        sub.register(
            "failures",
            "Reconciles that failed, by error kind",
            reconcile.failures.clone(),
        );
        sub.register(
            "duration_seconds",
            "Duration of reconciles",
            reconcile.duration.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            leader.clone(),
        );
        Self {
            registry,
            reconcile,
            leader,
        }
    }
}

impl Metrics {
    /// OpenMetrics text of every metric.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

impl ReconcileMetrics {
    /// Counts a run and returns a guard that records its duration when dropped, so early
    /// returns and errors are measured too.
    pub fn start(&self) -> ReconcileTimer {
        self.runs.inc();
        ReconcileTimer {
            start: Instant::now(),
            duration: self.duration.clone(),
        }
    }

    /// Counts a failure of kind `error`.
    pub fn failed(&self, error: &str) {
        self.failures
            .get_or_create(&ErrorLabels {
                error: error.to_owned(),
            })
            .inc();
    }
}

/// Records a reconcile's duration on drop.
pub struct ReconcileTimer {
    start: Instant,
    duration: Histogram,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.duration.observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_failures_and_durations_are_exported() {
        let metrics = Metrics::default();
        drop(metrics.reconcile.start());
        metrics.reconcile.failed("invalid_spec");
        metrics.leader.set(1);
        let text = metrics.encode().unwrap();
        assert!(
            text.contains("streammachine_operator_reconcile_runs_total 1"),
            "{text}"
        );
        assert!(
            text.contains(
                r#"streammachine_operator_reconcile_failures_total{error="invalid_spec"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("streammachine_operator_reconcile_duration_seconds_count 1"));
        assert!(text.contains("streammachine_operator_leader 1"));
    }
}
