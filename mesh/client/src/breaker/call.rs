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
/// final status is known. Holds an `Arc` and the classifier (no allocation per call).
pub(crate) struct Call<C> {
    shared: Arc<Shared>,
    classifier: C,
    permit: Permit,
    started: Instant,
    /// Time from the call to the response head: what slow calls are measured on.
    answered: Option<Duration>,
    done: bool,
}

impl<C: Classify> Call<C> {
    /// A call granted `permit` at `started`.
    pub(crate) fn new(shared: Arc<Shared>, classifier: C, permit: Permit, started: Instant) -> Self {
        Self {
            shared,
            classifier,
            permit,
            started,
            answered: None,
            done: false,
        }
    }

    /// The response head arrived (at the instant returned): the call's duration is fixed now, even
    /// if its status comes later in the trailers (a long stream is not a slow call).
    pub(crate) fn answered(&mut self) -> Instant {
        let now = Instant::now();
        self.answered = Some(now.saturating_duration_since(self.started));
        now
    }

    /// The call ended with `code`.
    pub(crate) fn finish_code(&mut self, code: Code) {
        self.finish_code_at(code, Instant::now());
    }

    /// The call ended with `code` at `now` (the head's instant when the status came in the head: one
    /// clock read fewer on the common path).
    pub(crate) fn finish_code_at(&mut self, code: Code, now: Instant) {
        let outcome = self.classifier.classify_code(code);
        self.finish(outcome, now);
    }

    /// The call, or its response body, ended with `error`.
    pub(crate) fn finish_error(&mut self, error: &(dyn Error + 'static)) {
        let outcome = self.classifier.classify_error(error);
        self.finish(outcome, Instant::now());
    }

    fn finish(&mut self, outcome: Outcome, now: Instant) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let elapsed = self.elapsed(now);
        match outcome {
            Outcome::Success => self.shared.record(self.permit, false, elapsed, now),
            Outcome::Failure => self.shared.record(self.permit, true, elapsed, now),
            Outcome::Ignored => self.shared.release(self.permit),
        }
    }
}

impl<C> Call<C> {
    /// How long the call took: to its response head if one came, else until `now`.
    fn elapsed(&self, now: Instant) -> Duration {
        self.answered
            .unwrap_or_else(|| now.saturating_duration_since(self.started))
    }
}

impl<C> Drop for Call<C> {
    fn drop(&mut self) {
        if !self.done {
            // Cancelled by the caller, or the body was dropped before its trailers.
            let now = Instant::now();
            self.shared.abandon(self.permit, self.elapsed(now), now);
        }
    }
}
