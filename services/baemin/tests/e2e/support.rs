//! `TestMesh`: the whole mesh for one test, torn down when the test ends.

use std::{net::SocketAddr, time::Duration};

use baemin::clients::{Clients, Urls};
use baemin_mesh_testkit::{DbKind, NatsServer, RunningService, ServiceProcess, TestDatabases, free_port};

/// How long a test waits for an event to reach a service.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Settings that let the repair workers act within a test's patience (payment answering, or not, fast).
pub const QUICK_REPAIRS: [(&str, &str); 5] = [
    ("PAYMENT_DEADLINE", "500ms"),
    ("CALL_REPAIR_AFTER", "1s"),
    ("CALL_REPAIR_INTERVAL", "200ms"),
    ("RIDER_REPAIR_AFTER", "1s"),
    ("RIDER_REPAIR_INTERVAL", "200ms"),
];

/// A service of the mesh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Svc {
    Payment,
    Call,
    Rider,
    Report,
}

impl Svc {
    /// The name `baemin serve` knows it by.
    pub fn name(self) -> &'static str {
        match self {
            Self::Payment => "payment",
            Self::Call => "call",
            Self::Rider => "rider",
            Self::Report => "report",
        }
    }
}

/// How the services of a [`TestMesh`] run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Run {
    /// In the test's process: quick to start, stopped through the graceful-shutdown path.
    InProcess,
    /// Each as its own `baemin serve <name>` process, so it can be SIGKILLed (the chaos scenarios).
    Processes,
}

/// One running service, either way.
pub enum Running {
    InProcess(RunningService),
    /// The process and its admin address.
    Process(ServiceProcess, SocketAddr),
}

impl Running {
    /// `http://127.0.0.1:<port>` of the service.
    pub fn url(&self) -> String {
        match self {
            Self::InProcess(s) => s.url(),
            Self::Process(p, _) => p.url(),
        }
    }

    /// `http://127.0.0.1:<admin port>` of the service: `/metrics`, `/livez`, `/readyz`.
    pub fn admin_url(&self) -> String {
        match self {
            Self::InProcess(s) => s.admin_url(),
            Self::Process(_, admin) => format!("http://{admin}"),
        }
    }

    fn addr(&self) -> SocketAddr {
        match self {
            Self::InProcess(s) => s.addr(),
            Self::Process(p, _) => p.addr(),
        }
    }

    /// Stops it gracefully (SIGTERM for a process) and checks that it drained cleanly.
    pub async fn stop(self) {
        match self {
            Self::InProcess(s) => s.stop().await,
            Self::Process(p, _) => p.stop().await,
        }
    }
}

/// Every service of the mesh, on its own fresh database, with one private NATS.
pub struct TestMesh {
    pub nats: NatsServer,
    pub payment: Option<Running>,
    pub call: Option<Running>,
    pub rider: Option<Running>,
    pub report: Option<Running>,
    pub clients: Clients,
    run: Run,
    urls: Urls,
    database_urls: [String; 4],
    /// Where each service listened last: a restarted service comes back on the same address.
    addrs: [Option<SocketAddr>; 4],
    extra: Vec<(&'static str, String)>,
    /// Held so the databases live as long as the mesh (dropped with it).
    _databases: TestDatabases,
}

impl TestMesh {
    /// Starts NATS, then payment, call, rider and report (in this process) on fresh databases of `kind`.
    pub async fn start(kind: DbKind) -> Self {
        Self::start_with(kind, &[]).await
    }

    /// Like [`Self::start`], with extra settings for every service (for example a fallback mode).
    pub async fn start_with(kind: DbKind, extra: &[(&'static str, &str)]) -> Self {
        Self::launch(Run::InProcess, kind, extra).await
    }

    /// Like [`Self::start_with`], each service its own OS process.
    pub async fn processes(kind: DbKind, extra: &[(&'static str, &str)]) -> Self {
        Self::launch(Run::Processes, kind, extra).await
    }

    async fn launch(run: Run, kind: DbKind, extra: &[(&'static str, &str)]) -> Self {
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
            run,
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
        if let Some(addr) = self.addrs[Svc::Payment as usize] {
            env.push(("PAYMENT_URL", format!("http://{addr}")));
        }
        let addr = self.addrs[svc as usize];
        if let Some(addr) = addr {
            env.push(("GRPC_ADDR", addr.to_string()));
        }
        env.extend(self.extra.iter().cloned());
        let running = match self.run {
            Run::InProcess => Running::InProcess(match svc {
                Svc::Payment => RunningService::start::<baemin_payment::Application>(&env).await,
                Svc::Call => RunningService::start::<baemin_call::Application>(&env).await,
                Svc::Rider => RunningService::start::<baemin_rider::Application>(&env).await,
                Svc::Report => RunningService::start::<baemin_report::Application>(&env).await,
            }),
            Run::Processes => {
                let addr = addr.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], free_port())));
                env.retain(|(k, _)| *k != "GRPC_ADDR");
                let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
                env.push(("ADMIN_ADDR", admin.to_string()));
                let binary = std::path::Path::new(env!("CARGO_BIN_EXE_baemin"));
                let process = ServiceProcess::start(binary, &["serve", svc.name()], &env, addr).await;
                Running::Process(process, admin)
            }
        };
        let url = running.url();
        self.addrs[svc as usize] = Some(running.addr());
        match svc {
            Svc::Payment => self.urls.payment = url,
            Svc::Call => self.urls.call = url,
            Svc::Rider => self.urls.rider = url,
            Svc::Report => self.urls.report = url,
        }
        *self.slot(svc) = Some(running);
        self.clients = Clients::new(&self.urls).expect("clients");
    }

    fn slot(&mut self, svc: Svc) -> &mut Option<Running> {
        match svc {
            Svc::Payment => &mut self.payment,
            Svc::Call => &mut self.call,
            Svc::Rider => &mut self.rider,
            Svc::Report => &mut self.report,
        }
    }

    /// Stops `svc` gracefully, as an operator or a rolling update would.
    pub async fn stop_service(&mut self, svc: Svc) {
        if let Some(running) = self.slot(svc).take() {
            running.stop().await;
        }
    }

    /// Kills `svc` with SIGKILL: no drain, no flush, whatever it was doing. Only for [`Run::Processes`].
    pub async fn kill_service(&mut self, svc: Svc) {
        match self.slot(svc).take() {
            Some(Running::Process(process, _)) => process.kill().await,
            Some(Running::InProcess(_)) => panic!("only a service running as its own process can be killed"),
            None => {}
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

    /// The admin URL of `svc` while it runs.
    pub fn admin_url(&self, svc: Svc) -> Option<String> {
        let running = match svc {
            Svc::Payment => &self.payment,
            Svc::Call => &self.call,
            Svc::Rider => &self.rider,
            Svc::Report => &self.report,
        };
        running.as_ref().map(Running::admin_url)
    }

    /// Where `svc` listens (or last listened).
    pub fn addr(&self, svc: Svc) -> Option<SocketAddr> {
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
