//! Where a stream's audio comes from: Icecast encoders on the listener port ([`ingest`], with the
//! pure admission rules in [`admission`]), fallback relays and files ([`fallback`]), title
//! updates sent by encoders ([`titles`]), each source's dead-air [`monitor`], and the
//! [`sourceless`] alarm.

pub mod admission;
pub mod fallback;
pub mod ingest;
pub mod monitor;
pub mod sourceless;
pub mod titles;
