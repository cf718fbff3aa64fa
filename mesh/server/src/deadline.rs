//! The caller's deadline (`grpc-timeout`) enforced as DEADLINE_EXCEEDED.
//!
//! tonic enforces `grpc-timeout` itself but answers CANCELLED when it passes; gRPC's contract (and
//! DESIGN.md's error table) says DEADLINE_EXCEEDED. This layer sits inside tonic's own timer and fires a
//! little earlier (5 % of the budget, at most 20 ms), so the caller gets the right code. Dropping the
//! handler's future rolls back any open transaction.

use std::{
    task::{Context, Poll},
    time::Duration,
};

use futures::future::{BoxFuture, FutureExt};
use http::{Request, Response};
use tonic::{Status, body::Body};
use tower::{Layer, Service};

/// Enforces each request's `grpc-timeout` with DEADLINE_EXCEEDED.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallerDeadlineLayer;

impl<S> Layer<S> for CallerDeadlineLayer {
    type Service = CallerDeadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallerDeadline { inner }
    }
}

/// The service of [`CallerDeadlineLayer`].
#[derive(Debug, Clone)]
pub struct CallerDeadline<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for CallerDeadline<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let budget = request
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        let response = self.inner.call(request);
        match budget {
            None => response.boxed(),
            Some(budget) => {
                let ours = budget.saturating_sub((budget / 20).min(Duration::from_millis(20)));
                async move {
                    match tokio::time::timeout(ours, response).await {
                        Ok(result) => result,
                        Err(_) => Ok(
                            Status::deadline_exceeded(format!("the caller's deadline of {budget:?} passed"))
                                .into_http(),
                        ),
                    }
                }
                .boxed()
            }
        }
    }
}

/// Parses a `grpc-timeout` value: 1 to 8 digits and a unit (H, M, S, m, u, n).
pub fn parse_grpc_timeout(text: &str) -> Option<Duration> {
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::ServiceExt;

    use super::*;

    fn slow(delay: Duration) -> impl Service<Request<()>, Response = Response<Body>, Error = Infallible> {
        CallerDeadlineLayer.layer(tower::service_fn(move |_: Request<()>| async move {
            tokio::time::sleep(delay).await;
            Ok::<_, Infallible>(Response::new(Body::empty()))
        }))
    }

    fn with_timeout(value: &str) -> Request<()> {
        Request::builder().header("grpc-timeout", value).body(()).unwrap()
    }

    fn grpc_status(response: &Response<Body>) -> Option<&str> {
        response.headers().get("grpc-status").and_then(|v| v.to_str().ok())
    }

    #[tokio::test(start_paused = true)]
    async fn a_handler_slower_than_the_callers_deadline_answers_deadline_exceeded() {
        let response = slow(Duration::from_secs(1))
            .oneshot(with_timeout("300m"))
            .await
            .unwrap();
        assert_eq!(grpc_status(&response), Some("4"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_handler_within_the_deadline_or_without_one_answers_normally() {
        let response = slow(Duration::from_millis(100))
            .oneshot(with_timeout("300m"))
            .await
            .unwrap();
        assert_eq!(grpc_status(&response), None);
        let request = Request::builder().body(()).unwrap();
        let response = slow(Duration::from_secs(3600)).oneshot(request).await.unwrap();
        assert_eq!(grpc_status(&response), None);
    }

    #[test]
    fn grpc_timeouts_parse_per_the_spec_and_garbage_is_ignored() {
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1500m"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        for bad in ["", "m", "123456789m", "12x", "-1S", "1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }
}
