//! `TestMesh`: the whole mesh for one test, torn down when the test ends.

use std::time::Duration;

use baemin::clients::{Clients, Urls};
use baemin_mesh_testkit::{DbKind, NatsServer, RunningService, TestDatabases};

/// How long a test waits for an event to reach a service.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A service of the mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Svc {
    Payment,
    Call,
    Rider,
    Report,
}

/// Every service of the mesh, running in this process.
pub struct TestMesh {
    pub nats: NatsServer,
    pub payment: Option<RunningService>,
    pub call: Option<RunningService>,
    pub rider: Option<RunningService>,
    pub report: Option<RunningService>,
    pub clients: Clients,
    urls: Urls,
    database_urls: [String; 4],
    /// Where each service listened last: a restarted service comes back on the same address.
    addrs: [Option<std::net::SocketAddr>; 4],
    extra: Vec<(&'static str, String)>,
    /// Held so the databases live as long as the mesh (dropped with it).
    _databases: TestDatabases,
}

impl TestMesh {
    /// Starts NATS, then payment, call, rider and report on fresh databases of `kind`.
    pub async fn start(kind: DbKind) -> Self {
        Self::start_with(kind, &[]).await
    }

    /// Like [`Self::start`], with extra settings for every service (for example a fallback mode).
    pub async fn start_with(kind: DbKind, extra: &[(&'static str, &str)]) -> Self {
        let nats = NatsServer::start().await;
        let mut dbs = TestDatabases::new(kind);
        let database_urls = [
            dbs.url_for("payment").await,
            dbs.url_for("call").await,
            dbs.url_for("rider").await,
            dbs.url_for("report").await,
        ];
        let mut mesh = Self {
            nats,
            payment: None,
            call: None,
            rider: None,
            report: None,
            clients: Clients::new(&Urls::default()).expect("clients"),
            urls: Urls::default(),
            database_urls,
            addrs: [None; 4],
            extra: extra.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
            _databases: dbs,
        };
        for svc in [Svc::Payment, Svc::Call, Svc::Rider, Svc::Report] {
            mesh.start_service(svc).await;
        }
        mesh
    }

    /// Starts `svc` (again) on its own database and, when it ran before, on the same address (so the
    /// services calling it find it again).
    pub async fn start_service(&mut self, svc: Svc) {
        let mut env = vec![
            ("NATS_URL", self.nats.url()),
            ("DATABASE_POOL_SIZE", "4".to_owned()),
            ("SHUTDOWN_GRACE", "5s".to_owned()),
            ("DATABASE_URL", self.database_urls[svc as usize].clone()),
        ];
        if let Some(payment) = &self.payment {
            env.push(("PAYMENT_URL", payment.url()));
        }
        if let Some(addr) = self.addrs[svc as usize] {
            env.push(("GRPC_ADDR", addr.to_string()));
        }
        env.extend(self.extra.iter().cloned());
        let running = match svc {
            Svc::Payment => RunningService::start::<baemin_payment::Application>(&env).await,
            Svc::Call => RunningService::start::<baemin_call::Application>(&env).await,
            Svc::Rider => RunningService::start::<baemin_rider::Application>(&env).await,
            Svc::Report => RunningService::start::<baemin_report::Application>(&env).await,
        };
        let url = running.url();
        self.addrs[svc as usize] = Some(running.addr());
        match svc {
            Svc::Payment => {
                self.urls.payment = url;
                self.payment = Some(running);
            }
            Svc::Call => {
                self.urls.call = url;
                self.call = Some(running);
            }
            Svc::Rider => {
                self.urls.rider = url;
                self.rider = Some(running);
            }
            Svc::Report => {
                self.urls.report = url;
                self.report = Some(running);
            }
        }
        self.clients = Clients::new(&self.urls).expect("clients");
    }

    /// Stops `svc` gracefully, as an operator or a rolling update would.
    pub async fn stop_service(&mut self, svc: Svc) {
        let running = match svc {
            Svc::Payment => self.payment.take(),
            Svc::Call => self.call.take(),
            Svc::Rider => self.rider.take(),
            Svc::Report => self.report.take(),
        };
        if let Some(running) = running {
            running.stop().await;
        }
    }

    /// Adds (or replaces) a setting of every service started from now on.
    pub fn set(&mut self, key: &'static str, value: impl Into<String>) {
        self.extra.retain(|(k, _)| *k != key);
        self.extra.push((key, value.into()));
    }

    /// The database URL of `svc`.
    pub fn database_url(&self, svc: Svc) -> &str {
        &self.database_urls[svc as usize]
    }

    /// Where `svc` listens (or last listened).
    pub fn addr(&self, svc: Svc) -> Option<std::net::SocketAddr> {
        self.addrs[svc as usize]
    }

    /// Stops the rider service.
    pub async fn stop_rider(&mut self) {
        self.stop_service(Svc::Rider).await;
    }

    /// Starts the rider service again on its database.
    pub async fn start_rider(&mut self) {
        self.start_service(Svc::Rider).await;
    }

    /// Stops every service gracefully (checks that shutdown works), then NATS and the databases go.
    pub async fn stop(mut self) {
        for svc in [Svc::Report, Svc::Rider, Svc::Call, Svc::Payment] {
            self.stop_service(svc).await;
        }
    }
}

/// A unique idempotency key.
pub fn request_id() -> String {
    format!("req-{}", uuid::Uuid::now_v7().simple())
}
