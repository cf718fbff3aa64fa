//! In-flight limit: at most N calls to a dependency at once from this process; one more is refused at
//! once (load shedding) instead of queueing behind the others.
//!
//! A queue in front of a struggling dependency only turns its slowness into ours: requests wait, then
//! time out anyway, holding memory and tasks meanwhile. Refusing the N+1th call keeps our own latency
//! bounded and lets the caller's fallback act (for PlaceCall: reject or defer). The refusal is
//! UNAVAILABLE naming the dependency, marked with [`SHED`] metadata so it is never retried and is not
//! counted against the dependency by the circuit breaker (the limit sits outside it: the dependency was
//! never asked).
//!
//! The slot is held until the response future resolves (for unary calls: the answer arrived) or is
//! dropped (the caller gave up).

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::{Layer, Service};

/// Metadata key marking a call refused by the in-flight limit (its value: `in-flight`).
pub const SHED: &str = "x-baemin-shed";

/// True when `status` is a refusal by the in-flight limit: the dependency was not called.
pub fn shed_by_limit(status: &tonic::Status) -> bool {
    status.metadata().contains_key(SHED)
}

/// Wraps a service in an [`InFlightLimit`]; clones of the wrapped service share the limit.
#[derive(Debug, Clone)]
pub struct InFlightLimitLayer {
    dependency: &'static str,
    max: usize,
}

impl InFlightLimitLayer {
    /// At most `max` (at least 1) calls to `dependency` in flight at once.
    pub fn new(dependency: &'static str, max: usize) -> Self {
        Self {
            dependency,
            max: max.max(1),
        }
    }
}

impl<S> Layer<S> for InFlightLimitLayer {
    type Service = InFlightLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InFlightLimit {
            inner,
            dependency: self.dependency,
            max: self.max,
            slots: Arc::new(Semaphore::new(self.max)),
        }
    }
}

/// Refuses a call when `max` calls are already in flight.
#[derive(Debug, Clone)]
pub struct InFlightLimit<S> {
    inner: S,
    dependency: &'static str,
    max: usize,
    slots: Arc<Semaphore>,
}

impl<S> InFlightLimit<S> {
    /// Calls in flight now.
    pub fn in_flight(&self) -> usize {
        self.max - self.slots.available_permits()
    }
}

impl<S, R> Service<R> for InFlightLimit<S>
where
    S: Service<R>,
    S::Error: Into<tower::BoxError>,
{
    type Response = S::Response;
    type Error = tower::BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: R) -> Self::Future {
        match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(permit) => ResponseFuture::Admitted {
                inner: self.inner.call(request),
                _permit: permit,
            },
            Err(_) => ResponseFuture::Shed {
                status: Some(refusal(self.dependency, self.max)),
            },
        }
    }
}

fn refusal(dependency: &'static str, max: usize) -> tonic::Status {
    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert(SHED, tonic::metadata::MetadataValue::from_static("in-flight"));
    tonic::Status::with_metadata(
        tonic::Code::Unavailable,
        format!("{dependency} already has {max} calls in flight from here; this one was not sent"),
        metadata,
    )
}

pin_project! {
    /// The inner response (holding the slot until it resolves), or the refusal.
    #[project = ResponseProj]
    pub enum ResponseFuture<F> {
        /// Sent; the slot is freed when this resolves or is dropped.
        Admitted {
            #[pin]
            inner: F,
            _permit: OwnedSemaphorePermit,
        },
        /// Refused without calling the dependency.
        Shed { status: Option<tonic::Status> },
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<tower::BoxError>,
{
    type Output = Result<T, tower::BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            ResponseProj::Admitted { inner, .. } => inner.poll(cx).map_err(Into::into),
            ResponseProj::Shed { status } => {
                let status = status
                    .take()
                    .unwrap_or_else(|| tonic::Status::internal("in-flight limit: refusal polled twice"));
                Poll::Ready(Err(Box::new(status)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tower::ServiceExt;

    use super::*;

    type Mock = tower_test::mock::Mock<&'static str, &'static str>;
    type Handle = tower_test::mock::Handle<&'static str, &'static str>;

    fn limited(max: usize) -> (InFlightLimit<Mock>, Handle) {
        let (mock, handle) = tower_test::mock::pair();
        (InFlightLimitLayer::new("payment", max).layer(mock), handle)
    }

    #[tokio::test]
    async fn the_call_beyond_the_limit_is_refused_at_once_without_reaching_the_dependency() {
        let (mut svc, mut handle) = limited(2);
        let first = svc.ready().await.unwrap().call("a");
        let second = svc.ready().await.unwrap().call("b");
        let third = svc.ready().await.unwrap().call("c");
        let status = third.await.unwrap_err().downcast::<tonic::Status>().unwrap();
        assert_eq!(status.code(), tonic::Code::Unavailable);
        assert!(status.message().contains("payment"), "{status:?}");
        assert!(shed_by_limit(&status));
        let (a, respond_a) = handle.next_request().await.unwrap();
        let (b, respond_b) = handle.next_request().await.unwrap();
        assert_eq!((a, b), ("a", "b"));
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(20), handle.next_request())
                .await
                .is_err(),
            "the refused call never reached the dependency"
        );
        respond_a.send_response("A");
        respond_b.send_response("B");
        assert_eq!((first.await.unwrap(), second.await.unwrap()), ("A", "B"));
    }

    #[tokio::test]
    async fn an_answered_or_abandoned_call_frees_its_slot() {
        let (mut svc, mut handle) = limited(1);
        let answered = svc.ready().await.unwrap().call("a");
        let (_, respond) = handle.next_request().await.unwrap();
        assert_eq!(svc.in_flight(), 1);
        respond.send_response("A");
        answered.await.unwrap();
        assert_eq!(svc.in_flight(), 0);

        let abandoned = svc.ready().await.unwrap().call("b");
        let (b, _never_answered) = handle.next_request().await.unwrap();
        assert_eq!((b, svc.in_flight()), ("b", 1));
        drop(abandoned);
        assert_eq!(svc.in_flight(), 0);
        let again = svc.ready().await.unwrap().call("c");
        let (c, respond) = handle.next_request().await.unwrap();
        assert_eq!(c, "c", "the slot of the abandoned call is free again");
        respond.send_response("C");
        assert_eq!(again.await.unwrap(), "C");
    }

    #[tokio::test]
    async fn clones_share_one_limit() {
        let (mut svc, _handle) = limited(1);
        let mut clone = svc.clone();
        let _held = svc.ready().await.unwrap().call("a");
        let status = clone
            .ready()
            .await
            .unwrap()
            .call("b")
            .await
            .unwrap_err()
            .downcast::<tonic::Status>()
            .unwrap();
        assert!(shed_by_limit(&status), "{status:?}");
    }
}
