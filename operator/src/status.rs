//! Stream status: computed from what a reconcile observed (pure), plus the events its
//! transitions deserve.
//!
//! Conditions follow the Kubernetes API conventions: every type is present from the first
//! reconcile, `reason` is a CamelCase constant, `lastTransitionTime` only moves when `status`
//! flips, and each condition carries the generation it describes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::crd::StreamStatus;
use crate::master::{MasterError, StreamReport};

/// Condition types.
pub mod types {
    /// Listeners can be served: config written and at least one slave pod ready.
    pub const READY: &str = "Ready";
    /// An encoder feeds the master.
    pub const SOURCE_CONNECTED: &str = "SourceConnected";
    /// The live source is in dead air (tripped and not yet cleared), as the master reports.
    pub const SOURCE_SILENT: &str = "SourceSilent";
    /// Something needs attention even though the stream may still play.
    pub const DEGRADED: &str = "Degraded";
}

/// Condition reasons.
pub mod reasons {
    /// Ready: at least one slave pod serves.
    pub const SLAVES_READY: &str = "SlavesReady";
    /// Ready: slave pods exist but none is ready (usually still loading the rewind buffer).
    pub const SLAVES_NOT_READY: &str = "SlavesNotReady";
    /// Ready: the spec asks for zero slave pods.
    pub const SCALED_TO_ZERO: &str = "ScaledToZero";
    /// The spec is invalid; nothing was changed.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// The source password Secret or key is missing.
    pub const SOURCE_SECRET_UNAVAILABLE: &str = "SourceSecretUnavailable";
    /// A webhook's signing-secret Secret or key is missing or not a valid secret.
    pub const WEBHOOK_SECRET_UNAVAILABLE: &str = "WebhookSecretUnavailable";
    /// Another Stream already uses the stream key.
    pub const KEY_IN_USE: &str = "KeyInUse";
    /// Event reason: the stored object does not deserialize as a Stream.
    pub const MALFORMED: &str = "Malformed";
    /// SourceConnected: an encoder is connected.
    pub const SOURCE_CONNECTED: &str = "SourceConnected";
    /// SourceConnected: the master has the stream but no encoder.
    pub const NO_SOURCE: &str = "NoSource";
    /// SourceConnected: the master has not loaded the stream's config yet.
    pub const STREAM_NOT_LOADED: &str = "StreamNotLoaded";
    /// SourceSilent (and event reason): the live source has been quieter than the threshold
    /// for `silence.tripAfter`.
    pub const DEAD_AIR: &str = "DeadAir";
    /// SourceSilent: the live source has audio.
    pub const AUDIO_PRESENT: &str = "AudioPresent";
    /// Event reason when dead air ends.
    pub const AUDIO_RESTORED: &str = "AudioRestored";
    /// The master's admin API did not answer.
    pub const MASTER_UNREACHABLE: &str = "MasterUnreachable";
    /// The master refused the operator's cluster token.
    pub const MASTER_UNAUTHORIZED: &str = "MasterUnauthorized";
    /// The master answered something unexpected.
    pub const MASTER_BAD_RESPONSE: &str = "MasterBadResponse";
    /// SourceConnected: not checked, because the spec could not be applied.
    pub const NOT_OBSERVED: &str = "NotObserved";
    /// Degraded: all good.
    pub const AS_EXPECTED: &str = "AsExpected";
    /// Degraded: fewer slave pods ready than wanted.
    pub const SLAVES_UNAVAILABLE: &str = "SlavesUnavailable";
    /// Event reason when the encoder goes away.
    pub const SOURCE_DISCONNECTED: &str = "SourceDisconnected";
    /// Event reason when Degraded clears.
    pub const RECOVERED: &str = "Recovered";
}

const TRUE: &str = "True";
const FALSE: &str = "False";
const UNKNOWN: &str = "Unknown";

/// Slave pod counts, from the applied Deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SlaveCounts {
    /// Pods the Deployment wants.
    pub desired: i32,
    /// Pods that exist.
    pub current: i32,
    /// Pods that are ready.
    pub ready: i32,
}

/// What a reconcile observed.
#[derive(Clone, Debug, PartialEq)]
pub enum Observed {
    /// The spec cannot be acted on (message for humans).
    InvalidSpec(String),
    /// Something outside the spec blocks it (reason constant, message).
    Blocked {
        /// One of the `reasons`.
        reason: &'static str,
        /// For humans; never holds secrets.
        message: String,
    },
    /// Everything applied.
    Running {
        /// From the Deployment.
        slaves: SlaveCounts,
        /// From the master's admin API.
        master: Result<Option<StreamReport>, MasterError>,
    },
}

/// The status for `observed`, keeping `lastTransitionTime`s of unchanged conditions from `old`.
pub fn compute(
    old: Option<&StreamStatus>,
    generation: Option<i64>,
    key: &str,
    observed: &Observed,
    now: Timestamp,
) -> StreamStatus {
    let set = |type_: &str, status: &str, reason: &str, message: String| {
        let previous = old.and_then(|s| find(s, type_));
        let last_transition_time = match previous {
            Some(c) if c.status == status => c.last_transition_time.clone(),
            _ => Time(now),
        };
        Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message,
            observed_generation: generation,
            last_transition_time,
        }
    };
    let not_observed = |type_| {
        set(
            type_,
            UNKNOWN,
            reasons::NOT_OBSERVED,
            "not checked while the spec cannot be applied".to_owned(),
        )
    };

    match observed {
        Observed::InvalidSpec(message) | Observed::Blocked { message, .. } => {
            let reason = match observed {
                Observed::Blocked { reason, .. } => reason,
                _ => reasons::INVALID_SPEC,
            };
            // Children and Redis keep what the last good spec produced, so the last figures,
            // the key in effect and observedGeneration (the last *applied* generation) stay;
            // the conditions, stamped with the current generation, say why nothing changed.
            let mut status = old.cloned().unwrap_or_default();
            status.conditions = vec![
                set(types::READY, FALSE, reason, message.clone()),
                not_observed(types::SOURCE_CONNECTED),
                not_observed(types::SOURCE_SILENT),
                set(types::DEGRADED, TRUE, reason, message.clone()),
            ];
            status
        }
        Observed::Running { slaves, master } => {
            let ready = if slaves.ready > 0 {
                set(
                    types::READY,
                    TRUE,
                    reasons::SLAVES_READY,
                    format!("{}/{} slave pods ready", slaves.ready, slaves.desired),
                )
            } else if slaves.desired == 0 {
                set(
                    types::READY,
                    FALSE,
                    reasons::SCALED_TO_ZERO,
                    "slaves.replicas is 0: no pod serves listeners".to_owned(),
                )
            } else {
                set(
                    types::READY,
                    FALSE,
                    reasons::SLAVES_NOT_READY,
                    format!(
                        "0/{} slave pods ready (loading the rewind buffer)",
                        slaves.desired
                    ),
                )
            };
            let source = match master {
                Ok(Some(report)) if report.source_connected => set(
                    types::SOURCE_CONNECTED,
                    TRUE,
                    reasons::SOURCE_CONNECTED,
                    "an encoder is connected to the master".to_owned(),
                ),
                Ok(Some(_)) => set(
                    types::SOURCE_CONNECTED,
                    FALSE,
                    reasons::NO_SOURCE,
                    "no encoder is connected; listeners get the fallback or the rewind buffer"
                        .to_owned(),
                ),
                Ok(None) => set(
                    types::SOURCE_CONNECTED,
                    UNKNOWN,
                    reasons::STREAM_NOT_LOADED,
                    "the master has not loaded this stream yet".to_owned(),
                ),
                Err(e) => set(
                    types::SOURCE_CONNECTED,
                    UNKNOWN,
                    master_reason(e),
                    e.to_string(),
                ),
            };
            let silent = match master {
                Ok(Some(report)) if report.source_silent => set(
                    types::SOURCE_SILENT,
                    TRUE,
                    reasons::DEAD_AIR,
                    "the live source is below the silence threshold (dead air)".to_owned(),
                ),
                Ok(Some(report)) if report.source_connected => set(
                    types::SOURCE_SILENT,
                    FALSE,
                    reasons::AUDIO_PRESENT,
                    "the live source has audio".to_owned(),
                ),
                Ok(Some(_)) => set(
                    types::SOURCE_SILENT,
                    FALSE,
                    reasons::NO_SOURCE,
                    "no encoder is connected, so no live source is silent".to_owned(),
                ),
                Ok(None) => set(
                    types::SOURCE_SILENT,
                    UNKNOWN,
                    reasons::STREAM_NOT_LOADED,
                    "the master has not loaded this stream yet".to_owned(),
                ),
                Err(e) => set(
                    types::SOURCE_SILENT,
                    UNKNOWN,
                    master_reason(e),
                    e.to_string(),
                ),
            };
            let degraded = match master {
                Err(e) => set(types::DEGRADED, TRUE, master_reason(e), e.to_string()),
                Ok(_) if slaves.ready < slaves.desired => set(
                    types::DEGRADED,
                    TRUE,
                    reasons::SLAVES_UNAVAILABLE,
                    format!("{}/{} slave pods ready", slaves.ready, slaves.desired),
                ),
                Ok(_) => set(
                    types::DEGRADED,
                    FALSE,
                    reasons::AS_EXPECTED,
                    "all slave pods ready and the master answers".to_owned(),
                ),
            };
            let report = master.as_ref().ok().and_then(Option::as_ref);
            StreamStatus {
                observed_generation: generation,
                conditions: vec![ready, source, silent, degraded],
                key: Some(key.to_owned()),
                codec: report.and_then(|r| r.codec.clone()),
                listeners: report.map(|r| r.listeners),
                buffered_seconds: report.map(|r| r.buffer_seconds),
                buffered: report.map(|r| human_seconds(r.buffer_seconds)),
                ready_replicas: slaves.ready,
                replicas: slaves.current,
            }
        }
    }
}

fn master_reason(e: &MasterError) -> &'static str {
    match e {
        MasterError::Unreachable(_) => reasons::MASTER_UNREACHABLE,
        MasterError::Unauthorized(_) => reasons::MASTER_UNAUTHORIZED,
        MasterError::BadResponse(_) => reasons::MASTER_BAD_RESPONSE,
    }
}

fn find<'a>(status: &'a StreamStatus, type_: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

/// `4h 0m 12s`-style rendering, whole seconds (the printer column wants something short).
fn human_seconds(seconds: f64) -> String {
    let whole = if seconds.is_finite() && seconds > 0.0 {
        seconds as u64
    } else {
        0
    };
    humantime::format_duration(std::time::Duration::from_secs(whole)).to_string()
}

/// An event a status change deserves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventNote {
    /// Warning (true) or Normal.
    pub warning: bool,
    /// CamelCase reason.
    pub reason: String,
    /// For humans.
    pub note: String,
}

/// Events for the transitions from `old` to `new`: Ready changes, an encoder connecting or
/// going away, dead air starting or ending, and Degraded appearing or clearing. Nothing for an unchanged status, so a
/// periodic reconcile stays silent.
pub fn transitions(old: Option<&StreamStatus>, new: &StreamStatus) -> Vec<EventNote> {
    let before = |type_| old.and_then(|s| find(s, type_));
    let changed = |type_| match (before(type_), find(new, type_)) {
        (_, None) => None,
        (Some(b), Some(n)) if b.status == n.status && b.reason == n.reason => None,
        (b, Some(n)) => Some((b, n)),
    };
    let mut events = Vec::new();

    let mut ready_reason = None;
    if let Some((_, now)) = changed(types::READY) {
        let progressing = [reasons::SLAVES_NOT_READY, reasons::SCALED_TO_ZERO];
        events.push(EventNote {
            warning: now.status == FALSE && !progressing.contains(&now.reason.as_str()),
            reason: now.reason.clone(),
            note: now.message.clone(),
        });
        ready_reason = Some(now.reason.clone());
    }
    if let Some((was, now)) = changed(types::SOURCE_CONNECTED) {
        let was_connected = was.is_some_and(|c| c.status == TRUE);
        if now.status == TRUE {
            events.push(EventNote {
                warning: false,
                reason: reasons::SOURCE_CONNECTED.to_owned(),
                note: now.message.clone(),
            });
        } else if now.status == FALSE && was_connected {
            events.push(EventNote {
                warning: true,
                reason: reasons::SOURCE_DISCONNECTED.to_owned(),
                note: now.message.clone(),
            });
        }
    }
    if let Some((was, now)) = changed(types::SOURCE_SILENT) {
        if now.status == TRUE {
            events.push(EventNote {
                warning: true,
                reason: reasons::DEAD_AIR.to_owned(),
                note: now.message.clone(),
            });
        } else if now.status == FALSE && was.is_some_and(|c| c.status == TRUE) {
            events.push(EventNote {
                warning: false,
                reason: reasons::AUDIO_RESTORED.to_owned(),
                note: now.message.clone(),
            });
        }
    }
    if let Some((was, now)) = changed(types::DEGRADED) {
        if now.status == TRUE && ready_reason.as_deref() != Some(now.reason.as_str()) {
            events.push(EventNote {
                warning: true,
                reason: now.reason.clone(),
                note: now.message.clone(),
            });
        } else if now.status == FALSE && was.is_some_and(|c| c.status == TRUE) {
            events.push(EventNote {
                warning: false,
                reason: reasons::RECOVERED.to_owned(),
                note: now.message.clone(),
            });
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    fn running(ready: i32, master: Result<Option<StreamReport>, MasterError>) -> Observed {
        Observed::Running {
            slaves: SlaveCounts {
                desired: 2,
                current: 2,
                ready,
            },
            master,
        }
    }

    fn on_air() -> Result<Option<StreamReport>, MasterError> {
        Ok(Some(StreamReport {
            codec: Some("mp3-44100-128-s".into()),
            source_connected: true,
            buffer_seconds: 3725.7,
            listeners: 42,
            slaves_alive: Some(2),
            title: String::new(),
            source_silent: false,
        }))
    }

    fn condition<'a>(s: &'a StreamStatus, type_: &str) -> &'a Condition {
        find(s, type_).unwrap()
    }

    #[test]
    fn healthy_stream() {
        let s = compute(None, Some(3), "live", &running(2, on_air()), at(100));
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(s.key.as_deref(), Some("live"));
        assert_eq!(s.listeners, Some(42));
        assert_eq!(s.buffered_seconds, Some(3725.7));
        assert_eq!(s.buffered.as_deref(), Some("1h 2m 5s"));
        assert_eq!(s.codec.as_deref(), Some("mp3-44100-128-s"));
        assert_eq!((s.ready_replicas, s.replicas), (2, 2));
        let ready = condition(&s, types::READY);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", "SlavesReady")
        );
        assert_eq!(ready.observed_generation, Some(3));
        assert_eq!(condition(&s, types::SOURCE_CONNECTED).status, "True");
        let degraded = condition(&s, types::DEGRADED);
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("False", "AsExpected")
        );
    }

    #[test]
    fn loading_slaves_are_not_ready_and_degraded() {
        let s = compute(None, Some(1), "live", &running(0, on_air()), at(100));
        assert_eq!(
            condition(&s, types::READY).reason,
            reasons::SLAVES_NOT_READY
        );
        assert_eq!(
            condition(&s, types::DEGRADED).reason,
            reasons::SLAVES_UNAVAILABLE
        );
    }

    #[test]
    fn one_of_two_ready_is_ready_but_degraded() {
        let s = compute(None, Some(1), "live", &running(1, on_air()), at(100));
        assert_eq!(condition(&s, types::READY).status, "True");
        assert_eq!(condition(&s, types::DEGRADED).status, "True");
    }

    #[test]
    fn master_answers_map_to_source_connected() {
        let no_source = Ok(Some(StreamReport::default()));
        let s = compute(None, Some(1), "live", &running(2, no_source), at(1));
        assert_eq!(
            condition(&s, types::SOURCE_CONNECTED).reason,
            reasons::NO_SOURCE
        );
        assert_eq!(condition(&s, types::SOURCE_CONNECTED).status, "False");

        let s = compute(None, Some(1), "live", &running(2, Ok(None)), at(1));
        assert_eq!(
            condition(&s, types::SOURCE_CONNECTED).reason,
            reasons::STREAM_NOT_LOADED
        );
        assert_eq!(condition(&s, types::SOURCE_CONNECTED).status, "Unknown");
        assert_eq!(s.listeners, None);
    }

    #[test]
    fn unreachable_master_is_unknown_source_and_degraded_not_an_error() {
        let down = Err(MasterError::Unreachable("connection refused".into()));
        let s = compute(None, Some(1), "live", &running(2, down), at(1));
        let source = condition(&s, types::SOURCE_CONNECTED);
        assert_eq!(
            (source.status.as_str(), source.reason.as_str()),
            ("Unknown", "MasterUnreachable")
        );
        assert_eq!(
            condition(&s, types::DEGRADED).reason,
            reasons::MASTER_UNREACHABLE
        );
        assert_eq!(
            condition(&s, types::READY).status,
            "True",
            "slaves still serve"
        );

        let refused = Err(MasterError::Unauthorized(401));
        let s = compute(None, Some(1), "live", &running(2, refused), at(1));
        assert_eq!(
            condition(&s, types::DEGRADED).reason,
            reasons::MASTER_UNAUTHORIZED
        );
    }

    fn silent() -> Result<Option<StreamReport>, MasterError> {
        let mut report = on_air().unwrap().unwrap();
        report.source_silent = true;
        Ok(Some(report))
    }

    #[test]
    fn source_silent_follows_the_master() {
        let status_of = |master| {
            let s = compute(None, Some(4), "live", &running(2, master), at(1));
            let c = condition(&s, types::SOURCE_SILENT).clone();
            (c.status, c.reason, c.observed_generation)
        };
        let dead_air = status_of(silent());
        assert_eq!(dead_air, ("True".into(), "DeadAir".into(), Some(4)));
        assert_eq!(
            status_of(on_air()),
            ("False".into(), "AudioPresent".into(), Some(4))
        );
        assert_eq!(
            status_of(Ok(Some(StreamReport::default()))),
            ("False".into(), "NoSource".into(), Some(4))
        );
        assert_eq!(
            status_of(Ok(None)),
            ("Unknown".into(), "StreamNotLoaded".into(), Some(4))
        );
        assert_eq!(
            status_of(Err(MasterError::Unreachable("refused".into()))),
            ("Unknown".into(), "MasterUnreachable".into(), Some(4))
        );
        let invalid = compute(
            None,
            Some(4),
            "live",
            &Observed::InvalidSpec("bad".into()),
            at(1),
        );
        let c = condition(&invalid, types::SOURCE_SILENT);
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("Unknown", "NotObserved")
        );
        assert_eq!(c.observed_generation, Some(4));
    }

    #[test]
    fn dead_air_warns_once_and_its_end_is_announced() {
        let on = compute(None, Some(1), "live", &running(2, on_air()), at(1));
        let quiet = compute(Some(&on), Some(1), "live", &running(2, silent()), at(2));
        assert_eq!(
            transitions(Some(&on), &quiet),
            vec![EventNote {
                warning: true,
                reason: "DeadAir".into(),
                note: condition(&quiet, types::SOURCE_SILENT).message.clone(),
            }]
        );
        let still = compute(Some(&quiet), Some(1), "live", &running(2, silent()), at(3));
        assert!(transitions(Some(&quiet), &still).is_empty());
        assert_eq!(
            condition(&still, types::SOURCE_SILENT).last_transition_time,
            Time(at(2))
        );
        let back = compute(Some(&still), Some(1), "live", &running(2, on_air()), at(4));
        let events = transitions(Some(&still), &back);
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(!events[0].warning);
        assert_eq!(events[0].reason, "AudioRestored");
    }

    #[test]
    fn invalid_spec_keeps_the_last_figures_and_key() {
        let good = compute(None, Some(1), "live", &running(2, on_air()), at(1));
        let bad = Observed::InvalidSpec("spec.rewind \"x\" is not a duration".into());
        let s = compute(Some(&good), Some(2), "other-key", &bad, at(2));
        assert_eq!(
            s.observed_generation,
            Some(1),
            "generation 2 was not applied"
        );
        assert_eq!(condition(&s, types::READY).observed_generation, Some(2));
        assert_eq!(s.key.as_deref(), Some("live"));
        assert_eq!(s.listeners, Some(42));
        let ready = condition(&s, types::READY);
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "InvalidSpec")
        );
        assert!(ready.message.contains("spec.rewind"));
        assert_eq!(
            condition(&s, types::SOURCE_CONNECTED).reason,
            reasons::NOT_OBSERVED
        );
        assert_eq!(condition(&s, types::DEGRADED).reason, reasons::INVALID_SPEC);
    }

    #[test]
    fn blocked_uses_its_reason() {
        let blocked = Observed::Blocked {
            reason: reasons::KEY_IN_USE,
            message: "stream key \"live\" is already used by Stream other/live".into(),
        };
        let s = compute(None, Some(1), "live", &blocked, at(1));
        assert_eq!(condition(&s, types::READY).reason, reasons::KEY_IN_USE);
        assert_eq!(s.key, None);
    }

    #[test]
    fn transition_time_moves_only_when_the_status_flips() {
        let first = compute(None, Some(1), "live", &running(2, on_air()), at(100));
        let mut report = on_air().unwrap().unwrap();
        report.listeners = 50;
        let second = compute(
            Some(&first),
            Some(1),
            "live",
            &running(2, Ok(Some(report))),
            at(200),
        );
        assert_eq!(
            condition(&second, types::READY).last_transition_time,
            Time(at(100))
        );
        let third = compute(
            Some(&second),
            Some(1),
            "live",
            &running(0, on_air()),
            at(300),
        );
        assert_eq!(
            condition(&third, types::READY).last_transition_time,
            Time(at(300))
        );
        // Degraded was False and is True now: moved too; SourceConnected did not flip.
        assert_eq!(
            condition(&third, types::DEGRADED).last_transition_time,
            Time(at(300))
        );
        assert_eq!(
            condition(&third, types::SOURCE_CONNECTED).last_transition_time,
            Time(at(100))
        );
    }

    #[test]
    fn same_observation_gives_the_same_status() {
        let first = compute(None, Some(1), "live", &running(2, on_air()), at(100));
        let again = compute(
            Some(&first),
            Some(1),
            "live",
            &running(2, on_air()),
            at(500),
        );
        assert_eq!(first, again);
        assert!(transitions(Some(&first), &again).is_empty());
    }

    #[test]
    fn events_for_the_first_healthy_reconcile() {
        let s = compute(None, Some(1), "live", &running(2, on_air()), at(1));
        let events = transitions(None, &s);
        let reasons: Vec<_> = events.iter().map(|e| e.reason.as_str()).collect();
        assert_eq!(reasons, ["SlavesReady", "SourceConnected"]);
        assert!(events.iter().all(|e| !e.warning));
    }

    #[test]
    fn invalid_spec_gives_one_warning() {
        let s = compute(
            None,
            Some(1),
            "live",
            &Observed::InvalidSpec("bad".into()),
            at(1),
        );
        let events = transitions(None, &s);
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(events[0].warning);
        assert_eq!(events[0].reason, "InvalidSpec");
    }

    #[test]
    fn encoder_going_away_and_recovery() {
        let on = compute(None, Some(1), "live", &running(2, on_air()), at(1));
        let off = compute(
            Some(&on),
            Some(1),
            "live",
            &running(2, Ok(Some(StreamReport::default()))),
            at(2),
        );
        let events = transitions(Some(&on), &off);
        assert_eq!(
            events,
            vec![EventNote {
                warning: true,
                reason: "SourceDisconnected".into(),
                note: condition(&off, types::SOURCE_CONNECTED).message.clone(),
            }]
        );

        let down = compute(
            Some(&on),
            Some(1),
            "live",
            &running(2, Err(MasterError::Unreachable("x".into()))),
            at(3),
        );
        let events = transitions(Some(&on), &down);
        assert!(
            events
                .iter()
                .any(|e| e.warning && e.reason == "MasterUnreachable"),
            "{events:?}"
        );
        let back = compute(Some(&down), Some(1), "live", &running(2, on_air()), at(4));
        let events = transitions(Some(&down), &back);
        assert!(
            events.iter().any(|e| !e.warning && e.reason == "Recovered"),
            "{events:?}"
        );
        assert!(
            events.iter().any(|e| e.reason == "SourceConnected"),
            "{events:?}"
        );
    }
}
