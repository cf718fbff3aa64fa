//! A panic in a handler still answers a status. Without this layer hyper drops the task and the client
//! sees its HTTP/2 stream reset (through the gateway: UNAVAILABLE, as if the service were down). The
//! panic is a bug, so the answer is INTERNAL with a generic message; the panic itself is logged once,
//! with its location, by the panic hook `mesh/telemetry` installs — not again here.

use std::{
    any::Any,
    future::Future,
    panic::AssertUnwindSafe,
    pin::Pin,
    task::{Context, Poll},
};

use futures::FutureExt;
use http::{Request, Response};
use tonic::{Status, body::Body};
use tower::{Layer, Service};

/// Turns a panicking call into an INTERNAL answer.
#[derive(Debug, Clone, Copy, Default)]
pub struct CatchPanicLayer;

impl<S> Layer<S> for CatchPanicLayer {
    type Service = CatchPanic<S>;

    fn layer(&self, inner: S) -> CatchPanic<S> {
        CatchPanic { inner }
    }
}

/// The service of [`CatchPanicLayer`].
#[derive(Debug, Clone)]
pub struct CatchPanic<S> {
    inner: S,
}

type Answer<E> = Result<Response<Body>, E>;

impl<S, B> Service<Request<B>> for CatchPanic<S>
where
    S: Service<Request<B>, Response = Response<Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Answer<S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // A panic while the inner service merely creates its future counts too.
        let future = match std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.call(request))) {
            Ok(future) => future,
            Err(panic) => return Box::pin(std::future::ready(Ok(answer(&*panic)))),
        };
        Box::pin(
            AssertUnwindSafe(future)
                .catch_unwind()
                .map(|outcome| outcome.unwrap_or_else(|panic| Ok(answer(&*panic)))),
        )
    }
}

fn answer(_panic: &(dyn Any + Send)) -> Response<Body> {
    Status::internal("the service failed unexpectedly").into_http()
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_answers_internal_instead_of_resetting_the_stream() {
        let panicking = tower::service_fn(|_: Request<()>| async {
            if true {
                panic!("a bug");
            }
            Ok::<_, Infallible>(Response::new(Body::empty()))
        });
        let response = CatchPanicLayer
            .layer(panicking)
            .oneshot(Request::new(()))
            .await
            .unwrap();
        assert_eq!(response.headers()["grpc-status"], "13");
        assert_eq!(
            response.headers()["grpc-message"],
            "the%20service%20failed%20unexpectedly"
        );
    }
}
