//! Building the channel that every synchronous mesh client uses.

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use tower::ServiceBuilder;

use crate::deadline::{Deadline, DeadlineLayer};

/// The transport under every mesh client: a lazily connecting HTTP/2 channel behind the mesh layers.
pub type MeshChannel = Deadline<Channel>;

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
}

/// The client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
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
pub fn connect_lazy(settings: &ClientSettings) -> Result<MeshChannel, ClientError> {
    let endpoint = Endpoint::from_shared(settings.url.clone())
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
    Ok(ServiceBuilder::new()
        .layer(DeadlineLayer::new(settings.dependency, settings.deadline))
        .service(channel))
}
