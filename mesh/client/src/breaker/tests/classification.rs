//! Which outcomes count, read from the response head, the trailers, or the error.

use std::time::Duration;

use tonic::Code;

use super::{Harness, broken_body, config, trailers_only, truncated, with_trailers};
use crate::breaker::{BreakerConfig, State};

fn roomy() -> BreakerConfig {
    BreakerConfig {
        window_size: 100,
        minimum_calls: 100,
        ..config()
    }
}

#[tokio::test(start_paused = true)]
async fn codes_that_are_not_failures_never_open_it() {
    let mut h = Harness::new(config());
    let codes = [
        Code::NotFound,
        Code::InvalidArgument,
        Code::AlreadyExists,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::PermissionDenied,
        Code::Ok,
    ];
    for code in codes {
        h.answer(trailers_only(code), Duration::ZERO).await;
        h.answer(with_trailers(code), Duration::ZERO).await;
        h.error(tonic::Status::new(code, "from an inner layer")).await;
        assert_eq!(h.state(), State::Closed, "{code:?}");
    }
    let metrics = h.breaker.metrics();
    assert_eq!((metrics.buffered_calls, metrics.failed_calls), (10, 0));
}

#[tokio::test(start_paused = true)]
async fn every_kind_of_failure_counts() {
    let mut h = Harness::new(roomy());
    h.answer(trailers_only(Code::Unavailable), Duration::ZERO).await;
    h.answer(with_trailers(Code::Internal), Duration::ZERO).await;
    h.answer(trailers_only(Code::ResourceExhausted), Duration::ZERO).await;
    h.answer(with_trailers(Code::Unknown), Duration::ZERO).await;
    h.error(tonic::Status::deadline_exceeded("payment did not answer within 2s"))
        .await;
    h.error(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
        .await;
    h.answer(truncated(), Duration::ZERO).await;
    h.answer(broken_body(), Duration::ZERO).await;
    h.answer(
        http::Response::builder()
            .status(503)
            .body(super::Frames(Default::default()))
            .unwrap(),
        Duration::ZERO,
    )
    .await;
    let metrics = h.breaker.metrics();
    assert_eq!((metrics.buffered_calls, metrics.failed_calls), (9, 9));
}

#[tokio::test(start_paused = true)]
async fn a_status_in_the_trailers_is_recorded_when_the_body_reaches_them() {
    let mut h = Harness::new(roomy());
    let (pending, respond) = h.start().await;
    respond.send_response(with_trailers(Code::Unavailable));
    let response = pending.await.unwrap();
    assert_eq!(h.breaker.metrics().buffered_calls, 0, "the head says nothing yet");
    super::drain(response.into_body()).await.unwrap();
    let metrics = h.breaker.metrics();
    assert_eq!((metrics.buffered_calls, metrics.failed_calls), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_long_stream_is_timed_to_its_head_not_its_end() {
    let mut h = Harness::new(BreakerConfig {
        slow_call_rate_threshold: 1.0,
        ..roomy()
    });
    let (pending, respond) = h.start().await;
    respond.send_response(with_trailers(Code::Ok));
    let response = pending.await.unwrap();
    tokio::time::advance(Duration::from_secs(30)).await;
    super::drain(response.into_body()).await.unwrap();
    assert_eq!(h.breaker.metrics().slow_calls, 0);
}

#[tokio::test(start_paused = true)]
async fn a_replaced_classifier_decides_what_fails() {
    use crate::breaker::{CircuitBreakerLayer, Outcome};
    use tower::{Layer, Service, ServiceExt};

    let strict = |code: Code| match code {
        Code::Ok => Outcome::Success,
        Code::Cancelled => Outcome::Ignored,
        _ => Outcome::Failure,
    };
    let layer = CircuitBreakerLayer::new(
        "payment",
        BreakerConfig {
            minimum_calls: 2,
            ..config()
        },
        strict,
    )
    .unwrap();
    let (mock, mut handle) = tower_test::mock::pair::<http::Request<()>, http::Response<super::Frames>>();
    let mut svc = layer.layer(mock);
    for code in [Code::Cancelled, Code::NotFound, Code::NotFound] {
        let pending = svc.ready().await.unwrap().call(http::Request::new(()));
        let (_, respond) = handle.next_request().await.unwrap();
        respond.send_response(trailers_only(code));
        pending.await.unwrap();
    }
    let metrics = layer.handle().metrics();
    assert_eq!(metrics.state, State::Open, "NOT_FOUND fails here; CANCELLED is ignored");
    assert_eq!(metrics.buffered_calls, 2);
}
