//! Fresh databases per test: SQLite files in a temporary directory, or PostgreSQL databases created on
//! the server named by `TEST_POSTGRES_URL` and dropped when the test ends.

use sea_orm::{ConnectionTrait, Database};
use tempfile::TempDir;

/// Which database the services of a test run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    /// SQLite files (the embedded default).
    Sqlite,
    /// PostgreSQL (production).
    Postgres,
}

/// The PostgreSQL server for tests: `TEST_POSTGRES_URL`, default `postgres://postgres:postgres@127.0.0.1:5432/postgres`.
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".into())
}

/// The databases of one test, one per service; removed on drop.
pub struct TestDatabases {
    kind: DbKind,
    dir: TempDir,
    created: Vec<String>,
}

impl TestDatabases {
    /// An empty set of databases of `kind`.
    pub fn new(kind: DbKind) -> Self {
        Self {
            kind,
            dir: tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir: {e}")),
            created: Vec::new(),
        }
    }

    /// The kind of database.
    pub fn kind(&self) -> DbKind {
        self.kind
    }

    /// The `DATABASE_URL` of `service`'s database, created empty on first use.
    pub async fn url_for(&mut self, service: &str) -> String {
        match self.kind {
            DbKind::Sqlite => format!("sqlite://{}/{service}.db?mode=rwc", self.dir.path().display()),
            DbKind::Postgres => {
                let name = format!("baemin_test_{}_{service}", uuid::Uuid::now_v7().simple());
                let admin = postgres_admin_url();
                if !self.created.contains(&name) {
                    let db = Database::connect(&admin)
                        .await
                        .unwrap_or_else(|e| panic!("PostgreSQL at {admin} (set TEST_POSTGRES_URL): {e}"));
                    db.execute_unprepared(&format!("CREATE DATABASE {name}"))
                        .await
                        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
                    db.close().await.ok();
                    self.created.push(name.clone());
                }
                with_database(&admin, &name)
            }
        }
    }

    /// Drops the PostgreSQL database `name` — made by someone else, e.g. a `baemin up` under test — with
    /// the others (if it exists by then).
    pub fn adopt(&mut self, name: &str) {
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "not a database name: {name}"
        );
        self.created.push(name.to_owned());
    }

    /// Makes the PostgreSQL database of `database_url` unavailable, as an outage would: it stops
    /// accepting connections and every open session to it is terminated. [`Self::bring_back`] ends it.
    pub async fn take_down(database_url: &str) {
        let name = database_name(database_url);
        admin_execute(&[
            format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"),
            format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"),
        ])
        .await;
    }

    /// Lets the PostgreSQL database of `database_url` accept connections again.
    pub async fn bring_back(database_url: &str) {
        let name = database_name(database_url);
        admin_execute(&[format!("ALTER DATABASE {name} ALLOW_CONNECTIONS true")]).await;
    }
}

/// The database name of a PostgreSQL URL made by [`TestDatabases::url_for`].
fn database_name(url: &str) -> &str {
    assert!(
        url.starts_with("postgres://") || url.starts_with("postgresql://"),
        "only a PostgreSQL database can be taken down: {url}"
    );
    let base = url.split('?').next().unwrap_or(url);
    let name = base.rsplit_once('/').map_or(base, |(_, name)| name);
    assert!(
        name.starts_with("baemin_test_") && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "not a test database: {name}"
    );
    name
}

async fn admin_execute(statements: &[String]) {
    let admin = postgres_admin_url();
    let db = Database::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin} (set TEST_POSTGRES_URL): {e}"));
    for statement in statements {
        db.execute_unprepared(statement)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
    db.close().await.ok();
}

/// `url` (a PostgreSQL URL) naming database `name` instead of its own.
pub fn with_database(url: &str, name: &str) -> String {
    baemin_mesh_store::with_database(url, name).unwrap_or_else(|e| panic!("{e}"))
}

impl Drop for TestDatabases {
    fn drop(&mut self) {
        if self.created.is_empty() {
            return;
        }
        let names = std::mem::take(&mut self.created);
        // Drop runs inside the test's runtime: clean up on a thread with a runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            rt.block_on(async {
                let Ok(db) = Database::connect(postgres_admin_url()).await else {
                    return;
                };
                for name in names {
                    let _ = db
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
                db.close().await.ok();
            });
        });
        let _ = cleanup.join();
    }
}

/// The statements a database runs from now on, by their first word (`INSERT`, `SELECT`, `COMMIT`, …):
/// what a test of "no read before the write" looks at. A database reports to one recorder only.
pub fn record_statements(db: &baemin_mesh_store::Db) -> Statements {
    let seen = Statements::default();
    let log = seen.clone();
    db.clone().set_metric_callback(move |info| {
        let word = info
            .statement
            .sql
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        log.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(word);
    });
    seen
}

/// See [`record_statements`].
#[derive(Clone, Default)]
pub struct Statements(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl Statements {
    /// The first words recorded so far, and forgets them.
    pub fn take(&self) -> Run {
        Run(std::mem::take(
            &mut *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
        ))
    }
}

/// Statements recorded by [`Statements`], by their first word, in the order they ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run(pub Vec<String>);

impl Run {
    /// How many begin with `word` (`"SELECT"`, `"BEGIN"`, …).
    pub fn count(&self, word: &str) -> usize {
        self.0.iter().filter(|w| *w == word).count()
    }
}
