//! The layer of [`super::CircuitBreaker`].

use std::{fmt, sync::Arc};

use tower::Layer;

use super::{
    CircuitBreaker,
    classify::{Classify, GrpcClassifier},
    config::{BreakerConfig, BreakerConfigError},
    handle::{BreakerHandle, Shared},
};

/// Wraps services in a [`CircuitBreaker`]. Every service this layer (or a clone of it) builds
/// shares one circuit: one layer per dependency.
pub struct CircuitBreakerLayer<C = GrpcClassifier> {
    shared: Arc<Shared>,
    classifier: C,
}

impl<C: Classify> CircuitBreakerLayer<C> {
    /// A closed circuit for `dependency` (named in errors and logs), judged by `classifier` (cloned
    /// into every call: keep it cheap to clone, as [`GrpcClassifier`] and plain closures are).
    /// Refuses a configuration the circuit cannot work with.
    pub fn new(dependency: &'static str, config: BreakerConfig, classifier: C) -> Result<Self, BreakerConfigError> {
        config.validate()?;
        Ok(Self {
            shared: Arc::new(Shared::new(dependency, config)),
            classifier,
        })
    }
}

impl<C> CircuitBreakerLayer<C> {
    /// Reports the circuit's state, transitions and refusals into `metrics`.
    pub fn observed(self, metrics: &baemin_mesh_telemetry::Metrics) -> Self {
        self.shared.observe(metrics);
        self
    }

    /// A read-only view of the circuit, to keep once the layer is consumed by a `ServiceBuilder`.
    pub fn handle(&self) -> BreakerHandle {
        BreakerHandle::new(Arc::clone(&self.shared))
    }
}

impl<C: Clone> Clone for CircuitBreakerLayer<C> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            classifier: self.classifier.clone(),
        }
    }
}

impl<C> fmt::Debug for CircuitBreakerLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerLayer")
            .field("dependency", &self.shared.dependency())
            .finish_non_exhaustive()
    }
}

impl<S, C: Clone> Layer<S> for CircuitBreakerLayer<C> {
    type Service = CircuitBreaker<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        CircuitBreaker::new(inner, Arc::clone(&self.shared), self.classifier.clone())
    }
}
