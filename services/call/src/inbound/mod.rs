//! Adapters that drive the call domain: the gRPC API and the consumer of the rider's events.

pub mod events;
pub mod grpc;
mod identity;
mod proto;
mod status;
mod watch;
