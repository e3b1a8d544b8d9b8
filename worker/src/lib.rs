//! StreamMachine: a live radio streaming server that keeps hours of each station's audio in memory.
//!
//! Data path: encoder → [`ingest`] → [`codec`] parser → [`chunker`] → [`stream`] rewind buffer →
//! [`listener`]s (ICY/raw/pump) and, on a master, the chunk bus to slaves.

pub mod admin;
pub mod app;
pub mod bus;
pub mod chunk;
pub mod chunker;
pub mod cli;
pub mod cluster;
pub mod codec;
pub mod config;
pub mod dump;
pub mod fallback;
pub mod hls;
pub mod http_head;
pub mod icy;
pub mod ingest;
pub mod listener;
pub mod metrics;
pub mod rewind;
pub mod routes;
pub mod run;
pub mod server;
pub mod store;
pub mod stream;
pub mod transport;

/// Install the process-wide TLS crypto provider (ring) once; https relays need it.
pub fn install_tls_provider() {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
