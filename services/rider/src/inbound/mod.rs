//! Adapters that drive the rider domain: the gRPC API and the call events it consumes.

pub mod events;
pub mod grpc;
mod identity;
mod status;
