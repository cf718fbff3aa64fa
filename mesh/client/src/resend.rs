//! Resending a call that never left the client.
//!
//! When a server drains (HTTP/2 GOAWAY as a replica stops) or a connection closes just as a call is handed
//! to it, hyper gives the call back unsent — tonic reports it as CANCELLED "operation was canceled". No
//! server saw it, so sending it again is safe for any call, idempotent or not; gRPC's other clients
//! (grpc-go, grpc-java, grpc-core) do it transparently, tonic does not. This layer does, on a fresh
//! connection (the channel reconnects: through a Service, to a replica that is not draining), a bounded
//! number of times. A call that reached a server is never resent here: whether to retry it is the
//! caller's decision ([`crate::RetryPolicy`] for idempotent ones).
//!
//! The request's body is buffered to be sent again: every RPC of the mesh sends one request message
//! (unary and server-streaming calls), so this holds one message the client already had in memory. Where
//! the body comes from someone else (the gateway forwarding a client's call), [`ResendUnsentLayer::bounded`]
//! caps what is buffered and how long it may take to arrive: past either the call is refused
//! ([`UnbufferedBody`]) instead of holding memory for a client that never finishes its request.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http_body_util::BodyExt;
use tonic::body::Body;
use tower::{Layer, Service, ServiceExt};

/// How many times one call is sent again after coming back unsent.
const MAX_RESENDS: usize = 3;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Wraps a channel in [`ResendUnsent`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ResendUnsentLayer {
    bound: Option<Bound>,
}

/// The most a request body may hold, and the longest it may take to arrive.
#[derive(Debug, Clone, Copy)]
struct Bound {
    bytes: usize,
    within: Duration,
}

impl ResendUnsentLayer {
    /// Buffering at most `bytes` of a request body, arrived within `within` (for bodies that come from
    /// outside: one gRPC message and its 5-byte frame header).
    pub fn bounded(bytes: usize, within: Duration) -> Self {
        Self {
            bound: Some(Bound { bytes, within }),
        }
    }
}

impl<S> Layer<S> for ResendUnsentLayer {
    type Service = ResendUnsent<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ResendUnsent {
            inner,
            bound: self.bound,
        }
    }
}

/// Sends a call again when the connection gave it back unsent (see the module header).
#[derive(Debug, Clone)]
pub struct ResendUnsent<S> {
    inner: S,
    bound: Option<Bound>,
}

/// A request body that could not be buffered: the call is refused, never sent.
#[derive(Debug, thiserror::Error)]
pub enum UnbufferedBody {
    /// Larger than the bound.
    #[error("the request is larger than {0} bytes")]
    TooLarge(usize),
    /// Not complete within the bound.
    #[error("the request did not arrive complete within {0:?}")]
    TooSlow(Duration),
    /// The sender broke it off (reset the stream, or its body failed).
    #[error("the request was broken off: {0}")]
    Broken(BoxError),
}

impl UnbufferedBody {
    /// The answer to give the caller.
    pub fn status(&self) -> tonic::Status {
        match self {
            Self::TooLarge(_) => tonic::Status::resource_exhausted(self.to_string()),
            Self::TooSlow(_) => tonic::Status::deadline_exceeded(self.to_string()),
            Self::Broken(_) => tonic::Status::cancelled(self.to_string()),
        }
    }

    /// The [`UnbufferedBody`] anywhere in `err`'s chain of causes.
    pub fn in_chain<'e>(err: &'e (dyn std::error::Error + 'static)) -> Option<&'e Self> {
        let mut cause = Some(err);
        while let Some(err) = cause {
            if let Some(found) = err.downcast_ref::<Self>() {
                return Some(found);
            }
            cause = err.source();
        }
        None
    }
}

/// The whole of `body`, within `bound` when there is one.
async fn buffer(body: Body, bound: Option<Bound>) -> Result<Bytes, UnbufferedBody> {
    let Some(Bound { bytes, within }) = bound else {
        return Ok(body
            .collect()
            .await
            .map_err(|e| UnbufferedBody::Broken(e.into()))?
            .to_bytes());
    };
    let limited = http_body_util::Limited::new(body, bytes);
    match tokio::time::timeout(within, limited.collect()).await {
        Err(_) => Err(UnbufferedBody::TooSlow(within)),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(err)) if err.is::<http_body_util::LengthLimitError>() => Err(UnbufferedBody::TooLarge(bytes)),
        Ok(Err(err)) => Err(UnbufferedBody::Broken(err)),
    }
}

impl<S, B> Service<http::Request<Body>> for ResendUnsent<S>
where
    S: Service<http::Request<Body>, Response = http::Response<B>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Into<BoxError> + Send,
    B: Send + 'static,
{
    type Response = http::Response<B>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // The instance polled ready takes this call, and its resends once ready again.
        let clone = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, clone);
        let bound = self.bound;
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let message = buffer(body, bound).await?;
            let rebuild = || {
                let mut request = http::Request::new(Body::new(http_body_util::Full::new(message.clone())));
                *request.method_mut() = parts.method.clone();
                *request.uri_mut() = parts.uri.clone();
                *request.version_mut() = parts.version;
                *request.headers_mut() = parts.headers.clone();
                *request.extensions_mut() = parts.extensions.clone();
                request
            };
            let mut outcome = ready.call(rebuild()).await.map_err(Into::into);
            for resend in 1..=MAX_RESENDS {
                match &outcome {
                    Err(err) if never_sent(err.as_ref()) => {
                        tracing::debug!(resend, error = %err, "the connection gave the call back unsent; sending it again");
                    }
                    _ => break,
                }
                outcome = match ready.ready().await {
                    Ok(service) => service.call(rebuild()).await.map_err(Into::into),
                    Err(err) => Err(err.into()),
                };
            }
            outcome
        })
    }
}

/// Whether `err` says the call was given back by the connection before any of it was sent: hyper's
/// "canceled" (the connection was not ready, or closed with the call still queued), anywhere in its
/// chain of causes.
pub fn never_sent(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(err) = cause {
        if err
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_canceled)
        {
            return true;
        }
        cause = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use super::*;

    /// A real "canceled" error: a request handed to an HTTP/2 connection whose task is gone.
    async fn unsent_error() -> hyper::Error {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            // A server that accepts and reads, so the client's handshake can be written.
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut sink = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut socket, &mut sink).await;
        });
        let io = hyper_util::rt::TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
        let (mut sender, connection) = hyper::client::conn::http2::handshake::<_, _, http_body_util::Empty<Bytes>>(
            hyper_util::rt::TokioExecutor::new(),
            io,
        )
        .await
        .unwrap();
        drop(connection); // the connection's task never runs: the request is given back unsent
        sender
            .send_request(http::Request::new(http_body_util::Empty::new()))
            .await
            .unwrap_err()
    }

    fn answer(status: u16) -> http::Response<()> {
        http::Response::builder().status(status).body(()).unwrap()
    }

    #[tokio::test]
    async fn a_call_given_back_unsent_is_sent_again_with_the_same_message() {
        let unsent = Arc::new(std::sync::Mutex::new(Some(unsent_error().await)));
        let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (u, b) = (unsent.clone(), bodies.clone());
        let inner = tower::service_fn(move |request: http::Request<Body>| {
            let (u, b) = (u.clone(), b.clone());
            async move {
                let body = request.into_body().collect().await.unwrap().to_bytes();
                b.lock().unwrap().push(body);
                match u.lock().unwrap().take() {
                    Some(err) => Err(BoxError::from(err)),
                    None => Ok(answer(200)),
                }
            }
        });
        let mut service = ResendUnsentLayer::default().layer(inner);
        let request = http::Request::new(Body::new(http_body_util::Full::new(Bytes::from_static(b"msg"))));
        let response = service.ready().await.unwrap().call(request).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            *bodies.lock().unwrap(),
            [Bytes::from_static(b"msg"), Bytes::from_static(b"msg")]
        );
    }

    #[tokio::test]
    async fn a_call_that_failed_after_it_was_sent_is_not_sent_again() {
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let inner = tower::service_fn(move |_: http::Request<Body>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async { Err::<http::Response<()>, BoxError>("connection reset".into()) }
        });
        let mut service = ResendUnsentLayer::default().layer(inner);
        let request = http::Request::new(Body::empty());
        assert!(service.ready().await.unwrap().call(request).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn the_hyper_cancellation_is_recognised_through_tonics_wrapping() {
        let err = unsent_error().await;
        assert!(never_sent(&err));
        let status = tonic::Status::from_error(Box::new(err));
        assert_eq!(status.code(), tonic::Code::Cancelled);
        assert!(!never_sent(&std::io::Error::other("reset")));
    }

    fn echo_ok() -> impl Service<
        http::Request<Body>,
        Response = http::Response<()>,
        Error = BoxError,
        Future = impl Future<Output = Result<http::Response<()>, BoxError>> + Send,
    > + Clone
    + Send
    + 'static {
        tower::service_fn(|_: http::Request<Body>| async { Ok::<_, BoxError>(answer(200)) })
    }

    #[tokio::test]
    async fn a_bounded_buffer_refuses_a_body_too_large_or_too_slow_without_sending_it() {
        let layer = ResendUnsentLayer::bounded(8, Duration::from_millis(50));
        let big = http::Request::new(Body::new(http_body_util::Full::new(Bytes::from_static(b"0123456789"))));
        let err = layer.layer(echo_ok()).oneshot(big).await.unwrap_err();
        let refused = UnbufferedBody::in_chain(err.as_ref()).expect("refused");
        assert_eq!(refused.status().code(), tonic::Code::ResourceExhausted);

        // A body that never ends (a client that sends a message and keeps its stream open).
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, tonic::Status>>(1);
        tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"abc"))))
            .await
            .unwrap();
        let endless = http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
        let slow = http::Request::new(Body::new(endless));
        let err = layer.layer(echo_ok()).oneshot(slow).await.unwrap_err();
        let refused = UnbufferedBody::in_chain(err.as_ref()).expect("refused");
        assert_eq!(refused.status().code(), tonic::Code::DeadlineExceeded);
        drop(tx);

        let fits = http::Request::new(Body::new(http_body_util::Full::new(Bytes::from_static(b"01234567"))));
        assert_eq!(layer.layer(echo_ok()).oneshot(fits).await.unwrap().status(), 200);
    }
}
