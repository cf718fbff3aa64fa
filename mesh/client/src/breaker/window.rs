//! Sliding windows of call outcomes: the last N calls, or the calls of the last N seconds, with
//! running totals so that recording an outcome is O(1) (amortised, for the time window).

use tokio::time::Instant;

use super::config::{BreakerConfig, WindowType};

/// One recorded call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Recorded {
    /// The classifier counted it as a failure.
    pub failure: bool,
    /// It took longer than the slow-call duration.
    pub slow: bool,
}

/// Totals over the calls a window holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    /// Calls recorded.
    pub calls: u64,
    /// Of which failures.
    pub failures: u64,
    /// Of which slow (successful or not).
    pub slow: u64,
}

impl Tally {
    pub(crate) fn add(&mut self, r: Recorded) {
        self.calls += 1;
        self.failures += u64::from(r.failure);
        self.slow += u64::from(r.slow);
    }

    fn remove(&mut self, other: &Tally) {
        // Never below zero by construction; saturating keeps a logic slip from ever panicking.
        self.calls = self.calls.saturating_sub(other.calls);
        self.failures = self.failures.saturating_sub(other.failures);
        self.slow = self.slow.saturating_sub(other.slow);
    }

    /// Failures, in percent of the calls (0 when there are none).
    pub(crate) fn failure_rate(&self) -> f64 {
        percent(self.failures, self.calls)
    }

    /// Slow calls, in percent of the calls (0 when there are none).
    pub(crate) fn slow_call_rate(&self) -> f64 {
        percent(self.slow, self.calls)
    }

    /// Whether either rate reached its threshold.
    pub(crate) fn exceeds(&self, config: &BreakerConfig) -> bool {
        self.calls > 0
            && (self.failure_rate() >= config.failure_rate_threshold
                || self.slow_call_rate() >= config.slow_call_rate_threshold)
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// The last `size` outcomes in a ring, with running totals.
#[derive(Debug)]
pub(crate) struct CountWindow {
    ring: Vec<Recorded>,
    /// Slot the next outcome goes to (the oldest one once the ring is full).
    next: usize,
    len: usize,
    tally: Tally,
}

impl CountWindow {
    fn new(size: usize) -> Self {
        Self {
            ring: vec![Recorded::default(); size.max(1)],
            next: 0,
            len: 0,
            tally: Tally::default(),
        }
    }

    fn record(&mut self, r: Recorded) {
        let capacity = self.ring.len();
        if let Some(slot) = self.ring.get_mut(self.next) {
            if self.len == capacity {
                // The oldest outcome slides out.
                let old = *slot;
                self.tally.remove(&Tally {
                    calls: 1,
                    failures: u64::from(old.failure),
                    slow: u64::from(old.slow),
                });
            } else {
                self.len += 1;
            }
            *slot = r;
            self.tally.add(r);
        }
        self.next = (self.next + 1) % capacity;
    }

    fn reset(&mut self) {
        self.next = 0;
        self.len = 0;
        self.tally = Tally::default();
    }
}

/// Outcomes in per-second buckets over the last `size` seconds (the current one included), with
/// running totals. Moving to a later second empties the buckets that fall out, one per elapsed
/// second, or all at once after a long quiet spell: O(1) amortised.
#[derive(Debug)]
pub(crate) struct TimeWindow {
    origin: Instant,
    buckets: Vec<Tally>,
    /// The latest second (since `origin`) the window has moved to; its bucket is `head % len`.
    head: u64,
    tally: Tally,
}

impl TimeWindow {
    fn new(seconds: usize, now: Instant) -> Self {
        Self {
            origin: now,
            buckets: vec![Tally::default(); seconds.max(1)],
            head: 0,
            tally: Tally::default(),
        }
    }

    fn advance(&mut self, now: Instant) {
        let second = now.saturating_duration_since(self.origin).as_secs();
        if second <= self.head {
            return;
        }
        let len = self.buckets.len() as u64;
        if second - self.head >= len {
            self.buckets.fill(Tally::default());
            self.tally = Tally::default();
        } else {
            for s in self.head + 1..=second {
                if let Some(bucket) = self.buckets.get_mut((s % len) as usize) {
                    self.tally.remove(bucket);
                    *bucket = Tally::default();
                }
            }
        }
        self.head = second;
    }

    fn record(&mut self, r: Recorded, now: Instant) {
        self.advance(now);
        let len = self.buckets.len() as u64;
        if let Some(bucket) = self.buckets.get_mut((self.head % len) as usize) {
            bucket.add(r);
            self.tally.add(r);
        }
    }

    fn reset(&mut self) {
        self.buckets.fill(Tally::default());
        self.tally = Tally::default();
    }
}

/// The closed circuit's window, of the configured type.
#[derive(Debug)]
pub(crate) enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Window {
    pub(crate) fn new(config: &BreakerConfig, now: Instant) -> Self {
        let size = config.window_size as usize;
        match config.window_type {
            WindowType::Count => Self::Count(CountWindow::new(size)),
            WindowType::Time => Self::Time(TimeWindow::new(size, now)),
        }
    }

    /// Adds one outcome and returns the totals over the window.
    pub(crate) fn record(&mut self, r: Recorded, now: Instant) -> Tally {
        match self {
            Self::Count(w) => {
                w.record(r);
                w.tally
            }
            Self::Time(w) => {
                w.record(r, now);
                w.tally
            }
        }
    }

    /// The totals over the window as of `now`.
    pub(crate) fn tally(&mut self, now: Instant) -> Tally {
        match self {
            Self::Count(w) => w.tally,
            Self::Time(w) => {
                w.advance(now);
                w.tally
            }
        }
    }

    /// Forgets every outcome.
    pub(crate) fn reset(&mut self) {
        match self {
            Self::Count(w) => w.reset(),
            Self::Time(w) => w.reset(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const OK: Recorded = Recorded {
        failure: false,
        slow: false,
    };
    const FAIL: Recorded = Recorded {
        failure: true,
        slow: false,
    };

    #[test]
    fn the_count_window_keeps_only_the_last_n_outcomes() {
        let mut w = CountWindow::new(3);
        for r in [FAIL, FAIL, OK, OK] {
            w.record(r);
        }
        assert_eq!((w.tally.calls, w.tally.failures), (3, 1));
        w.record(OK);
        assert_eq!((w.tally.calls, w.tally.failures), (3, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn the_time_window_drops_each_second_as_it_falls_out_and_everything_after_a_long_gap() {
        let start = Instant::now();
        let mut w = TimeWindow::new(3, start);
        w.record(FAIL, start);
        w.record(FAIL, start + Duration::from_millis(1500));
        w.record(OK, start + Duration::from_millis(2999));
        assert_eq!(w.tally.calls, 3);
        w.advance(start + Duration::from_secs(3));
        assert_eq!((w.tally.calls, w.tally.failures), (2, 1), "second 0 fell out");
        w.advance(start + Duration::from_secs(60));
        assert_eq!(w.tally, Tally::default());
        w.record(FAIL, start + Duration::from_secs(61));
        assert_eq!((w.tally.calls, w.tally.failures), (1, 1));
    }
}
