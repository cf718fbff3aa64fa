//! Deadline: every call ends within a fixed time, as DEADLINE_EXCEEDED naming the dependency, and the
//! server is told the same budget through `grpc-timeout` so it can give up too.

mod future;
mod layer;
#[cfg(test)]
mod tests;

pub use future::ResponseFuture;
pub use layer::DeadlineLayer;

use std::{
    task::{Context, Poll},
    time::Duration,
};

use http::{HeaderValue, Request};
use tower::Service;

/// Applies a deadline to each request of the wrapped service.
#[derive(Debug, Clone)]
pub struct Deadline<S> {
    inner: S,
    dependency: &'static str,
    deadline: Duration,
    grpc_timeout: HeaderValue,
}

impl<S> Deadline<S> {
    /// Wraps `inner`; calls to `dependency` fail after `deadline`.
    pub fn new(inner: S, dependency: &'static str, deadline: Duration) -> Self {
        // grpc-timeout: at most 8 digits and a unit; milliseconds cover every sane deadline.
        let millis = deadline.as_millis().clamp(1, 99_999_999);
        let grpc_timeout = HeaderValue::from_str(&format!("{millis}m")).unwrap_or(HeaderValue::from_static("1S"));
        Self {
            inner,
            dependency,
            deadline,
            grpc_timeout,
        }
    }
}

impl<S, B> Service<Request<B>> for Deadline<S>
where
    S: Service<Request<B>>,
    S::Error: Into<tower::BoxError>,
{
    type Response = S::Response;
    type Error = tower::BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        // A caller's own tighter deadline wins, both for the local timer and for the server.
        let callers = request
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(baemin_mesh_server::parse_grpc_timeout);
        let deadline = match callers {
            Some(d) if d < self.deadline => d,
            _ => {
                request.headers_mut().insert("grpc-timeout", self.grpc_timeout.clone());
                self.deadline
            }
        };
        ResponseFuture::new(self.inner.call(request), self.dependency, deadline)
    }
}
