//! StreamMachine: a live radio streaming server that keeps hours of each station's audio in memory.
//!
//! Data path: encoder → [`source::ingest`] → [`core::codec`] parser → [`core::chunker`] →
//! [`stream`] rewind buffer → [`serve`] listeners (ICY/raw/pump, HLS) and, on a master, the chunk
//! bus to slaves ([`cluster`]).
//!
//! The layout follows the roles:
//! - [`core`]: sans-IO building blocks (codecs, chunks, chunker, rewind buffer, dumps, ICY, HTTP
//!   request heads), unit-tested without sockets;
//! - [`source`]: where audio comes from (Icecast encoders, fallback relays and files);
//! - [`serve`]: the listener port (accept loop, direct listener path, router, HLS);
//! - [`cluster`]: what master and slaves share (config store, chunk bus, rewind transport) and
//!   the master and slave tasks;
//! - at the top: the process ([`app`], [`stream`], [`config`], [`cli`], [`run`], [`admin`],
//!   [`metrics`]) and leaf helpers ([`auth`], [`time`], [`retry`]) that depend on nothing else.

pub mod admin;
pub mod app;
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod core;
pub mod events;
pub mod metrics;
pub mod probes;
pub mod retry;
pub mod run;
pub mod serve;
pub mod source;
pub mod stream;
pub mod time;

/// Install the process-wide TLS crypto provider (ring) once; https relays need it.
pub fn install_tls_provider() {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
