//! Service bootstrap shared by every service: configuration, gRPC serving with health and reflection,
//! graceful shutdown, logging, and the mapping of unexpected errors to `tonic::Status`.

pub mod config;
mod deadline;
pub mod identity;
mod message_limit;
pub mod probe;
mod require_identity;
mod serve;
mod shutdown;
pub mod status;
pub mod tls;

pub use deadline::{CallerDeadline, CallerDeadlineLayer, parse_grpc_timeout};
pub use message_limit::{DEFAULT_MAX_MESSAGE_BYTES, MessageLimit, MessageLimitLayer};
pub use require_identity::{RequireIdentity, RequireIdentityLayer};
pub use serve::{AdminHandle, MeshServer, ServeError, ServeOptions, ServeParts, Serving, within_grace};
pub use shutdown::{Shutdown, wait_for_signal};
