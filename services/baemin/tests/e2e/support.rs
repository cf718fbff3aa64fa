//! `TestMesh`: the whole mesh for one test, torn down when the test ends.

use std::time::Duration;

use baemin::clients::{Clients, Urls};
use baemin_mesh_testkit::{DbKind, NatsServer, RunningService, TestDatabases};

/// How long a test waits for an event to reach a service.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Every service of the mesh, running in this process.
pub struct TestMesh {
    pub nats: NatsServer,
    /// Held so the databases live as long as the mesh (dropped with it).
    _databases: TestDatabases,
    pub payment: Option<RunningService>,
    pub call: Option<RunningService>,
    pub rider: Option<RunningService>,
    pub report: Option<RunningService>,
    pub clients: Clients,
    urls: Urls,
    rider_db: String,
}

impl TestMesh {
    /// Starts NATS, then payment, call, rider and report on fresh databases of `kind`.
    pub async fn start(kind: DbKind) -> Self {
        let nats = NatsServer::start().await;
        let mut dbs = TestDatabases::new(kind);
        let payment =
            RunningService::start::<baemin_payment::Application>(&env(&nats, dbs.url_for("payment").await, None)).await;
        let payment_url = Some(payment.url());
        let call = RunningService::start::<baemin_call::Application>(&env(
            &nats,
            dbs.url_for("call").await,
            payment_url.clone(),
        ))
        .await;
        let rider_db = dbs.url_for("rider").await;
        let rider =
            RunningService::start::<baemin_rider::Application>(&env(&nats, rider_db.clone(), payment_url)).await;
        let report =
            RunningService::start::<baemin_report::Application>(&env(&nats, dbs.url_for("report").await, None)).await;
        let urls = Urls {
            call: call.url(),
            rider: rider.url(),
            payment: payment.url(),
            report: report.url(),
        };
        let clients = Clients::new(&urls).expect("clients");
        Self {
            nats,
            _databases: dbs,
            payment: Some(payment),
            call: Some(call),
            rider: Some(rider),
            report: Some(report),
            clients,
            urls,
            rider_db,
        }
    }

    /// Stops the rider service (gracefully), as an operator or a crash would take it away.
    pub async fn stop_rider(&mut self) {
        if let Some(rider) = self.rider.take() {
            rider.stop().await;
        }
    }

    /// Starts the rider service again on its database; it gets a new port, and the clients follow it.
    pub async fn start_rider(&mut self) {
        let payment_url = self.payment.as_ref().map(RunningService::url);
        let rider =
            RunningService::start::<baemin_rider::Application>(&env(&self.nats, self.rider_db.clone(), payment_url))
                .await;
        self.urls.rider = rider.url();
        self.clients = Clients::new(&self.urls).expect("clients");
        self.rider = Some(rider);
    }

    /// Stops every service gracefully (checks that shutdown works), then NATS and the databases go.
    pub async fn stop(mut self) {
        for service in [
            self.report.take(),
            self.rider.take(),
            self.call.take(),
            self.payment.take(),
        ]
        .into_iter()
        .flatten()
        {
            service.stop().await;
        }
    }
}

fn env(nats: &NatsServer, database_url: String, payment_url: Option<String>) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("NATS_URL", nats.url()),
        ("DATABASE_URL", database_url),
        ("DATABASE_POOL_SIZE", "4".to_owned()),
        ("SHUTDOWN_GRACE", "5s".to_owned()),
    ];
    if let Some(url) = payment_url {
        env.push(("PAYMENT_URL", url));
    }
    env
}

/// A unique idempotency key.
pub fn request_id() -> String {
    format!("req-{}", uuid::Uuid::now_v7().simple())
}
