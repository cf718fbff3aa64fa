//! Load: closed loop (N callers, each making its next call when the last one returns) and open loop
//! (calls started at a fixed rate whatever the answers do), a warm-up that is not measured, and latency
//! in an HDR histogram.
//!
//! Closed loop: the calls that *end* inside the measured window count, whenever they started (calls
//! still running at the window's end balance those already running at its start). Open loop: every
//! call *due* inside the window counts, its latency from when it was due, not from when it was sent,
//! so a stalled server cannot hide its queue (coordinated omission). A call gets [`CALL_TIMEOUT`];
//! one that has not ended by then is an error, never silently left out.
//!
//! A load that is dropped before its end (the run interrupted by Ctrl-C or SIGTERM, a scenario failed)
//! stops at once: its callers and its progress display are tasks owned by it, aborted with it, and a
//! caller gives the scheduler a turn on every call, so one whose calls fail at once (a target that is
//! gone) can neither outlive its load nor keep a worker thread, and with it the runtime's shutdown,
//! until the scenario's planned end.

use std::{
    future::Future,
    io::{IsTerminal, Write},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use hdrhistogram::Histogram;
use tokio::time::Instant;

use crate::cli::Progress;

/// How long, and how progress is shown.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Not measured.
    pub warmup: Duration,
    /// Measured.
    pub duration: Duration,
    /// Progress display.
    pub progress: Progress,
}

/// The shape of the load.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// This many callers, each calling again as soon as its call returns.
    Closed(usize),
    /// Calls started at this rate per second.
    Open(f64),
}

/// Longest a call of any scenario may take before it counts as failed.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Open loop: more calls than this in flight means the target has stopped answering; later calls are
/// counted as errors rather than piling up.
const MAX_OPEN_IN_FLIGHT: u64 = 20_000;

/// What one scenario measured.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Calls that succeeded inside the measured window.
    pub ok: u64,
    /// Calls that ended during the whole scenario, warm-up included (for CPU time per call).
    pub all: u64,
    /// Calls that failed inside the measured window.
    pub errors: u64,
    /// The first failure, for the report.
    pub first_error: Option<String>,
    /// The measured window.
    pub window: Duration,
    /// Latency of the successful calls, microseconds.
    pub latency: Histogram<u64>,
}

impl Measured {
    /// Successful calls per second.
    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.window.as_secs_f64().max(f64::EPSILON)
    }
}

/// A new latency histogram: 1 µs to 100 s, 3 significant figures.
pub fn histogram() -> Histogram<u64> {
    #[allow(clippy::expect_used)] // constant bounds, checked by the histogram tests of the crate
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

/// Records `d` (saturating at the histogram's top).
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).clamp(1, h.high());
    h.saturating_record(micros);
}

struct Tally {
    all: u64,
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    latency: Histogram<u64>,
}

impl Tally {
    fn new() -> Self {
        Self {
            all: 0,
            ok: 0,
            errors: 0,
            first_error: None,
            latency: histogram(),
        }
    }

    fn note(&mut self, outcome: anyhow::Result<()>, took: Duration) {
        match outcome {
            Ok(()) => {
                self.ok += 1;
                record(&mut self.latency, took);
            }
            Err(err) => {
                self.errors += 1;
                if self.first_error.is_none() {
                    self.first_error = Some(format!("{err:#}"));
                }
            }
        }
    }

    fn merge(&mut self, other: Self) {
        self.all += other.all;
        self.ok += other.ok;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        let _ = self.latency.add(&other.latency);
    }
}

/// Runs `op` as `shape` for the plan's warm-up plus duration and returns what the measured part showed.
pub async fn drive<F, Fut>(name: &str, plan: &Plan, shape: Shape, op: F) -> Measured
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let op = Arc::new(move || {
        let call = op();
        async move {
            tokio::time::timeout(CALL_TIMEOUT, call)
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {CALL_TIMEOUT:?}")))
        }
    });
    let started = Instant::now();
    let measure_from = started + plan.warmup;
    let end = measure_from + plan.duration;
    let done = Arc::new(AtomicU64::new(0));
    let progress = Owned::spawn(show_progress(name.to_owned(), *plan, started, Arc::clone(&done)));
    let tally = match shape {
        Shape::Closed(callers) => closed(callers, op, measure_from, end, &done).await,
        Shape::Open(rate) => open(rate, op, started, measure_from, end, &done).await,
    };
    progress.stop().await;
    clear_progress(plan.progress);
    Measured {
        ok: tally.ok,
        all: tally.all,
        errors: tally.errors,
        first_error: tally.first_error,
        window: plan.duration,
        latency: tally.latency,
    }
}

async fn closed<F, Fut>(callers: usize, op: Arc<F>, measure_from: Instant, end: Instant, done: &Arc<AtomicU64>) -> Tally
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    // Owned by this future: dropped with it (the run interrupted), the callers are aborted.
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..callers {
        let op = Arc::clone(&op);
        let done = Arc::clone(done);
        workers.spawn(async move {
            let mut tally = Tally::new();
            loop {
                // A call that fails without waiting (its connection gone, its channel's worker task
                // shut down with the runtime) never yields: without this turn for the scheduler the
                // loop would hold its worker thread, deaf to abort and shutdown, until `end`.
                tokio::task::coop::consume_budget().await;
                let sent = Instant::now();
                if sent >= end {
                    return tally;
                }
                let outcome = op().await;
                let answered = Instant::now();
                tally.all += 1;
                if answered >= measure_from && answered <= end {
                    tally.note(outcome, answered - sent);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    let mut total = Tally::new();
    while let Some(worker) = workers.join_next().await {
        if let Ok(tally) = worker {
            total.merge(tally);
        }
    }
    total
}

async fn open<F, Fut>(
    rate: f64,
    op: Arc<F>,
    started: Instant,
    measure_from: Instant,
    end: Instant,
    done: &Arc<AtomicU64>,
) -> Tally
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let total = Arc::new(Mutex::new(Tally::new()));
    let in_flight = Arc::new(AtomicU64::new(0));
    let mut calls = tokio::task::JoinSet::new();
    let mut issued: u64 = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let now = tick.tick().await;
        if now >= end {
            break;
        }
        // Every call due by now, each stamped with when it was due.
        let due = ((now - started).as_secs_f64() * rate) as u64;
        for k in issued..due {
            let due_at = started + Duration::from_secs_f64(k as f64 / rate);
            let measured = due_at >= measure_from;
            if in_flight.load(Ordering::Relaxed) >= MAX_OPEN_IN_FLIGHT {
                if measured {
                    let mut t = lock(&total);
                    t.note(
                        Err(anyhow::anyhow!("over {MAX_OPEN_IN_FLIGHT} calls in flight")),
                        Duration::ZERO,
                    );
                }
                continue;
            }
            let (op, total, in_flight, done) = (
                Arc::clone(&op),
                Arc::clone(&total),
                Arc::clone(&in_flight),
                Arc::clone(done),
            );
            in_flight.fetch_add(1, Ordering::Relaxed);
            calls.spawn(async move {
                let outcome = op().await;
                let answered = Instant::now();
                in_flight.fetch_sub(1, Ordering::Relaxed);
                lock(&total).all += 1;
                if measured {
                    lock(&total).note(outcome, answered - due_at);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        issued = issued.max(due);
        while calls.try_join_next().is_some() {}
    }
    // Calls still in flight finish (or are abandoned after 10 s, uncounted).
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while calls.join_next().await.is_some() {}
    })
    .await;
    calls.abort_all();
    let mut total = lock(&total);
    std::mem::replace(&mut *total, Tally::new())
}

/// A spawned task owned by its spawner: aborted when this is dropped, so a load or scenario cut short
/// does not leave it running detached (dropping a bare `JoinHandle` does not stop its task).
pub struct Owned<T>(Option<tokio::task::JoinHandle<T>>);

impl<T: Send + 'static> Owned<T> {
    /// Spawns `task` on the runtime.
    pub fn spawn(task: impl Future<Output = T> + Send + 'static) -> Self {
        Self(Some(tokio::spawn(task)))
    }

    /// Aborts the task and waits until it has stopped.
    pub async fn stop(mut self) {
        if let Some(handle) = self.0.take() {
            handle.abort();
            let _ = handle.await;
        }
    }
}

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        if let Some(handle) = &self.0 {
            handle.abort();
        }
    }
}

fn lock(tally: &Mutex<Tally>) -> std::sync::MutexGuard<'_, Tally> {
    tally.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn show_progress(name: String, plan: Plan, started: Instant, done: Arc<AtomicU64>) {
    let bar = match plan.progress {
        Progress::Quiet => return,
        Progress::Bar => true,
        Progress::Lines => false,
        Progress::Auto => std::io::stderr().is_terminal(),
    };
    let total = plan.warmup + plan.duration;
    let every = if bar {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(1)
    };
    let mut last = (Instant::now(), 0_u64);
    loop {
        tokio::time::sleep(every).await;
        let now = Instant::now();
        let n = done.load(Ordering::Relaxed);
        let rate = (n - last.1) as f64 / (now - last.0).as_secs_f64().max(f64::EPSILON);
        last = (now, n);
        let elapsed = now - started;
        let phase = if elapsed < plan.warmup { "warm-up" } else { "measuring" };
        let mut err = std::io::stderr().lock();
        if bar {
            const WIDTH: usize = 30;
            let filled = ((elapsed.as_secs_f64() / total.as_secs_f64()).min(1.0) * WIDTH as f64) as usize;
            let _ = write!(
                err,
                "\r{name:<22} [{}{}] {:>5.1}/{:.0} s {phase:<9} {rate:>9.0} /s ",
                "#".repeat(filled),
                "-".repeat(WIDTH - filled),
                elapsed.as_secs_f64(),
                total.as_secs_f64()
            );
        } else {
            let _ = writeln!(
                err,
                "{name}: {:.1}/{:.0} s {phase}, {rate:.0} /s",
                elapsed.as_secs_f64(),
                total.as_secs_f64()
            );
        }
        let _ = err.flush();
    }
}

/// Clears the progress bar's line.
fn clear_progress(progress: Progress) {
    let bar = match progress {
        Progress::Bar => true,
        Progress::Auto => std::io::stderr().is_terminal(),
        _ => false,
    };
    if bar {
        eprint!("\r{:100}\r", "");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose
mod tests {
    use super::*;

    fn plan(duration: Duration) -> Plan {
        Plan {
            warmup: Duration::ZERO,
            duration,
            progress: Progress::Quiet,
        }
    }

    /// Counts the calls of a load.
    fn counting(calls: &Arc<AtomicU64>) -> impl Fn() + Send + Sync + 'static {
        let calls = Arc::clone(calls);
        move || {
            calls.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// What the harness does on Ctrl-C or SIGTERM: it drops the run, and with it the load under way.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_load_makes_no_more_calls() {
        for shape in [Shape::Closed(8), Shape::Open(1000.0)] {
            let calls = Arc::new(AtomicU64::new(0));
            let count = counting(&calls);
            // Each call waits a moment, as a call over the network does.
            let plan = plan(Duration::from_secs(60));
            let load = drive("dropped", &plan, shape, move || {
                count();
                async {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    Ok(())
                }
            });
            assert!(
                tokio::time::timeout(Duration::from_millis(300), load).await.is_err(),
                "the load ran for its whole minute"
            );
            assert!(calls.load(Ordering::Relaxed) > 0, "{shape:?}: no call was made");
            tokio::time::sleep(Duration::from_millis(50)).await; // calls in flight end or are aborted
            let after_drop = calls.load(Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert_eq!(
                calls.load(Ordering::Relaxed),
                after_drop,
                "{shape:?}: the load's callers kept calling after it was dropped"
            );
        }
    }

    /// Calls that fail without waiting — what a caller sees once its target is killed, or once the
    /// runtime's shutdown has stopped its channel's worker task — must not pin a worker thread: the
    /// interrupted harness could not exit (the runtime's shutdown waits for its worker threads) until
    /// the scenario's planned end.
    #[test]
    fn callers_whose_calls_fail_at_once_do_not_hold_up_the_runtime() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let calls = Arc::new(AtomicU64::new(0));
        let count = counting(&calls);
        let load = runtime.spawn(async move {
            drive("refused", &plan(Duration::from_secs(20)), Shape::Closed(4), move || {
                count();
                std::future::ready(Err(anyhow::anyhow!("connection refused")))
            })
            .await
        });
        std::thread::sleep(Duration::from_millis(200));
        assert!(calls.load(Ordering::Relaxed) > 0, "no call was made");

        let interrupted = std::time::Instant::now();
        load.abort();
        runtime.shutdown_timeout(Duration::from_secs(5));
        assert!(
            interrupted.elapsed() < Duration::from_secs(2),
            "the runtime took {:?} to shut down",
            interrupted.elapsed()
        );
        let after_shutdown = calls.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            calls.load(Ordering::Relaxed),
            after_shutdown,
            "callers kept calling after their load was aborted and their runtime shut down"
        );
    }

    #[tokio::test]
    async fn an_owned_task_is_aborted_with_its_owner() {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let owned = Owned::spawn(async move {
            let _tx = tx; // the channel closes when the task is gone
            std::future::pending::<()>().await;
        });
        drop(owned);
        assert!(
            tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .unwrap()
                .is_none(),
            "the task outlived its owner"
        );
    }
}
