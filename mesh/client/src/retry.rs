//! Bounded retries of idempotent calls, with a retry budget per dependency.
//!
//! Only calls the caller declares idempotent are retried (payment's RegisterCost, Settle and VoidCost are,
//! by call id), only on UNAVAILABLE from the network (never on a breaker refusal or a shed by the in-flight
//! limit: the dependency was not called, and retrying would only spin), with a short backoff, and only while the budget allows: retries
//! stay a fraction of calls (tower's `TpsBudget`), so a struggling dependency is not flooded. The request
//! message is rebuilt per attempt by the closure, so nothing has to clone an HTTP body.

use std::{future::Future, sync::Arc, time::Duration};

use tonic::{Code, Status};
use tower::retry::budget::{Budget, TpsBudget};

use crate::{breaker::refused_by_circuit, limit::shed_by_limit};

/// How an idempotent call is retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    attempts: u32,
    backoff: Duration,
    budget: Arc<TpsBudget>,
}

impl RetryPolicy {
    /// At most `attempts` tries in all (1 = no retry), `backoff` before the first retry (doubling), and a
    /// budget letting retries add at most 20 % to the calls of the last 10 s (plus 1 retry/s at rest).
    pub fn new(attempts: u32, backoff: Duration) -> Self {
        Self {
            attempts: attempts.max(1),
            backoff,
            budget: Arc::new(TpsBudget::new(Duration::from_secs(10), 1, 0.2)),
        }
    }

    /// Runs the idempotent call `attempt` (a fresh request each time), retrying as described above.
    pub async fn idempotent<T, F, Fut>(&self, mut attempt: F) -> Result<T, Status>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        self.budget.deposit();
        let mut pause = self.backoff;
        let mut tries = 1;
        loop {
            match attempt().await {
                Err(status) if tries < self.attempts && retryable(&status) && self.budget.withdraw() => {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    tries += 1;
                }
                outcome => return outcome,
            }
        }
    }
}

impl Default for RetryPolicy {
    /// Two tries, 50 ms apart.
    fn default() -> Self {
        Self::new(2, Duration::from_millis(50))
    }
}

/// Whether a call that ended with `code` may or may not have taken effect, or may succeed if made again
/// later: the dependency is down, slow, overloaded or lost a race (UNAVAILABLE, DEADLINE_EXCEEDED,
/// CANCELLED, UNKNOWN, INTERNAL, RESOURCE_EXHAUSTED, ABORTED). Callers keep what they owe and try
/// again (idempotently) instead of treating it as the dependency's answer. Not the breaker's question
/// ("is the dependency failing?": [`crate::GrpcClassifier`]) — ABORTED and CANCELLED do not open it.
pub fn outcome_unknown(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
            | Code::Internal
            | Code::ResourceExhausted
            | Code::Aborted
    )
}

fn retryable(status: &Status) -> bool {
    status.code() == Code::Unavailable && !refused_by_circuit(status) && !shed_by_limit(status)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    async fn run(policy: &RetryPolicy, answers: &[Result<u32, Status>]) -> (Result<u32, Status>, u32) {
        let tries = AtomicU32::new(0);
        let outcome = policy
            .idempotent(|| {
                let n = tries.fetch_add(1, Ordering::SeqCst) as usize;
                let answer = answers
                    .get(n)
                    .cloned()
                    .unwrap_or_else(|| Err(Status::internal("no more answers")));
                async move { answer }
            })
            .await;
        (outcome, tries.load(Ordering::SeqCst))
    }

    #[tokio::test(start_paused = true)]
    async fn an_unavailable_dependency_is_tried_again_and_the_retry_can_succeed() {
        let (outcome, tries) = run(&RetryPolicy::default(), &[Err(Status::unavailable("reset")), Ok(7)]).await;
        assert_eq!((outcome.unwrap(), tries), (7, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_at_the_attempt_limit() {
        let down = Err(Status::unavailable("down"));
        let (outcome, tries) = run(
            &RetryPolicy::new(3, Duration::from_millis(1)),
            &[down.clone(), down.clone(), down],
        )
        .await;
        assert_eq!((outcome.unwrap_err().code(), tries), (Code::Unavailable, 3));
    }

    #[tokio::test(start_paused = true)]
    async fn answers_and_breaker_refusals_are_not_retried() {
        for status in [
            Status::failed_precondition("voided"),
            Status::deadline_exceeded("slow"),
            Status::not_found("x"),
        ] {
            let (_, tries) = run(&RetryPolicy::default(), &[Err(status), Ok(1)]).await;
            assert_eq!(tries, 1);
        }
        let mut metadata = tonic::metadata::MetadataMap::new();
        metadata.insert(
            crate::breaker::REFUSED_BY_CIRCUIT,
            tonic::metadata::MetadataValue::from_static("open"),
        );
        let refused = Status::with_metadata(Code::Unavailable, "payment circuit is open", metadata);
        let (_, tries) = run(&RetryPolicy::default(), &[Err(refused), Ok(1)]).await;
        assert_eq!(tries, 1, "the dependency was not even called");
        let mut metadata = tonic::metadata::MetadataMap::new();
        metadata.insert(
            crate::limit::SHED,
            tonic::metadata::MetadataValue::from_static("in-flight"),
        );
        let shed = Status::with_metadata(Code::Unavailable, "payment already has 256 calls in flight", metadata);
        let (_, tries) = run(&RetryPolicy::default(), &[Err(shed), Ok(1)]).await;
        assert_eq!(tries, 1, "a shed call is not retried into the same full limit");
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_caps_retries_when_everything_fails() {
        let policy = RetryPolicy::new(2, Duration::from_millis(1));
        let mut retried = 0;
        for _ in 0..100 {
            let (_, tries) = run(
                &policy,
                &[Err(Status::unavailable("down")), Err(Status::unavailable("down"))],
            )
            .await;
            retried += tries - 1;
        }
        assert!(retried < 100, "not every failed call is retried: {retried}");
        assert!(
            retried >= 20,
            "about 20 % of calls (plus the reserve) may be retried: {retried}"
        );
    }
}
