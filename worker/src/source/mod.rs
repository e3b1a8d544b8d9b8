//! Where a stream's audio comes from: Icecast encoders on the listener port ([`ingest`], with the
//! pure admission rules in [`admission`]), fallback relays and files ([`fallback`]), title
//! updates sent by encoders ([`titles`]), and each source's dead-air [`monitor`].

pub mod admission;
pub mod fallback;
pub mod ingest;
pub mod monitor;
pub mod titles;
