//! The gRPC answer to real PostgreSQL failures: a lost serialization race is ABORTED (retry the call),
//! not INTERNAL.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use baemin_mesh_testkit::{DbKind, TestDatabases};
use sea_orm::{ConnectionTrait, Database, IsolationLevel, TransactionTrait};

#[tokio::test]
async fn a_serialization_failure_is_aborted_and_says_nothing_was_written() {
    let mut dbs = TestDatabases::new(DbKind::Postgres);
    let url = dbs.url_for("contention").await;
    let db = Database::connect(&url).await.expect("PostgreSQL");
    db.execute_unprepared("CREATE TABLE seats (n INT NOT NULL)")
        .await
        .unwrap();
    // Two serializable transactions each read the table, then each write what the other read: the
    // second to commit cannot be serialized after the first (PostgreSQL 40001).
    let first = db
        .begin_with_config(Some(IsolationLevel::Serializable), None)
        .await
        .unwrap();
    let second = db
        .begin_with_config(Some(IsolationLevel::Serializable), None)
        .await
        .unwrap();
    first.execute_unprepared("SELECT count(*) FROM seats").await.unwrap();
    second.execute_unprepared("SELECT count(*) FROM seats").await.unwrap();
    first.execute_unprepared("INSERT INTO seats VALUES (1)").await.unwrap();
    second.execute_unprepared("INSERT INTO seats VALUES (2)").await.unwrap();
    first.commit().await.unwrap();
    let err = match second.execute_unprepared("SELECT 1").await {
        Err(err) => err,
        Ok(_) => second
            .commit()
            .await
            .expect_err("the second commit cannot be serialized"),
    };
    assert!(baemin_mesh_store::is_contention(&err), "{err:?}");
    let status = baemin_mesh_runtime::status::database("rider", &err);
    assert_eq!(status.code(), tonic::Code::Aborted, "{status:?}");
    assert!(status.message().contains("nothing was written"), "{status:?}");
    db.close().await.ok();
}

#[tokio::test]
async fn a_statement_timeout_is_unavailable_and_a_lock_timeout_is_aborted_both_transient_timeouts() {
    let mut dbs = TestDatabases::new(DbKind::Postgres);
    let url = dbs.url_for("timeouts").await;
    let db = Database::connect(&url).await.expect("PostgreSQL");
    db.execute_unprepared("CREATE TABLE seats (n INT NOT NULL)")
        .await
        .unwrap();

    // A production database with `statement_timeout`, under load (57014).
    let slow = db.begin().await.unwrap();
    slow.execute_unprepared("SET LOCAL statement_timeout = '20ms'")
        .await
        .unwrap();
    let err = slow
        .execute_unprepared("SELECT pg_sleep(1)")
        .await
        .expect_err("timed out");
    slow.rollback().await.ok();
    assert!(baemin_mesh_store::is_transient(&err), "{err:?}");
    // An event whose statement times out is retried, counted against a larger allowance.
    assert!(baemin_mesh_store::is_timeout(&err), "{err:?}");
    assert!(matches!(
        baemin_mesh_events::HandleError::from(err.clone()),
        baemin_mesh_events::HandleError::TimedOut(_)
    ));
    let status = baemin_mesh_runtime::status::database("rider", &err);
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");

    // With `lock_timeout`, a lock held by another transaction (55P03).
    let holder = db.begin().await.unwrap();
    holder.execute_unprepared("LOCK TABLE seats").await.unwrap();
    let waiter = db.begin().await.unwrap();
    waiter
        .execute_unprepared("SET LOCAL lock_timeout = '20ms'")
        .await
        .unwrap();
    let err = waiter
        .execute_unprepared("INSERT INTO seats VALUES (1)")
        .await
        .expect_err("the lock is held");
    waiter.rollback().await.ok();
    holder.rollback().await.ok();
    assert!(baemin_mesh_store::is_contention(&err), "{err:?}");
    assert!(baemin_mesh_store::is_transient(&err), "{err:?}");
    assert!(baemin_mesh_store::is_timeout(&err), "{err:?}");
    let status = baemin_mesh_runtime::status::database("rider", &err);
    assert_eq!(status.code(), tonic::Code::Aborted, "{status:?}");
    db.close().await.ok();
}

mod replicas {
    use sea_orm_migration::prelude::*;

    /// A migration slow enough that replicas starting together overlap in it.
    pub struct Slow;

    impl MigrationName for Slow {
        fn name(&self) -> &str {
            "m20261125_000001_slow_table"
        }
    }

    #[async_trait::async_trait]
    impl MigrationTrait for Slow {
        async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
            manager
                .get_connection()
                .execute_unprepared("SELECT pg_sleep(0.2); CREATE TABLE slow (id INT PRIMARY KEY)")
                .await?;
            Ok(())
        }
    }

    pub struct Migrator;

    impl MigratorTrait for Migrator {
        fn migrations() -> Vec<Box<dyn MigrationTrait>> {
            vec![Box::new(Slow)]
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_migrate_once_and_all_start() {
    let mut dbs = TestDatabases::new(DbKind::Postgres);
    let url = dbs.url_for("replicas").await;
    let starts = (0..4).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { baemin_mesh_store::connect::<replicas::Migrator>(&url, 2).await })
    });
    for start in futures::future::join_all(starts).await {
        start.unwrap().expect("every replica starts");
    }
    let db = Database::connect(&url).await.unwrap();
    let applied = db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT count(*) AS n FROM seaql_migrations",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(applied, 1, "the migration ran once");
    db.close().await.ok();
}

#[tokio::test]
async fn write_transactions_read_committed_whatever_the_servers_default_isolation() {
    let mut dbs = TestDatabases::new(DbKind::Postgres);
    let url = dbs.url_for("isolation").await;
    let name = url.rsplit('/').next().unwrap().split('?').next().unwrap().to_owned();
    let admin = Database::connect(&url).await.expect("PostgreSQL");
    admin
        .execute_unprepared(&format!(
            "ALTER DATABASE {name} SET default_transaction_isolation = 'repeatable read'"
        ))
        .await
        .unwrap();
    admin.close().await.ok();
    let db = Database::connect(&url).await.unwrap();
    let plain = db.begin().await.unwrap();
    assert_eq!(isolation(&plain).await, "repeatable read", "the server's default");
    plain.rollback().await.unwrap();
    db.close().await.ok();
    let db = baemin_mesh_store::open(&url, 1).await.unwrap();
    let write = baemin_mesh_store::begin_write(&db).await.unwrap();
    assert_eq!(isolation(&write).await, "read committed");
    write.rollback().await.unwrap();
    db.close().await.ok();
}

async fn isolation<C: ConnectionTrait>(txn: &C) -> String {
    let statement = sea_orm::Statement::from_string(txn.get_database_backend(), "SHOW transaction_isolation");
    let row = txn.query_one_raw(statement).await.unwrap().unwrap();
    row.try_get::<String>("", "transaction_isolation").unwrap()
}
