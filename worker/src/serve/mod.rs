//! The listener port. `server` accepts every connection and reads its head; sources go to
//! `crate::source::ingest`, first-request listeners to `direct` (straight from the socket),
//! everything else to hyper and the `routes` router. `listen` opens a listener (limits,
//! landing, headers) for both paths, `listener` is the cursor that paces it, `connection`
//! writes the raw-socket responses, [`hls`] serves HLS, and `audience` reports the listener
//! count as events.

pub(crate) mod audience;
pub(crate) mod connection;
pub(crate) mod direct;
pub mod hls;
pub(crate) mod listen;
pub(crate) mod listener;
pub(crate) mod routes;
pub(crate) mod server;
