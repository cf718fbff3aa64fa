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
