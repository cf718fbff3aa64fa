//! Tests of the circuit breaker in the style of resilience4j and linkerd: tower-test mocks, a
//! paused clock, and the exact state after each outcome.

mod classification;
mod concurrency;
mod config;
mod machine;
mod tonic_client;

use std::{
    collections::VecDeque,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use http::HeaderMap;
use http_body::{Body, Frame};
use tonic::Code;
use tower::{Layer, Service, ServiceExt};

use super::{BreakerConfig, BreakerHandle, CircuitBreaker, CircuitBreakerLayer, GrpcClassifier, State};

/// A response body made of prepared frames.
pub(super) struct Frames(VecDeque<Result<Frame<&'static [u8]>, tonic::Status>>);

impl Body for Frames {
    type Data = &'static [u8];
    type Error = tonic::Status;

    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Poll::Ready(self.get_mut().0.pop_front())
    }
}

fn grpc_status(code: Code) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("grpc-status", http::HeaderValue::from(code as i32));
    headers
}

/// An error the usual way: status in the headers, no body.
pub(super) fn trailers_only(code: Code) -> http::Response<Frames> {
    let mut response = http::Response::new(Frames(VecDeque::new()));
    *response.headers_mut() = grpc_status(code);
    response
}

/// A message, then the status in the trailers (every success, and errors sent after the head).
pub(super) fn with_trailers(code: Code) -> http::Response<Frames> {
    http::Response::new(Frames(VecDeque::from([
        Ok(Frame::data(&b"\0\0\0\0\0"[..])),
        Ok(Frame::trailers(grpc_status(code))),
    ])))
}

/// A 200 whose body ends without trailers.
pub(super) fn truncated() -> http::Response<Frames> {
    http::Response::new(Frames(VecDeque::from([Ok(Frame::data(&b"\0\0"[..]))])))
}

/// A body that breaks after the head (a reset stream).
pub(super) fn broken_body() -> http::Response<Frames> {
    http::Response::new(Frames(VecDeque::from([Err(tonic::Status::unavailable(
        "stream reset",
    ))])))
}

/// Reads a body to its end, as tonic does for a unary call.
pub(super) async fn drain<B: Body + Unpin>(mut body: B) -> Result<(), B::Error> {
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        frame?;
    }
    Ok(())
}

pub(super) type Mock = tower_test::mock::Mock<http::Request<()>, http::Response<Frames>>;
pub(super) type MockHandle = tower_test::mock::Handle<http::Request<()>, http::Response<Frames>>;
pub(super) type Pending = <CircuitBreaker<Mock> as Service<http::Request<()>>>::Future;

/// Small figures so every test reads in a few lines: window 10, judged from 4 calls, 50 %
/// failures, slow above 1 s at 100 %, 10 s open, 3 trials.
pub(super) fn config() -> BreakerConfig {
    BreakerConfig {
        window_size: 10,
        minimum_calls: 4,
        failure_rate_threshold: 50.0,
        slow_call_duration: Duration::from_secs(1),
        slow_call_rate_threshold: 100.0,
        open_wait: Duration::from_secs(10),
        half_open_calls: 3,
        ..BreakerConfig::default()
    }
}

/// A breaker for "payment" around a mock, with a handle on both.
pub(super) struct Harness {
    pub svc: CircuitBreaker<Mock>,
    pub mock: MockHandle,
    pub breaker: BreakerHandle,
}

impl Harness {
    pub(super) fn new(config: BreakerConfig) -> Self {
        let layer = CircuitBreakerLayer::new("payment", config, GrpcClassifier).unwrap();
        let (mock, handle) = tower_test::mock::pair();
        let svc = layer.layer(mock);
        Self {
            breaker: svc.handle(),
            svc,
            mock: handle,
        }
    }

    pub(super) fn state(&self) -> State {
        self.breaker.state()
    }

    /// Starts a call and checks it reached the dependency; the caller answers it.
    pub(super) async fn start(&mut self) -> (Pending, tower_test::mock::SendResponse<http::Response<Frames>>) {
        let pending = self.svc.ready().await.unwrap().call(http::Request::new(()));
        let (_request, respond) = self.mock.next_request().await.expect("the call reached the dependency");
        (pending, respond)
    }

    /// One call the dependency answers with `response` after `after`, read to its end.
    pub(super) async fn answer(&mut self, response: http::Response<Frames>, after: Duration) {
        let (pending, respond) = self.start().await;
        tokio::time::advance(after).await;
        respond.send_response(response);
        if let Ok(response) = pending.await {
            let _ = drain(response.into_body()).await;
        }
    }

    /// One call that ends with `error` from the inner service (a transport error, or a status
    /// from an inner layer such as the deadline).
    pub(super) async fn error(&mut self, error: impl Into<tower::BoxError>) {
        let (pending, respond) = self.start().await;
        respond.send_error(error);
        assert!(pending.await.is_err());
    }

    pub(super) async fn succeed(&mut self) {
        self.answer(with_trailers(Code::Ok), Duration::ZERO).await;
    }

    pub(super) async fn fail(&mut self) {
        self.answer(trailers_only(Code::Unavailable), Duration::ZERO).await;
    }

    /// A call the circuit refuses: it fails at once with UNAVAILABLE and the dependency sees nothing.
    pub(super) async fn refused(&mut self) -> tonic::Status {
        let before = tokio::time::Instant::now();
        let pending = self.svc.ready().await.unwrap().call(http::Request::new(()));
        let Err(error) = pending.await else {
            panic!("the circuit let the call through");
        };
        assert_eq!(tokio::time::Instant::now(), before, "refused without waiting");
        assert!(self.mock.poll_request().is_pending(), "the dependency saw nothing");
        let status = *error.downcast::<tonic::Status>().expect("a tonic::Status");
        assert_eq!(status.code(), Code::Unavailable);
        assert!(status.message().contains("payment"), "{status:?}");
        status
    }

    /// Opens a closed circuit with failures.
    pub(super) async fn open(&mut self) {
        while self.state() == State::Closed {
            self.fail().await;
        }
        assert_eq!(self.state(), State::Open);
    }
}
