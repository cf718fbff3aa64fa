//! Building the channel that every synchronous mesh client uses.

use std::time::Duration;

use baemin_mesh_server::config::{ConfigError, Settings};
use baemin_mesh_telemetry::{GrpcClient, GrpcClientLayer, Metrics};
use tonic::transport::Channel;
use tower::ServiceBuilder;

use crate::{
    breaker::{BreakerConfig, CircuitBreaker, CircuitBreakerLayer, GrpcClassifier, WindowType},
    deadline::{Deadline, DeadlineLayer},
    identity::{Sign, SignLayer, Signer},
    limit::{InFlightLimit, InFlightLimitLayer},
    resend::{ResendUnsent, ResendUnsentLayer},
};

/// The transport under every mesh client: a lazily connecting HTTP/2 channel behind the mesh layers,
/// outermost first: telemetry (a client span per call, its context sent as `traceparent`, latency by
/// method and code: refusals by the layers below included), in-flight limit (a shed call never reaches the breaker: the dependency was not
/// asked), circuit breaker (so deadline expiries count as failures), deadline, the caller's signed identity, channel. Retries of
/// idempotent calls wrap the whole stack ([`crate::RetryPolicy`]), so each attempt passes every layer.
pub type MeshChannel = GrpcClient<InFlightLimit<CircuitBreaker<Deadline<Sign<ResendUnsent<Channel>>>>>>;

/// How a client reaches one dependency.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Name of the dependency, used in error messages ("payment").
    pub dependency: &'static str,
    /// `http://host:port` of the dependency.
    pub url: String,
    /// Longest time one call may take, end to end; also sent as `grpc-timeout`.
    pub deadline: Duration,
    /// Longest time to establish a connection.
    pub connect_timeout: Duration,
    /// At most this many calls in flight to the dependency from this process; more are refused at once.
    pub max_in_flight: usize,
    /// The circuit breaker guarding the dependency.
    pub breaker: BreakerConfig,
    /// Who the calls come from, signed (see [`Self::signed_as`]); unsigned without it.
    pub signer: Option<Signer>,
}

impl ClientSettings {
    /// Reads `<PREFIX>_URL` (an `http(s)://` URL, default `default_url`), `<PREFIX>_DEADLINE`
    /// (default 2 s), `<PREFIX>_MAX_IN_FLIGHT` (default 256) and the breaker's `<PREFIX>_BREAKER_*` for
    /// `dependency`. Connecting counts against the deadline, so it is also the connect timeout.
    pub fn from_settings(
        dependency: &'static str,
        prefix: &str,
        default_url: &str,
        s: &Settings<'_>,
    ) -> Result<Self, ConfigError> {
        let url_key = format!("{prefix}_URL");
        let url = s.url(&url_key, default_url, &["http", "https"])?;
        // The channel is built at start-up from this URL; refuse here what it would refuse there.
        if let Err(err) = crate::endpoint(&url, None) {
            return Err(ConfigError::new(&url_key, &url, err));
        }
        let deadline = s.duration(&format!("{prefix}_DEADLINE"), Duration::from_secs(2))?;
        let limit_key = format!("{prefix}_MAX_IN_FLIGHT");
        let max_in_flight = s.parse(&limit_key, 256_usize)?;
        if max_in_flight == 0 {
            return Err(ConfigError::new(&limit_key, "0", "must be at least 1"));
        }
        let breaker = BreakerConfig::from_settings_or(prefix, s, Self::breaker_defaults(deadline))?;
        Ok(Self {
            dependency,
            url,
            deadline,
            connect_timeout: deadline,
            max_in_flight,
            breaker,
            signer: None,
        })
    }

    /// Calls made with these settings carry `service` as their signed identity when `key` is set.
    pub fn signed_as(mut self, service: &'static str, key: Option<baemin_mesh_server::identity::IdentityKey>) -> Self {
        self.signer = key.map(|key| Signer::new(service, key));
        self
    }

    /// The mesh's breaker defaults for a dependency called with `deadline`: judge the last 20 calls once
    /// 10 were made; open at 50 % failures, or when 80 % took longer than half the deadline; probe with
    /// 3 calls after 10 s. (resilience4j's 60 s slow-call default would never fire under a 2 s deadline.)
    pub fn breaker_defaults(deadline: Duration) -> BreakerConfig {
        BreakerConfig {
            window_type: WindowType::Count,
            window_size: 20,
            minimum_calls: 10,
            failure_rate_threshold: 50.0,
            slow_call_duration: (deadline / 2).max(Duration::from_millis(1)),
            slow_call_rate_threshold: 80.0,
            open_wait: Duration::from_secs(10),
            half_open_calls: 3,
            half_open_max_wait: None,
        }
    }
}

/// The client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The breaker settings are inconsistent.
    #[error("circuit breaker settings for {dependency}")]
    Breaker {
        /// The dependency.
        dependency: &'static str,
        /// Why.
        #[source]
        source: crate::breaker::BreakerConfigError,
    },
    /// The URL is not a valid endpoint.
    #[error("invalid URL {url:?} for {dependency}")]
    InvalidUrl {
        /// The dependency.
        dependency: &'static str,
        /// The URL.
        url: String,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
}

/// A channel to `settings.url` that connects on first use and reconnects by itself, wrapped in the
/// mesh layers. Building it never touches the network, so a service starts even if the dependency is down.
pub fn connect_lazy(settings: &ClientSettings, metrics: &Metrics) -> Result<MeshChannel, ClientError> {
    let endpoint = crate::endpoint(&settings.url, None)
        .map_err(|source| ClientError::InvalidUrl {
            dependency: settings.dependency,
            url: settings.url.clone(),
            source,
        })?
        .connect_timeout(settings.connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    let channel = endpoint.connect_lazy();
    let breaker = CircuitBreakerLayer::new(settings.dependency, settings.breaker.clone(), GrpcClassifier)
        .map_err(|source| ClientError::Breaker {
            dependency: settings.dependency,
            source,
        })?
        .observed(metrics);
    Ok(ServiceBuilder::new()
        .layer(GrpcClientLayer::new(metrics))
        .layer(InFlightLimitLayer::new(settings.dependency, settings.max_in_flight))
        .layer(breaker)
        .layer(DeadlineLayer::new(settings.dependency, settings.deadline))
        .layer(SignLayer::new(settings.signer.clone()))
        .layer(ResendUnsentLayer::default())
        .service(channel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_default_to_the_local_port_and_a_two_second_deadline() {
        let env: [(&str, &str); 0] = [];
        let c =
            ClientSettings::from_settings("payment", "PAYMENT", "http://127.0.0.1:8083", &Settings::new(&env)).unwrap();
        assert_eq!(
            (c.url.as_str(), c.deadline),
            ("http://127.0.0.1:8083", Duration::from_secs(2))
        );
    }

    #[test]
    fn a_bad_url_or_deadline_names_the_setting() {
        for (key, value) in [
            ("PAYMENT_URL", "payment:8083"),
            ("PAYMENT_URL", "http://bad host"),
            ("PAYMENT_DEADLINE", "0s"),
            ("PAYMENT_MAX_IN_FLIGHT", "0"),
            ("PAYMENT_MAX_IN_FLIGHT", "lots"),
        ] {
            let env = [(key, value)];
            let err =
                ClientSettings::from_settings("payment", "PAYMENT", "http://x:1", &Settings::new(&env)).unwrap_err();
            assert_eq!(err.key, key);
        }
    }
}
