//! PostgreSQL through a pool of our own over sqlx's connections, sea-orm on top (rows and results are
//! sea-orm's own, made from sqlx's): a round trip is a statement, nothing else.
//!
//! sqlx's pool pings every connection it takes back (a round trip per checkout, in a task of its own,
//! which no option turns off), and sea-orm opens a transaction with `BEGIN` and then sets its isolation
//! level with a second statement. Here a connection whose last statement finished goes back to the pool
//! as it is, and a write transaction starts with one `BEGIN ISOLATION LEVEL READ COMMITTED`.
//!
//! What sqlx's ping was for is handled where it arises:
//! - a connection given back with a statement still running (its caller stopped waiting: a deadline,
//!   a shutdown) is closed, not lent again: its answer — an error, maybe — would otherwise be read by
//!   the next user's statement as its own, after waiting for it;
//! - a transaction dropped uncommitted between statements is rolled back at once, in a task holding
//!   the connection's slot: its locks do not wait for the next checkout (dropped during a statement,
//!   the connection is closed, and the server ends the transaction when it sees the session gone);
//! - a connection whose statement failed on the wire (I/O, TLS, protocol) or whose session the server
//!   ended (SQLSTATE class 08, 57P…, or 25006: a failover left it on a standby) is closed; errors that
//!   leave the session usable (a statement timeout, out of memory) keep it.
//!
//! Connections idle or open longer than [`Timeouts`] allow are replaced when next taken.

use std::{
    sync::{
        Arc, Mutex, OnceLock, PoisonError,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use sea_orm::{
    ConnAcquireErr, DbBackend, DbErr, ExecResult, QueryResult, RuntimeErr, Statement,
    sea_query::Values,
    sqlx::{
        self, AssertSqlSafe, ConnectOptions as _, Connection as _, Executor as _,
        postgres::{PgConnectOptions, PgConnection, PgDatabaseError, PgSeverity, Postgres},
    },
};
use sea_query_sqlx::SqlxValues;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::db::MetricCallback;

/// How a write transaction starts; see [`crate::begin_write`] for why READ COMMITTED.
const BEGIN: &str = "BEGIN ISOLATION LEVEL READ COMMITTED";

/// How long to wait for a free connection and for a new one to open, and how long a connection may stay
/// idle or open before it is replaced when next taken.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) acquire: Duration,
    pub(crate) connect: Duration,
    pub(crate) idle: Duration,
    pub(crate) lifetime: Duration,
}

impl Default for Timeouts {
    /// 10 s for a free connection, 5 s to connect; idle 10 minutes, open 30 (sqlx's defaults).
    fn default() -> Self {
        Self {
            acquire: Duration::from_secs(10),
            connect: Duration::from_secs(5),
            idle: Duration::from_secs(10 * 60),
            lifetime: Duration::from_secs(30 * 60),
        }
    }
}

/// Up to `size` connections to one database.
pub(crate) struct Pool {
    options: PgConnectOptions,
    url: String,
    timeouts: Timeouts,
    slots: Arc<Semaphore>,
    idle: Mutex<Vec<Idle>>,
    open: AtomicU32,
    metric: OnceLock<MetricCallback>,
}

struct Idle {
    conn: PgConnection,
    born: Instant,
    since: Instant,
}

impl Pool {
    /// A pool of at most `size` connections to `url`; one is opened now, so a wrong URL or an
    /// unreachable server fails here.
    pub(crate) async fn open(url: &str, size: u32, timeouts: Timeouts) -> Result<Arc<Self>, DbErr> {
        // Statements are reported through the metric callback; sqlx's own log of each is not wanted.
        let options = url
            .parse::<PgConnectOptions>()
            .map_err(conn_err)?
            .disable_statement_logging();
        let pool = Arc::new(Self {
            options,
            url: url.to_owned(),
            timeouts,
            slots: Arc::new(Semaphore::new(size.max(1) as usize)),
            idle: Mutex::new(Vec::new()),
            open: AtomicU32::new(0),
            metric: OnceLock::new(),
        });
        drop(pool.acquire().await?);
        Ok(pool)
    }

    /// The URL it connects to (for sea-orm-migration, which opens its own connection).
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// Reports every statement and COMMIT from now on to `callback` (once; later calls are ignored).
    pub(crate) fn set_metric_callback(&self, callback: MetricCallback) {
        let _ = self.metric.set(callback);
    }

    /// (open connections, idle ones).
    pub(crate) fn usage(&self) -> (u32, usize) {
        (self.open.load(Ordering::Relaxed), self.idle_list().len())
    }

    /// Refuses new checkouts and closes the idle connections (those in use close when given back).
    pub(crate) async fn close(&self) {
        // Closed before the idle list is taken: a connection given back after the take sees it (the
        // check and the push in `give_back` hold the list's lock), one given back before is taken.
        self.slots.close();
        let idle = std::mem::take(&mut *self.idle_list());
        for Idle { conn, .. } in idle {
            self.forget();
            let _ = conn.close().await;
        }
    }

    fn idle_list(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A connection of its own for the caller: an idle one (the most recently used) or a new one.
    pub(crate) async fn acquire(self: &Arc<Self>) -> Result<Conn, DbErr> {
        let permit = match tokio::time::timeout(self.timeouts.acquire, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_closed)) => return Err(DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed)),
            Err(_elapsed) => return Err(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout)),
        };
        let now = Instant::now();
        loop {
            let Some(idle) = self.idle_list().pop() else { break };
            if now.duration_since(idle.since) < self.timeouts.idle
                && now.duration_since(idle.born) < self.timeouts.lifetime
            {
                return Ok(self.lend(idle.conn, idle.born, permit));
            }
            self.forget();
            tokio::spawn(async move {
                let _ = idle.conn.close().await;
            });
        }
        let conn = match tokio::time::timeout(self.timeouts.connect, self.options.connect()).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(err)) => return Err(conn_err(err)),
            Err(_elapsed) => return Err(DbErr::ConnectionAcquire(ConnAcquireErr::Timeout)),
        };
        self.open.fetch_add(1, Ordering::Relaxed);
        Ok(self.lend(conn, Instant::now(), permit))
    }

    fn lend(self: &Arc<Self>, conn: PgConnection, born: Instant, permit: OwnedSemaphorePermit) -> Conn {
        Conn {
            pool: Arc::clone(self),
            conn: Some(conn),
            born,
            in_transaction: false,
            in_flight: false,
            broken: false,
            permit: Some(permit),
        }
    }

    /// Takes `conn` back (its slot is freed when its permit drops, after this).
    fn give_back(&self, conn: PgConnection, born: Instant) {
        let mut idle = self.idle_list();
        if !self.slots.is_closed() {
            idle.push(Idle {
                conn,
                born,
                since: Instant::now(),
            });
            return;
        }
        drop(idle);
        self.forget();
        // Closed politely where a runtime is at hand; else dropping the socket ends the session.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = conn.close().await;
            });
        }
    }

    /// One connection fewer is open.
    fn forget(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    fn report(&self, statement: &Statement, started: Instant, failed: bool) {
        if let Some(metric) = self.metric.get() {
            metric(&sea_orm::metric::Info {
                elapsed: started.elapsed(),
                statement,
                failed,
            });
        }
    }
}

/// One connection lent by the [`Pool`]; given back when dropped.
pub(crate) struct Conn {
    pool: Arc<Pool>,
    conn: Option<PgConnection>,
    born: Instant,
    /// `BEGIN` was sent and neither COMMIT nor ROLLBACK has succeeded since.
    in_transaction: bool,
    /// A statement was sent and its answer not read to the end (its caller stopped waiting).
    in_flight: bool,
    /// A statement failed on the wire: the connection is closed, not taken back.
    broken: bool,
    /// The pool's slot this connection holds; moved to the task that rolls back an open transaction.
    permit: Option<OwnedSemaphorePermit>,
}

impl Conn {
    fn raw(&mut self) -> &mut PgConnection {
        self.conn.as_mut().expect("a lent connection is held until dropped")
    }

    /// Marks a statement as sent; refused if the one before it was abandoned mid-way (a transaction
    /// whose statement was cancelled, then used again): its late answer would be read as this one's.
    fn start(&mut self) -> Result<Instant, DbErr> {
        if self.in_flight {
            self.broken = true;
            return Err(DbErr::Conn(RuntimeErr::Internal(
                "the connection's previous statement was abandoned before its answer: it is not used again".into(),
            )));
        }
        self.in_flight = true;
        Ok(Instant::now())
    }

    /// Runs a statement, prepared (and kept prepared on this connection).
    pub(crate) async fn execute(&mut self, stmt: &Statement) -> Result<ExecResult, DbErr> {
        let started = self.start()?;
        let done = query(stmt).execute(self.raw()).await;
        self.settle(stmt, started, done.map(ExecResult::from).map_err(exec_err))
    }

    /// Runs a query, prepared (and kept prepared on this connection), returning all its rows.
    pub(crate) async fn query(&mut self, stmt: &Statement) -> Result<Vec<QueryResult>, DbErr> {
        let started = self.start()?;
        let done = query(stmt).fetch_all(self.raw()).await;
        let rows = done.map(|rows| rows.into_iter().map(QueryResult::from).collect());
        self.settle(stmt, started, rows.map_err(query_err))
    }

    /// Runs `sql` as it is (the simple protocol: no parameters, several statements allowed).
    pub(crate) async fn execute_unprepared(&mut self, sql: &str) -> Result<ExecResult, DbErr> {
        let started = self.start()?;
        let done = self.raw().execute(AssertSqlSafe(sql.to_owned())).await;
        let stmt = Statement::from_string(DbBackend::Postgres, sql);
        self.settle(&stmt, started, done.map(ExecResult::from).map_err(exec_err))
    }

    /// Notes a statement's outcome: reported to the metric callback; a connection broken by it is not
    /// taken back.
    fn settle<T>(&mut self, stmt: &Statement, started: Instant, done: Result<T, DbErr>) -> Result<T, DbErr> {
        self.in_flight = false;
        if let Err(err) = &done {
            self.broken |= breaks_connection(err);
        }
        self.pool.report(stmt, started, done.is_err());
        done
    }

    /// `BEGIN ISOLATION LEVEL READ COMMITTED`.
    pub(crate) async fn begin(&mut self) -> Result<(), DbErr> {
        // Marked first: if this is cancelled after the server got it, the drop rolls back.
        self.in_transaction = true;
        self.execute_unprepared(BEGIN).await.map(drop)
    }

    /// `COMMIT`; `Ok` once the server reports it durable.
    pub(crate) async fn commit(&mut self) -> Result<(), DbErr> {
        self.execute_unprepared("COMMIT").await?;
        self.in_transaction = false;
        Ok(())
    }

    /// `ROLLBACK`.
    pub(crate) async fn rollback(&mut self) -> Result<(), DbErr> {
        self.execute_unprepared("ROLLBACK").await?;
        self.in_transaction = false;
        Ok(())
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if self.broken || self.in_flight {
            // Dropping the socket ends the session; the server rolls back what was open once it sees
            // that (a statement still running finishes first).
            self.pool.forget();
            return;
        }
        if !self.in_transaction {
            self.pool.give_back(conn, self.born);
            return;
        }
        // Rolled back now, not at the next checkout: the transaction's locks go with it. The slot is
        // held until then, so the pool never lends a connection with a transaction open.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.pool.forget();
            return;
        };
        let rollback = Rollback {
            pool: Arc::clone(&self.pool),
            conn: Some(conn),
            born: self.born,
            _permit: self.permit.take(),
        };
        runtime.spawn(rollback.run());
    }
}

/// The ROLLBACK of a transaction dropped uncommitted, run in a task of its own; if the task never runs
/// (the runtime is shutting down), dropping it closes the connection and counts it gone.
struct Rollback {
    pool: Arc<Pool>,
    conn: Option<PgConnection>,
    born: Instant,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Rollback {
    async fn run(mut self) {
        let Some(conn) = self.conn.as_mut() else { return };
        // The connection stays in `self` while the ROLLBACK runs: if the task is dropped meanwhile,
        // `drop` counts it gone.
        let rolled_back = conn.execute(AssertSqlSafe("ROLLBACK")).await.is_ok();
        let Some(conn) = self.conn.take() else { return };
        if rolled_back {
            self.pool.give_back(conn, self.born);
        } else {
            self.pool.forget();
        }
    }
}

impl Drop for Rollback {
    fn drop(&mut self) {
        if self.conn.take().is_some() {
            self.pool.forget();
        }
    }
}

fn query(stmt: &Statement) -> sqlx::query::Query<'_, Postgres, SqlxValues> {
    let values = stmt.values.clone().unwrap_or(Values(Vec::new()));
    sqlx::query_with(AssertSqlSafe(stmt.sql.as_str()), SqlxValues(values))
}

fn conn_err(err: sqlx::Error) -> DbErr {
    DbErr::Conn(RuntimeErr::SqlxError(Arc::new(err)))
}

fn exec_err(err: sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(Arc::new(err)))
}

fn query_err(err: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(Arc::new(err)))
}

/// Whether the connection is no use after `err`: it broke on the wire, or the server ended the session
/// (a FATAL error — an idle-in-transaction or transaction timeout among them —, SQLSTATE class 08
/// connection exception, 57P… shut down or terminated) or left it on a read-only standby (25006: a new
/// connection reaches the new primary). Other errors leave the session usable.
fn breaks_connection(err: &DbErr) -> bool {
    match err {
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => match e.as_ref() {
            sqlx::Error::Database(db) => db.try_downcast_ref::<PgDatabaseError>().is_some_and(|pg| {
                matches!(pg.severity(), PgSeverity::Fatal | PgSeverity::Panic) || session_over(pg.code())
            }),
            sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => true,
            _ => false,
        },
        _ => false,
    }
}

fn session_over(sqlstate: &str) -> bool {
    sqlstate.starts_with("08") || sqlstate.starts_with("57P") || sqlstate == "25006"
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

    use super::*;

    fn url() -> String {
        std::env::var("TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".into())
    }

    async fn backend_pid(pool: &Arc<Pool>) -> i32 {
        let stmt = Statement::from_string(DbBackend::Postgres, "SELECT pg_backend_pid()");
        let rows = pool.acquire().await.unwrap().query(&stmt).await.unwrap();
        rows.first().unwrap().try_get_by_index(0).unwrap()
    }

    #[tokio::test]
    async fn a_connection_idle_or_open_too_long_is_replaced_when_next_taken_and_one_within_its_time_is_kept() {
        let kept = Pool::open(&url(), 1, Timeouts::default()).await.unwrap();
        assert_eq!(
            backend_pid(&kept).await,
            backend_pid(&kept).await,
            "the same session, lent again"
        );
        kept.close().await;

        for timeouts in [
            Timeouts {
                idle: Duration::from_millis(20),
                ..Timeouts::default()
            },
            Timeouts {
                lifetime: Duration::from_millis(20),
                ..Timeouts::default()
            },
        ] {
            let pool = Pool::open(&url(), 1, timeouts).await.unwrap();
            let before = backend_pid(&pool).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            assert_ne!(backend_pid(&pool).await, before, "{timeouts:?}: a new session");
            assert_eq!(pool.usage(), (1, 1), "{timeouts:?}: the old one closed, not kept");
            pool.close().await;
        }
    }
}
