//! The client stack for synchronous calls between services: one place where the in-flight limit, the
//! circuit breaker and the deadline wrap a tonic channel, and bounded retries wrap idempotent calls.

pub mod breaker;
pub mod deadline;
mod endpoint;
pub mod identity;
pub mod limit;
mod resend;
pub mod retry;
mod stack;

pub use breaker::{BreakerConfig, BreakerHandle, CircuitBreaker, CircuitBreakerLayer, GrpcClassifier};
pub use endpoint::endpoint;
pub use identity::{Sign, SignLayer, Signer};
pub use resend::{ResendUnsent, ResendUnsentLayer, UnbufferedBody, never_sent};
pub use retry::{RetryPolicy, outcome_unknown};
pub use stack::{ClientError, ClientSettings, MeshChannel, connect_lazy};
