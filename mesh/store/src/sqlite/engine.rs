//! One SQLite connection, used inline by whoever holds its turn, committing transactions in groups.
//!
//! sqlx ran every statement on a thread of its own, sending it there and the answer back: two thread
//! wake-ups per statement, plus a ping on every checkout and another on every return, the bulk of
//! the mesh's CPU per write. Here a statement runs on the task that issues it (SQLite answers a
//! prepared statement in microseconds). Tasks take turns (first come, first served): a write
//! transaction holds the turn from BEGIN to its commit; a statement outside a transaction holds it for
//! that statement.
//!
//! **Group commit.** A commit with `synchronous=FULL` waits for the disk. When a transaction commits
//! while others wait for their turn, its changes are kept (its savepoint released) in the SQLite
//! transaction that stays open for the next one; the last of the group — the one that finds nobody
//! waiting, or the group full — commits them all with one sync, and each member's `commit` returns only
//! then, with that commit's outcome. A member's own failure rolls back to its savepoint and touches no
//! one else's changes. A statement outside any transaction first commits an open group, so nothing
//! reads changes that are not yet durable.

use std::{
    sync::{
        Arc, Mutex, MutexGuard, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use crate::db::MetricCallback;
use rusqlite::{Connection, OpenFlags};
use sea_orm::{DbErr, ProxyExecResult, ProxyRow, RuntimeErr, Statement};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{
    columns::{self, Kinds},
    statements::{self, Failed, Failure},
};

/// Transactions committed with one sync at most.
const GROUP_MEMBERS: usize = 64;
/// A group takes no more members once this old (with [`GROUP_MEMBERS`], bounds how long its first
/// member waits: this, plus the transaction of the last member to join).
const GROUP_AGE: Duration = Duration::from_millis(5);
/// How long a statement waits for another process's lock on the file before failing as unavailable.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// An open SQLite database.
pub(crate) struct Engine {
    conn: Mutex<Conn>,
    turn: Arc<Semaphore>,
    waiting: AtomicUsize,
    metric: OnceLock<MetricCallback>,
    busy_timeout: Duration,
    /// The runtime the engine was opened on: where a member that stopped waiting has its group
    /// committed (see [`Pending`]).
    runtime: Option<tokio::runtime::Handle>,
}

struct Conn {
    sqlite: Connection,
    kinds: Kinds,
    /// The SQLite transaction shared by the members of the current group, when one is open.
    group: Option<Group>,
    next_group: u64,
}

struct Group {
    id: u64,
    /// Members that committed into it and wait for its COMMIT.
    members: usize,
    opened: Instant,
    outcome: Outcome,
}

/// What became of a group, set once when it closes; every member holds it.
type Outcome = Arc<OnceLock<Result<(), Failed>>>;

/// How many bytes of a savepoint's undo pages SQLite keeps in memory before it moves them to a temporary
/// file (64 KiB by default). Every write transaction here is a savepoint inside its group's transaction
/// (see `Engine::begin`); a group under load passed 64 KiB, and from then on each page a member changed
/// was one more write system call. The journal is emptied at each member's release, so this is what one
/// transaction may hold, once, before it spills as before.
const UNDO_JOURNAL_IN_MEMORY: std::ffi::c_int = 4 << 20;

/// Sets [`UNDO_JOURNAL_IN_MEMORY`] for the process, once, before SQLite starts (it refuses the setting
/// afterwards: then the default stays, and this says so).
fn keep_undo_journals_in_memory() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[allow(unsafe_code)]
        // SAFETY: `SQLITE_CONFIG_STMTJRNL_SPILL` takes exactly one `int`; called once (`Once`), before
        // this process opens a connection through this engine. If SQLite is initialised already it
        // answers SQLITE_MISUSE and changes nothing.
        let rc = unsafe {
            rusqlite::ffi::sqlite3_config(rusqlite::ffi::SQLITE_CONFIG_STMTJRNL_SPILL, UNDO_JOURNAL_IN_MEMORY)
        };
        if rc != rusqlite::ffi::SQLITE_OK {
            tracing::warn!(
                code = rc,
                "SQLite started before its undo-journal threshold could be set: transactions over 64 KiB of \
                 changes write their undo pages to a temporary file"
            );
        }
    });
}

impl Engine {
    /// Opens the database `url` names (`sqlite::memory:`, `sqlite://PATH[?mode=rwc|rw|ro]`): WAL,
    /// `synchronous=FULL` (a commit is on disk before it is acknowledged), foreign keys on.
    pub(crate) fn open(url: &str) -> Result<Arc<Self>, DbErr> {
        Self::open_with(url, BUSY_TIMEOUT)
    }

    /// [`Engine::open`], waiting at most `busy_timeout` for another process's lock.
    pub(crate) fn open_with(url: &str, busy_timeout: Duration) -> Result<Arc<Self>, DbErr> {
        keep_undo_journals_in_memory();
        let fail = |err: rusqlite::Error| DbErr::Conn(RuntimeErr::Internal(format!("SQLite: {err}")));
        let (path, query) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .map(|rest| rest.split_once('?').unwrap_or((rest, "")))
            .ok_or_else(|| DbErr::Conn(RuntimeErr::Internal(format!("not a SQLite URL: {url}"))))?;
        let memory = path.is_empty() || path == ":memory:";
        let sqlite = if memory {
            Connection::open_in_memory().map_err(fail)?
        } else {
            let mode = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("mode="))
                .unwrap_or("rwc");
            let flags = OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI
                | match mode {
                    "ro" => OpenFlags::SQLITE_OPEN_READ_ONLY,
                    "rw" => OpenFlags::SQLITE_OPEN_READ_WRITE,
                    _ => OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
                };
            Connection::open_with_flags(path, flags).map_err(fail)?
        };
        // Busy is waited out by `Engine::retrying`, off the thread: another process's lock must not
        // block this runtime.
        sqlite.busy_timeout(Duration::ZERO).map_err(fail)?;
        sqlite.set_prepared_statement_cache_capacity(64);
        // Plans that do not depend on bound values: otherwise SQLite prepares a kept statement again
        // whenever a parameter its planner looked at is bound (every `LIMIT ?`, so every `.one()`).
        sqlite
            .set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
            .map_err(fail)?;
        if !memory {
            let mode: String = sqlite
                .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
                .map_err(fail)?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(DbErr::Conn(RuntimeErr::Internal(format!(
                    "SQLite: {path} cannot use WAL (journal mode {mode})"
                ))));
            }
        }
        sqlite
            .execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")
            .map_err(fail)?;
        Ok(Arc::new(Self {
            conn: Mutex::new(Conn {
                sqlite,
                kinds: Kinds::default(),
                group: None,
                next_group: 0,
            }),
            turn: Arc::new(Semaphore::new(1)),
            waiting: AtomicUsize::new(0),
            metric: OnceLock::new(),
            busy_timeout,
            runtime: tokio::runtime::Handle::try_current().ok(),
        }))
    }

    /// Reports every statement from now on to `callback` (once; later calls are ignored).
    pub(crate) fn set_metric_callback(&self, callback: MetricCallback) {
        let _ = self.metric.set(callback);
    }

    /// (connections, idle ones): one connection, idle when nobody holds its turn.
    pub(crate) fn usage(&self) -> (u32, usize) {
        (1, self.turn.available_permits())
    }

    /// Runs a statement outside any transaction, returning its rows.
    pub(crate) async fn query(&self, statement: &Statement) -> Result<Vec<ProxyRow>, DbErr> {
        let _turn = self.turn().await?;
        self.settle();
        self.retrying(statement, true, true, |c| {
            statements::rows(&c.sqlite, &mut c.kinds, statement)
        })
        .await
    }

    /// Runs a statement outside any transaction.
    pub(crate) async fn execute(&self, statement: &Statement) -> Result<ProxyExecResult, DbErr> {
        let _turn = self.turn().await?;
        self.settle();
        self.retrying(statement, false, true, |c| statements::execute(&c.sqlite, statement))
            .await
    }

    /// Runs `sql` as it is, outside any transaction (not tried again when busy: some of its
    /// statements may have run).
    pub(crate) async fn execute_unprepared(&self, sql: &str) -> Result<ProxyExecResult, DbErr> {
        let _turn = self.turn().await?;
        self.settle();
        let statement = Statement::from_string(sea_orm::DbBackend::Sqlite, sql);
        self.retrying(&statement, false, false, |c| statements::unprepared(&c.sqlite, sql))
            .await
    }

    /// Begins a write transaction: waits for the turn, then joins the open group or opens one
    /// (`BEGIN IMMEDIATE`: the file's write lock is taken now, so no read in it goes stale before its
    /// write — another process on the same file waits, it does not fail).
    pub(crate) async fn begin(self: &Arc<Self>) -> Result<Transaction, DbErr> {
        let turn = self.turn().await?;
        let open = {
            let mut conn = self.lock();
            match conn.group.as_ref().map(|g| (g.id, Arc::clone(&g.outcome))) {
                Some(open) if !conn.sqlite.is_autocommit() => Some(open),
                Some(_) => {
                    // SQLite ended the group's transaction by itself (see `Conn::in_group`).
                    conn.abandon_group(rolled_back_by_sqlite());
                    None
                }
                None => {
                    conn.recover();
                    None
                }
            }
        };
        let (group, outcome) = match open {
            Some(open) => open,
            None => {
                let begin = Statement::from_string(sea_orm::DbBackend::Sqlite, "BEGIN IMMEDIATE");
                self.retrying(&begin, false, true, |c| {
                    statements::unprepared(&c.sqlite, "BEGIN IMMEDIATE")
                })
                .await?;
                let mut conn = self.lock();
                let id = conn.next_group;
                conn.next_group += 1;
                let outcome = Outcome::default();
                conn.group = Some(Group {
                    id,
                    members: 0,
                    opened: Instant::now(),
                    outcome: Arc::clone(&outcome),
                });
                (id, outcome)
            }
        };
        let mut conn = self.lock();
        if let Err(err) = conn.sqlite.execute_batch("SAVEPOINT member") {
            // The group's transaction cannot go on: end it, failing its members.
            let failed = Failed::of(&err);
            conn.abandon_group(failed.clone());
            return Err(failed.to_db_err(false));
        }
        Ok(Transaction {
            engine: Arc::clone(self),
            turn: Some(turn),
            group,
            outcome,
        })
    }

    /// Commits the open group before a statement outside it runs (it may read what the group wrote).
    fn settle(&self) {
        let mut conn = self.lock();
        if conn.group.is_some() {
            let _ = conn.commit_group(self.metric.get());
        } else {
            conn.recover();
        }
    }

    /// Waits for the turn, counted as waiting meanwhile (a committing transaction leaves its group
    /// open for waiters).
    async fn turn(&self) -> Result<OwnedSemaphorePermit, DbErr> {
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        self.waiting.fetch_add(1, Ordering::AcqRel);
        let _waiting = Waiting(&self.waiting);
        Arc::clone(&self.turn)
            .acquire_owned()
            .await
            .map_err(|_| DbErr::Conn(RuntimeErr::Internal("the SQLite database is closed".into())))
    }

    fn lock(&self) -> MutexGuard<'_, Conn> {
        // A panic while holding the lock leaves nothing half-done that SQLite itself does not undo.
        self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `run` with the connection (its caller holds the turn), reporting it to the metric
    /// callback; with `retry_busy`, while another process holds the file's lock, tries again with
    /// back-off (never blocking the thread) up to the busy timeout ([`BUSY_TIMEOUT`] unless opened
    /// otherwise) — only for what a busy failure leaves undone: one statement outside a transaction,
    /// or BEGIN (inside a transaction SQLite may have rolled it all back, see `Conn::in_group`).
    async fn retrying<T>(
        &self,
        statement: &Statement,
        query: bool,
        retry_busy: bool,
        mut run: impl FnMut(&mut Conn) -> Result<T, Failure>,
    ) -> Result<T, DbErr> {
        let deadline = Instant::now() + self.busy_timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            let started = Instant::now();
            let result = {
                let mut conn = self.lock();
                let result = run(&mut conn);
                if result.is_ok() && columns::changes_schema(&statement.sql) {
                    conn.kinds.forget();
                }
                result
            };
            match result {
                Err(failure) if retry_busy && failure.is_busy() && Instant::now() < deadline => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                result => {
                    if let Some(metric) = self.metric.get() {
                        metric(&sea_orm::metric::Info {
                            elapsed: started.elapsed(),
                            statement,
                            failed: result.is_err(),
                        });
                    }
                    return result.map_err(|f| f.into_db_err(query));
                }
            }
        }
    }

    /// Waits for group `id` to be closed — committing it when it is this caller's turn and the group
    /// is still open — then its outcome.
    async fn outcome(&self, id: u64, outcome: &Outcome) -> Result<(), DbErr> {
        if outcome.get().is_none() {
            match self.turn().await {
                Ok(_turn) => {
                    let mut conn = self.lock();
                    if conn.group.as_ref().is_some_and(|g| g.id == id) {
                        let _ = conn.commit_group(self.metric.get());
                    }
                }
                // Closed: `close` committed the group first, unless it never got the turn.
                Err(closed) if outcome.get().is_none() => return Err(closed),
                Err(_) => {}
            }
        }
        match outcome.get() {
            Some(Ok(())) => Ok(()),
            Some(Err(failed)) => Err(failed.to_db_err(false)),
            None => Err(DbErr::Conn(RuntimeErr::Internal(
                "SQLite: the transaction's group was left open".into(),
            ))),
        }
    }

    /// Commits an open group, then closes the database: nothing after this runs.
    pub(crate) async fn close(&self) {
        if let Ok(turn) = self.turn().await {
            self.settle();
            turn.forget();
        }
        self.turn.close();
    }
}

impl Conn {
    /// COMMITs the open group (one sync for all its members) and records its outcome.
    fn commit_group(&mut self, metric: Option<&MetricCallback>) -> Result<(), DbErr> {
        let Some(group) = self.group.take() else {
            return Ok(());
        };
        let started = Instant::now();
        let result = self.sqlite.execute_batch("COMMIT");
        if let Some(metric) = metric {
            metric(&sea_orm::metric::Info {
                elapsed: started.elapsed(),
                statement: &Statement::from_string(sea_orm::DbBackend::Sqlite, "COMMIT"),
                failed: result.is_err(),
            });
        }
        let result = result.map_err(|err| {
            if !self.sqlite.is_autocommit() {
                let _ = self.sqlite.execute_batch("ROLLBACK");
            }
            Failed::of(&err)
        });
        let _ = group.outcome.set(result.clone());
        result.map_err(|failed| failed.to_db_err(false))
    }

    /// Ends the open group without committing (its transaction broke): its members are told so.
    fn abandon_group(&mut self, failed: Failed) {
        if let Some(group) = self.group.take() {
            if !self.sqlite.is_autocommit() {
                let _ = self.sqlite.execute_batch("ROLLBACK");
            }
            let _ = group.outcome.set(Err(failed));
        }
    }

    /// Ends a SQLite transaction no group owns (a ROLLBACK that failed, or one a migration began):
    /// otherwise the next BEGIN would fail, and statements outside transactions would never commit.
    fn recover(&mut self) {
        if self.group.is_none() && !self.sqlite.is_autocommit() {
            tracing::warn!("a SQLite transaction was left open without a group; rolling it back");
            let _ = self.sqlite.execute_batch("ROLLBACK");
        }
    }

    /// Whether the group this transaction belongs to is still the open one, with its SQLite
    /// transaction alive (SQLite rolls the whole transaction back by itself on some errors — a full
    /// disk, failing I/O, busy — after which statements would run outside it and commit one by one).
    fn in_group(&mut self, id: u64) -> Result<(), DbErr> {
        let open = self.group.as_ref().is_some_and(|g| g.id == id);
        if open && !self.sqlite.is_autocommit() {
            return Ok(());
        }
        let failed = rolled_back_by_sqlite();
        if open {
            self.abandon_group(failed.clone());
        }
        Err(failed.to_db_err(false))
    }
}

fn rolled_back_by_sqlite() -> Failed {
    Failed {
        unavailable: true,
        message: "SQLite: the transaction was rolled back by an earlier failure".into(),
    }
}

/// A write transaction: holds the connection's turn until it commits or rolls back (dropping it rolls
/// it back).
pub(crate) struct Transaction {
    engine: Arc<Engine>,
    turn: Option<OwnedSemaphorePermit>,
    group: u64,
    outcome: Outcome,
}

impl Transaction {
    /// Runs a statement in the transaction, returning its rows.
    pub(crate) async fn query(&self, statement: &Statement) -> Result<Vec<ProxyRow>, DbErr> {
        self.engine.lock().in_group(self.group)?;
        self.engine
            .retrying(statement, true, false, |c| {
                statements::rows(&c.sqlite, &mut c.kinds, statement)
            })
            .await
    }

    /// Runs a statement in the transaction.
    pub(crate) async fn execute(&self, statement: &Statement) -> Result<ProxyExecResult, DbErr> {
        self.engine.lock().in_group(self.group)?;
        self.engine
            .retrying(statement, false, false, |c| statements::execute(&c.sqlite, statement))
            .await
    }

    /// Runs `sql` as it is, in the transaction.
    pub(crate) async fn execute_unprepared(&self, sql: &str) -> Result<ProxyExecResult, DbErr> {
        self.engine.lock().in_group(self.group)?;
        let statement = Statement::from_string(sea_orm::DbBackend::Sqlite, sql);
        self.engine
            .retrying(&statement, false, false, |c| statements::unprepared(&c.sqlite, sql))
            .await
    }

    /// Commits: returns once the changes are on disk (with its group's), or with why they are not.
    pub(crate) async fn commit(mut self) -> Result<(), DbErr> {
        let Some(turn) = self.turn.take() else {
            return Ok(());
        };
        let engine = Arc::clone(&self.engine);
        {
            let mut conn = engine.lock();
            conn.in_group(self.group)?;
            if let Err(err) = conn.sqlite.execute_batch("RELEASE member") {
                let failed = Failed::of(&err);
                conn.abandon_group(failed.clone());
                return Err(failed.to_db_err(false));
            }
            let Some(open) = conn.group.as_mut() else {
                return Err(rolled_back_by_sqlite().to_db_err(false));
            };
            open.members += 1;
            let others_waiting = engine.waiting.load(Ordering::Acquire) > 0;
            if !(others_waiting && open.members < GROUP_MEMBERS && open.opened.elapsed() < GROUP_AGE) {
                return conn.commit_group(engine.metric.get());
            }
        }
        // Leave the group open for the next in line; it is committed by its last member, by a
        // statement outside it, or by this one when its turn comes again.
        drop(turn);
        let mut pending = Pending {
            engine: Some(Arc::clone(&engine)),
            group: self.group,
            outcome: Arc::clone(&self.outcome),
        };
        let outcome = engine.outcome(self.group, &self.outcome).await;
        pending.engine = None;
        outcome
    }

    /// Rolls back this transaction's changes (its group's other members keep theirs). When it read
    /// in a group that held other members' changes, returns only once those are durable — or fails
    /// with why they are not — so nothing read here is acted upon before it is committed.
    pub(crate) async fn rollback(mut self) -> Result<(), DbErr> {
        if self.roll_back() {
            self.engine.outcome(self.group, &self.outcome).await
        } else {
            Ok(())
        }
    }

    /// Rolls back to this transaction's savepoint and gives the turn up; whether the group held other
    /// members' changes (or broke), which this transaction may have read.
    fn roll_back(&mut self) -> bool {
        let Some(turn) = self.turn.take() else {
            return false;
        };
        let mut conn = self.engine.lock();
        let others = match conn.in_group(self.group) {
            Err(_) => true,
            Ok(()) => {
                let others = conn.group.as_ref().is_some_and(|g| g.members > 0);
                match conn.sqlite.execute_batch("ROLLBACK TO member; RELEASE member") {
                    Err(err) => conn.abandon_group(Failed::of(&err)),
                    // Nobody else's changes in it: end the SQLite transaction (and its write lock) now.
                    Ok(()) if !others => conn.abandon_group(Failed {
                        unavailable: false,
                        message: "rolled back".into(),
                    }),
                    Ok(()) => {}
                }
                others
            }
        };
        drop(conn);
        drop(turn);
        others
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        self.roll_back();
    }
}

/// A member's wait for its group's commit. Dropped unfinished (its caller gave up), it still sees
/// the group committed — the other members' acknowledgements, and the file's write lock, depend on it.
struct Pending {
    engine: Option<Arc<Engine>>,
    group: u64,
    outcome: Outcome,
}

impl Drop for Pending {
    fn drop(&mut self) {
        let Some(engine) = self.engine.take() else {
            return;
        };
        let runtime = tokio::runtime::Handle::try_current()
            .ok()
            .or_else(|| engine.runtime.clone());
        if let Some(runtime) = runtime {
            let (group, outcome) = (self.group, Arc::clone(&self.outcome));
            runtime.spawn(async move {
                let _ = engine.outcome(group, &outcome).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::StatementStatus;
    use sea_orm::{DbBackend, Statement, Value};

    use super::Engine;

    /// SQLite re-prepares a statement whenever a parameter its plan looked at is bound again (a
    /// `LIMIT ?`, as in every `.one()` of sea-orm, or a `LIKE ?`), unless the planner is told not to
    /// look at bound values: a kept statement must not be parsed again at each run.
    #[tokio::test]
    async fn a_kept_statement_with_a_bound_limit_is_not_prepared_again_at_each_run() {
        let engine = Engine::open("sqlite::memory:").unwrap();
        engine
            .execute_unprepared("CREATE TABLE t (id text PRIMARY KEY, n integer NOT NULL)")
            .await
            .unwrap();
        for i in 0..3 {
            let insert = Statement::from_sql_and_values(
                DbBackend::Sqlite,
                "INSERT INTO t (id, n) VALUES (?, ?)",
                [Value::from(format!("k{i}")), Value::from(i64::from(i))],
            );
            engine.execute(&insert).await.unwrap();
        }
        let sql = r#"SELECT "id", "n" FROM "t" WHERE "id" = ? LIMIT ?"#;
        for (i, limit) in [(0, 1_u64), (1, 1), (2, 2), (0, 1)] {
            let select = Statement::from_sql_and_values(
                DbBackend::Sqlite,
                sql,
                [Value::from(format!("k{i}")), Value::from(limit)],
            );
            assert_eq!(engine.query(&select).await.unwrap().len(), 1);
        }
        let conn = engine.conn.lock().unwrap();
        let kept = conn.sqlite.prepare_cached(sql).unwrap();
        assert_eq!(
            kept.get_status(StatementStatus::RePrepare),
            0,
            "prepared again on a new binding"
        );
        assert_eq!(kept.get_status(StatementStatus::Run), 4);
    }
}
