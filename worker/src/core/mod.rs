//! The sans-IO core: everything here is pure data and arithmetic over bytes, unit-tested without
//! sockets or timers. Frames come out of [`codec`], [`chunker`] turns them into [`chunk::Chunk`]s,
//! [`rewind`] holds them; [`dump`] and the chunk encoding persist and ship them; [`icy`] and
//! [`http_head`] are the hand-written wire formats of the listener port.

pub mod chunk;
pub mod chunker;
pub mod codec;
pub mod dump;
pub mod http_head;
pub(crate) mod http_reply;
pub mod icy;
pub mod level;
pub mod rewind;
