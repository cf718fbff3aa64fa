//! Load: closed loop (N callers, each making its next call when the last one returns) and open loop
//! (calls started at a fixed rate whatever the answers do), a warm-up that is not measured, and latency
//! in an HDR histogram.
//!
//! Closed loop: the calls that *end* inside the measured window count, whenever they started (calls
//! still running at the window's end balance those already running at its start). Open loop: every
//! call *due* inside the window counts, its latency from when it was due, not from when it was sent,
//! so a stalled server cannot hide its queue (coordinated omission). A call gets [`CALL_TIMEOUT`];
//! one that has not ended by then is an error, never silently left out.

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
    let progress = tokio::spawn(show_progress(name.to_owned(), *plan, started, Arc::clone(&done)));
    let tally = match shape {
        Shape::Closed(callers) => closed(callers, op, measure_from, end, &done).await,
        Shape::Open(rate) => open(rate, op, started, measure_from, end, &done).await,
    };
    progress.abort();
    let _ = progress.await;
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
    let workers: Vec<_> = (0..callers)
        .map(|_| {
            let op = Arc::clone(&op);
            let done = Arc::clone(done);
            tokio::spawn(async move {
                let mut tally = Tally::new();
                loop {
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
            })
        })
        .collect();
    let mut total = Tally::new();
    for worker in workers {
        if let Ok(tally) = worker.await {
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
