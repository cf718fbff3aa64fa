//! The layers fed made-up paths and bogus statuses: nothing a caller or an upstream sends grows the
//! registry, the span names or the span fields beyond the methods the mesh serves.

use std::{
    collections::{BTreeSet, HashMap},
    convert::Infallible,
    fmt::Debug,
    sync::{Arc, Mutex},
};

use tower::{Layer, Service, ServiceExt, service_fn};
use tracing::{
    field::{Field, Visit},
    span::{Attributes, Id},
};
use tracing_subscriber::layer::{Context, SubscriberExt};

use crate::{GrpcClientLayer, GrpcServerLayer, Metrics, OTHER_METHOD};

const PLACE_CALL: &str = "/baemin.call.v1.CallService/PlaceCall";

/// An inner service answering every call trailers-only with `grpc-status: status` (tonic answers a
/// method it does not route with 12, UNIMPLEMENTED).
fn answering(
    status: &'static str,
) -> impl Service<http::Request<()>, Response = http::Response<()>, Error = Infallible> + Clone {
    service_fn(move |_: http::Request<()>| async move {
        Ok(http::Response::builder()
            .header("grpc-status", status)
            .body(())
            .unwrap())
    })
}

/// Sends a grpc-web call to `path` through `service` and lets its answer go (which records it).
async fn send<S>(service: &mut S, path: &str)
where
    S: Service<http::Request<()>>,
    S::Error: Debug,
{
    let request = http::Request::builder()
        .uri(path)
        .header(http::header::CONTENT_TYPE, "application/grpc-web+proto")
        .body(())
        .unwrap();
    drop(service.ready().await.unwrap().call(request).await.unwrap());
}

/// `/<random hex>/m<i>`, as in the issue's reproduction.
fn made_up_path(i: usize) -> String {
    format!("/{}/m{i}", uuid::Uuid::now_v7().simple())
}

/// The `_count` lines of histogram `metric`: one per series.
fn series<'a>(text: &'a str, metric: &str) -> Vec<&'a str> {
    let prefix = format!("{metric}_count{{");
    text.lines().filter(|line| line.starts_with(&prefix)).collect()
}

/// The fields every new span was given, by field name.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<HashMap<&'static str, String>>>>);

impl Spans {
    /// The distinct values field `name` took.
    fn values(&self, name: &str) -> BTreeSet<String> {
        let spans = self.0.lock().unwrap();
        spans.iter().filter_map(|fields| fields.get(name).cloned()).collect()
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Spans {
    fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        self.0.lock().unwrap().push(fields.0);
    }
}

#[derive(Default)]
struct Fields(HashMap<&'static str, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name(), format!("{value:?}"));
    }
}

fn set_of(values: &[&str]) -> BTreeSet<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

#[tokio::test]
async fn made_up_paths_add_one_other_series_whatever_their_number() {
    let spans = Spans::default();
    let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    let metrics = Metrics::new();
    let mut server = GrpcServerLayer::new(&metrics).layer(answering("12"));

    for i in 0..10 {
        send(&mut server, &made_up_path(i)).await;
    }
    let after_ten = metrics.encode();
    for i in 10..2_000 {
        send(&mut server, &made_up_path(i)).await;
    }
    let after_two_thousand = metrics.encode();

    let expected = format!(
        r#"baemin_rpc_server_duration_seconds_count{{rpc_service="{OTHER_METHOD}",rpc_method="{OTHER_METHOD}",rpc_grpc_status_code="12"}} 2000"#
    );
    let lines = series(&after_two_thousand, "baemin_rpc_server_duration_seconds");
    assert_eq!(
        lines.len(),
        1,
        "2000 made-up paths made {} series ({} bytes of metrics), e.g. {:?}",
        lines.len(),
        after_two_thousand.len(),
        &lines[..lines.len().min(3)]
    );
    assert_eq!(lines, [expected.as_str()]);
    // Only the counts and the sum grew some digits; one more series would add some 3 KB.
    assert!(
        after_two_thousand.len() < after_ten.len() + 512,
        "{} bytes after 10 made-up paths, {} after 2000",
        after_ten.len(),
        after_two_thousand.len()
    );
    assert_eq!(spans.values("otel.name"), set_of(&[OTHER_METHOD]));
    assert_eq!(spans.values("rpc.service"), set_of(&[OTHER_METHOD]));
    assert_eq!(spans.values("rpc.method"), set_of(&[OTHER_METHOD]));
}

#[tokio::test]
async fn a_known_method_keeps_its_labels_and_span_name() {
    let spans = Spans::default();
    let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    let metrics = Metrics::new();
    let mut server = GrpcServerLayer::new(&metrics).layer(answering("0"));

    send(&mut server, PLACE_CALL).await;
    send(&mut server, "/grpc.health.v1.Health/Check").await;
    send(&mut server, "/baemin.call.v1.CallService/PlaceCallz").await;

    let text = metrics.encode();
    let mut lines = series(&text, "baemin_rpc_server_duration_seconds");
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            r#"baemin_rpc_server_duration_seconds_count{rpc_service="_OTHER",rpc_method="_OTHER",rpc_grpc_status_code="0"} 1"#,
            r#"baemin_rpc_server_duration_seconds_count{rpc_service="baemin.call.v1.CallService",rpc_method="PlaceCall",rpc_grpc_status_code="0"} 1"#,
            r#"baemin_rpc_server_duration_seconds_count{rpc_service="grpc.health.v1.Health",rpc_method="Check",rpc_grpc_status_code="0"} 1"#,
        ],
        "{text}"
    );
    assert_eq!(
        spans.values("otel.name"),
        set_of(&[
            "baemin.call.v1.CallService/PlaceCall",
            "grpc.health.v1.Health/Check",
            OTHER_METHOD
        ])
    );
    assert_eq!(
        spans.values("rpc.service"),
        set_of(&["baemin.call.v1.CallService", "grpc.health.v1.Health", OTHER_METHOD])
    );
    assert_eq!(
        spans.values("rpc.method"),
        set_of(&["PlaceCall", "Check", OTHER_METHOD])
    );
}

#[tokio::test]
async fn a_status_outside_the_17_codes_is_recorded_as_unknown() {
    let metrics = Metrics::new();
    for status in ["999", "17", "65535", "-1", "OK", "1e3"] {
        let mut server = GrpcServerLayer::new(&metrics).layer(answering(status));
        send(&mut server, PLACE_CALL).await;
    }
    let mut server = GrpcServerLayer::new(&metrics).layer(answering("16"));
    send(&mut server, PLACE_CALL).await;

    let text = metrics.encode();
    let mut lines = series(&text, "baemin_rpc_server_duration_seconds");
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            r#"baemin_rpc_server_duration_seconds_count{rpc_service="baemin.call.v1.CallService",rpc_method="PlaceCall",rpc_grpc_status_code="16"} 1"#,
            r#"baemin_rpc_server_duration_seconds_count{rpc_service="baemin.call.v1.CallService",rpc_method="PlaceCall",rpc_grpc_status_code="2"} 6"#,
        ],
        "{text}"
    );
}

#[tokio::test]
async fn the_client_layer_records_made_up_paths_as_other_too() {
    let metrics = Metrics::new();
    let mut client = GrpcClientLayer::new(&metrics).layer(answering("12"));
    for i in 0..100 {
        send(&mut client, &made_up_path(i)).await;
    }
    send(&mut client, PLACE_CALL).await;

    let text = metrics.encode();
    let mut lines = series(&text, "baemin_rpc_client_duration_seconds");
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            r#"baemin_rpc_client_duration_seconds_count{rpc_service="_OTHER",rpc_method="_OTHER",rpc_grpc_status_code="12"} 100"#,
            r#"baemin_rpc_client_duration_seconds_count{rpc_service="baemin.call.v1.CallService",rpc_method="PlaceCall",rpc_grpc_status_code="12"} 1"#,
        ],
        "{text}"
    );
}
