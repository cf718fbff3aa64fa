//! Streams that need no token, per peer. Health `Watch` and reflection are answered without credentials
//! (probes and tools need them), and each lasts as long as its client likes; so a peer may hold only a
//! few at once, and past it they are RESOURCE_EXHAUSTED. Health `Check` answers at once and is not
//! counted: probes must never be refused because someone else holds watches.

use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::{Request, Response};
use tonic::{Status, body::Body};
use tower::{Layer, Service};

use super::Peer;
use crate::slots::{Holding, Slots};

/// Whether the call to `path` is a stream that needs no token.
fn is_anonymous_stream(path: &str) -> bool {
    path == "/grpc.health.v1.Health/Watch" || path.starts_with("/grpc.reflection.")
}

/// Wraps a service in [`AnonymousStreams`].
#[derive(Debug, Clone)]
pub struct AnonymousStreamsLayer {
    slots: Slots<Peer>,
}

impl AnonymousStreamsLayer {
    /// At most `max` open streams that need no token per peer.
    pub fn new(max: usize) -> Self {
        Self { slots: Slots::new(max) }
    }
}

impl<S> Layer<S> for AnonymousStreamsLayer {
    type Service = AnonymousStreams<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AnonymousStreams {
            inner,
            slots: self.slots.clone(),
        }
    }
}

/// Counts a peer's open streams that need no token; refuses those past the limit.
#[derive(Debug, Clone)]
pub struct AnonymousStreams<S> {
    inner: S,
    slots: Slots<Peer>,
}

impl<S, B, RB> Service<Request<B>> for AnonymousStreams<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
    RB: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    RB::Error: Into<tower::BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // The clone that was not polled ready stays here; the ready one serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let peer = Peer::of_request(request.extensions()).filter(|_| is_anonymous_stream(request.uri().path()));
        let Some(peer) = peer else {
            return Box::pin(async move { Ok(inner.call(request).await?.map(Body::new)) });
        };
        let Some(slot) = self.slots.try_acquire(peer) else {
            let status = Status::resource_exhausted(format!(
                "at most {} streams without credentials (health Watch, reflection) per client address are \
                 open at once; close one first",
                self.slots.max()
            ));
            return Box::pin(async move { Ok(status.into_http()) });
        };
        Box::pin(async move {
            let response = inner.call(request).await?;
            Ok(response.map(|body| Body::new(Holding::new(body, slot))))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tonic::transport::server::TcpConnectInfo;
    use tower::ServiceExt;

    use super::*;

    fn from(peer: &str, path: &str) -> Request<Body> {
        let mut request = Request::builder().uri(path).body(Body::empty()).unwrap();
        request.extensions_mut().insert(TcpConnectInfo {
            local_addr: None,
            remote_addr: Some(peer.parse().unwrap()),
        });
        request
    }

    fn code(response: &Response<Body>) -> Option<String> {
        response
            .headers()
            .get("grpc-status")
            .map(|v| v.to_str().unwrap().to_owned())
    }

    const WATCH: &str = "/grpc.health.v1.Health/Watch";
    const REFLECTION: &str = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";

    #[tokio::test]
    async fn a_peer_past_its_open_anonymous_streams_is_resource_exhausted_until_one_ends() {
        // Streams that stay open until their response is dropped.
        let open = || {
            let frames = futures::stream::pending::<Result<http_body::Frame<bytes::Bytes>, Infallible>>();
            Body::new(http_body_util::StreamBody::new(frames))
        };
        let service = AnonymousStreamsLayer::new(2).layer(tower::service_fn(move |_: Request<Body>| async move {
            Ok::<_, Infallible>(Response::new(open()))
        }));
        let first = service.clone().oneshot(from("192.0.2.1:1", WATCH)).await.unwrap();
        let _second = service.clone().oneshot(from("192.0.2.1:2", REFLECTION)).await.unwrap();
        let third = service.clone().oneshot(from("192.0.2.1:3", WATCH)).await.unwrap();
        assert_eq!(code(&third).as_deref(), Some("8"), "RESOURCE_EXHAUSTED");

        let other = service.clone().oneshot(from("192.0.2.2:1", WATCH)).await.unwrap();
        assert_eq!(code(&other), None, "another peer has its own");
        let check = service
            .clone()
            .oneshot(from("192.0.2.1:4", "/grpc.health.v1.Health/Check"))
            .await
            .unwrap();
        assert_eq!(code(&check), None, "health Check is never refused");
        let routed = service
            .clone()
            .oneshot(from(
                "192.0.2.1:5",
                "/baemin.report.v1.ReportService/WatchDeliveryViews",
            ))
            .await
            .unwrap();
        assert_eq!(code(&routed), None, "calls with credentials are the edge's to limit");

        drop(first);
        let again = service.clone().oneshot(from("192.0.2.1:6", WATCH)).await.unwrap();
        assert_eq!(code(&again), None, "an ended stream gave its slot back");
    }
}
