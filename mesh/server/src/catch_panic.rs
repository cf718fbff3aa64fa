//! A panic in a handler still answers a status. Without this layer hyper drops the task and the client
//! sees its HTTP/2 stream reset (through the gateway: UNAVAILABLE, as if the service were down). The
//! panic is a bug, so the answer is INTERNAL with a generic message; the panic itself is logged once,
//! with its location, by the panic hook `mesh/telemetry` installs — not again here. A panic while a
//! response stream (a watch) is being produced ends that stream with INTERNAL trailers the same way.

use std::{
    future::Future,
    panic::AssertUnwindSafe,
    pin::Pin,
    task::{Context, Poll},
};

use futures::FutureExt;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::Frame;
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
            Err(_panic) => return Box::pin(std::future::ready(Ok(answer()))),
        };
        Box::pin(AssertUnwindSafe(future).catch_unwind().map(|outcome| match outcome {
            Ok(answer) => answer.map(|response| {
                response.map(|body| {
                    Body::new(PanicSafeBody {
                        inner: body,
                        done: false,
                    })
                })
            }),
            Err(_panic) => Ok(answer()),
        }))
    }
}

const MESSAGE: &str = "the service failed unexpectedly";
/// [`MESSAGE`] as `grpc-message` carries it (percent-encoded).
const ENCODED_MESSAGE: &str = "the%20service%20failed%20unexpectedly";

/// The panic was logged by the hook where it happened; the caller learns only that the service failed.
fn answer() -> Response<Body> {
    Status::internal(MESSAGE).into_http()
}

/// A response body that ends with INTERNAL trailers, instead of unwinding into hyper, when producing its
/// next frame panics.
struct PanicSafeBody {
    inner: Body,
    done: bool,
}

impl http_body::Body for PanicSafeBody {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let inner = &mut self.inner;
        match std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll_frame(cx))) {
            Ok(frame) => frame,
            Err(_panic) => {
                self.done = true;
                let mut trailers = HeaderMap::new();
                trailers.insert("grpc-status", HeaderValue::from_static("13"));
                trailers.insert("grpc-message", HeaderValue::from_static(ENCODED_MESSAGE));
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
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

    /// A body that yields one frame, then panics.
    struct PanicsAfterOne(bool);

    impl http_body::Body for PanicsAfterOne {
        type Data = bytes::Bytes;
        type Error = Status;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<bytes::Bytes>, Status>>> {
            if std::mem::replace(&mut self.0, true) {
                panic!("a bug in a stream");
            }
            Poll::Ready(Some(Ok(Frame::data(bytes::Bytes::from_static(b"first")))))
        }
    }

    #[tokio::test]
    async fn a_stream_that_panics_ends_with_internal_trailers_instead_of_a_reset() {
        use http_body_util::BodyExt;
        let streaming = tower::service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Body::new(PanicsAfterOne(false))))
        });
        let response = CatchPanicLayer
            .layer(streaming)
            .oneshot(Request::new(()))
            .await
            .unwrap();
        let mut body = response.into_body();
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "first");
        let last = body.frame().await.unwrap().unwrap();
        assert_eq!(last.trailers_ref().unwrap()["grpc-status"], "13");
        assert!(body.frame().await.is_none(), "the stream ends");
    }
}
