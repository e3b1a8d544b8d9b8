//! Logging setup: JSON lines by default (what log collectors in clusters expect).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::util::TryInitError;

use crate::cli::LogFormat;

/// Installs the global subscriber with `filter` (`RUST_LOG` syntax; `info` if it does not parse).
pub fn init(format: LogFormat, filter: &str) -> Result<(), TryInitError> {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
        // Colours only on a terminal: pipes, files and `kubectl logs` get plain text.
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_ansi(
                std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
            ))
            .try_init(),
    }
}
