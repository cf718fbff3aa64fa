//! What a circuit reports: `baemin_breaker_state{dependency}` (0 closed, 1 open, 2 half-open),
//! `baemin_breaker_transitions_total{dependency,to}`, `baemin_breaker_refused_total{dependency}`, and
//! a span event on the calling span for every call it refuses. Nothing is recorded per admitted call.

use baemin_mesh_telemetry::{Counter, Family, Gauge, Metrics};
use opentelemetry::KeyValue;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::State;

type Labels = Vec<(&'static str, &'static str)>;

#[derive(Debug)]
pub(crate) struct Observer {
    dependency: &'static str,
    state: Gauge,
    transitions: Family<Labels, Counter>,
    refused: Counter,
}

impl Observer {
    pub(crate) fn new(metrics: &Metrics, dependency: &'static str) -> Self {
        let labels = vec![("dependency", dependency)];
        let state = metrics.register(
            "breaker_state",
            "Circuit state per dependency: 0 closed, 1 open, 2 half-open",
            Family::<Labels, Gauge>::default(),
        );
        let refused = metrics.register(
            "breaker_refused",
            "Calls the circuit refused without calling the dependency",
            Family::<Labels, Counter>::default(),
        );
        let transitions: Family<Labels, Counter> = metrics.register(
            "breaker_transitions",
            "Times the circuit entered a state",
            Family::default(),
        );
        // Every series exists from the start (at 0), so rates and alerts see the first transition.
        for to in [State::Closed, State::Open, State::HalfOpen] {
            let _ = transitions.get_or_create(&vec![("dependency", dependency), ("to", to.as_str())]);
        }
        Self {
            dependency,
            state: state.get_or_create(&labels).clone(),
            transitions,
            refused: refused.get_or_create(&labels).clone(),
        }
    }

    pub(crate) fn entered(&self, to: State) {
        self.state.set(match to {
            State::Closed => 0,
            State::Open => 1,
            State::HalfOpen => 2,
        });
        self.transitions
            .get_or_create(&vec![("dependency", self.dependency), ("to", to.as_str())])
            .inc();
    }

    pub(crate) fn refused(&self, state: State) {
        self.refused.inc();
        tracing::Span::current().add_event(
            "circuit refused the call",
            vec![
                KeyValue::new("breaker.dependency", self.dependency),
                KeyValue::new("breaker.state", state.as_str()),
            ],
        );
    }
}
