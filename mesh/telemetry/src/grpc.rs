//! Spans and metrics for every RPC, as tower layers: [`GrpcServerLayer`] on each server (parent taken
//! from the caller's `traceparent`), [`GrpcClientLayer`] on each client (its span's context sent as
//! `traceparent`). A span lasts until the call's status is known: the trailers, or the headers of a
//! trailers-only answer; for a stream, until it ends. A call dropped before that counts as CANCELLED.
//! Attributes follow the OpenTelemetry RPC conventions. What is recorded is bounded whatever callers
//! and upstreams send: a method the mesh does not serve is [`OTHER_METHOD`](crate::OTHER_METHOD), a
//! `grpc-status` outside the 17 codes is UNKNOWN.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Instant,
};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tracing::{Instrument, Span, field::Empty, instrument::Instrumented};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::{
    Metrics, RpcLabels,
    metrics::RpcHistograms,
    propagation::{extract_http, inject_http},
    routes::Route,
};

const CANCELLED: u16 = 1;
const UNKNOWN: u16 = 2;
const UNAVAILABLE: u16 = 14;
/// The last of the 17 gRPC status codes (UNAUTHENTICATED).
const LAST_CODE: u16 = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Server,
    Client,
}

impl Kind {
    /// Whether `code` marks the span as failed: for a server only codes that are its own fault
    /// (the conventions' list); for a client every code but OK.
    fn is_error(self, code: u16) -> bool {
        match self {
            Self::Server => matches!(code, 2 | 4 | 12 | 13 | 14 | 15),
            Self::Client => code != 0,
        }
    }
}

/// The route of a gRPC (or grpc-web) request: the method it names if the mesh serves it, else
/// [`Route::OTHER`]; `None` for other HTTP requests.
fn grpc_route<B>(request: &http::Request<B>) -> Option<Route> {
    request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
        .then(|| Route::of(request.uri().path()))
}

/// The `grpc-status` of `headers`: one of the 17 codes; any other value is UNKNOWN, as tonic reads it.
fn grpc_status(headers: &http::HeaderMap) -> Option<u16> {
    let value = headers.get("grpc-status")?;
    let code = value.to_str().ok().and_then(|v| v.parse::<u16>().ok());
    Some(code.filter(|&code| code <= LAST_CODE).unwrap_or(UNKNOWN))
}

fn rpc_span(kind: Kind, route: Route) -> Span {
    let Route { name, service, method } = route;
    match kind {
        Kind::Server => tracing::info_span!(
            "rpc.server",
            otel.name = name,
            otel.kind = "server",
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = method,
            rpc.grpc.status_code = Empty,
        ),
        Kind::Client => tracing::info_span!(
            "rpc.client",
            otel.name = name,
            otel.kind = "client",
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.service = service,
            rpc.method = method,
            rpc.grpc.status_code = Empty,
        ),
    }
}

/// Records one RPC when its outcome is known, or when dropped (CANCELLED).
struct Recorder {
    kind: Kind,
    span: Span,
    started: Instant,
    labels: RpcLabels,
    histograms: RpcHistograms,
    /// The status seen in the response headers (a trailers-only answer), if any.
    early: Option<u16>,
    done: bool,
}

impl Recorder {
    fn finish(&mut self, code: u16) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        self.span.record("rpc.grpc.status_code", code);
        if self.kind.is_error(code) {
            self.span.record("otel.status_code", "ERROR");
        }
        self.labels.rpc_grpc_status_code = code;
        self.histograms
            .get_or_create(&self.labels)
            .observe(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let code = self.early.unwrap_or(CANCELLED);
        self.finish(code);
    }
}

pin_project! {
    /// A response body whose end (trailers, or end of stream) completes the RPC's span and metrics.
    pub struct Observed<B> {
        #[pin]
        inner: B,
        recorder: Option<Recorder>,
    }
}

impl<B: Body> Body for Observed<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let Some(recorder) = this.recorder.as_mut() {
            match &frame {
                Some(Ok(frame)) => {
                    if let Some(code) = frame.trailers_ref().and_then(grpc_status) {
                        recorder.finish(code);
                    }
                }
                Some(Err(_)) => recorder.finish(recorder.early.unwrap_or(UNKNOWN)),
                None => recorder.finish(recorder.early.unwrap_or(UNKNOWN)),
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// The response future of [`GrpcServer`] and [`GrpcClient`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Instrumented<F>,
        recorder: Option<Recorder>,
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<Observed<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let mut recorder = this.recorder.take();
        Poll::Ready(match result {
            Ok(response) => {
                if let Some(recorder) = recorder.as_mut() {
                    recorder.early = grpc_status(response.headers());
                }
                Ok(response.map(|inner| Observed { inner, recorder }))
            }
            Err(error) => {
                if let Some(mut recorder) = recorder {
                    recorder.finish(UNAVAILABLE);
                }
                Err(error)
            }
        })
    }
}

/// Spans (child of the caller's `traceparent`) and `baemin_rpc_server_duration_seconds` for every RPC
/// served, under its method if the mesh serves it and [`OTHER_METHOD`](crate::OTHER_METHOD) otherwise;
/// other HTTP requests (the dashboard's files) pass untouched.
#[derive(Clone)]
pub struct GrpcServerLayer {
    histograms: RpcHistograms,
}

impl GrpcServerLayer {
    /// Recording into `metrics`.
    pub fn new(metrics: &Metrics) -> Self {
        Self {
            histograms: metrics.rpc_server().clone(),
        }
    }
}

impl<S> Layer<S> for GrpcServerLayer {
    type Service = GrpcServer<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcServer {
            inner,
            histograms: self.histograms.clone(),
        }
    }
}

/// See [`GrpcServerLayer`].
#[derive(Clone)]
pub struct GrpcServer<S> {
    inner: S,
    histograms: RpcHistograms,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for GrpcServer<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = http::Response<Observed<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let Some(route) = grpc_route(&request) else {
            return ResponseFuture {
                inner: self.inner.call(request).instrument(Span::none()),
                recorder: None,
            };
        };
        let span = rpc_span(Kind::Server, route);
        let _ = span.set_parent(extract_http(request.headers()));
        let recorder = recorder(Kind::Server, &span, route, &self.histograms);
        let inner = span.in_scope(|| self.inner.call(request)).instrument(span);
        ResponseFuture {
            inner,
            recorder: Some(recorder),
        }
    }
}

fn recorder(kind: Kind, span: &Span, route: Route, histograms: &RpcHistograms) -> Recorder {
    Recorder {
        kind,
        span: span.clone(),
        started: Instant::now(),
        labels: RpcLabels {
            rpc_service: route.service,
            rpc_method: route.method,
            rpc_grpc_status_code: 0,
        },
        histograms: histograms.clone(),
        early: None,
        done: false,
    }
}

/// A client span per call (child of the current span) whose context goes out as `traceparent`, and
/// `baemin_rpc_client_duration_seconds`; a method the mesh does not serve (a path the gateway would
/// forward as it came) is [`OTHER_METHOD`](crate::OTHER_METHOD), as on the server.
#[derive(Clone)]
pub struct GrpcClientLayer {
    histograms: RpcHistograms,
}

impl GrpcClientLayer {
    /// Recording into `metrics`.
    pub fn new(metrics: &Metrics) -> Self {
        Self {
            histograms: metrics.rpc_client().clone(),
        }
    }
}

impl<S> Layer<S> for GrpcClientLayer {
    type Service = GrpcClient<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcClient {
            inner,
            histograms: self.histograms.clone(),
        }
    }
}

/// See [`GrpcClientLayer`].
#[derive(Clone)]
pub struct GrpcClient<S> {
    inner: S,
    histograms: RpcHistograms,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for GrpcClient<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = http::Response<Observed<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        let Some(route) = grpc_route(&request) else {
            return ResponseFuture {
                inner: self.inner.call(request).instrument(Span::none()),
                recorder: None,
            };
        };
        let span = rpc_span(Kind::Client, route);
        inject_http(&span.context(), request.headers_mut());
        let recorder = recorder(Kind::Client, &span, route, &self.histograms);
        let inner = span.in_scope(|| self.inner.call(request)).instrument(span);
        ResponseFuture {
            inner,
            recorder: Some(recorder),
        }
    }
}

#[cfg(test)]
mod tests;
