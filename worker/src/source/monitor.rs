//! Dead-air monitoring of one source: its frames are decoded and metered on tokio's blocking
//! pool, never on the ingest or listener path; the verdict is published through atomics that
//! the stream reads when it picks the live source, and as events.
//!
//! Every source is monitored (the live one, standbys, fallback relays), so failover can tell
//! which standby has audio before promoting it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::core::codec::Frame;
use crate::core::level::FLOOR_DBFS;
use crate::core::level::decode::FrameDecoder;
use crate::core::level::silence::{Change, Detector, Settings};
use crate::events::{EventKind, Events};
use crate::time::{now_micros, rfc3339};

/// Frame batches queued for the decoder. A batch is one socket read (a few frames); when the
/// decoder falls this far behind, batches are dropped and counted rather than buffered.
const QUEUE: usize = 256;

/// What the monitor knows about its source, readable from any thread.
#[derive(Debug)]
pub struct Level {
    silent: AtomicBool,
    /// The latest window's loudest RMS, as `f32` bits.
    rms_bits: AtomicU32,
    /// Windows metered so far.
    windows: AtomicU64,
    /// Batches dropped because the decoder was behind.
    pub dropped: AtomicU64,
}

impl Level {
    fn new() -> Level {
        Level {
            silent: AtomicBool::new(false),
            rms_bits: AtomicU32::new(FLOOR_DBFS.to_bits()),
            windows: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        }
    }

    /// In dead air now (tripped and not yet cleared).
    pub fn is_silent(&self) -> bool {
        self.silent.load(Ordering::Acquire)
    }

    /// The loudest channel's RMS over the latest 100 ms.
    pub fn rms_dbfs(&self) -> f32 {
        f32::from_bits(self.rms_bits.load(Ordering::Relaxed))
    }

    /// Whether any audio has been metered yet.
    pub fn metered(&self) -> bool {
        self.windows.load(Ordering::Relaxed) > 0
    }
}

/// Who the monitor reports to.
pub struct Context {
    pub stream: String,
    pub source_id: u64,
    pub settings: Settings,
    pub events: Option<Arc<Events>>,
    /// `streammachine_source_silent{stream,source}`.
    pub silent_gauge: Gauge,
}

/// The handle the stream keeps per source; dropping it ends the decoder task.
pub struct Monitor {
    tx: mpsc::Sender<Vec<Frame>>,
    pub level: Arc<Level>,
}

impl Monitor {
    /// Starts monitoring on the blocking pool; `None` outside a tokio runtime (unit tests of
    /// the stream's bookkeeping), where nothing is monitored.
    pub fn start(ctx: Context) -> Option<Monitor> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let (tx, rx) = mpsc::channel(QUEUE);
        let level = Arc::new(Level::new());
        let shared = level.clone();
        runtime.spawn_blocking(move || run(ctx, rx, &shared));
        Some(Monitor { tx, level })
    }

    /// Hands frames to the decoder without waiting.
    pub fn feed(&self, frames: &[Frame]) {
        if self.tx.try_send(frames.to_vec()).is_err() {
            self.level.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn run(ctx: Context, mut rx: mpsc::Receiver<Vec<Frame>>, level: &Level) {
    let span = tracing::info_span!("level", stream = %ctx.stream, source_id = ctx.source_id);
    let _enter = span.enter();
    let mut decoder = FrameDecoder::new();
    let mut detector = Detector::new(ctx.settings);
    while let Some(frames) = rx.blocking_recv() {
        for frame in &frames {
            let windows = match decoder.push(frame) {
                Ok(windows) => windows,
                Err(e) => {
                    // Keep the connection (listeners still get the audio); only the meter stops.
                    warn!("Dead-air detection is off for this source: {e}");
                    return;
                }
            };
            for window in windows {
                level
                    .rms_bits
                    .store(window.loudest_rms_dbfs().to_bits(), Ordering::Relaxed);
                level.windows.fetch_add(1, Ordering::Relaxed);
                if let Some(change) = detector.push(&window) {
                    report(&ctx, level, change, window.loudest_rms_dbfs());
                }
            }
        }
    }
    if detector.is_silent() {
        ctx.silent_gauge.set(0);
    }
}

fn report(ctx: &Context, level: &Level, change: Change, rms_dbfs: f32) {
    let kind = match change {
        Change::Started { silent_for } => {
            ctx.silent_gauge.set(1);
            warn!(
                silent_for = ?silent_for,
                threshold_dbfs = ctx.settings.threshold_dbfs,
                "Dead air: the source is silent."
            );
            let since = now_micros() - silent_for.as_micros() as i64;
            EventKind::SourceSilenceStarted {
                source_id: ctx.source_id,
                since: rfc3339(since),
                level_dbfs: rms_dbfs,
            }
        }
        Change::Ended { lasted } => {
            level.silent.store(false, Ordering::Release);
            ctx.silent_gauge.set(0);
            info!(lasted = ?lasted, "Dead air ended: the source has audio again.");
            EventKind::SourceSilenceEnded {
                source_id: ctx.source_id,
                silent_seconds: lasted.as_secs_f64(),
            }
        }
    };
    let started = matches!(kind, EventKind::SourceSilenceStarted { .. });
    if let Some(events) = &ctx.events {
        events.emit(Some(&ctx.stream), kind);
    }
    // Raised before the flag is set: a failover the flag triggers comes after the alarm.
    if started {
        level.silent.store(true, Ordering::Release);
    }
}
