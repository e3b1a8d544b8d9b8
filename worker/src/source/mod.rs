//! Where a stream's audio comes from: Icecast encoders on the listener port ([`ingest`], with the
//! pure admission rules in [`admission`]), fallback relays and files ([`fallback`]), and title
//! updates sent by encoders ([`titles`]).

pub mod admission;
pub mod fallback;
pub mod ingest;
pub mod titles;
