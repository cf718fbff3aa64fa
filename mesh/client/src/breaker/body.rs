//! The response body of [`super::CircuitBreaker`]: passes every frame through and records the
//! call's outcome from the `grpc-status` trailer.
//!
//! A unary gRPC call that succeeds (and one that fails after the response head was sent) carries
//! its status in the trailers, after the message. Only trailers-only responses (the usual shape of
//! an error) carry it in the headers. Watching the trailers costs one `Option` check per frame and
//! no allocation; tonic reads a unary response's body to its trailers, so the outcome is recorded
//! as soon as the caller has its answer.

use std::{
    pin::Pin,
    task::{Context, Poll, ready},
};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tonic::Code;

use super::{
    call::Call,
    classify::{Classify, grpc_status},
};

pin_project! {
    /// The inner response body, watched for the call's final status.
    pub struct ResponseBody<B, C> {
        #[pin]
        inner: B,
        call: Option<Call<C>>,
    }
}

impl<B, C> ResponseBody<B, C> {
    /// A body whose call was already recorded from the response head.
    pub(super) fn settled(inner: B) -> Self {
        Self { inner, call: None }
    }

    /// A body whose call is recorded when its trailers, its end or an error arrive.
    pub(super) fn watched(inner: B, call: Call<C>) -> Self {
        Self {
            inner,
            call: Some(call),
        }
    }

    /// The wrapped body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }
}

impl<B, C> Body for ResponseBody<B, C>
where
    B: Body,
    B::Error: Into<tower::BoxError>,
    C: Classify,
{
    type Data = B::Data;
    type Error = tower::BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        match ready!(this.inner.poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(trailers) = frame.trailers_ref()
                    && let Some(mut call) = this.call.take()
                {
                    // Trailers without grpc-status end the call as UNKNOWN in tonic too.
                    call.finish_code(grpc_status(trailers).unwrap_or(Code::Unknown));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(error)) => {
                let error = error.into();
                if let Some(mut call) = this.call.take() {
                    call.finish_error(&*error);
                }
                Poll::Ready(Some(Err(error)))
            }
            None => {
                if let Some(mut call) = this.call.take() {
                    // A 200 that ends without trailers: tonic reports UNKNOWN (truncated stream).
                    call.finish_code(Code::Unknown);
                }
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        // While the status is still awaited, make readers poll to the end so it is seen.
        self.call.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
