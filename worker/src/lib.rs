//! StreamMachine: a live radio streaming server that keeps hours of each station's audio in memory.
//!
//! Data path: encoder → [`ingest`] → [`codec`] parser → [`chunker`] → [`stream`] rewind buffer →
//! [`listener`]s (ICY/raw/pump) and, on a master, the chunk bus to slaves.

pub mod chunk;
pub mod chunker;
pub mod codec;
pub mod config;
pub mod icy;
pub mod metrics;
pub mod rewind;
pub mod stream;
