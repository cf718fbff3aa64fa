//! A request whose bytes cannot be decoded is the client's mistake: INVALID_ARGUMENT (DESIGN.md,
//! "Errors"), never INTERNAL. tonic's protobuf codec answers every decode failure — a truncated field,
//! a wrong wire type, invalid UTF-8 in a string field — with INTERNAL, for our services and for the
//! health and reflection services alike; this layer, around every server, re-labels exactly those
//! answers. They are recognised by the codec's message, which a test against a real server pins, so a
//! change in tonic shows up as a failing test rather than as INTERNAL again.
//!
//! A request is decoded before its handler runs, so the failure always comes back as a trailers-only
//! answer: the status is in the response head, which is where this layer looks.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use http::{HeaderValue, Request, Response};
use tower::{Layer, Service};

/// What tonic says when a request message cannot be decoded (prost's `DecodeError`), when the frames
/// around it are broken (a cut frame, a compression flag without or with an unknown encoding), and when
/// a unary request carries no message at all. None of these comes from a handler.
const DECODE_FAILURES: [&str; 4] = [
    "failed to decode Protobuf message",
    "Unexpected EOF decoding stream",
    "protocol error: received message with",
    "Missing request message",
];

/// Answers requests tonic could not decode with INVALID_ARGUMENT.
#[derive(Debug, Clone, Copy, Default)]
pub struct DecodeErrorLayer;

impl<S> Layer<S> for DecodeErrorLayer {
    type Service = DecodeError<S>;

    fn layer(&self, inner: S) -> DecodeError<S> {
        DecodeError { inner }
    }
}

/// The service of [`DecodeErrorLayer`].
#[derive(Debug, Clone)]
pub struct DecodeError<S> {
    inner: S,
}

impl<S, ReqB, ResB> Service<Request<ReqB>> for DecodeError<S>
where
    S: Service<Request<ReqB>, Response = Response<ResB>>,
{
    type Response = Response<ResB>;
    type Error = S::Error;
    type Future = Relabel<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        Relabel {
            inner: self.inner.call(request),
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner answer, re-labelled if it reports a decode failure.
    pub struct Relabel<F> {
        #[pin]
        inner: F,
    }
}

impl<F, B, E> std::future::Future for Relabel<F>
where
    F: std::future::Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut response = std::task::ready!(self.project().inner.poll(cx))?;
        relabel(response.headers_mut());
        Poll::Ready(Ok(response))
    }
}

fn relabel(headers: &mut http::HeaderMap) {
    let internal = headers.get("grpc-status").is_some_and(|s| s == "13");
    // `grpc-message` is percent-encoded (tonic encodes spaces too).
    let decode_failure = || {
        headers
            .get("grpc-message")
            .and_then(|m| m.to_str().ok())
            .is_some_and(|m| DECODE_FAILURES.iter().any(|f| m.replace("%20", " ").starts_with(f)))
    };
    if internal && decode_failure() {
        headers.insert("grpc-status", HeaderValue::from_static("3"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(status: &'static str, message: &'static str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-status", HeaderValue::from_static(status));
        headers.insert("grpc-message", HeaderValue::from_static(message));
        headers
    }

    #[test]
    fn a_decode_failure_becomes_invalid_argument_and_other_internal_errors_stay_internal() {
        let mut decode = head(
            "13",
            "failed%20to%20decode%20Protobuf%20message:%20invalid%20wire%20type",
        );
        relabel(&mut decode);
        assert_eq!(decode["grpc-status"], "3");
        let mut bug = head("13", "the service failed unexpectedly");
        relabel(&mut bug);
        assert_eq!(bug["grpc-status"], "13");
        let mut unavailable = head("14", "failed to decode Protobuf message");
        relabel(&mut unavailable);
        assert_eq!(unavailable["grpc-status"], "14");
    }
}
