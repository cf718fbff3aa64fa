//! The state machine of one circuit: Closed → Open → HalfOpen → Closed or Open, with resilience4j's
//! rules. Plain data behind the breaker's mutex; every method is O(1) (amortised) and never waits.

use std::{fmt, time::Duration};

use tokio::time::Instant;

use super::{
    config::BreakerConfig,
    window::{Recorded, Tally, Window},
};

/// The state of a circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Calls go through; outcomes fill the sliding window.
    Closed,
    /// Calls fail fast without reaching the dependency.
    Open,
    /// A fixed number of trial calls go through; the rest fail fast.
    HalfOpen,
}

impl State {
    /// `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many times the circuit entered each state since it was built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transitions {
    /// Entries into [`State::Closed`] (from half-open).
    pub to_closed: u64,
    /// Entries into [`State::Open`].
    pub to_open: u64,
    /// Entries into [`State::HalfOpen`].
    pub to_half_open: u64,
}

impl Transitions {
    /// Entries into `state`.
    pub fn entries_into(&self, state: State) -> u64 {
        match state {
            State::Closed => self.to_closed,
            State::Open => self.to_open,
            State::HalfOpen => self.to_half_open,
        }
    }

    fn count(&mut self, state: State) {
        let n = match state {
            State::Closed => &mut self.to_closed,
            State::Open => &mut self.to_open,
            State::HalfOpen => &mut self.to_half_open,
        };
        *n += 1;
    }
}

/// A snapshot of what the circuit currently judges on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metrics {
    /// The state.
    pub state: State,
    /// Calls counted: the sliding window when closed, the trial calls when half-open, and the
    /// figures that opened the circuit when open.
    pub buffered_calls: u64,
    /// Of which failures.
    pub failed_calls: u64,
    /// Of which slow.
    pub slow_calls: u64,
    /// `failed_calls` in percent of `buffered_calls` (0 when empty, even below the minimum calls).
    pub failure_rate: f64,
    /// `slow_calls` in percent of `buffered_calls` (0 when empty).
    pub slow_call_rate: f64,
    /// Calls refused without reaching the dependency, since the circuit was built.
    pub not_permitted_calls: u64,
}

/// Leave to make one call, tied to the period (epoch) of the state that granted it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Permit {
    epoch: u64,
}

/// A change of state, reported so the caller logs it once the lock is released.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Transition {
    pub from: State,
    pub to: State,
    /// The figures the decision was made on (empty for Open → HalfOpen).
    pub tally: Tally,
}

#[derive(Debug)]
enum Phase {
    Closed,
    Open {
        until: Instant,
        tally: Tally,
    },
    HalfOpen {
        since: Instant,
        admitted: u32,
        tally: Tally,
    },
}

impl Phase {
    fn state(&self) -> State {
        match self {
            Self::Closed => State::Closed,
            Self::Open { .. } => State::Open,
            Self::HalfOpen { .. } => State::HalfOpen,
        }
    }
}

/// One circuit: the state, the closed window and the counters.
#[derive(Debug)]
pub(crate) struct Circuit {
    config: BreakerConfig,
    minimum_calls: u64,
    phase: Phase,
    window: Window,
    /// Bumped on every transition: an outcome only counts in the period whose permit it holds.
    epoch: u64,
    transitions: Transitions,
    not_permitted: u64,
}

impl Circuit {
    /// A closed circuit; `config` must have been validated.
    pub(crate) fn new(config: BreakerConfig, now: Instant) -> Self {
        Self {
            minimum_calls: u64::from(config.effective_minimum_calls()),
            window: Window::new(&config, now),
            config,
            phase: Phase::Closed,
            epoch: 0,
            transitions: Transitions::default(),
            not_permitted: 0,
        }
    }

    pub(crate) fn config(&self) -> &BreakerConfig {
        &self.config
    }

    pub(crate) fn state(&self) -> State {
        self.phase.state()
    }

    pub(crate) fn transitions(&self) -> Transitions {
        self.transitions
    }

    /// Asks to make a call. An open circuit whose wait is over turns half-open here (lazily, on
    /// the first call after the wait, as resilience4j does without automatic transition); a
    /// half-open one that outstayed `half_open_max_wait` opens again.
    pub(crate) fn acquire(&mut self, now: Instant) -> (Result<Permit, State>, Option<Transition>) {
        match &mut self.phase {
            Phase::Closed => (Ok(self.permit()), None),
            Phase::Open { until, .. } if now >= *until => {
                let t = self.enter(
                    Phase::HalfOpen {
                        since: now,
                        admitted: 1,
                        tally: Tally::default(),
                    },
                    Tally::default(),
                );
                (Ok(self.permit()), Some(t))
            }
            Phase::Open { .. } => {
                self.not_permitted += 1;
                (Err(State::Open), None)
            }
            Phase::HalfOpen { since, admitted, tally } => {
                let expired = self.config.half_open_max_wait.is_some_and(|max| now >= *since + max);
                if expired {
                    let tally = *tally;
                    let t = self.open(now, tally);
                    self.not_permitted += 1;
                    (Err(State::Open), Some(t))
                } else if *admitted < self.config.half_open_calls {
                    *admitted += 1;
                    (Ok(self.permit()), None)
                } else {
                    self.not_permitted += 1;
                    (Err(State::HalfOpen), None)
                }
            }
        }
    }

    /// Records the outcome of a permitted call that took `elapsed`.
    pub(crate) fn record(
        &mut self,
        permit: Permit,
        failure: bool,
        elapsed: Duration,
        now: Instant,
    ) -> Option<Transition> {
        if permit.epoch != self.epoch {
            // Granted in an earlier period: it says nothing about this one.
            return None;
        }
        let recorded = Recorded {
            failure,
            slow: elapsed > self.config.slow_call_duration,
        };
        match &mut self.phase {
            Phase::Closed => {
                let tally = self.window.record(recorded, now);
                if tally.calls >= self.minimum_calls && tally.exceeds(&self.config) {
                    Some(self.open(now, tally))
                } else {
                    None
                }
            }
            Phase::HalfOpen { tally, .. } => {
                tally.add(recorded);
                let tally = *tally;
                if tally.calls < u64::from(self.config.half_open_calls) {
                    None
                } else if tally.exceeds(&self.config) {
                    Some(self.open(now, tally))
                } else {
                    Some(self.enter(Phase::Closed, tally))
                }
            }
            // No permit is granted while open, so a matching epoch cannot get here.
            Phase::Open { .. } => None,
        }
    }

    /// A permitted call ended without an outcome to record (ignored by the classifier, or dropped
    /// before it ended): a half-open circuit gets its trial slot back.
    pub(crate) fn release(&mut self, permit: Permit) {
        if permit.epoch != self.epoch {
            return;
        }
        if let Phase::HalfOpen { admitted, .. } = &mut self.phase {
            *admitted = admitted.saturating_sub(1);
        }
    }

    /// A permitted call was dropped after `elapsed` without an outcome. If it already ran longer
    /// than the slow-call duration it counts as a slow call (it was slow, whatever it would have
    /// answered); otherwise it is released.
    pub(crate) fn abandon(&mut self, permit: Permit, elapsed: Duration, now: Instant) -> Option<Transition> {
        if elapsed > self.config.slow_call_duration {
            self.record(permit, false, elapsed, now)
        } else {
            self.release(permit);
            None
        }
    }

    pub(crate) fn metrics(&mut self, now: Instant) -> Metrics {
        let tally = match &self.phase {
            Phase::Closed => self.window.tally(now),
            Phase::Open { tally, .. } | Phase::HalfOpen { tally, .. } => *tally,
        };
        Metrics {
            state: self.state(),
            buffered_calls: tally.calls,
            failed_calls: tally.failures,
            slow_calls: tally.slow,
            failure_rate: tally.failure_rate(),
            slow_call_rate: tally.slow_call_rate(),
            not_permitted_calls: self.not_permitted,
        }
    }

    fn permit(&self) -> Permit {
        Permit { epoch: self.epoch }
    }

    fn open(&mut self, now: Instant, tally: Tally) -> Transition {
        let until = now + self.config.open_wait;
        self.enter(Phase::Open { until, tally }, tally)
    }

    fn enter(&mut self, phase: Phase, tally: Tally) -> Transition {
        let from = self.phase.state();
        let to = phase.state();
        // The closed window starts empty each time the circuit closes; clearing it on the way
        // out keeps that O(window) work off the closed path.
        if from == State::Closed {
            self.window.reset();
        }
        self.phase = phase;
        self.epoch += 1;
        self.transitions.count(to);
        Transition { from, to, tally }
    }
}
