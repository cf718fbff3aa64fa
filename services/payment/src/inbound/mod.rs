//! Adapters that drive the payment domain: the gRPC API.

pub mod grpc;
mod identity;
mod status;
