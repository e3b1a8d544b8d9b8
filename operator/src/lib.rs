//! StreamMachine's Kubernetes operator.
//!
//! It reconciles `Stream` resources (`streams.streammachine.io`) into the master's config in
//! Redis and, per stream, a Deployment of slave pods with its Service, HorizontalPodAutoscaler,
//! PodDisruptionBudget and Ingresses, and writes the Stream's status from what the children
//! and the master's admin API report.
//!
//! ```text
//!  Stream ──validate──▶ ValidSpec ──build──▶ Desired ──apply──▶ Redis + children
//!    ▲                   (pure)              (pure)               │
//!    └──────────── status (from the Deployment and the master) ◀──┘
//! ```

pub mod admin;
pub mod app;
pub mod cli;
pub mod config;
pub mod controller;
pub mod crd;
pub mod leader;
pub mod master;
pub mod metrics;
pub mod resources;
pub mod status;
pub mod store;
pub mod telemetry;
pub mod validate;

#[cfg(test)]
mod fixtures;
