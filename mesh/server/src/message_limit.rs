//! Request message limits, size and time: a gRPC request whose first message declares more than the
//! size limit is answered RESOURCE_EXHAUSTED (the design's code for "message too large") before any
//! handler runs. tonic's own decoding limit answers OUT_OF_RANGE, so the check happens here, on the
//! length prefix. A request whose first message has not fully arrived within the read time limit is
//! answered DEADLINE_EXCEEDED: a client that sends headers and then nothing (or a trickle) would
//! otherwise hold its stream, and over HTTP/1.1 its connection, for as long as it likes.
//!
//! The first message is read ahead (at most the size limit is held back), then the body streams on
//! unchanged, so client streams and bidirectional streams (reflection) keep working. A later message
//! of a stream that exceeds the size limit ends the request body with an error. The time limit covers
//! the first message only: a server-streaming call (a watch) has a one-message request, and its
//! response stream is never timed here.

use std::{
    collections::VecDeque,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::{Buf, Bytes, BytesMut};
use futures::future::BoxFuture;
use http::{Request, Response};
use http_body::{Body as _, Frame};
use tonic::body::Body;
use tower::{Layer, Service};

/// The default limit: 64 KiB per message.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// The default time limit for a request's first message (`REQUEST_READ_TIMEOUT`): ample for 64 KiB on
/// a slow mobile link, short enough that stalled requests do not pile up.
pub const DEFAULT_REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The most of a refused request's body read before answering.
const DRAIN_LIMIT: usize = 4 * 1024 * 1024;

/// The longest a refused request's body is read before answering anyway.
const DRAIN_TIME: Duration = Duration::from_secs(1);

/// Reads and discards what a client is still sending of a refused request, at most `max_bytes` and
/// for at most a second, before the refusal is answered: an HTTP/1.1 client (grpc-web) cut off
/// mid-request sees a broken pipe, not the status. A client that sends more, or stalls, is answered
/// anyway; hyper then closes an HTTP/1.1 connection whose request was not read to its end.
pub async fn drain_refused<B: http_body::Body>(body: B, max_bytes: usize) {
    let discard = async {
        let mut body = std::pin::pin!(body);
        let mut read = 0;
        while read <= max_bytes {
            match http_body_util::BodyExt::frame(&mut body).await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, Buf::remaining),
                Some(Err(_)) | None => break,
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, discard).await;
}

/// Wraps a service in a [`MessageLimit`].
#[derive(Debug, Clone, Copy)]
pub struct MessageLimitLayer {
    max: usize,
    read_timeout: Duration,
}

impl MessageLimitLayer {
    /// Requests with a message over `max` bytes are RESOURCE_EXHAUSTED; requests whose first message
    /// takes longer than [`DEFAULT_REQUEST_READ_TIMEOUT`] to arrive are DEADLINE_EXCEEDED.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            read_timeout: DEFAULT_REQUEST_READ_TIMEOUT,
        }
    }

    /// Requests whose first message takes longer than `limit` to arrive are DEADLINE_EXCEEDED.
    pub fn read_timeout(mut self, limit: Duration) -> Self {
        self.read_timeout = limit;
        self
    }
}

impl<S> Layer<S> for MessageLimitLayer {
    type Service = MessageLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MessageLimit {
            inner,
            max: self.max,
            read_timeout: self.read_timeout,
        }
    }
}

/// Refuses gRPC requests carrying a message larger than the limit, or sending their first message too
/// slowly.
#[derive(Debug, Clone)]
pub struct MessageLimit<S> {
    inner: S,
    max: usize,
    read_timeout: Duration,
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
        let (max, read_timeout) = (self.max, self.read_timeout);
        if !is_grpc(&request) {
            return Box::pin(inner.call(request));
        }
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let mut body = LimitedBody::new(body, max);
            match tokio::time::timeout(read_timeout, body.read_first_message()).await {
                // Not drained: the client is the slow one. Over HTTP/1.1 hyper closes the connection,
                // as the rest of its request was never read.
                Err(_) => Ok(too_slow(read_timeout).into_http()),
                Ok(Some(declared)) if declared > max => {
                    drain_refused(body.inner, DRAIN_LIMIT).await;
                    Ok(too_large(declared, max).into_http())
                }
                Ok(_) => inner.call(Request::from_parts(parts, Body::new(body))).await,
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

/// DEADLINE_EXCEEDED rather than CANCELLED: a time limit ran out before the call could complete, which
/// is what DEADLINE_EXCEEDED means; CANCELLED says the caller gave up, and clients and dashboards read
/// it as their own doing, hiding a limit the server applied.
fn too_slow(limit: Duration) -> tonic::Status {
    tonic::Status::deadline_exceeded(format!(
        "the request message did not arrive within {limit:?} (REQUEST_READ_TIMEOUT)"
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

    /// Reads ahead until the first message has fully arrived (only its 5-byte header when it declares
    /// more than the limit: it will be refused), or the body ends or fails; returns the declared length
    /// (None if the body ended or failed before the header — the handler will see that for itself).
    async fn read_first_message(&mut self) -> Option<usize> {
        let mut header = BytesMut::with_capacity(5);
        let mut declared = None;
        let mut seen = 0;
        loop {
            if let Some(length) = declared
                && (length > self.max || seen >= 5 + length)
            {
                return declared;
            }
            let frame = std::future::poll_fn(|cx| Pin::new(&mut self.inner).poll_frame(cx)).await;
            match frame {
                // An empty DATA frame costs the client no flow-control window: holding it would let a
                // client fill this queue for the whole read time limit.
                Some(Ok(frame)) if frame.data_ref().is_some_and(|d| d.is_empty()) => {}
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        let n = data.len().min(5 - header.len());
                        header.extend_from_slice(&data[..n]);
                        seen += data.len();
                        if declared.is_none() && header.len() == 5 {
                            declared = Some(u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize);
                        }
                    }
                    let trailers = frame.is_trailers();
                    self.ahead.push_back(frame);
                    if trailers {
                        return declared;
                    }
                }
                // Put the error back by ending here: the inner body is polled again by the handler.
                Some(Err(_)) | None => return declared,
            }
        }
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
        assert_eq!(body.read_first_message().await, Some(10));
        let err = body.collect().await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    }

    /// A request body fed by the returned sender: it stays open (sending nothing more) while the sender lives.
    fn open_body(
        first: Option<Bytes>,
    ) -> (
        Body,
        tokio::sync::mpsc::Sender<Result<Frame<Bytes>, std::convert::Infallible>>,
    ) {
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        if let Some(first) = first {
            sender.try_send(Ok(Frame::data(first))).unwrap();
        }
        let body = Body::new(http_body_util::StreamBody::new(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        ));
        (body, sender)
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_whose_message_does_not_arrive_in_time_is_deadline_exceeded_before_the_handler_runs() {
        let called = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = called.clone();
        let handler = tower::service_fn(move |_: Request<Body>| {
            seen.store(true, std::sync::atomic::Ordering::SeqCst);
            async { Ok::<_, std::convert::Infallible>(Response::new(Body::empty())) }
        });
        let (body, _open) = open_body(None);
        let started = tokio::time::Instant::now();
        let response = MessageLimitLayer::new(100)
            .read_timeout(Duration::from_secs(3))
            .layer(handler)
            .oneshot(grpc(body))
            .await
            .unwrap();
        assert_eq!(status_of(&response), Some(tonic::Code::DeadlineExceeded));
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        assert!(!called.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_trickling_in_past_the_read_limit_is_deadline_exceeded() {
        // The header and part of a 10-byte message, then nothing: the header alone is not enough.
        let (body, open) = open_body(Some(framed(10).slice(..8)));
        let response = MessageLimitLayer::new(100)
            .read_timeout(Duration::from_secs(3))
            .layer(echo())
            .oneshot(grpc(body))
            .await
            .unwrap();
        assert_eq!(status_of(&response), Some(tonic::Code::DeadlineExceeded));
        drop(open);
    }

    #[tokio::test(start_paused = true)]
    async fn the_read_limit_covers_the_request_only_never_a_long_response_stream() {
        // A watch: its one-message request arrives at once (the request stream stays open), then it
        // answers for much longer than the read limit.
        let watch = tower::service_fn(|_: Request<Body>| async {
            let frames = futures::stream::unfold(0, |n| async move {
                (n < 3).then_some(())?;
                tokio::time::sleep(Duration::from_secs(60)).await;
                Some((
                    Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(b"x"))),
                    n + 1,
                ))
            });
            Ok::<_, std::convert::Infallible>(Response::new(Body::new(http_body_util::StreamBody::new(frames))))
        });
        let (body, _open) = open_body(Some(framed(10)));
        let response = MessageLimitLayer::new(100)
            .read_timeout(Duration::from_secs(3))
            .layer(watch)
            .oneshot(grpc(body))
            .await
            .unwrap();
        assert_eq!(status_of(&response), None);
        assert_eq!(response.into_body().collect().await.unwrap().to_bytes(), "xxx");
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_request_is_answered_even_if_its_body_never_ends() {
        let (body, _open) = open_body(Some(framed(101).slice(..20)));
        let started = tokio::time::Instant::now();
        let response = MessageLimitLayer::new(100)
            .layer(echo())
            .oneshot(grpc(body))
            .await
            .unwrap();
        assert_eq!(status_of(&response), Some(tonic::Code::ResourceExhausted));
        assert_eq!(started.elapsed(), DRAIN_TIME, "drained for a short while only");
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
