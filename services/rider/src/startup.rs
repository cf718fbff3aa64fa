//! Wiring: the rider application, its gRPC server, its call-event consumers, its settlement repair
//! worker and its outbox relay on the mesh runtime.

use std::{net::SocketAddr, sync::Arc};

use baemin_mesh_runtime::{Runtime, Service, StartupError, worker::run_every};
use baemin_mesh_server::{
    Shutdown,
    config::{ConfigError, Env},
};
use baemin_proto::rider::v1::rider_service_server::{RiderServiceServer, SERVICE_NAME};
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
}

impl Service for Application {
    const NAME: &'static str = "rider";
    type Config = Config;

    fn config(env: &dyn Env) -> Result<Config, ConfigError> {
        Config::from_env(env)
    }

    async fn build(config: Config) -> Result<Self, StartupError> {
        let mut runtime = Runtime::start::<Migrator>(config.service, &[SERVICE_NAME]).await?;
        let payments = GrpcPayments::connect(&config.payment, runtime.metrics())?;
        // The board follows the changes of every replica, not only this one's.
        let app = Arc::new(
            RiderApp::new(
                runtime.db().clone(),
                runtime.outbox().clone(),
                Arc::new(payments),
                config.repair_after,
            )
            .announcing(runtime.change_feed()),
        );
        runtime.spawn(app.clone().follow_changes(runtime.background_shutdown()));
        let handler = Arc::new(CallEvents::new(app.clone()));
        for subject in crate::inbound::events::SUBJECTS {
            runtime.consume(subject, handler.clone()).await?;
        }
        let repairs = app.clone();
        let stop = runtime.background_shutdown();
        runtime.spawn(run_every("rider-repair", config.repair_interval, stop, move || {
            let app = repairs.clone();
            async move {
                app.repair_once()
                    .await
                    .map(|round| (!round.is_empty()).then_some(round))
            }
        }));
        // WatchOpenCalls streams never end by themselves; they end on the runtime's draining token,
        // so the server's drain (which waits for in-flight RPCs) can finish.
        let routes = Routes::new(RiderServiceServer::new(RiderGrpc::new(app, runtime.draining())));
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
