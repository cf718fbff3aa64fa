//! The response future of [`super::Deadline`].

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use pin_project_lite::pin_project;
use tokio::time::Sleep;

pin_project! {
    /// Resolves to the inner response, or to DEADLINE_EXCEEDED when the deadline passes first.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: Sleep,
        dependency: &'static str,
        deadline: Duration,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, dependency: &'static str, deadline: Duration) -> Self {
        Self {
            inner,
            sleep: tokio::time::sleep(deadline),
            dependency,
            deadline,
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<tower::BoxError>,
{
    type Output = Result<T, tower::BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result.map_err(Into::into));
        }
        ready!(this.sleep.poll(cx));
        let status =
            tonic::Status::deadline_exceeded(format!("{} did not answer within {:?}", this.dependency, this.deadline));
        Poll::Ready(Err(Box::new(status)))
    }
}
