//! Adapters that drive the report domain: the gRPC API and the event consumer.

pub mod events;
pub mod grpc;
mod identity;
mod status;
