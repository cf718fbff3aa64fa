//! The gRPC methods the mesh serves: the only `rpc.service` / `rpc.method` values (labels, span names,
//! span attributes and so log fields) telemetry records, so no path a caller makes up adds any.

use std::{collections::HashSet, sync::LazyLock};

use prost::Message;

/// What a request to any other path is recorded as, in `rpc_service`, `rpc_method` and the span name:
/// the OpenTelemetry RPC conventions' value for a method the instrumentation does not recognise. The
/// path itself is not kept anywhere: a caller inventing paths adds one series, not one per path.
pub const OTHER_METHOD: &str = "_OTHER";

/// Served by every mesh server beside the contracts: health and reflection (v1 and v1alpha).
const STANDARD: [&str; 4] = [
    "grpc.health.v1.Health/Check",
    "grpc.health.v1.Health/Watch",
    "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// `package.Service/Method` of every method served, built once; looked up on every call without
/// allocating (SipHash, so made-up paths cannot be chosen to collide).
static KNOWN: LazyLock<HashSet<Box<str>>> = LazyLock::new(|| {
    // Encoded by baemin-proto's build script from the same files the servers are generated from:
    // it decodes, or no test passes (`a_known_method_keeps_its_labels_and_span_name`).
    let contracts = prost_types::FileDescriptorSet::decode(baemin_proto::FILE_DESCRIPTOR_SET).unwrap_or_default();
    let mut known: HashSet<Box<str>> = STANDARD.into_iter().map(Box::from).collect();
    for file in &contracts.file {
        for service in &file.service {
            let service_name = match file.package() {
                "" => service.name().to_owned(),
                package => format!("{package}.{}", service.name()),
            };
            for method in &service.method {
                known.insert(format!("{service_name}/{}", method.name()).into_boxed_str());
            }
        }
    }
    known
});

/// The method an RPC is recorded under: one the mesh serves, or [`OTHER_METHOD`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Route {
    /// `package.Service/Method`: the span name.
    pub(crate) name: &'static str,
    /// `package.Service`.
    pub(crate) service: &'static str,
    /// `Method`.
    pub(crate) method: &'static str,
}

impl Route {
    /// Any path the mesh does not serve.
    pub(crate) const OTHER: Self = Self {
        name: OTHER_METHOD,
        service: OTHER_METHOD,
        method: OTHER_METHOD,
    };

    /// The route of a gRPC request to `path` (`/package.Service/Method`).
    pub(crate) fn of(path: &str) -> Self {
        let known: &'static HashSet<Box<str>> = &KNOWN;
        path.strip_prefix('/')
            .and_then(|name| known.get(name))
            .and_then(|name| {
                let (service, method) = name.split_once('/')?;
                Some(Self { name, service, method })
            })
            .unwrap_or(Self::OTHER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contracts_health_and_reflection_are_known_and_nothing_else() {
        let place = Route::of("/baemin.call.v1.CallService/PlaceCall");
        assert_eq!(
            (place.name, place.service, place.method),
            (
                "baemin.call.v1.CallService/PlaceCall",
                "baemin.call.v1.CallService",
                "PlaceCall"
            )
        );
        for path in [
            "/baemin.payment.v1.PaymentService/Settle",
            "/baemin.report.v1.ReportService/WatchDeliveryViews",
            "/grpc.health.v1.Health/Check",
            "/grpc.health.v1.Health/Watch",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ] {
            assert_eq!(Route::of(path).name, &path[1..]);
        }
        for path in [
            "/",
            "",
            "baemin.call.v1.CallService/PlaceCall",
            "/baemin.call.v1.CallService/PlaceCall/",
            "/baemin.call.v1.CallService/placecall",
            "/baemin.call.v1.CallService",
            "/baemin.call.v1.CallService/",
            "/deadbeef/m1",
            "/grpc.health.v1.Health/List",
        ] {
            assert_eq!(Route::of(path), Route::OTHER, "{path}");
        }
    }
}
