//! The SQLite engine: statements inline, write transactions committed in groups — and what each
//! transaction is told is what the file holds.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use baemin_mesh_store::{Db, begin_write, sqlite_url};
use sea_orm::{ConnectionTrait, DbErr, Statement};
use sea_orm_migration::{MigrationTrait, MigratorTrait};

struct NoMigrations;

impl MigratorTrait for NoMigrations {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        Vec::new()
    }
}

/// A database in a fresh file with table `rows (n INTEGER PRIMARY KEY)`, and the statements it runs
/// (first word of each, COMMITs included) as they are reported to telemetry.
async fn database(dir: &tempfile::TempDir) -> (Db, Arc<Mutex<Vec<String>>>) {
    let mut db = baemin_mesh_store::connect::<NoMigrations>(&sqlite_url(&dir.path().join("t.db")), 1)
        .await
        .expect("open");
    db.execute_unprepared(
        "CREATE TABLE parents (id INTEGER PRIMARY KEY);
         CREATE TABLE rows (n INTEGER PRIMARY KEY,
                            parent INTEGER REFERENCES parents (id) DEFERRABLE INITIALLY DEFERRED);
         INSERT INTO parents VALUES (1);",
    )
    .await
    .expect("schema");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    db.set_metric_callback(move |info| {
        let word = info.statement.sql.split_whitespace().next().unwrap_or("").to_owned();
        log.lock().unwrap().push(word);
    });
    (db, seen)
}

/// The `n`s in `rows`, read through another connection to the same file (what survives this one).
async fn durable_rows(dir: &tempfile::TempDir) -> Vec<i64> {
    let other = baemin_mesh_store::open(&sqlite_url(&dir.path().join("t.db")), 1)
        .await
        .expect("second connection");
    let rows = other
        .query_all_raw(Statement::from_string(
            other.get_database_backend(),
            "SELECT n FROM rows ORDER BY n",
        ))
        .await
        .expect("read");
    other.close().await.ok();
    rows.iter().map(|r| r.try_get::<i64>("", "n").unwrap()).collect()
}

async fn insert(db: &Db, n: i64, parent: i64) -> Result<(), DbErr> {
    let txn = begin_write(db).await?;
    txn.execute_unprepared(&format!("INSERT INTO rows VALUES ({n}, {parent})"))
        .await?;
    // Let the other writers queue for the connection meanwhile, as a service's await points do.
    tokio::task::yield_now().await;
    txn.commit().await
}

/// How many rows `rows` holds, as `on` sees it.
async fn count<C: ConnectionTrait>(on: &C) -> i64 {
    count_in(on, "rows").await
}

/// How many rows `table` holds, as `on` sees it.
async fn count_in<C: ConnectionTrait>(on: &C, table: &str) -> i64 {
    on.query_one_raw(Statement::from_string(
        on.get_database_backend(),
        format!("SELECT COUNT(*) AS n FROM {table}"),
    ))
    .await
    .unwrap()
    .unwrap()
    .try_get::<i64>("", "n")
    .unwrap()
}

/// [`insert`] on a task of its own.
fn spawn_insert(db: &Db, n: i64, parent: i64) -> tokio::task::JoinHandle<Result<(), DbErr>> {
    let db = db.clone();
    tokio::spawn(async move { insert(&db, n, parent).await })
}

fn commits(seen: &Mutex<Vec<String>>) -> usize {
    seen.lock().unwrap().iter().filter(|w| *w == "COMMIT").count()
}

#[tokio::test]
async fn concurrent_write_transactions_share_commits_and_every_acknowledged_one_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let (db, seen) = database(&dir).await;
    let writers: Vec<_> = (0..50).map(|n| spawn_insert(&db, n, 1)).collect();
    for writer in writers {
        writer.await.unwrap().expect("acknowledged");
    }
    assert_eq!(durable_rows(&dir).await, (0..50).collect::<Vec<_>>());
    let commits = commits(&seen);
    assert!(commits <= 10, "50 transactions took {commits} commits: no grouping");
    db.close().await.unwrap();
}

#[tokio::test]
async fn a_transaction_rolled_back_inside_a_group_takes_only_its_own_changes_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = database(&dir).await;
    let first = spawn_insert(&db, 1, 1);
    let abandoned = tokio::spawn({
        let db = db.clone();
        async move {
            let txn = begin_write(&db).await?;
            txn.execute_unprepared("INSERT INTO rows VALUES (2, 1)").await?;
            tokio::task::yield_now().await;
            drop(txn);
            Ok::<_, DbErr>(())
        }
    });
    let third = spawn_insert(&db, 3, 1);
    first.await.unwrap().unwrap();
    abandoned.await.unwrap().unwrap();
    third.await.unwrap().unwrap();
    assert_eq!(durable_rows(&dir).await, vec![1, 3]);
    db.close().await.unwrap();
}

#[tokio::test]
async fn a_commit_that_fails_fails_every_transaction_of_its_group_and_keeps_none_of_them() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = database(&dir).await;
    // 2 names a parent that does not exist: the deferred foreign key fails the group's COMMIT.
    let writers: Vec<_> = [(1, 1), (2, 2), (3, 1)]
        .into_iter()
        .map(|(n, parent)| spawn_insert(&db, n, parent))
        .collect();
    let mut errors = Vec::new();
    for writer in writers {
        let outcome = writer.await.unwrap();
        errors.push(outcome.expect_err("told committed, but the commit failed"));
    }
    // Every member is told the same, classified the same: a constraint, not an outage.
    for err in &errors {
        assert!(matches!(err, DbErr::Exec(_)), "{err:?}");
        assert!(!baemin_mesh_store::is_unavailable(err), "{err:?}");
        assert_eq!(err.to_string(), errors[0].to_string());
    }
    assert_eq!(durable_rows(&dir).await, Vec::<i64>::new());
    // The connection goes on: the next transaction commits.
    insert(&db, 4, 1).await.unwrap();
    assert_eq!(durable_rows(&dir).await, vec![4]);
    db.close().await.unwrap();
}

#[tokio::test]
async fn a_group_is_committed_even_when_a_member_stops_waiting_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = database(&dir).await;
    let first = begin_write(&db).await.unwrap();
    first
        .execute_unprepared("INSERT INTO rows VALUES (1, 1)")
        .await
        .unwrap();
    let second = tokio::spawn({
        let db = db.clone();
        async move {
            let txn = begin_write(&db).await?;
            txn.execute_unprepared("INSERT INTO rows VALUES (2, 1)").await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
            // Rolled back: nobody else in the group is left to commit it.
            txn.rollback().await
        }
    });
    tokio::task::yield_now().await;
    // `first` leaves its changes to the group (`second` waits), then gives up waiting for the COMMIT.
    let gave_up = tokio::time::timeout(Duration::from_millis(1), first.commit()).await;
    assert!(gave_up.is_err(), "the commit was still pending");
    second.await.unwrap().expect("rolled back");
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The first's change is on disk all the same, and the write lock is free for another connection.
    assert_eq!(durable_rows(&dir).await, vec![1]);
    let other = baemin_mesh_store::open(&sqlite_url(&dir.path().join("t.db")), 1)
        .await
        .unwrap();
    let txn = begin_write(&other).await.expect("the lock was released");
    txn.execute_unprepared("INSERT INTO rows VALUES (3, 1)").await.unwrap();
    txn.commit().await.unwrap();
    other.close().await.unwrap();
    db.close().await.unwrap();
}

#[tokio::test]
async fn a_statement_outside_a_transaction_reads_a_group_only_once_it_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let (db, seen) = database(&dir).await;
    let writer = spawn_insert(&db, 1, 1);
    tokio::task::yield_now().await;
    let n = count(&db).await;
    writer.await.unwrap().unwrap();
    let order: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|w| *w == "COMMIT" || *w == "SELECT")
        .cloned()
        .collect();
    assert_eq!(n, 1);
    assert_eq!(order, ["COMMIT", "SELECT"], "the read waited for the group's COMMIT");
    db.close().await.unwrap();
}

#[tokio::test]
async fn columns_read_back_as_the_entities_declare_them() {
    let db = baemin_mesh_store::connect::<NoMigrations>("sqlite::memory:", 1)
        .await
        .unwrap();
    // As sea-query declares them on SQLite: integer() and big_integer() both `integer`.
    db.execute_unprepared(
        "CREATE TABLE t (big integer NOT NULL, small smallint, gone integer, name varchar, data blob);
         INSERT INTO t VALUES (5000000000, 7, NULL, 'x', x'00ff');",
    )
    .await
    .unwrap();
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT big, small, gone, name, data, COUNT(*) AS n FROM t",
        ))
        .await
        .unwrap()
        .expect("one row");
    assert_eq!(row.try_get::<i64>("", "big").unwrap(), 5_000_000_000);
    assert_eq!(row.try_get::<Option<i16>>("", "small").unwrap(), Some(7));
    assert_eq!(row.try_get::<Option<i64>>("", "gone").unwrap(), None);
    // A value of the wrong variant would read as None in an `Option` field, silently: not this one.
    assert_eq!(row.try_get::<Option<i64>>("", "big").unwrap(), Some(5_000_000_000));
    assert_eq!(row.try_get::<String>("", "name").unwrap(), "x");
    assert_eq!(row.try_get::<Vec<u8>>("", "data").unwrap(), vec![0, 255]);
    assert_eq!(row.try_get::<i64>("", "n").unwrap(), 1);
    // RETURNING reports the declared types too.
    let back = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "UPDATE t SET small = 8 RETURNING big, small",
        ))
        .await
        .unwrap()
        .expect("one row");
    assert_eq!(back.try_get::<i64>("", "big").unwrap(), 5_000_000_000);
    assert_eq!(back.try_get::<i16>("", "small").unwrap(), 8);
}

#[tokio::test]
async fn a_rollback_after_reading_a_groups_changes_fails_when_they_never_become_durable() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = database(&dir).await;
    // The first leaves a change in the group that its COMMIT will refuse (no parent 2).
    let first = spawn_insert(&db, 1, 2);
    tokio::task::yield_now().await;
    let reader = begin_write(&db).await.unwrap();
    let seen = count(&reader).await;
    assert_eq!(seen, 1, "the reader sees the group's change");
    let outcome = reader.rollback().await;
    assert!(
        outcome.is_err(),
        "what the reader saw never became durable, and it must not act on it"
    );
    assert!(first.await.unwrap().is_err());
    assert_eq!(durable_rows(&dir).await, Vec::<i64>::new());
}

#[tokio::test]
async fn closing_the_database_commits_the_open_group_and_its_members_are_told_so() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = database(&dir).await;
    let txn = begin_write(&db).await.unwrap();
    txn.execute_unprepared("INSERT INTO rows VALUES (1, 1)").await.unwrap();
    let closing = tokio::spawn({
        let db = db.clone();
        async move { db.close().await }
    });
    tokio::task::yield_now().await;
    // `close` waits for the turn: the commit leaves the group open for it, and `close` commits it.
    txn.commit().await.expect("committed by close, and told so");
    closing.await.unwrap().unwrap();
    assert_eq!(durable_rows(&dir).await, vec![1]);
}

#[cfg(target_os = "linux")]
/// Files this process holds open that SQLite made for itself (its temporary files are named
/// `etilqs_…` and unlinked at once).
fn sqlite_temporary_files() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().contains("etilqs_"))
        .count()
}

/// A transaction of a group runs inside a savepoint, whose undo pages SQLite keeps in a sub-journal; past
/// 64 KiB (SQLite's default) that journal went to a temporary file, every changed page one more write
/// system call.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_transaction_changing_many_pages_keeps_its_undo_journal_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = database(&dir).await;
    db.execute_unprepared(
        "CREATE TABLE wide (n INTEGER PRIMARY KEY, body BLOB NOT NULL);
         WITH RECURSIVE k(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM k WHERE n < 400)
         INSERT INTO wide SELECT n, zeroblob(1000) FROM k;",
    )
    .await
    .unwrap();
    let txn = begin_write(&db).await.unwrap();
    txn.execute_unprepared("UPDATE wide SET body = randomblob(1000)")
        .await
        .unwrap();
    let spilled = sqlite_temporary_files();
    txn.commit().await.unwrap();
    assert_eq!(spilled, 0, "the savepoint's journal went to a temporary file");
    assert_eq!(count_in(&db, "wide").await, 400);
}
