//! The client stack for synchronous calls between services: one place where deadline and circuit
//! breaker (now), bounded retry and concurrency limit (the resilience issue) wrap a tonic channel.

pub mod breaker;
pub mod deadline;
pub mod retry;
mod stack;

pub use breaker::{BreakerConfig, BreakerHandle, CircuitBreaker, CircuitBreakerLayer, GrpcClassifier};
pub use retry::RetryPolicy;
pub use stack::{ClientError, ClientSettings, MeshChannel, connect_lazy};
