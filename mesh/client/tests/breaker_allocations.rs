//! The breaker allocates nothing per call while closed: the same calls are made through a bare service
//! and through the breaker around it, counting heap allocations on this thread, and the counts must be
//! equal — whether the status comes in the response head (trailers-only) or in the trailers, with a
//! count-based or a time-based window.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::{
    convert::Infallible,
    future::Future,
    pin::{Pin, pin},
    task::{Context, Poll, Waker},
    time::Duration,
};

use baemin_mesh_client::{
    BreakerConfig, CircuitBreakerLayer, GrpcClassifier,
    breaker::{State, WindowType},
};
use baemin_mesh_testkit::alloc::{Counter, Counting};
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::{Body, Frame};
use tower::{Layer, Service};

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    let counter = Counter::start();
    f();
    counter.stop()
}

/// A response body with no data and, optionally, a trailers frame.
struct TrailersBody(Option<HeaderMap>);

impl Body for TrailersBody {
    type Data = bytes::Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Infallible>>> {
        Poll::Ready(self.0.take().map(|t| Ok(Frame::trailers(t))))
    }
}

/// An OK answer, its grpc-status in the head or in the trailers.
fn answer(in_trailers: bool) -> Response<TrailersBody> {
    let ok = HeaderValue::from_static("0");
    if in_trailers {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", ok);
        Response::new(TrailersBody(Some(trailers)))
    } else {
        let mut response = Response::new(TrailersBody(None));
        response.headers_mut().insert("grpc-status", ok);
        response
    }
}

fn now<F: Future>(future: F) -> F::Output {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut cx) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the test service answers at once"),
    }
}

/// Makes one call through `service` and reads its body to the end.
fn call<S, B>(service: &mut S)
where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body + Unpin,
    B::Error: std::fmt::Debug,
{
    now(std::future::poll_fn(|cx| service.poll_ready(cx))).unwrap();
    let mut body = now(service.call(Request::new(()))).unwrap().into_body();
    let mut cx = Context::from_waker(Waker::noop());
    while let Poll::Ready(Some(frame)) = Pin::new(&mut body).poll_frame(&mut cx) {
        frame.unwrap();
    }
}

fn config(window_type: WindowType) -> BreakerConfig {
    BreakerConfig {
        window_type,
        window_size: 20,
        minimum_calls: 10,
        failure_rate_threshold: 50.0,
        slow_call_duration: Duration::from_secs(1),
        slow_call_rate_threshold: 80.0,
        open_wait: Duration::from_secs(10),
        half_open_calls: 3,
        half_open_max_wait: None,
    }
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_closed_breaker_allocates_nothing_per_call() {
    const CALLS: u64 = 1_000;
    for window_type in [WindowType::Count, WindowType::Time] {
        for in_trailers in [false, true] {
            let mut bare =
                tower::service_fn(move |_: Request<()>| std::future::ready(Ok::<_, Infallible>(answer(in_trailers))));
            let layer = CircuitBreakerLayer::new("payment", config(window_type), GrpcClassifier).unwrap();
            let handle = layer.handle();
            let mut guarded = layer.layer(bare);
            // Warm up: the window fills, lazily built state settles.
            for _ in 0..100 {
                call(&mut guarded);
                call(&mut bare);
            }
            let without = allocations(|| (0..CALLS).for_each(|_| call(&mut bare)));
            let with = allocations(|| (0..CALLS).for_each(|_| call(&mut guarded)));
            assert_eq!(handle.state(), State::Closed);
            // The bare answers allocate (their header maps): the counter is on, so equal counts mean something.
            assert!(without > 0, "no allocation counted at all");
            println!(
                "{window_type:?} window, status in {}: {without} allocations bare, {with} through the breaker, for {CALLS} calls",
                if in_trailers { "trailers" } else { "head" }
            );
            assert_eq!(
                with,
                without,
                "{window_type:?} window, status in trailers: {in_trailers}: the breaker added {} allocations over {CALLS} calls",
                with.saturating_sub(without)
            );
        }
    }
}
