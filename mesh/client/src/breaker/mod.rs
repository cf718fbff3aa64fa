//! Circuit breaker: when a dependency keeps failing or answering slowly, calls to it fail fast with
//! UNAVAILABLE naming it, without touching the network, until trial calls show it is back.
//!
//! resilience4j's semantics: a count- or time-based sliding window judged once it holds the
//! minimum number of calls; the circuit opens when the failure rate or the slow-call rate reaches
//! its threshold, waits, then lets a fixed number of trial calls through and closes or opens again
//! on their rates. Outcomes are classified by gRPC status ([`GrpcClassifier`], replaceable), read
//! from the response head of trailers-only responses and from the trailers otherwise.
//!
//! Put it outside the deadline (`.layer(breaker).layer(deadline)`) so that a call that times out
//! counts as a failure: a call dropped by an outer timeout before it ends records nothing (unless it
//! already ran longer than the slow-call duration, which counts it as slow).

mod body;
mod call;
mod classify;
mod config;
mod future;
mod handle;
mod layer;
mod observe;
mod state;
#[cfg(test)]
mod tests;
mod window;

pub use body::ResponseBody;
pub use classify::{Classify, GrpcClassifier, Outcome, status_in};
pub use config::{BreakerConfig, BreakerConfigError, BreakerField, MAX_COUNT_WINDOW, MAX_TIME_WINDOW_SECS, WindowType};
pub use future::ResponseFuture;
pub use handle::BreakerHandle;
pub use layer::CircuitBreakerLayer;
pub use state::{Metrics, State, Transitions};

use std::{
    fmt,
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use tokio::time::Instant;
use tower::Service;

use self::{call::Call, handle::Shared};

/// Lets calls through to the wrapped service while its dependency is healthy; clones share the circuit.
pub struct CircuitBreaker<S, C = GrpcClassifier> {
    inner: S,
    shared: Arc<Shared>,
    classifier: C,
}

impl<S, C> CircuitBreaker<S, C> {
    fn new(inner: S, shared: Arc<Shared>, classifier: C) -> Self {
        Self {
            inner,
            shared,
            classifier,
        }
    }

    /// A read-only view of the circuit.
    pub fn handle(&self) -> BreakerHandle {
        BreakerHandle::new(Arc::clone(&self.shared))
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: Clone, C: Clone> Clone for CircuitBreaker<S, C> {
    fn clone(&self) -> Self {
        Self::new(self.inner.clone(), Arc::clone(&self.shared), self.classifier.clone())
    }
}

impl<S: fmt::Debug, C> fmt::Debug for CircuitBreaker<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("dependency", &self.shared.dependency())
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, C, ReqBody, ResBody> Service<Request<ReqBody>> for CircuitBreaker<S, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<tower::BoxError>,
    C: Classify + Clone,
{
    type Response = Response<ResponseBody<ResBody, C>>;
    type Error = tower::BoxError;
    type Future = ResponseFuture<S::Future, C>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is the inner service's: refusing here would reach a tonic client as UNKNOWN
        // ("service was not ready"), so a refused call fails in its future instead.
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let now = Instant::now();
        match self.shared.acquire(now) {
            Ok(permit) => {
                let call = Call::new(Arc::clone(&self.shared), self.classifier.clone(), permit, now);
                ResponseFuture::admitted(self.inner.call(request), call)
            }
            Err(state) => {
                self.shared.refused(state);
                ResponseFuture::refused(refusal(self.shared.dependency(), state))
            }
        }
    }
}

/// Metadata key marking a status the breaker produced itself (the call never left): `open` or `half-open`.
pub const REFUSED_BY_CIRCUIT: &str = "x-baemin-circuit";

fn refusal(dependency: &'static str, state: State) -> tonic::Status {
    let (message, marker) = match state {
        State::HalfOpen => (
            format!("{dependency} circuit is half-open; its trial calls are under way, so this call was not sent"),
            "half-open",
        ),
        State::Open | State::Closed => (
            format!("{dependency} circuit is open; failing fast without calling {dependency} until it recovers"),
            "open",
        ),
    };
    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert(REFUSED_BY_CIRCUIT, tonic::metadata::MetadataValue::from_static(marker));
    tonic::Status::with_metadata(tonic::Code::Unavailable, message, metadata)
}

/// Whether `status` is the breaker's own refusal (the dependency was not called).
pub fn refused_by_circuit(status: &tonic::Status) -> bool {
    status.metadata().contains_key(REFUSED_BY_CIRCUIT)
}
