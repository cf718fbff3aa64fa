//! The edge gateway: one port (8080) for native gRPC over HTTP/2 and grpc-web over HTTP/1.1 or HTTP/2
//! (binary and text), CORS for configured browser origins, JWT authentication, the role policy, a rate
//! limit per subject, message size and time limits, limits per client address, and the dashboard page.
//! Calls are routed by gRPC service name to the service that owns them and come back unchanged. Health
//! and reflection (describing every routed service) are answered by the gateway itself, without
//! credentials.

mod assets;
pub mod auth;
mod config;
mod drain;
mod edge;
mod peer;
pub mod policy;
mod rate;
mod slots;
mod web;

use std::net::SocketAddr;

use baemin_mesh_client::ResendUnsentLayer;
use baemin_mesh_runtime::{Service, StartupError};
use baemin_mesh_server::{
    CatchPanicLayer, DecodeErrorLayer, MeshServer, MessageLimitLayer, Shutdown,
    config::{ConfigError, Env},
    within_grace,
};
use baemin_mesh_telemetry::GrpcClientLayer;
use futures::FutureExt;
use http::{HeaderName, Method};
use tonic::{service::Routes, transport::Server};
use tonic_health::ServingStatus;
use tower::Layer;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use config::Config;
use edge::{Edge, Upstreams};

/// The gateway, bound, ready to run.
pub struct Application {
    config: Config,
    server: MeshServer,
}

impl Service for Application {
    const NAME: &'static str = "gateway";
    type Config = Config;

    fn config(env: &dyn Env) -> Result<Config, ConfigError> {
        Config::from_env(env)
    }

    async fn build(config: Config) -> Result<Self, StartupError> {
        // Health speaks for the gateway only (""): whether call or report are up is theirs to say.
        let server = MeshServer::bind(config.listen_addr, config.admin_addr, &[])
            .await?
            .drain_delay(config.shutdown_delay);
        Ok(Self { config, server })
    }

    fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    fn admin_addr(&self) -> SocketAddr {
        self.server.admin_addr()
    }

    async fn run(self, shutdown: Shutdown) -> Result<(), StartupError> {
        let Self { config, server } = self;
        let client = GrpcClientLayer::new(server.metrics());
        let upstreams = Upstreams::new(
            config
                .upstreams
                .into_iter()
                .map(|(service, short, endpoint)| {
                    // A client's request is buffered to be resent: one message, arrived in time.
                    let bound = ResendUnsentLayer::bounded(
                        config.max_message_bytes.saturating_add(5),
                        config.request_read_timeout,
                    );
                    let channel = bound.layer(endpoint.connect_lazy());
                    (service, short, client.layer(channel))
                })
                .collect(),
        );
        let edge = Edge::new(
            config.verifier,
            config.identity_key,
            rate::RateLimiter::new(config.rate),
            peer::AuthFailures::new(config.peer_limits.auth_failures_per_minute),
            slots::Slots::new(config.max_watches_per_subject),
            upstreams,
            shutdown.clone(),
        );
        let routes = Routes::from(assets::routes().fallback_service(edge));
        let serving = server.serving();
        let parts = server.into_parts(routes, shutdown.clone())?;
        serving.set(ServingStatus::Serving).await;
        tracing::info!(
            addr = %config.listen_addr,
            tls = config.tls.is_some(),
            "gateway serving gRPC, grpc-web and the dashboard"
        );
        let router = Server::builder()
            .accept_http1(true)
            .max_concurrent_streams(config.max_concurrent_streams)
            .layer(peer::ClientAddressLayer::new(config.peer_limits.trusted_proxy_hops))
            .layer(cors(config.cors_origins))
            .layer(web::GrpcWebOnlyLayer)
            // Inside grpc-web translation, so it sees gRPC and its trailers.
            .layer(
                tower::ServiceBuilder::new()
                    .map_response(|r: http::Response<_>| r.map(tonic::body::Body::new))
                    .layer(parts.telemetry)
                    .layer(DecodeErrorLayer)
                    .layer(CatchPanicLayer),
            )
            .layer(peer::AnonymousStreamsLayer::new(config.peer_limits.anonymous_streams))
            .layer(MessageLimitLayer::new(config.max_message_bytes).read_timeout(config.request_read_timeout))
            .add_routes(parts.routes);
        // Counted from accept, before TLS: a connection past its peer's limit costs no handshake.
        let incoming = peer::PeerConnections::new(parts.incoming, config.peer_limits.connections);
        let serve = match &config.tls {
            Some(tls) => router
                .serve_with_incoming_shutdown(tls.incoming(incoming), parts.drain)
                .boxed(),
            None => router.serve_with_incoming_shutdown(incoming, parts.drain).boxed(),
        };
        // Watches through the gateway end as soon as shutdown begins (see `drain`); anything else still
        // open after the grace period is cut.
        let served = within_grace(serve, &shutdown, config.shutdown_grace, Self::NAME).await;
        drop(parts.admin);
        served.map_err(|e| StartupError::Serve(e.into()))
    }
}

/// CORS for the configured origins only; the grpc-web headers a browser client sends and reads.
fn cors(origins: Vec<http::HeaderValue>) -> CorsLayer {
    let header = HeaderName::from_static;
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::POST, Method::OPTIONS])
        .allow_headers([
            http::header::CONTENT_TYPE,
            http::header::AUTHORIZATION,
            header("x-grpc-web"),
            header("x-user-agent"),
            header("grpc-timeout"),
        ])
        .expose_headers([
            header("grpc-status"),
            header("grpc-message"),
            header("grpc-status-details-bin"),
        ])
        .max_age(std::time::Duration::from_secs(600))
}
