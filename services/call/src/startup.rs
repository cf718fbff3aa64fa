//! Wiring: the call application, its gRPC server, its consumers, its repair worker and its outbox
//! relay on the mesh runtime.

use std::{net::SocketAddr, sync::Arc};

use baemin_mesh_runtime::{Runtime, Service, StartupError, worker::run_every};
use baemin_mesh_server::{
    Shutdown,
    config::{ConfigError, Env},
};
use baemin_proto::call::v1::call_service_server::{CallServiceServer, SERVICE_NAME};
use tonic::service::Routes;

use crate::{
    Config,
    domain::CallApp,
    inbound::{
        events::{DeliveryFollower, SUBJECTS},
        grpc::CallGrpc,
    },
    outbound::{migration::Migrator, payment::PaymentClient},
};

/// The call service, bound and connected, ready to run.
pub struct Application {
    runtime: Runtime,
    routes: Routes,
}

impl Service for Application {
    const NAME: &'static str = "call";
    type Config = Config;

    fn config(env: &dyn Env) -> Result<Config, ConfigError> {
        Config::from_env(env)
    }

    async fn build(config: Config) -> Result<Self, StartupError> {
        let mut runtime = Runtime::start::<Migrator>(config.service, &[SERVICE_NAME]).await?;
        let payments = PaymentClient::connect(&config.payment, runtime.metrics())?;
        // Watches follow the changes of every replica, not only this one's.
        let app = Arc::new(
            CallApp::new(
                runtime.db().clone(),
                runtime.outbox().clone(),
                Arc::new(payments),
                config.repair_after,
                config.fallback,
            )
            .announcing(runtime.change_feed()),
        );
        runtime.spawn(app.clone().follow_changes(runtime.background_shutdown()));
        let follower = Arc::new(DeliveryFollower::new(app.clone()));
        for subject in SUBJECTS {
            runtime.consume(subject, follower.clone()).await?;
        }
        let repairs = app.clone();
        let stop = runtime.background_shutdown();
        runtime.spawn(run_every("call-repair", config.repair_interval, stop, move || {
            let app = repairs.clone();
            async move {
                app.repair_once()
                    .await
                    .map(|round| (!round.is_empty()).then_some(round))
            }
        }));
        let routes = Routes::new(CallServiceServer::new(CallGrpc::new(app, runtime.draining())));
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
