//! The life of a service process, the same for every service: open its database and event bus, bind its
//! gRPC port, run its consumers and outbox relay, and on shutdown stop them in order.

mod config;
mod db_telemetry;
mod runtime;
mod service;
pub mod status;
pub mod worker;

pub use baemin_mesh_telemetry::{Counter, Gauge, Metrics};
pub use config::{ServiceConfig, max_message_bytes};
pub use runtime::{Runtime, StartupError};
pub use service::{Service, serve_until_signal};
