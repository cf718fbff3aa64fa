//! Service bootstrap shared by every service: configuration, gRPC serving with health and reflection,
//! graceful shutdown, logging, and the mapping of unexpected errors to `tonic::Status`.

mod catch_panic;
mod client_mistake;
pub mod config;
mod deadline;
pub mod identity;
mod message_limit;
pub mod ports;
pub mod probe;
mod require_identity;
mod serve;
mod shutdown;
pub mod status;
pub mod tls;

pub use catch_panic::{CatchPanic, CatchPanicLayer};
pub use client_mistake::{DecodeError, DecodeErrorLayer};
pub use deadline::{CallerDeadline, CallerDeadlineLayer, parse_grpc_timeout};
pub use message_limit::{
    DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_REQUEST_READ_TIMEOUT, MessageLimit, MessageLimitLayer, drain_refused,
};
pub use require_identity::{IdentityLayer, RequireIdentity};
pub use serve::{AdminHandle, MeshServer, ServeError, ServeOptions, ServeParts, Serving, within_grace};
pub use shutdown::{Shutdown, wait_for_signal};
