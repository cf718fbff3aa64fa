//! Service bootstrap shared by every service: configuration, gRPC serving with health and reflection,
//! graceful shutdown, logging, and the mapping of unexpected errors to `tonic::Status`.

pub mod config;
mod deadline;
pub mod identity;
mod logging;
mod message_limit;
pub mod probe;
mod require_identity;
mod serve;
mod shutdown;
pub mod status;
pub mod tls;

pub use deadline::{CallerDeadline, CallerDeadlineLayer, parse_grpc_timeout};
pub use logging::init_logging;
pub use message_limit::{DEFAULT_MAX_MESSAGE_BYTES, MessageLimit, MessageLimitLayer};
pub use require_identity::{RequireIdentity, RequireIdentityLayer};
pub use serve::{MeshServer, ServeError, ServeOptions, Serving, within_grace};
pub use shutdown::{Shutdown, wait_for_signal};
