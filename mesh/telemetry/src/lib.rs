//! Telemetry for every service and the gateway, in one place:
//!
//! - **traces**: `tracing` spans exported through OpenTelemetry (OTLP over gRPC when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` is set), with W3C trace context carried in gRPC metadata
//!   ([`GrpcServerLayer`], [`GrpcClientLayer`]) and in NATS headers ([`propagation`]), so one request is
//!   one trace across services and events;
//! - **metrics**: a Prometheus registry per server ([`Metrics`]) served as text by the [`AdminServer`]
//!   (`/metrics`, `/livez`, `/readyz`);
//! - **logs**: human or JSON lines, each carrying the trace and span ids of where it was written; a
//!   panic is one such line, with its location.

mod admin;
mod grpc;
mod init;
mod logfmt;
mod metrics;
mod panic;
pub mod propagation;
mod routes;

pub use admin::{AdminServer, Readiness};
pub use grpc::{GrpcClient, GrpcClientLayer, GrpcServer, GrpcServerLayer};
pub use init::{Telemetry, TelemetryError, TelemetrySettings, init};
pub use metrics::{LatencyBuckets, Metrics, RpcLabels};
pub use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram};
pub use routes::OTHER_METHOD;
