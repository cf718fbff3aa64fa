//! The layer of [`super::Deadline`].

use std::time::Duration;

use tower::Layer;

use super::Deadline;

/// Wraps a service in a [`Deadline`].
#[derive(Debug, Clone)]
pub struct DeadlineLayer {
    dependency: &'static str,
    deadline: Duration,
}

impl DeadlineLayer {
    /// Calls to `dependency` fail with DEADLINE_EXCEEDED after `deadline`.
    pub fn new(dependency: &'static str, deadline: Duration) -> Self {
        Self { dependency, deadline }
    }
}

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline::new(inner, self.dependency, self.deadline)
    }
}
