//! The metrics a server exports: one Prometheus registry per server (no process-wide state, so
//! services sharing a test process keep their numbers apart), served by the admin port.

use std::sync::{Arc, RwLock};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::{Family, MetricConstructor},
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::{Metric, Registry, Unit},
};

/// Latency buckets: 0.5 ms to ~16 s, doubling.
#[derive(Clone, Copy, Debug, Default)]
pub struct LatencyBuckets;

impl MetricConstructor<Histogram> for LatencyBuckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(0.0005, 2.0, 16))
    }
}

/// Labels of an RPC, by the OpenTelemetry RPC conventions. `'static` names: the methods the mesh
/// serves, or [`OTHER_METHOD`](crate::OTHER_METHOD), never a string taken from a request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    /// Full gRPC service name, e.g. `baemin.call.v1.CallService`.
    pub rpc_service: &'static str,
    /// Method name, e.g. `PlaceCall`.
    pub rpc_method: &'static str,
    /// Numeric gRPC status code of the outcome (0 = OK), one of the 17 codes.
    pub rpc_grpc_status_code: u16,
}

/// RPC latency histograms (their `_count` is the call count) by method and status code.
pub type RpcHistograms = Family<RpcLabels, Histogram, LatencyBuckets>;

/// A server's metrics registry, and the RPC histograms every server has.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<RwLock<Registry>>,
    rpc_server: RpcHistograms,
    rpc_client: RpcHistograms,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with the RPC server and client histograms.
    pub fn new() -> Self {
        let metrics = Self {
            registry: Arc::new(RwLock::new(Registry::default())),
            rpc_server: Family::new_with_constructor(LatencyBuckets),
            rpc_client: Family::new_with_constructor(LatencyBuckets),
        };
        metrics.register_with_unit(
            "rpc_server_duration",
            "Time to answer an RPC, from its headers to its status (streams: until they end)",
            Unit::Seconds,
            metrics.rpc_server.clone(),
        );
        metrics.register_with_unit(
            "rpc_client_duration",
            "Time an RPC to another service took, as its caller saw it",
            Unit::Seconds,
            metrics.rpc_client.clone(),
        );
        metrics
    }

    /// RPCs served.
    pub fn rpc_server(&self) -> &RpcHistograms {
        &self.rpc_server
    }

    /// RPCs made to other services.
    pub fn rpc_client(&self) -> &RpcHistograms {
        &self.rpc_client
    }

    /// Registers `metric` as `baemin_<name>`; returns it for recording.
    pub fn register<M: Metric + Clone>(&self, name: &str, help: &str, metric: M) -> M {
        self.write().register(format!("baemin_{name}"), help, metric.clone());
        metric
    }

    /// Registers `metric` as `baemin_<name>_<unit>`; returns it for recording.
    pub fn register_with_unit<M: Metric + Clone>(&self, name: &str, help: &str, unit: Unit, metric: M) -> M {
        self.write()
            .register_with_unit(format!("baemin_{name}"), help, unit, metric.clone());
        metric
    }

    /// A counter `baemin_<name>_total`.
    pub fn counter(&self, name: &str, help: &str) -> Counter {
        self.register(name, help, Counter::default())
    }

    /// A gauge `baemin_<name>`.
    pub fn gauge(&self, name: &str, help: &str) -> Gauge {
        self.register(name, help, Gauge::default())
    }

    /// A latency histogram `baemin_<name>_seconds`.
    pub fn latency(&self, name: &str, help: &str) -> Histogram {
        self.register_with_unit(name, help, Unit::Seconds, LatencyBuckets.new_metric())
    }

    /// A family of latency histograms `baemin_<name>_seconds` by the labels `L`.
    pub fn latency_family<L>(&self, name: &str, help: &str) -> Family<L, Histogram, LatencyBuckets>
    where
        L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug + Send + Sync + 'static,
    {
        self.register_with_unit(name, help, Unit::Seconds, Family::new_with_constructor(LatencyBuckets))
    }

    /// Everything registered, in the Prometheus/OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let registry = self.registry.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &registry);
        text
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Registry> {
        self.registry.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_metrics_are_encoded_with_the_baemin_prefix_and_their_unit() {
        let m = Metrics::new();
        let placed = m.counter("calls_placed", "Calls placed");
        placed.inc_by(3);
        m.latency("outbox_publish", "Commit to JetStream ack").observe(0.01);
        m.rpc_server()
            .get_or_create(&RpcLabels {
                rpc_service: "baemin.call.v1.CallService",
                rpc_method: "PlaceCall",
                rpc_grpc_status_code: 0,
            })
            .observe(0.002);
        let text = m.encode();
        assert!(text.contains("baemin_calls_placed_total 3"), "{text}");
        assert!(text.contains("baemin_outbox_publish_seconds_count 1"), "{text}");
        assert!(
            text.contains(r#"baemin_rpc_server_duration_seconds_count{rpc_service="baemin.call.v1.CallService",rpc_method="PlaceCall",rpc_grpc_status_code="0"} 1"#),
            "{text}"
        );
    }
}
