//! Streams through the gateway end when it drains. A watch lasts as long as its client, so a gateway
//! waiting for them would never stop; instead each proxied stream is ended with UNAVAILABLE ("reconnect")
//! as soon as shutdown begins, the way the report service ends its own watches. The client reconnects —
//! to another replica, or to this one once it is back — and asks for a fresh snapshot.

use std::{
    pin::Pin,
    task::{Context, Poll},
};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use http_body::Frame;
use pin_project_lite::pin_project;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::body::Body;

pin_project! {
    /// A response body that ends with UNAVAILABLE trailers once `draining` fires.
    pub struct EndOnDrain {
        #[pin]
        inner: Body,
        #[pin]
        draining: WaitForCancellationFutureOwned,
        ended: bool,
    }
}

impl EndOnDrain {
    /// Wraps `inner`, to end when `draining` is cancelled.
    pub fn new(inner: Body, draining: CancellationToken) -> Self {
        Self {
            inner,
            draining: draining.cancelled_owned(),
            ended: false,
        }
    }
}

impl http_body::Body for EndOnDrain {
    type Data = Bytes;
    type Error = tonic::Status;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        if *this.ended {
            return Poll::Ready(None);
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if frame.is_trailers() {
                    *this.ended = true;
                }
                return Poll::Ready(Some(Ok(frame)));
            }
            Poll::Ready(other) => {
                *this.ended = true;
                return Poll::Ready(other);
            }
            Poll::Pending => {}
        }
        if this.draining.poll(cx).is_ready() {
            *this.ended = true;
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static("14"));
            trailers.insert(
                "grpc-message",
                HeaderValue::from_static("the gateway is shutting down; reconnect"),
            );
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test]
    async fn an_open_stream_ends_with_unavailable_when_the_gateway_drains() {
        let (_sender, receiver) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, tonic::Status>>(1);
        let never_ending = Body::new(http_body_util::StreamBody::new(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        ));
        let draining = CancellationToken::new();
        let body = EndOnDrain::new(never_ending, draining.clone());
        draining.cancel();
        let collected = body.collect().await.unwrap();
        let trailers = collected.trailers().cloned().unwrap();
        assert_eq!(trailers["grpc-status"], "14");
    }

    #[tokio::test]
    async fn a_stream_that_ends_by_itself_is_passed_through_unchanged() {
        let body = EndOnDrain::new(
            Body::new(http_body_util::Full::new(Bytes::from_static(b"abc"))),
            CancellationToken::new(),
        );
        assert_eq!(body.collect().await.unwrap().to_bytes(), "abc");
    }
}
