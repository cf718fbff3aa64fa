//! Serving a service's gRPC routes with health (`grpc.health.v1`) and reflection (v1 and v1alpha),
//! and draining gracefully on shutdown.

use std::{future::Future, net::SocketAddr};

use tokio::net::TcpListener;
use tonic::{
    service::Routes,
    transport::{Server, server::TcpIncoming},
};
use tonic_health::{ServingStatus, server::HealthReporter};

use crate::Shutdown;

/// Serving failed: the listener, reflection set-up or the HTTP/2 server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The reflection descriptors could not be loaded.
    #[error("building the reflection service")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The transport failed.
    #[error("serving gRPC")]
    Transport(#[from] tonic::transport::Error),
    /// The listener failed.
    #[error("listener")]
    Io(#[from] std::io::Error),
}

/// Health of a running service: flip it to SERVING when its dependencies are ready.
#[derive(Clone)]
pub struct Serving {
    reporter: HealthReporter,
    services: Vec<&'static str>,
}

impl Serving {
    /// Reports `status` for the whole server ("") and for every named service.
    pub async fn set(&self, status: ServingStatus) {
        self.reporter.set_service_status("", status).await;
        for name in &self.services {
            self.reporter.set_service_status(*name, status).await;
        }
    }
}

/// How a service's server treats its callers.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Refuse calls without caller identity (UNAUTHENTICATED).
    pub require_identity: bool,
    /// Largest request message accepted; larger ones are RESOURCE_EXHAUSTED.
    pub max_message_bytes: usize,
}

/// A gRPC server with the mesh's standard services around a service's own routes.
pub struct MeshServer {
    listener: TcpListener,
    services: Vec<&'static str>,
    reporter: HealthReporter,
    health: tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>,
}

impl MeshServer {
    /// Binds `addr` (port 0 picks a free port). `services` are the full gRPC names served, for health.
    pub async fn bind(addr: SocketAddr, services: &[&'static str]) -> Result<Self, ServeError> {
        let listener = TcpListener::bind(addr).await?;
        let reporter = HealthReporter::new();
        let health = tonic_health::pb::health_server::HealthServer::new(
            tonic_health::server::HealthService::from_health_reporter(reporter.clone()),
        );
        let server = Self {
            listener,
            services: services.to_vec(),
            reporter,
            health,
        };
        server.serving().set(ServingStatus::NotServing).await;
        Ok(server)
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The health handle of this server.
    pub fn serving(&self) -> Serving {
        Serving {
            reporter: self.reporter.clone(),
            services: self.services.clone(),
        }
    }

    /// `routes` with health and reflection (v1 and v1alpha, describing every mesh service) added, the
    /// listener, and a future that completes once `shutdown` is cancelled and health went NOT_SERVING:
    /// the parts of [`Self::serve`], for a server that needs its own layers (the edge gateway).
    pub fn into_parts(
        self,
        routes: Routes,
        shutdown: Shutdown,
    ) -> Result<(Routes, TcpIncoming, impl Future<Output = ()> + Send + 'static), ServeError> {
        let reflection_v1 = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(baemin_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(baemin_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1alpha()?;
        let serving = self.serving();
        let routes = routes
            .add_service(self.health)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);
        let drain = async move {
            shutdown.cancelled().await;
            serving.set(ServingStatus::NotServing).await;
        };
        // Nagle off: gRPC writes small frames it wants sent now (the builder's `tcp_nodelay` only
        // applies to listeners tonic binds itself).
        let incoming = TcpIncoming::from(self.listener).with_nodelay(Some(true));
        Ok((routes, incoming, drain))
    }

    /// Serves `routes` until `shutdown` is cancelled: health goes NOT_SERVING at once, in-flight RPCs
    /// finish, then this returns. Calls with a message over the limit are RESOURCE_EXHAUSTED; with
    /// `require_identity`, calls without a caller identity are refused.
    pub async fn serve(self, routes: Routes, options: ServeOptions, shutdown: Shutdown) -> Result<(), ServeError> {
        let (routes, incoming, drain) = self.into_parts(routes, shutdown)?;
        Server::builder()
            .layer(
                tower::ServiceBuilder::new()
                    .layer(crate::RequireIdentityLayer::new(options.require_identity))
                    .layer(crate::CallerDeadlineLayer)
                    .layer(crate::MessageLimitLayer::new(options.max_message_bytes)),
            )
            .add_routes(routes)
            .serve_with_incoming_shutdown(incoming, drain)
            .await?;
        Ok(())
    }
}

/// Runs `serve` (a server that drains once `shutdown` is cancelled) to its end, but gives the drain at
/// most `grace` after `shutdown`: calls still open then are cut, with a warning naming `name`.
pub async fn within_grace<E>(
    serve: impl Future<Output = Result<(), E>>,
    shutdown: &Shutdown,
    grace: std::time::Duration,
    name: &str,
) -> Result<(), E> {
    tokio::pin!(serve);
    let overdue = async {
        shutdown.cancelled().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        served = &mut serve => served,
        () = overdue => {
            tracing::warn!(service = name, "calls still open {grace:?} after shutdown began; closing them");
            Ok(())
        }
    }
}
