//! Wiring: the report application, its gRPC server and its consumer of every event on the mesh runtime.

use std::{net::SocketAddr, sync::Arc};

use baemin_mesh_runtime::{Runtime, Service, StartupError};
use baemin_mesh_server::{
    Shutdown,
    config::{ConfigError, Env},
};
use baemin_proto::report::v1::report_service_server::{ReportServiceServer, SERVICE_NAME};
use tonic::service::Routes;

use crate::{
    Config,
    domain::ReportApp,
    inbound::{events::Projector, grpc::ReportGrpc},
    outbound::migration::Migrator,
};

/// Every event of the mesh: the report projects them all.
pub(crate) const EVERY_EVENT: &str = "baemin.events.>";

/// The report service, bound and connected, ready to run.
pub struct Application {
    runtime: Runtime,
    routes: Routes,
}

impl Service for Application {
    const NAME: &'static str = "report";
    type Config = Config;

    fn config(env: &dyn Env) -> Result<Config, ConfigError> {
        Config::from_env(env)
    }

    async fn build(config: Config) -> Result<Self, StartupError> {
        let mut runtime = Runtime::start::<Migrator>(config.service, &[SERVICE_NAME]).await?;
        // Watches follow the changes of every replica, not only this one's.
        let app = Arc::new(ReportApp::new(runtime.db().clone()).announcing(runtime.change_feed()));
        runtime.spawn(app.clone().follow_changes(runtime.background_shutdown()));
        runtime
            .consume(EVERY_EVENT, Arc::new(Projector::new(app.clone())))
            .await?;
        // Watch streams never end by themselves; end them as soon as shutdown starts so the server's
        // drain (which waits for in-flight RPCs) can finish.
        let draining = runtime.draining();
        let watched = app.clone();
        runtime.spawn(async move {
            draining.cancelled().await;
            watched.close_watches();
        });
        let routes = Routes::new(ReportServiceServer::new(ReportGrpc::new(app)));
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
