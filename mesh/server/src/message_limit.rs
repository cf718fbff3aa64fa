//! Message size limit: a gRPC request whose first message declares more than the limit is answered
//! RESOURCE_EXHAUSTED (the design's code for "message too large") before any handler runs. tonic's own
//! decoding limit answers OUT_OF_RANGE, so the check happens here, on the length prefix.
//!
//! Only the 5-byte frame header of the first message is read ahead (at most that is held back); the
//! body then streams on unchanged, so client streams and bidirectional streams (reflection) keep
//! working. A later message of a stream that exceeds the limit ends the request body with an error.

use std::{
    collections::VecDeque,
    pin::Pin,
    task::{Context, Poll},
};

use bytes::{Buf, Bytes, BytesMut};
use futures::future::BoxFuture;
use http::{Request, Response};
use http_body::{Body as _, Frame};
use tonic::body::Body;
use tower::{Layer, Service};

/// The default limit: 64 KiB per message.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// The most of a refused request's body read before answering.
const DRAIN_LIMIT: usize = 4 * 1024 * 1024;

/// Wraps a service in a [`MessageLimit`].
#[derive(Debug, Clone, Copy)]
pub struct MessageLimitLayer {
    max: usize,
}

impl MessageLimitLayer {
    /// Requests with a message over `max` bytes are RESOURCE_EXHAUSTED.
    pub fn new(max: usize) -> Self {
        Self { max }
    }
}

impl<S> Layer<S> for MessageLimitLayer {
    type Service = MessageLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MessageLimit { inner, max: self.max }
    }
}

/// Refuses gRPC requests carrying a message larger than the limit.
#[derive(Debug, Clone)]
pub struct MessageLimit<S> {
    inner: S,
    max: usize,
}

impl<S, B> Service<Request<Body>> for MessageLimit<S>
where
    S: Service<Request<Body>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send,
    B: Default + Send + 'static,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<B>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The clone that was not polled ready stays here; the ready one serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let max = self.max;
        if !is_grpc(&request) {
            return Box::pin(inner.call(request));
        }
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let mut body = LimitedBody::new(body, max);
            match body.read_first_header().await {
                Some(declared) if declared > max => {
                    // Read (a bounded amount of) what the client is still sending before answering: an
                    // HTTP/1.1 client (grpc-web) cut off mid-request sees a broken pipe, not our status.
                    let _ =
                        http_body_util::BodyExt::collect(http_body_util::Limited::new(body.inner, DRAIN_LIMIT)).await;
                    Ok(too_large(declared, max).into_http())
                }
                _ => inner.call(Request::from_parts(parts, Body::new(body))).await,
            }
        })
    }
}

fn is_grpc<T>(request: &Request<T>) -> bool {
    request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

fn too_large(declared: usize, max: usize) -> tonic::Status {
    tonic::Status::resource_exhausted(format!(
        "message of {declared} bytes is larger than the limit of {max} bytes"
    ))
}

/// The request body, with what was read ahead put back in front, checking every message's length prefix.
struct LimitedBody {
    inner: Body,
    max: usize,
    /// Frames read ahead, handed out first.
    ahead: VecDeque<Frame<Bytes>>,
    /// Bytes of the current frame header seen so far (up to 5).
    header: BytesMut,
    /// Payload bytes of the current message still to come.
    remaining: usize,
}

impl LimitedBody {
    fn new(inner: Body, max: usize) -> Self {
        Self {
            inner,
            max,
            ahead: VecDeque::new(),
            header: BytesMut::with_capacity(5),
            remaining: 0,
        }
    }

    /// Reads until the first message's 5-byte header is known; returns its declared length (None if
    /// the body ended first or failed — the handler will see that for itself).
    async fn read_first_header(&mut self) -> Option<usize> {
        let mut seen = BytesMut::new();
        while seen.len() < 5 {
            let frame = std::future::poll_fn(|cx| Pin::new(&mut self.inner).poll_frame(cx)).await;
            match frame {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        seen.extend_from_slice(&data[..data.len().min(5 - seen.len())]);
                    }
                    self.ahead.push_back(frame);
                }
                // Put the error back by ending here: the inner body is polled again by the handler.
                Some(Err(_)) | None => return None,
            }
        }
        Some(u32::from_be_bytes([seen[1], seen[2], seen[3], seen[4]]) as usize)
    }

    /// Follows the framing through `data`; the length of a message over the limit, if one starts here.
    fn track(&mut self, mut data: &[u8]) -> Option<usize> {
        while !data.is_empty() {
            if self.remaining > 0 {
                let n = self.remaining.min(data.len());
                self.remaining -= n;
                data.advance(n);
                continue;
            }
            let n = (5 - self.header.len()).min(data.len());
            self.header.extend_from_slice(&data[..n]);
            data.advance(n);
            if self.header.len() == 5 {
                let length =
                    u32::from_be_bytes([self.header[1], self.header[2], self.header[3], self.header[4]]) as usize;
                self.header.clear();
                if length > self.max {
                    return Some(length);
                }
                self.remaining = length;
            }
        }
        None
    }
}

impl http_body::Body for LimitedBody {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let frame = match self.ahead.pop_front() {
            Some(frame) => frame,
            None => match std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx)) {
                Some(Ok(frame)) => frame,
                Some(Err(err)) => return Poll::Ready(Some(Err(err))),
                None => return Poll::Ready(None),
            },
        };
        if let Some(data) = frame.data_ref() {
            let data = data.clone();
            if let Some(length) = self.track(&data) {
                let max = self.max;
                return Poll::Ready(Some(Err(too_large(length, max))));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.ahead.is_empty() && self.inner.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    fn framed(len: usize) -> Bytes {
        let mut out = BytesMut::new();
        out.extend_from_slice(&[0]);
        out.extend_from_slice(&(len as u32).to_be_bytes());
        out.extend_from_slice(&vec![7u8; len]);
        out.freeze()
    }

    /// Echoes the request body it received, to show nothing was lost or changed.
    fn echo() -> impl Service<Request<Body>, Response = Response<Body>, Error = std::convert::Infallible, Future: Send>
    + Clone
    + Send
    + 'static {
        tower::service_fn(|request: Request<Body>| async move {
            let bytes = request
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            Ok(Response::new(Body::new(http_body_util::Full::new(bytes))))
        })
    }

    fn grpc(body: Body) -> Request<Body> {
        Request::builder()
            .header("content-type", "application/grpc")
            .body(body)
            .unwrap()
    }

    fn status_of(response: &Response<Body>) -> Option<tonic::Code> {
        response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i32>().ok())
            .map(tonic::Code::from)
    }

    #[tokio::test]
    async fn a_message_over_the_limit_is_resource_exhausted_before_the_handler_runs() {
        let called = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = called.clone();
        let handler = tower::service_fn(move |_: Request<Body>| {
            seen.store(true, std::sync::atomic::Ordering::SeqCst);
            async { Ok::<_, std::convert::Infallible>(Response::new(Body::empty())) }
        });
        let response = MessageLimitLayer::new(100)
            .layer(handler)
            .oneshot(grpc(Body::new(http_body_util::Full::new(framed(101)))))
            .await
            .unwrap();
        assert_eq!(status_of(&response), Some(tonic::Code::ResourceExhausted));
        assert!(!called.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_message_at_the_limit_passes_through_unchanged_even_split_across_frames() {
        let whole = framed(100);
        let (a, b) = (whole.slice(..3), whole.slice(3..));
        let chunks = futures::stream::iter([Ok::<_, std::convert::Infallible>(Frame::data(a)), Ok(Frame::data(b))]);
        let body = Body::new(http_body_util::StreamBody::new(chunks));
        let response = MessageLimitLayer::new(100)
            .layer(echo())
            .oneshot(grpc(body))
            .await
            .unwrap();
        assert_eq!(status_of(&response), None);
        let echoed = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(echoed, whole);
    }

    #[tokio::test]
    async fn a_later_message_over_the_limit_ends_the_stream_with_an_error() {
        let mut two = BytesMut::new();
        two.extend_from_slice(&framed(10));
        two.extend_from_slice(&framed(200));
        let mut body = LimitedBody::new(Body::new(http_body_util::Full::new(two.freeze())), 100);
        assert_eq!(body.read_first_header().await, Some(10));
        let err = body.collect().await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    }

    #[tokio::test]
    async fn other_requests_are_not_inspected() {
        let request = Request::builder()
            .header("content-type", "text/html")
            .body(Body::new(http_body_util::Full::new(Bytes::from(vec![1u8; 1000]))))
            .unwrap();
        let response = MessageLimitLayer::new(10).layer(echo()).oneshot(request).await.unwrap();
        assert_eq!(response.into_body().collect().await.unwrap().to_bytes().len(), 1000);
    }
}
