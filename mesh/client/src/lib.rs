//! The client stack for synchronous calls between services: one place where deadline (now) and the
//! circuit breaker, bounded retry and concurrency limit (the resilience issue) wrap a tonic channel.

pub mod deadline;
mod stack;

pub use stack::{ClientError, ClientSettings, MeshChannel, connect_lazy};
