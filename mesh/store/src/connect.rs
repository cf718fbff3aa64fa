//! Opening a service's database and running its migrations.

use std::path::Path;

use sea_orm::{DbErr, TransactionTrait};
use sea_orm_migration::MigratorTrait;

use crate::{
    Db,
    postgres::{Pool, Timeouts},
    sqlite::Engine,
};

/// Which database a URL points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file (the one-machine default).
    Sqlite,
    /// A PostgreSQL server (production).
    Postgres,
}

impl Backend {
    /// The backend of `url`, or `None` for a scheme we do not support.
    pub fn of(url: &str) -> Option<Self> {
        if url.starts_with("sqlite:") {
            Some(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Self::Postgres)
        } else {
            None
        }
    }
}

/// The database could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL is neither `sqlite:` nor `postgres://` (held with its password and query hidden).
    #[error("unsupported database URL {0:?}: expected sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    /// The directory for a SQLite file could not be created.
    #[error("creating the directory of {path}")]
    CreateDir {
        /// The directory.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Connecting failed.
    #[error("connecting to {url}")]
    Connect {
        /// The URL with any password hidden.
        url: String,
        /// Why.
        #[source]
        source: DbErr,
    },
    /// A migration failed.
    #[error("migrating the schema")]
    Migrate(#[source] DbErr),
    /// A PostgreSQL URL that cannot be parsed (held with its password and query hidden).
    #[error("invalid PostgreSQL URL {url:?}: {reason}")]
    BadUrl {
        /// The URL with any password hidden.
        url: String,
        /// Why.
        reason: String,
    },
}

/// The `DATABASE_URL` of a SQLite file, created if missing.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}?mode=rwc", path.display())
}

/// Connects to `url` and brings the schema up to date with migrator `M`.
///
/// SQLite: one connection, in WAL mode, used inline by the task holding its turn (see
/// `crate::sqlite`); SQLite has one writer at a time anyway. Code must therefore never use the `Db`
/// while holding a transaction on it (it would wait for itself). PostgreSQL: a pool of `pool_size`
/// connections, pinged neither when taken nor when given back (see `crate::postgres`: a broken
/// connection fails its statement, which is classified unavailable and retried like any outage, and
/// is then closed; a ping was a round trip per transaction).
pub async fn connect<M: MigratorTrait>(url: &str, pool_size: u32) -> Result<Db, StoreError> {
    let db = open(url, pool_size).await?;
    migrate::<M>(&db).await.map_err(StoreError::Migrate)?;
    Ok(db)
}

/// Opens the database `url` names as [`connect`] does, without migrating it: for tools that read
/// another service's database.
pub async fn open(url: &str, pool_size: u32) -> Result<Db, StoreError> {
    let backend = Backend::of(url).ok_or_else(|| StoreError::UnsupportedUrl(redact(url)))?;
    let connect_error = |source| StoreError::Connect {
        url: redact(url),
        source,
    };
    let db = match backend {
        Backend::Sqlite => {
            if let Some(dir) = sqlite_dir(url) {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                    path: dir.display().to_string(),
                    source,
                })?;
            }
            Db::sqlite(Engine::open(url).map_err(connect_error)?)
        }
        Backend::Postgres => Db::postgres(
            Pool::open(url, pool_size, Timeouts::default())
                .await
                .map_err(connect_error)?,
        ),
    };
    Ok(db)
}

/// Key of the advisory lock migrations hold ("baemin" in ASCII): per database, so services sharing a
/// PostgreSQL server do not wait for each other.
const MIGRATION_LOCK: i64 = 0x6261_656d_696e;

/// Brings the schema up to date. On PostgreSQL every replica of a service may start at once (a rolling
/// update, a scale-up): the migrations run in one transaction holding an advisory lock, so one replica
/// migrates while the others wait, then find nothing left to do; a failure leaves no half-applied schema.
async fn migrate<M: MigratorTrait>(db: &Db) -> Result<(), DbErr> {
    let backend = db.backend();
    let db = db.as_sea_orm().await?;
    match backend {
        Backend::Sqlite => {
            refuse_newer::<M, _>(&db).await?;
            M::up(&db, None).await
        }
        Backend::Postgres => {
            use sea_orm::ConnectionTrait;
            let migrated = async {
                let txn = db.begin().await?;
                txn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
                    .await?;
                refuse_newer::<M, _>(&txn).await?;
                M::up(&txn, None).await?;
                txn.commit().await
            }
            .await;
            let closed = db.close().await;
            migrated?;
            closed
        }
    }
}

/// Refuses, with a clear error, a schema that has migrations `M` does not know: a newer release
/// migrated it (a rollback, or an old replica restarting during a rolling update). Migrations here can
/// change what the code relies on — this release's holds on fees: an older payment would void a held
/// fee, an older rider would pick up without holding — so an older binary must not run on a newer
/// schema; the rollout goes forward, and old replicas are replaced rather than restarted.
async fn refuse_newer<M: MigratorTrait, C: sea_orm::ConnectionTrait>(db: &C) -> Result<(), DbErr> {
    let known: Vec<String> = M::migrations().iter().map(|m| m.name().to_owned()).collect();
    let unknown: Vec<String> = M::get_migration_models(db)
        .await?
        .into_iter()
        .map(|m| m.version)
        .filter(|v| !known.contains(v))
        .collect();
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(DbErr::Migration(format!(
            "the database schema is newer than this binary (it has {unknown:?}, which this binary does not know): \
             run the release that migrated it; an older release may not run on it"
        )))
    }
}

fn sqlite_dir(url: &str) -> Option<&Path> {
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next()?;
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Path::new(path).parent().filter(|p| !p.as_os_str().is_empty())
}

/// The URL without its password (nor query values, where a password may also be), for messages.
fn redact(url: &str) -> String {
    baemin_mesh_server::config::redact_url(url)
}

/// `url` (a PostgreSQL URL, with or without a database in its path) naming database `name` instead, the
/// rest — user, password, host, port, query — kept as it was.
pub fn with_database(url: &str, name: &str) -> Result<String, StoreError> {
    let mut parsed = url::Url::parse(url).map_err(|e| StoreError::BadUrl {
        url: redact(url),
        reason: e.to_string(),
    })?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") || parsed.cannot_be_a_base() {
        return Err(StoreError::BadUrl {
            url: redact(url),
            reason: "expected postgres://[user[:password]@]host[:port][/database]".into(),
        });
    }
    parsed.set_path(&format!("/{name}"));
    Ok(parsed.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::begin_write;

    #[test]
    fn backend_is_chosen_by_scheme() {
        assert_eq!(Backend::of("sqlite://data/call.db?mode=rwc"), Some(Backend::Sqlite));
        assert_eq!(Backend::of("postgres://u@h/db"), Some(Backend::Postgres));
        assert_eq!(Backend::of("mysql://u@h/db"), None);
    }

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("postgres://app:hunter2@db:5432/call"),
            "postgres://app:***@db:5432/call"
        );
        assert_eq!(redact("postgres://app@db/call"), "postgres://app@db/call");
        // A password holding `@` stays hidden whole; so does one passed as a query parameter.
        assert_eq!(redact("postgres://app:p@ss@db/call"), "postgres://app:***@db/call");
        assert_eq!(
            redact("postgres://db/call?user=app&password=hunter2"),
            "postgres://db/call?user=***&password=***"
        );
    }

    #[test]
    fn sqlite_directory_is_derived_from_the_url() {
        assert_eq!(sqlite_dir("sqlite://data/x.db?mode=rwc"), Some(Path::new("data")));
        assert_eq!(sqlite_dir("sqlite::memory:"), None);
        assert_eq!(sqlite_dir("sqlite://x.db"), None);
    }

    #[test]
    fn another_database_on_the_same_server_keeps_everything_but_the_name() {
        for (url, want) in [
            (
                "postgres://u:pw@db:5432/postgres",
                "postgres://u:pw@db:5432/baemin_call",
            ),
            ("postgres://u:pw@db:5432", "postgres://u:pw@db:5432/baemin_call"),
            ("postgres://u:pw@db:5432/", "postgres://u:pw@db:5432/baemin_call"),
            (
                "postgresql://db/x?sslmode=require",
                "postgresql://db/baemin_call?sslmode=require",
            ),
            ("postgres://u:p%3Fw@db/x", "postgres://u:p%3Fw@db/baemin_call"),
        ] {
            assert_eq!(with_database(url, "baemin_call").unwrap(), want, "{url}");
        }
        for bad in ["postgress://u:secret@db/x", "db:5432", "postgres://u:secret@db:54x2/x"] {
            let err = with_database(bad, "baemin_call").unwrap_err().to_string();
            assert!(!err.contains("secret"), "{err}");
        }
    }

    /// A migration that creates table `name`.
    struct Creates(&'static str, &'static str);

    impl sea_orm_migration::MigrationName for Creates {
        fn name(&self) -> &str {
            self.0
        }
    }

    #[sea_orm_migration::async_trait::async_trait]
    impl sea_orm_migration::MigrationTrait for Creates {
        async fn up(&self, manager: &sea_orm_migration::SchemaManager) -> Result<(), DbErr> {
            use sea_orm_migration::{prelude::Table, schema::integer};
            manager
                .create_table(Table::create().table(self.1).col(integer("n")).to_owned())
                .await
        }
    }

    struct OneTable;
    impl MigratorTrait for OneTable {
        fn migrations() -> Vec<Box<dyn sea_orm_migration::MigrationTrait>> {
            vec![Box::new(Creates("m1_first", "first"))]
        }
    }

    struct TwoTables;
    impl MigratorTrait for TwoTables {
        fn migrations() -> Vec<Box<dyn sea_orm_migration::MigrationTrait>> {
            vec![
                Box::new(Creates("m1_first", "first")),
                Box::new(Creates("m2_second", "second")),
            ]
        }
    }

    struct OtherLine;
    impl MigratorTrait for OtherLine {
        fn migrations() -> Vec<Box<dyn sea_orm_migration::MigrationTrait>> {
            vec![
                Box::new(Creates("m1_first", "first")),
                Box::new(Creates("m2_elsewhere", "elsewhere")),
            ]
        }
    }

    #[tokio::test]
    async fn an_older_binary_is_refused_on_a_schema_a_newer_one_migrated_saying_so() {
        let dir = tempfile::tempdir().unwrap();
        let url = sqlite_url(&dir.path().join("x.db"));
        connect::<TwoTables>(&url, 1).await.unwrap().close().await.unwrap();
        // An old replica restarting after the new release migrated, or a rollback.
        let err = connect::<OneTable>(&url, 1).await.unwrap_err();
        let StoreError::Migrate(DbErr::Migration(message)) = &err else {
            panic!("{err:?}");
        };
        assert!(
            message.contains("newer than this binary") && message.contains("m2_second"),
            "{message}"
        );
        // The newer one again: nothing left to do; another line of migrations is refused too.
        connect::<TwoTables>(&url, 1).await.unwrap().close().await.unwrap();
        assert!(connect::<OtherLine>(&url, 1).await.is_err());
    }

    /// A migration that asks for a transaction.
    struct Atomic;

    impl sea_orm_migration::MigrationName for Atomic {
        fn name(&self) -> &str {
            "m1_atomic"
        }
    }

    #[sea_orm_migration::async_trait::async_trait]
    impl sea_orm_migration::MigrationTrait for Atomic {
        async fn up(&self, manager: &sea_orm_migration::SchemaManager) -> Result<(), DbErr> {
            Creates("m1_atomic", "atomic").up(manager).await
        }

        fn use_transaction(&self) -> Option<bool> {
            Some(true)
        }
    }

    struct AtomicMigrations;
    impl MigratorTrait for AtomicMigrations {
        fn migrations() -> Vec<Box<dyn sea_orm_migration::MigrationTrait>> {
            vec![Box::new(Atomic)]
        }
    }

    #[tokio::test]
    async fn a_sqlite_migration_asking_for_a_transaction_is_refused_saying_so() {
        let err = connect::<AtomicMigrations>("sqlite::memory:", 1).await.unwrap_err();
        let StoreError::Migrate(DbErr::Migration(message)) = &err else {
            panic!("{err:?}");
        };
        assert!(message.contains("asked for a transaction"), "{message}");
    }

    #[tokio::test]
    async fn a_sqlite_commit_is_synced_before_it_is_acknowledged() {
        use sea_orm::ConnectionTrait;
        struct NoMigrations;
        impl MigratorTrait for NoMigrations {
            fn migrations() -> Vec<Box<dyn sea_orm_migration::MigrationTrait>> {
                Vec::new()
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let db = connect::<NoMigrations>(&sqlite_url(&dir.path().join("x.db")), 1)
            .await
            .unwrap();
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "PRAGMA synchronous",
            ))
            .await
            .unwrap()
            .unwrap();
        let level: i64 = row.try_get_by_index(0).unwrap();
        assert_eq!(level, 2, "FULL");
    }

    #[tokio::test]
    async fn a_write_transaction_on_a_sqlite_file_another_process_writes_waits_instead_of_failing() {
        use sea_orm::ConnectionTrait;
        struct NoMigrations;
        impl MigratorTrait for NoMigrations {
            fn migrations() -> Vec<Box<dyn sea_orm_migration::MigrationTrait>> {
                Vec::new()
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let url = sqlite_url(&dir.path().join("shared.db"));
        // Two pools on one file: two replicas (or processes) of a service.
        let first = connect::<NoMigrations>(&url, 1).await.unwrap();
        let second = connect::<NoMigrations>(&url, 1).await.unwrap();
        first
            .execute_unprepared("CREATE TABLE seats (n INTEGER)")
            .await
            .unwrap();

        // The first holds the write lock; the second reads, then writes once the first committed.
        let holder = begin_write(&first).await.unwrap();
        holder.execute_unprepared("INSERT INTO seats VALUES (1)").await.unwrap();
        let writer = tokio::spawn(async move {
            let txn = begin_write(&second).await?;
            txn.execute_unprepared("SELECT COUNT(*) FROM seats").await?;
            txn.execute_unprepared("INSERT INTO seats VALUES (2)").await?;
            txn.commit().await
        });
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        holder.commit().await.unwrap();
        writer
            .await
            .unwrap()
            .expect("waited for the lock, never failed on a stale read");
    }
}
