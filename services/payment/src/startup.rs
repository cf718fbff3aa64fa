//! Wiring: the payment application, its gRPC server and its outbox relay on the mesh runtime.

use std::{net::SocketAddr, sync::Arc};

use baemin_mesh_runtime::{Runtime, Service, StartupError};
use baemin_mesh_server::{
    Shutdown,
    config::{ConfigError, Env},
};
use baemin_proto::payment::v1::payment_service_server::{PaymentServiceServer, SERVICE_NAME};
use tonic::service::Routes;

use crate::{
    Config,
    domain::{PaymentApp, PaymentMetrics},
    inbound::grpc::PaymentGrpc,
    outbound::migration::Migrator,
};

/// The payment service, bound and connected, ready to run.
pub struct Application {
    runtime: Runtime,
    routes: Routes,
}

impl Service for Application {
    const NAME: &'static str = "payment";
    type Config = Config;

    fn config(env: &dyn Env) -> Result<Config, ConfigError> {
        Config::from_env(env)
    }

    async fn build(config: Config) -> Result<Self, StartupError> {
        let runtime = Runtime::start::<Migrator>(config.service, &[SERVICE_NAME]).await?;
        let app = Arc::new(
            PaymentApp::new(runtime.db().clone(), runtime.outbox().clone(), config.commission)
                .with_metrics(PaymentMetrics::new(runtime.metrics())),
        );
        let routes = Routes::new(PaymentServiceServer::new(PaymentGrpc::new(app)));
        Ok(Self { runtime, routes })
    }

    fn local_addr(&self) -> SocketAddr {
        self.runtime.local_addr()
    }

    fn admin_addr(&self) -> SocketAddr {
        self.runtime.admin_addr()
    }

    async fn run(self, shutdown: Shutdown) -> Result<(), StartupError> {
        self.runtime.run(self.routes, shutdown).await
    }
}
