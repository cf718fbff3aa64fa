//! One permitted call on its way: it records its outcome exactly once, or gives its permit back
//! when dropped without one.

use std::{error::Error, sync::Arc, time::Duration};

use tokio::time::Instant;
use tonic::Code;

use super::{
    classify::{Classify, Outcome},
    handle::Shared,
    state::Permit,
};

/// Travels from `call` through the response future into the response body until the call's
/// final status is known. Holds two `Arc`s (no allocation per call).
pub(crate) struct Call<C> {
    shared: Arc<Shared>,
    classifier: Arc<C>,
    permit: Permit,
    started: Instant,
    /// Time from the call to the response head: what slow calls are measured on.
    answered: Option<Duration>,
    done: bool,
}

impl<C: Classify> Call<C> {
    /// A call granted `permit` at `started`.
    pub(crate) fn new(shared: Arc<Shared>, classifier: Arc<C>, permit: Permit, started: Instant) -> Self {
        Self {
            shared,
            classifier,
            permit,
            started,
            answered: None,
            done: false,
        }
    }

    /// The response head arrived: the call's duration is fixed now, even if its status comes
    /// later in the trailers (a long stream is not a slow call).
    pub(crate) fn answered(&mut self) {
        self.answered = Some(self.started.elapsed());
    }

    /// The call ended with `code`.
    pub(crate) fn finish_code(&mut self, code: Code) {
        let outcome = self.classifier.classify_code(code);
        self.finish(outcome);
    }

    /// The call, or its response body, ended with `error`.
    pub(crate) fn finish_error(&mut self, error: &(dyn Error + 'static)) {
        let outcome = self.classifier.classify_error(error);
        self.finish(outcome);
    }

    fn finish(&mut self, outcome: Outcome) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let (now, elapsed) = self.clock();
        match outcome {
            Outcome::Success => self.shared.record(self.permit, false, elapsed, now),
            Outcome::Failure => self.shared.record(self.permit, true, elapsed, now),
            Outcome::Ignored => self.shared.release(self.permit),
        }
    }
}

impl<C> Call<C> {
    /// Now, and how long the call took: to its response head if one came, else until now.
    fn clock(&self) -> (Instant, Duration) {
        let now = Instant::now();
        (
            now,
            self.answered
                .unwrap_or_else(|| now.saturating_duration_since(self.started)),
        )
    }
}

impl<C> Drop for Call<C> {
    fn drop(&mut self) {
        if !self.done {
            // Cancelled by the caller, or the body was dropped before its trailers.
            let (now, elapsed) = self.clock();
            self.shared.abandon(self.permit, elapsed, now);
        }
    }
}
