//! Telling "the database cannot be reached right now" from "our code asked it something wrong".
//!
//! The first is a dependency outage: the client should retry later (UNAVAILABLE), a consumer should
//! redeliver. The second is a bug or corrupt data: retrying repeats it, and an operator has to look.

use std::ops::Deref;

use sea_orm::{
    DbErr, RuntimeErr,
    sqlx::{self, error::DatabaseError, postgres::PgDatabaseError},
};

/// Whether `err` means the database is unreachable or refusing work for now, rather than a bug.
///
/// Unavailable: no connection could be had (the pool timed out or is closed, connecting failed for
/// any reason — refused, reset, authentication, the database not accepting connections), the
/// connection broke under a statement (I/O or TLS error), PostgreSQL terminating or refusing
/// sessions (SQLSTATE class 08 connection exception, 57P01 admin shutdown, 57P02 crash shutdown,
/// 57P03 cannot connect now, 57P04 database dropped, 57P05 idle-session timeout) or a statement
/// (57014: `statement_timeout` under load, or cancelled by an operator), running out of
/// resources (class 53: too many connections, disk full, out of memory), or a failover leaving us
/// on a read-only standby (25006); SQLite busy or locked beyond its busy timeout, failing I/O, a
/// full disk or a file it cannot open (the SQLite engine reports those as connection errors).
///
/// Everything else — constraint violations, decode and type errors, rows that do not map to the
/// domain, SQL errors — is not: it is a bug or corrupt data.
pub fn is_unavailable(err: &DbErr) -> bool {
    match err {
        DbErr::ConnectionAcquire(_) => true,
        // Only raised while getting or opening a connection (or on a closed `DatabaseConnection`):
        // whatever the cause, the service has no database to talk to.
        DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => sqlx_unavailable(e),
        _ => false,
    }
}

/// Whether `err` is a lost race the database detected (PostgreSQL serialization failure 40001,
/// deadlock 40P01, or a lock not had within `lock_timeout` 55P03): retrying the transaction is the cure.
pub fn is_contention(err: &DbErr) -> bool {
    postgres_code(err).is_some_and(|code| matches!(code, "40001" | "40P01" | "55P03"))
}

/// Whether the database gave up on a statement after a timeout: PostgreSQL's `statement_timeout`
/// (57014) or `lock_timeout` (55P03). Usually load, so transient — but a statement that always takes
/// longer than the timeout fails the same way every time, so callers that retry without end count
/// these (the event consumers do, against a larger allowance than other failures).
pub fn is_timeout(err: &DbErr) -> bool {
    postgres_code(err).is_some_and(|code| matches!(code, "57014" | "55P03"))
}

/// The SQLSTATE of an error PostgreSQL answered a statement with.
fn postgres_code(err: &DbErr) -> Option<&str> {
    match err {
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => match e.as_ref() {
            sqlx::Error::Database(db) => db.try_downcast_ref::<PgDatabaseError>().map(PgDatabaseError::code),
            _ => None,
        },
        _ => None,
    }
}

/// Whether trying again later can succeed: the database is unavailable, or a race was lost.
pub fn is_transient(err: &DbErr) -> bool {
    is_unavailable(err) || is_contention(err)
}

/// Whether a SQLite error (of `crate::sqlite`'s engine) means the database is unavailable: busy or
/// locked past the timeout, failing I/O, a full disk, a file it cannot open. The engine reports those
/// as connection errors (`DbErr::Conn`).
pub(crate) fn sqlite_unavailable(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(
            rusqlite::ErrorCode::DatabaseBusy
                | rusqlite::ErrorCode::DatabaseLocked
                | rusqlite::ErrorCode::SystemIoFailure
                | rusqlite::ErrorCode::DiskFull
                | rusqlite::ErrorCode::CannotOpen
        )
    )
}

fn sqlx_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => database_unavailable(db.deref()),
        _ => false,
    }
}

fn database_unavailable(err: &(dyn DatabaseError + 'static)) -> bool {
    err.try_downcast_ref::<PgDatabaseError>()
        .is_some_and(|pg| postgres_unavailable(pg.code()))
}

/// PostgreSQL SQLSTATEs of an unavailable database (see the PostgreSQL "Error Codes" appendix).
fn postgres_unavailable(sqlstate: &str) -> bool {
    sqlstate.starts_with("08") // connection exception
        || sqlstate.starts_with("53") // insufficient resources: 53300 too many connections, disk full, ...
        || sqlstate.starts_with("57P") // admin / crash shutdown, cannot connect now, database dropped, ...
        || sqlstate == "57014" // query canceled: statement_timeout under load (or an operator's cancel)
        || sqlstate == "25006" // read-only transaction: a failover left us on a standby
}

#[cfg(test)]
mod tests {
    use std::{io, sync::Arc, time::Duration};

    use sea_orm::{ConnAcquireErr, ConnectionTrait};

    use super::*;

    fn exec(err: sqlx::Error) -> DbErr {
        DbErr::Exec(RuntimeErr::SqlxError(Arc::new(err)))
    }

    #[test]
    fn no_connection_to_be_had_is_unavailable() {
        assert!(is_unavailable(&DbErr::ConnectionAcquire(ConnAcquireErr::Timeout)));
        assert!(is_unavailable(&DbErr::ConnectionAcquire(
            ConnAcquireErr::ConnectionClosed
        )));
        let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "connection refused");
        assert!(is_unavailable(&DbErr::Conn(RuntimeErr::SqlxError(Arc::new(
            sqlx::Error::Io(refused)
        )))));
        assert!(is_unavailable(&DbErr::Conn(RuntimeErr::Internal(
            "Disconnected".into()
        ))));
    }

    #[test]
    fn a_connection_breaking_under_a_statement_is_unavailable() {
        for kind in [
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::BrokenPipe,
            io::ErrorKind::UnexpectedEof,
        ] {
            assert!(is_unavailable(&exec(sqlx::Error::Io(io::Error::new(kind, "gone")))));
        }
        assert!(is_unavailable(&exec(sqlx::Error::PoolTimedOut)));
        assert!(is_unavailable(&DbErr::Query(RuntimeErr::SqlxError(Arc::new(
            sqlx::Error::PoolClosed
        )))));
    }

    #[test]
    fn bugs_and_bad_data_are_not_unavailable() {
        assert!(!is_unavailable(&DbErr::Custom("payments row x: invalid status".into())));
        assert!(!is_unavailable(&DbErr::Type("expected i64".into())));
        assert!(!is_unavailable(&DbErr::RecordNotFound("call".into())));
        assert!(!is_unavailable(&exec(sqlx::Error::ColumnNotFound("fee".into()))));
        assert!(!is_unavailable(&exec(sqlx::Error::Protocol(
            "unexpected message".into()
        ))));
        assert!(!is_unavailable(&DbErr::Query(RuntimeErr::Internal("odd".into()))));
    }

    #[test]
    fn sqlstates_of_an_unavailable_postgres_are_recognised() {
        for code in [
            "08006", "08001", "57P01", "57P02", "57P03", "53300", "53100", "25006", "57014",
        ] {
            assert!(postgres_unavailable(code), "{code}");
        }
        // unique violation, foreign key violation, serialization failure, syntax error, lock not available
        for code in ["23505", "23503", "40001", "42601", "55P03"] {
            assert!(!postgres_unavailable(code), "{code}");
        }
    }

    #[test]
    fn sqlite_codes_of_an_unavailable_file_are_recognised() {
        let error = |code: i32| rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None);
        // BUSY, BUSY_SNAPSHOT, LOCKED, IOERR_WRITE, FULL, CANTOPEN
        for code in [5, 517, 6, 778, 13, 14] {
            assert!(sqlite_unavailable(&error(code)), "{code}");
        }
        // CONSTRAINT_UNIQUE, CONSTRAINT_FOREIGNKEY, MISMATCH, ERROR, CORRUPT
        for code in [2067, 787, 20, 1, 11] {
            assert!(!sqlite_unavailable(&error(code)), "{code}");
        }
    }

    fn sqlite(url: &str, busy_timeout: Duration) -> crate::Db {
        crate::Db::sqlite(crate::sqlite::Engine::open_with(url, busy_timeout).expect("sqlite"))
    }

    #[tokio::test]
    async fn sqlite_busy_past_its_timeout_is_unavailable_and_a_constraint_violation_is_not() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}/busy.db?mode=rwc", dir.path().display());
        let holder = sqlite(&url, Duration::from_secs(5));
        holder
            .execute_unprepared("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            .await
            .expect("create");
        holder
            .execute_unprepared("INSERT INTO t (id) VALUES (1)")
            .await
            .expect("insert");
        let duplicate = holder
            .execute_unprepared("INSERT INTO t (id) VALUES (1)")
            .await
            .expect_err("duplicate key");
        assert!(!is_unavailable(&duplicate), "{duplicate:?}");

        // One writer holds the lock; another gives up after its (short) busy timeout.
        let txn = crate::begin_write(&holder).await.expect("begin");
        txn.execute_unprepared("INSERT INTO t (id) VALUES (2)")
            .await
            .expect("write");
        let other = sqlite(&url, Duration::from_millis(50));
        let busy = other
            .execute_unprepared("INSERT INTO t (id) VALUES (3)")
            .await
            .expect_err("the file is locked");
        assert!(is_unavailable(&busy), "{busy:?}");
        txn.rollback().await.expect("rollback");
    }

    #[tokio::test]
    async fn a_closed_connection_is_unavailable() {
        let db = sqlite("sqlite::memory:", Duration::from_secs(1));
        db.clone().close().await.expect("close");
        let err = db.execute_unprepared("SELECT 1").await.expect_err("closed");
        assert!(is_unavailable(&err), "{err:?}");
    }
}
