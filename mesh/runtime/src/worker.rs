//! Background workers written as one step (`try_execute_task` style, as zero2prod does) and repeated
//! here: tests drive the step directly; the service runs it on an interval until shutdown.

use std::{fmt::Debug, future::Future, time::Duration};

use tokio_util::sync::CancellationToken;

/// Runs `step` every `interval` until `shutdown`. A step answers `Ok(Some(report))` when it did
/// something (logged), `Ok(None)` when there was nothing to do, and `Err` when the round failed (logged
/// with its cause; the next round tries again).
pub async fn run_every<F, Fut, R, E>(name: &'static str, interval: Duration, shutdown: CancellationToken, mut step: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<R>, E>>,
    R: Debug,
    E: std::error::Error,
{
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = shutdown.cancelled() => return,
        }
        match step().await {
            Ok(None) => {}
            Ok(Some(report)) => tracing::info!(worker = name, ?report, "round done"),
            Err(err) => {
                let source = std::error::Error::source(&err).map(ToString::to_string);
                tracing::warn!(worker = name, error = %err, ?source, "round failed; retrying next round");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    };

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_worker_runs_once_per_interval_and_stops_on_shutdown() {
        let rounds = Arc::new(AtomicUsize::new(0));
        let shutdown = CancellationToken::new();
        let counted = rounds.clone();
        let worker = tokio::spawn(run_every("test", Duration::from_secs(5), shutdown.clone(), move || {
            let counted = counted.clone();
            async move {
                let n = counted.fetch_add(1, Ordering::SeqCst);
                if n == 1 {
                    Err(std::io::Error::other("db down"))
                } else {
                    Ok(Some(n))
                }
            }
        }));
        tokio::time::sleep(Duration::from_millis(16_000)).await;
        assert_eq!(
            rounds.load(Ordering::SeqCst),
            3,
            "rounds at 5, 10 and 15 s, a failed one included"
        );
        shutdown.cancel();
        worker.await.unwrap();
    }
}
