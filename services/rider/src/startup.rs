//! Wiring: the rider application, its gRPC server, its call-event consumers and its outbox relay on the
//! mesh runtime.

use std::{net::SocketAddr, sync::Arc};

use baemin_mesh_runtime::{Runtime, Service, StartupError};
use baemin_mesh_server::{
    Shutdown,
    config::{ConfigError, Env},
};
use baemin_proto::rider::v1::rider_service_server::{RiderServiceServer, SERVICE_NAME};
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;

use crate::{
    Config,
    domain::RiderApp,
    inbound::{events::CallEvents, grpc::RiderGrpc},
    outbound::{migration::Migrator, payment::GrpcPayments},
};

/// The rider service, bound and connected, ready to run.
pub struct Application {
    runtime: Runtime,
    routes: Routes,
    /// Ends the WatchOpenCalls streams when shutdown begins.
    streams_stop: CancellationToken,
}

impl Service for Application {
    const NAME: &'static str = "rider";
    type Config = Config;

    fn config(env: &dyn Env) -> Result<Config, ConfigError> {
        Config::from_env(env)
    }

    async fn build(config: Config) -> Result<Self, StartupError> {
        // Config::from_env already refused a URL the client cannot use, so this cannot fail in
        // practice; StartupError has no variant for a client, so it is reported as a serving failure.
        let payments = GrpcPayments::connect(&config.payment_url, config.payment_deadline)?;
        let mut runtime = Runtime::start::<Migrator>(config.service, &[SERVICE_NAME]).await?;
        let app = Arc::new(RiderApp::new(
            runtime.db().clone(),
            runtime.outbox().clone(),
            Arc::new(payments),
        ));
        let handler = Arc::new(CallEvents::new(app.clone()));
        for subject in crate::inbound::events::SUBJECTS {
            runtime.consume(subject, handler.clone()).await?;
        }
        let streams_stop = CancellationToken::new();
        let routes = Routes::new(RiderServiceServer::new(RiderGrpc::new(app, streams_stop.clone())));
        Ok(Self {
            runtime,
            routes,
            streams_stop,
        })
    }

    fn local_addr(&self) -> SocketAddr {
        self.runtime.local_addr()
    }

    async fn run(self, shutdown: Shutdown) -> Result<(), StartupError> {
        // Watch streams never end by themselves; the server drains only once they do.
        let streams_stop = self.streams_stop;
        let signal = shutdown.clone();
        tokio::spawn(async move {
            signal.cancelled().await;
            streams_stop.cancel();
        });
        self.runtime.run(self.routes, shutdown).await
    }
}
