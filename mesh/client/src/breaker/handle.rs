//! The circuit shared by every clone of a breaker, and the read-only [`BreakerHandle`] on it.

use std::{
    sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError},
    time::Duration,
};

use tokio::time::Instant;

use super::{
    config::BreakerConfig,
    observe::Observer,
    state::{Circuit, Metrics, Permit, State, Transition, Transitions},
};

/// One dependency's circuit. The mutex guards O(1) bookkeeping only and is never held across an
/// await, a log line or a call into the wrapped service.
#[derive(Debug)]
pub(crate) struct Shared {
    dependency: &'static str,
    circuit: Mutex<Circuit>,
    observer: OnceLock<Observer>,
}

impl Shared {
    pub(crate) fn new(dependency: &'static str, config: BreakerConfig) -> Self {
        Self {
            dependency,
            circuit: Mutex::new(Circuit::new(config, Instant::now())),
            observer: OnceLock::new(),
        }
    }

    /// Reports into `metrics` from now on (the first registry given wins).
    pub(crate) fn observe(&self, metrics: &baemin_mesh_telemetry::Metrics) {
        let _ = self.observer.set(Observer::new(metrics, self.dependency));
    }

    /// A call was refused in `state`.
    pub(crate) fn refused(&self, state: State) {
        if let Some(observer) = self.observer.get() {
            observer.refused(state);
        }
    }

    pub(crate) fn dependency(&self) -> &'static str {
        self.dependency
    }

    fn lock(&self) -> MutexGuard<'_, Circuit> {
        // Nothing panics while holding the lock; if something ever did, the counters are still
        // consistent enough to go on with.
        self.circuit.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Leave to call the dependency at `now`, or the state that refuses it.
    pub(crate) fn acquire(&self, now: Instant) -> Result<Permit, State> {
        let (result, transition) = self.lock().acquire(now);
        self.log(transition);
        result
    }

    pub(crate) fn record(&self, permit: Permit, failure: bool, elapsed: Duration, now: Instant) {
        let transition = self.lock().record(permit, failure, elapsed, now);
        self.log(transition);
    }

    pub(crate) fn release(&self, permit: Permit) {
        self.lock().release(permit);
    }

    pub(crate) fn abandon(&self, permit: Permit, elapsed: Duration, now: Instant) {
        let transition = self.lock().abandon(permit, elapsed, now);
        self.log(transition);
    }

    fn log(&self, transition: Option<Transition>) {
        let Some(Transition { from, to, tally }) = transition else {
            return;
        };
        if let Some(observer) = self.observer.get() {
            observer.entered(to);
        }
        let dependency = self.dependency;
        let (calls, failure_rate, slow_call_rate) = (tally.calls, tally.failure_rate(), tally.slow_call_rate());
        match to {
            State::Open => tracing::warn!(
                dependency,
                %from,
                %to,
                calls,
                failure_rate,
                slow_call_rate,
                "circuit opened: calls to {dependency} fail fast for now"
            ),
            State::HalfOpen => tracing::info!(
                dependency,
                %from,
                %to,
                "circuit half-open: letting trial calls through to {dependency}"
            ),
            State::Closed => tracing::info!(
                dependency,
                %from,
                %to,
                calls,
                failure_rate,
                slow_call_rate,
                "circuit closed: {dependency} answers again"
            ),
        }
    }
}

/// A cheap, cloneable view of one circuit, for health pages and metrics.
#[derive(Debug, Clone)]
pub struct BreakerHandle {
    shared: Arc<Shared>,
}

impl BreakerHandle {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The dependency the circuit protects.
    pub fn dependency(&self) -> &'static str {
        self.shared.dependency
    }

    /// The current state. An open circuit whose wait is over still reads `Open` until the next
    /// call turns it half-open.
    pub fn state(&self) -> State {
        self.shared.lock().state()
    }

    /// How many times each state was entered.
    pub fn transitions(&self) -> Transitions {
        self.shared.lock().transitions()
    }

    /// The figures the circuit judges on right now.
    pub fn metrics(&self) -> Metrics {
        self.shared.lock().metrics(Instant::now())
    }

    /// The settings the circuit runs with.
    pub fn config(&self) -> BreakerConfig {
        self.shared.lock().config().clone()
    }
}
