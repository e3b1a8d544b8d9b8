//! StreamMachine: a live radio streaming server that keeps hours of each station's audio in memory.
//!
//! Data path: encoder → `source::ingest` → [`core::codec`] parser → [`core::chunker`] →
//! [`stream`] rewind buffer → [`serve`] listeners (ICY/raw/pump, HLS) and, on a master, the chunk
//! bus to slaves ([`cluster`]).
//!
//! The layout follows the roles:
//! - [`core`]: sans-IO building blocks (codecs, chunks, chunker, rewind buffer, dumps, ICY, HTTP
//!   request heads), unit-tested without sockets;
//! - `source`: where audio comes from (Icecast encoders, fallback relays and files);
//! - [`serve`]: the listener port (accept loop, direct listener path, router, HLS);
//! - [`cluster`]: what master and slaves share (config store, chunk bus, rewind transport) and
//!   the master and slave tasks;
//! - at the top: the process (`app`, [`stream`], [`config`], [`cli`], [`run`], [`admin`],
//!   [`metrics`]) and leaf helpers (`auth`, [`time`], `retry`) that depend on nothing else.
//!
//! What is public is what other crates use: the binary (`main.rs`: [`cli`], [`config`], [`run`]),
//! the fuzz targets, benches and end-to-end tests ([`core`], [`time`]; [`stream`], [`metrics`] and
//! [`serve::hls`] for the in-process HLS benchmark; [`cluster::transport`] for the cluster
//! benchmark), and the operator's contract tests ([`admin::StreamStatus`],
//! [`cluster::store::parse_document`]). Everything else (the app, sources, events, the listener
//! path, the master and slave tasks) is `pub(crate)`: it can change without touching another crate.

pub mod admin;
pub(crate) mod app;
pub(crate) mod auth;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod core;
pub(crate) mod events;
pub mod metrics;
pub(crate) mod probes;
pub(crate) mod retry;
pub mod run;
pub mod serve;
pub(crate) mod source;
pub mod stream;
pub mod time;

/// Install the process-wide TLS crypto provider (ring) once; https relays need it.
pub fn install_tls_provider() {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
