//! Serving a service's gRPC routes with health (`grpc.health.v1`) and reflection (v1 and v1alpha),
//! and draining gracefully on shutdown.

use std::{future::Future, net::SocketAddr};

use tokio::net::TcpListener;
use tonic::{
    service::Routes,
    transport::{Server, server::TcpIncoming},
};
use tonic_health::{ServingStatus, server::HealthReporter};

use baemin_mesh_telemetry::{AdminServer, GrpcServerLayer, Metrics, Readiness};
use tokio_util::sync::{CancellationToken, DropGuard};

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
    readiness: Readiness,
}

impl Serving {
    /// Reports `status` for the whole server ("") and for every named service, over gRPC health and
    /// the admin port's `/readyz`.
    pub async fn set(&self, status: ServingStatus) {
        self.readiness.set(status == ServingStatus::Serving);
        self.reporter.set_service_status("", status).await;
        for name in &self.services {
            self.reporter.set_service_status(*name, status).await;
        }
    }
}

/// How a service's server treats its callers.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Refuse calls without caller identity (UNAUTHENTICATED).
    pub require_identity: bool,
    /// The key caller identity is verified with; without it, only calls without identity are served.
    pub identity_key: Option<crate::identity::IdentityKey>,
    /// Largest request message accepted; larger ones are RESOURCE_EXHAUSTED.
    pub max_message_bytes: usize,
    /// Longest wait for a request's first message; slower ones are DEADLINE_EXCEEDED.
    pub request_read_timeout: std::time::Duration,
}

/// A gRPC server with the mesh's standard services around a service's own routes, and its admin
/// HTTP port (metrics, probes), which serves from the moment it is bound until the server is dropped.
pub struct MeshServer {
    listener: TcpListener,
    services: Vec<&'static str>,
    reporter: HealthReporter,
    health: tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>,
    metrics: Metrics,
    readiness: Readiness,
    admin_addr: SocketAddr,
    admin: AdminHandle,
    drain_delay: std::time::Duration,
}

/// Keeps the admin port serving while held.
pub struct AdminHandle(#[allow(dead_code, reason = "held for its Drop")] DropGuard);

/// What [`MeshServer::into_parts`] hands a server with layers of its own (the edge gateway).
pub struct ServeParts<F> {
    /// The routes with health and reflection added.
    pub routes: Routes,
    /// The gRPC listener's connections.
    pub incoming: TcpIncoming,
    /// Completes once shutdown began and health went NOT_SERVING.
    pub drain: F,
    /// Spans and RPC metrics: put it inside any protocol translation (grpc-web), so it sees gRPC.
    pub telemetry: GrpcServerLayer,
    /// Keep it until serving ended: the admin port stops when it is dropped.
    pub admin: AdminHandle,
}

impl MeshServer {
    /// Binds `addr` for gRPC and `admin_addr` for the admin port (port 0 picks a free port), and starts
    /// the admin port. `services` are the full gRPC names served, for health.
    pub async fn bind(addr: SocketAddr, admin_addr: SocketAddr, services: &[&'static str]) -> Result<Self, ServeError> {
        let listener = TcpListener::bind(addr).await?;
        let admin_server = AdminServer::bind(admin_addr).await?;
        let admin_addr = admin_server.local_addr();
        let metrics = Metrics::new();
        let readiness = Readiness::default();
        let stop_admin = CancellationToken::new();
        tokio::spawn(admin_server.serve(metrics.clone(), readiness.clone(), stop_admin.clone()));
        let reporter = HealthReporter::new();
        let health = tonic_health::pb::health_server::HealthServer::new(
            tonic_health::server::HealthService::from_health_reporter(reporter.clone()),
        );
        let server = Self {
            listener,
            services: services.to_vec(),
            reporter,
            health,
            metrics,
            readiness,
            admin_addr,
            admin: AdminHandle(stop_admin.drop_guard()),
            drain_delay: std::time::Duration::ZERO,
        };
        server.serving().set(ServingStatus::NotServing).await;
        Ok(server)
    }

    /// On shutdown, keep accepting new calls for `delay` after health went NOT_SERVING: behind a load
    /// balancer or Kubernetes endpoints, callers learn of the shutdown with a lag, and calls sent in it
    /// would otherwise find the port closed.
    pub fn drain_delay(mut self, delay: std::time::Duration) -> Self {
        self.drain_delay = delay;
        self
    }

    /// The address of the admin port (`/metrics`, `/livez`, `/readyz`).
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// The server's metrics registry, for everything else the service measures.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
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
            readiness: self.readiness.clone(),
        }
    }

    /// `routes` with health and reflection (v1 and v1alpha, describing every mesh service) added, the
    /// listener, and a future that completes once `shutdown` is cancelled and health went NOT_SERVING:
    /// the parts of [`Self::serve`], for a server that needs its own layers (the edge gateway).
    pub fn into_parts(
        self,
        routes: Routes,
        shutdown: Shutdown,
    ) -> Result<ServeParts<impl Future<Output = ()> + Send + 'static>, ServeError> {
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
        let delay = self.drain_delay;
        let drain = async move {
            shutdown.cancelled().await;
            serving.set(ServingStatus::NotServing).await;
            tokio::time::sleep(delay).await;
        };
        // Nagle off: gRPC writes small frames it wants sent now (the builder's `tcp_nodelay` only
        // applies to listeners tonic binds itself).
        let incoming = TcpIncoming::from(self.listener).with_nodelay(Some(true));
        Ok(ServeParts {
            routes,
            incoming,
            drain,
            telemetry: GrpcServerLayer::new(&self.metrics),
            admin: self.admin,
        })
    }

    /// Serves `routes` until `shutdown` is cancelled: health goes NOT_SERVING at once, in-flight RPCs
    /// finish, then this returns. Calls with a message over the limit are RESOURCE_EXHAUSTED; with
    /// `require_identity`, calls without a caller identity are refused.
    pub async fn serve(self, routes: Routes, options: ServeOptions, shutdown: Shutdown) -> Result<(), ServeError> {
        let parts = self.into_parts(routes, shutdown)?;
        Server::builder()
            .layer(
                tower::ServiceBuilder::new()
                    .layer(parts.telemetry)
                    .layer(crate::DecodeErrorLayer)
                    .layer(crate::CatchPanicLayer)
                    .layer(crate::IdentityLayer::new(
                        options.identity_key,
                        options.require_identity,
                    ))
                    .layer(crate::CallerDeadlineLayer)
                    .layer(
                        crate::MessageLimitLayer::new(options.max_message_bytes)
                            .read_timeout(options.request_read_timeout),
                    ),
            )
            .add_routes(parts.routes)
            .serve_with_incoming_shutdown(parts.incoming, parts.drain)
            .await?;
        drop(parts.admin);
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
