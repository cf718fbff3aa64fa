//! [`Db`], a service's database, and [`Txn`], a write transaction on it: sea-orm connections (every
//! query, entity and migration of the services works on them unchanged), backed by the SQLite engine of
//! this crate or by its PostgreSQL pool over sqlx's connections.

use std::sync::Arc;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, ExecResult, QueryResult, Statement};

use crate::{
    Backend,
    postgres::{self, Pool},
    sqlite::{self, Engine},
};

/// Reports a statement's duration and outcome (the service's telemetry), whichever the database.
pub(crate) type MetricCallback = Arc<dyn Fn(&sea_orm::metric::Info<'_>) + Send + Sync>;

/// A service's database (cheap to clone: clones share the connection or pool).
#[derive(Clone)]
pub struct Db(Backing);

#[derive(Clone)]
enum Backing {
    Sqlite(Arc<Engine>),
    Postgres(Arc<Pool>),
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Db").field(&self.backend()).finish()
    }
}

impl Db {
    pub(crate) fn sqlite(engine: Arc<Engine>) -> Self {
        Self(Backing::Sqlite(engine))
    }

    pub(crate) fn postgres(pool: Arc<Pool>) -> Self {
        Self(Backing::Postgres(pool))
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        match &self.0 {
            Backing::Sqlite(_) => Backend::Sqlite,
            Backing::Postgres(_) => Backend::Postgres,
        }
    }

    /// Reports every statement from now on (transactions included) to `callback`, and the COMMITs
    /// (on SQLite each may carry several transactions: see the engine's group commit).
    pub fn set_metric_callback<F>(&mut self, callback: F)
    where
        F: Fn(&sea_orm::metric::Info<'_>) + Send + Sync + 'static,
    {
        let callback: MetricCallback = Arc::new(callback);
        match &mut self.0 {
            Backing::Sqlite(engine) => engine.set_metric_callback(callback),
            Backing::Postgres(pool) => pool.set_metric_callback(callback),
        }
    }

    /// How the connections are used right now: (open connections, idle ones).
    pub fn usage(&self) -> (u32, usize) {
        match &self.0 {
            Backing::Sqlite(engine) => engine.usage(),
            Backing::Postgres(pool) => pool.usage(),
        }
    }

    /// Closes the database (an open group of SQLite transactions is committed first).
    pub async fn close(self) -> Result<(), DbErr> {
        match self.0 {
            Backing::Sqlite(engine) => {
                engine.close().await;
                Ok(())
            }
            Backing::Postgres(pool) => {
                pool.close().await;
                Ok(())
            }
        }
    }

    /// This database as sea-orm's own connection type, for APIs that take nothing else
    /// (sea-orm-migration). On SQLite it runs statements outside transactions only; on PostgreSQL it
    /// is a connection of its own, to be closed after use.
    pub(crate) async fn as_sea_orm(&self) -> Result<DatabaseConnection, DbErr> {
        match &self.0 {
            Backing::Sqlite(engine) => {
                sea_orm::Database::connect_proxy(
                    DbBackend::Sqlite,
                    Arc::new(Box::new(sqlite::MigrationProxy::new(Arc::clone(engine)))),
                )
                .await
            }
            Backing::Postgres(pool) => {
                let mut options = sea_orm::ConnectOptions::new(pool.url().to_owned());
                options.sqlx_logging(false).max_connections(1);
                sea_orm::Database::connect(options).await
            }
        }
    }
}

/// A transaction that writes: on SQLite it holds the database's write lock from BEGIN (`BEGIN
/// IMMEDIATE`), so a read inside it can never go stale before its write (another process on the same
/// file waits instead of failing), and it commits with the other transactions waiting for the
/// connection (one sync for all; `commit` returns once its changes are durable). On PostgreSQL READ
/// COMMITTED, whatever the server's `default_transaction_isolation`: the services' conditional writes
/// decide again on what a concurrent writer committed, and PlaceCall's claim of an idempotency key
/// looks the key up again after claiming it — each statement must see the commits before it.
pub async fn begin_write(db: &Db) -> Result<Txn, DbErr> {
    match &db.0 {
        Backing::Sqlite(engine) => Ok(Txn(TxnInner::Sqlite(engine.begin().await?))),
        Backing::Postgres(pool) => {
            let mut conn = pool.acquire().await?;
            conn.begin().await?;
            Ok(Txn(TxnInner::Postgres(tokio::sync::Mutex::new(conn))))
        }
    }
}

/// A write transaction ([`begin_write`]); dropping it uncommitted rolls it back.
///
/// On SQLite it may read changes of transactions committed just before it that are not yet durable
/// (they share its group's sync): `commit` and `rollback` return only once those are, or fail. A
/// transaction whose reads are acted upon must therefore end with one of them, not be dropped
/// (dropping returns at once; use it for failures).
pub struct Txn(TxnInner);

enum TxnInner {
    Sqlite(sqlite::Transaction),
    Postgres(tokio::sync::Mutex<postgres::Conn>),
}

impl std::fmt::Debug for Txn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Txn")
    }
}

impl Txn {
    /// Commits; `Ok` once the changes are durable.
    pub async fn commit(self) -> Result<(), DbErr> {
        match self.0 {
            TxnInner::Sqlite(txn) => txn.commit().await,
            TxnInner::Postgres(conn) => conn.into_inner().commit().await,
        }
    }

    /// Rolls the changes back; on SQLite, once what it read of others is durable (see [`Txn`]).
    pub async fn rollback(self) -> Result<(), DbErr> {
        match self.0 {
            TxnInner::Sqlite(txn) => txn.rollback().await,
            TxnInner::Postgres(conn) => conn.into_inner().rollback().await,
        }
    }
}

fn results(rows: Vec<sea_orm::ProxyRow>) -> Vec<QueryResult> {
    rows.into_iter().map(QueryResult::from).collect()
}

#[sea_orm_migration::async_trait::async_trait]
impl ConnectionTrait for Db {
    fn get_database_backend(&self) -> DbBackend {
        match &self.0 {
            Backing::Sqlite(_) => DbBackend::Sqlite,
            Backing::Postgres(_) => DbBackend::Postgres,
        }
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        match &self.0 {
            Backing::Sqlite(engine) => engine.execute(&stmt).await.map(ExecResult::from),
            Backing::Postgres(pool) => pool.acquire().await?.execute(&stmt).await,
        }
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        match &self.0 {
            Backing::Sqlite(engine) => engine.execute_unprepared(sql).await.map(ExecResult::from),
            Backing::Postgres(pool) => pool.acquire().await?.execute_unprepared(sql).await,
        }
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        match &self.0 {
            Backing::Sqlite(engine) => Ok(results(engine.query(&stmt).await?).into_iter().next()),
            Backing::Postgres(pool) => Ok(pool.acquire().await?.query(&stmt).await?.into_iter().next()),
        }
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        match &self.0 {
            Backing::Sqlite(engine) => Ok(results(engine.query(&stmt).await?)),
            Backing::Postgres(pool) => pool.acquire().await?.query(&stmt).await,
        }
    }
}

#[sea_orm_migration::async_trait::async_trait]
impl ConnectionTrait for Txn {
    fn get_database_backend(&self) -> DbBackend {
        match &self.0 {
            TxnInner::Sqlite(_) => DbBackend::Sqlite,
            TxnInner::Postgres(_) => DbBackend::Postgres,
        }
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        match &self.0 {
            TxnInner::Sqlite(txn) => txn.execute(&stmt).await.map(ExecResult::from),
            TxnInner::Postgres(conn) => conn.lock().await.execute(&stmt).await,
        }
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        match &self.0 {
            TxnInner::Sqlite(txn) => txn.execute_unprepared(sql).await.map(ExecResult::from),
            TxnInner::Postgres(conn) => conn.lock().await.execute_unprepared(sql).await,
        }
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        match &self.0 {
            TxnInner::Sqlite(txn) => Ok(results(txn.query(&stmt).await?).into_iter().next()),
            TxnInner::Postgres(conn) => Ok(conn.lock().await.query(&stmt).await?.into_iter().next()),
        }
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        match &self.0 {
            TxnInner::Sqlite(txn) => Ok(results(txn.query(&stmt).await?)),
            TxnInner::Postgres(conn) => conn.lock().await.query(&stmt).await,
        }
    }
}
