//! The circuit breaker's cost, on an in-memory dependency so that only the client stack is measured:
//! the mesh's client stack (telemetry, in-flight limit, deadline) with and without the breaker,
//! nanoseconds and heap allocations per call while closed, and the latency of a call refused by an
//! open breaker (fail fast).

use std::{convert::Infallible, time::Duration};

use baemin_mesh_client::{
    CircuitBreakerLayer, ClientSettings, GrpcClassifier, deadline::DeadlineLayer, limit::InFlightLimitLayer,
};
use baemin_mesh_telemetry::{GrpcClientLayer, Metrics};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{HeaderValue, Request, Response, Uri};
use tower::{Layer, Service, ServiceBuilder, ServiceExt, layer::util::Identity};

use baemin_mesh_testkit::alloc::Counter;

/// What the micro-benchmark measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BreakerCost {
    /// Calls per round (five rounds per variant; the fastest round is reported).
    pub calls: u32,
    /// Nanoseconds per call through the stack without a breaker.
    pub without_ns: f64,
    /// Nanoseconds per call through the stack with a closed breaker.
    pub with_ns: f64,
    /// Heap allocations per call without a breaker.
    pub without_allocs: f64,
    /// Heap allocations per call with a closed breaker.
    pub with_allocs: f64,
    /// Latency of a call refused by an open breaker, nanoseconds: p50.
    pub open_p50_ns: u64,
    /// p99.
    pub open_p99_ns: u64,
    /// max.
    pub open_max_ns: u64,
}

impl BreakerCost {
    /// What the breaker adds to a call, nanoseconds.
    pub fn overhead_ns(&self) -> f64 {
        self.with_ns - self.without_ns
    }

    /// Throughput with the breaker as a share of throughput without.
    pub fn throughput_ratio(&self) -> f64 {
        self.without_ns / self.with_ns
    }

    /// Allocations the breaker adds per call.
    pub fn added_allocs(&self) -> f64 {
        self.with_allocs - self.without_allocs
    }
}

const PATH: &str = "/baemin.payment.v1.PaymentService/RegisterFee";
const ROUNDS: usize = 5;

/// Runs the micro-benchmark on a thread of its own (a single-threaded runtime; allocations are counted
/// on that thread only). Awaited, not joined: the caller's runtime stays free, and a run interrupted
/// meanwhile ends without waiting for the thread (which ends with the process).
pub async fn measure(calls: u32) -> anyhow::Result<BreakerCost> {
    let (result, measured) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let outcome = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(run(calls)));
        let _ = result.send(outcome);
    });
    measured
        .await
        .map_err(|_| anyhow::anyhow!("the breaker micro-benchmark panicked"))?
}

async fn run(calls: u32) -> anyhow::Result<BreakerCost> {
    let metrics = Metrics::new();
    let settings = ClientSettings::breaker_defaults(Duration::from_secs(2));
    let breaker =
        || CircuitBreakerLayer::new("payment", settings.clone(), GrpcClassifier).map(|l| l.observed(&metrics));

    let mut without = stack(&metrics, Identity::new(), answering(0));
    let mut with = stack(&metrics, breaker()?, answering(0));
    // Warm up both: the window fills, lazily built state (metric series, spans) settles.
    for _ in 0..1_000 {
        call(&mut without).await.map_err(anyhow::Error::from_boxed)?;
        call(&mut with).await.map_err(anyhow::Error::from_boxed)?;
    }
    let (mut without_ns, mut with_ns) = (f64::MAX, f64::MAX);
    let (mut without_allocs, mut with_allocs) = (0.0, 0.0);
    for _ in 0..ROUNDS {
        let (ns, allocs) = round(&mut without, calls).await?;
        if ns < without_ns {
            (without_ns, without_allocs) = (ns, allocs);
        }
        let (ns, allocs) = round(&mut with, calls).await?;
        if ns < with_ns {
            (with_ns, with_allocs) = (ns, allocs);
        }
    }

    // Open it: every call fails UNAVAILABLE until the window judges the dependency down.
    let layer = breaker()?;
    let handle = layer.handle();
    let mut failing = stack(&metrics, layer, answering(14));
    while handle.state() != baemin_mesh_client::breaker::State::Open {
        let _ = call(&mut failing).await;
    }
    let mut refused = Histogram::<u64>::new_with_bounds(1, 1_000_000_000, 3)?;
    for _ in 0..calls {
        let started = std::time::Instant::now();
        let outcome = call(&mut failing).await;
        let took = started.elapsed();
        anyhow::ensure!(outcome.is_err(), "a call went through the open breaker");
        refused.saturating_record(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX).max(1));
    }
    Ok(BreakerCost {
        calls,
        without_ns,
        with_ns,
        without_allocs,
        with_allocs,
        open_p50_ns: refused.value_at_quantile(0.50),
        open_p99_ns: refused.value_at_quantile(0.99),
        open_max_ns: refused.max(),
    })
}

/// The mesh's client stack (as `baemin_mesh_client::connect_lazy` builds it) around `inner`, with
/// `middle` where the breaker goes.
fn stack<L, S, B>(metrics: &Metrics, middle: L, inner: S) -> impl MeshService
where
    L: Layer<baemin_mesh_client::deadline::Deadline<S>>,
    L::Service: Service<Request<()>, Response = Response<B>> + Send + 'static,
    B: http_body::Body<Data = Bytes> + Unpin,
    <L::Service as Service<Request<()>>>::Error: Into<tower::BoxError>,
    <L::Service as Service<Request<()>>>::Future: Send,
{
    ServiceBuilder::new()
        .layer(GrpcClientLayer::new(metrics))
        .layer(InFlightLimitLayer::new("payment", 256))
        .layer(middle)
        .layer(DeadlineLayer::new("payment", Duration::from_secs(2)))
        .service(inner)
}

/// What [`stack`] returns: a client stack taking a request and answering a response whose body is read
/// to the end.
trait MeshService: Service<Request<()>, Response = Response<Self::Body>, Error = tower::BoxError> {
    type Body: http_body::Body<Data = Bytes> + Unpin;
}

impl<T, B> MeshService for T
where
    T: Service<Request<()>, Response = Response<B>, Error = tower::BoxError>,
    B: http_body::Body<Data = Bytes> + Unpin,
{
    type Body = B;
}

/// An in-memory dependency answering every call at once with `grpc-status: code` in the response head.
fn answering(
    code: i32,
) -> impl Service<Request<()>, Response = Response<http_body_util::Empty<Bytes>>, Error = Infallible, Future: Send>
+ Clone
+ Send
+ 'static {
    let status = HeaderValue::from(code);
    tower::service_fn(move |_: Request<()>| {
        let mut response = Response::new(http_body_util::Empty::new());
        response.headers_mut().insert("grpc-status", status.clone());
        std::future::ready(Ok::<_, Infallible>(response))
    })
}

async fn round<S: MeshService>(service: &mut S, calls: u32) -> anyhow::Result<(f64, f64)> {
    let started = std::time::Instant::now();
    let counter = Counter::start();
    for _ in 0..calls {
        call(service).await.map_err(anyhow::Error::from_boxed)?;
    }
    let allocs = counter.stop();
    let ns = started.elapsed().as_nanos() as f64 / f64::from(calls);
    Ok((ns, allocs as f64 / f64::from(calls)))
}

/// One call: ready, call, read the body to its end (the breaker judges statuses there too). The error
/// is the stack's own (an `anyhow` error would capture a backtrace under RUST_BACKTRACE=1 and be
/// measured with the refusal).
async fn call<S: MeshService>(service: &mut S) -> Result<(), tower::BoxError> {
    let mut request = Request::new(());
    *request.uri_mut() = Uri::from_static(PATH);
    let response = service.ready().await?.call(request).await?;
    let mut body = response.into_body();
    while let Some(frame) = http_body_util::BodyExt::frame(&mut body).await {
        frame.map_err(|_| "the response body failed")?;
    }
    Ok(())
}
