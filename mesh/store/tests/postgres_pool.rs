//! The PostgreSQL pool: a round trip per statement and nothing else, and a connection lent again only
//! once it is fit for use (its transaction over, its session alive). Against the PostgreSQL of the
//! tests (`TEST_POSTGRES_URL`), each test in a database of its own, through a proxy on 127.0.0.1 that
//! counts the server's ReadyForQuery messages: one per round trip.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly on purpose

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use baemin_mesh_store::{Db, begin_write, is_unavailable, with_database};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

fn admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".into())
}

/// A database of its own, dropped when the test ends (also when it fails).
struct Scratch {
    name: String,
    admin: DatabaseConnection,
}

impl Scratch {
    async fn new(tag: &str) -> Self {
        let admin = Database::connect(admin_url())
            .await
            .expect("PostgreSQL (TEST_POSTGRES_URL)");
        let name = format!("baemin_store_pool_{tag}_{}", std::process::id());
        admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .expect("drop");
        admin
            .execute_unprepared(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create");
        Self { name, admin }
    }

    fn url(&self) -> String {
        with_database(&admin_url(), &self.name).expect("url")
    }

    /// The database's URL through `proxy`, without TLS (so the proxy can read the server's messages).
    fn url_through(&self, proxy: &Counter) -> String {
        let mut url = url::Url::parse(&self.url()).expect("url");
        url.set_port(Some(proxy.port)).expect("port");
        url.query_pairs_mut().append_pair("sslmode", "disable");
        url.into()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let name = self.name.clone();
        // The test's runtime is blocked here: drop the database from a runtime (and connection) of its own.
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(async move {
                    let Ok(admin) = Database::connect(admin_url()).await else {
                        return;
                    };
                    admin
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await
                        .ok();
                });
        })
        .join()
        .ok();
    }
}

/// A TCP proxy to the PostgreSQL server counting the ReadyForQuery ('Z') messages the server sends:
/// the server sends one at the end of every round trip (a simple query, an extended-protocol Sync —
/// which is also what a ping is).
struct Counter {
    port: u16,
    ready: Arc<AtomicU64>,
}

impl Counter {
    async fn start() -> Self {
        let upstream = url::Url::parse(&admin_url()).expect("url");
        let upstream = format!(
            "{}:{}",
            upstream.host_str().unwrap_or("127.0.0.1"),
            upstream.port().unwrap_or(5432)
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let ready = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&ready);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(&upstream).await.expect("upstream");
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                tokio::spawn(async move { tokio::io::copy(&mut client_read, &mut server_write).await });
                let counted = Arc::clone(&counted);
                tokio::spawn(async move {
                    // Every server message is a type byte and a length (which counts itself).
                    let mut header = [0u8; 5];
                    while server_read.read_exact(&mut header).await.is_ok() {
                        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
                        let mut body = vec![0u8; len.saturating_sub(4)];
                        if server_read.read_exact(&mut body).await.is_err() {
                            break;
                        }
                        if header[0] == b'Z' {
                            counted.fetch_add(1, Ordering::SeqCst);
                        }
                        if client_write.write_all(&header).await.is_err()
                            || client_write.write_all(&body).await.is_err()
                        {
                            break;
                        }
                    }
                });
            }
        });
        Self { port, ready }
    }

    /// Round trips since the last call, counted once the connection has had time to do anything more
    /// it would do on its own (a ping on being given back ran in a task of its own).
    async fn round_trips(&self) -> u64 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.ready.swap(0, Ordering::SeqCst)
    }
}

/// The first column of the first row `sql` returns.
async fn first<T: sea_orm::TryGetable>(db: &Db, sql: &str) -> T {
    db.query_one_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .unwrap_or_else(|| panic!("{sql}: no row"))
        .try_get_by_index(0)
        .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
}

/// Runs `statement` for 50 ms and stops waiting for it (it goes on in the server, for 0.3 s).
async fn cut_short<T>(statement: impl std::future::Future<Output = T>) {
    assert!(
        tokio::time::timeout(Duration::from_millis(50), statement)
            .await
            .is_err(),
        "the statement was cut short"
    );
}

/// A statement that fails after its caller stopped waiting (see [`cut_short`]).
const FAILING_LATE: &str = "DO $$ BEGIN PERFORM pg_sleep(0.3); RAISE EXCEPTION 'late failure'; END $$";

async fn open(url: &str, size: u32) -> Db {
    let db = baemin_mesh_store::open(url, size).await.expect("open");
    db.execute_unprepared("CREATE TABLE t (id INT PRIMARY KEY)")
        .await
        .expect("table");
    db
}

#[tokio::test]
async fn a_write_transaction_is_its_begin_its_statements_and_its_commit_and_a_statement_one_round_trip() {
    let scratch = Scratch::new("trips").await;
    let proxy = Counter::start().await;
    let db = open(&scratch.url_through(&proxy), 2).await;
    proxy.round_trips().await;

    let txn = begin_write(&db).await.expect("begin");
    txn.execute_unprepared("INSERT INTO t VALUES (1)")
        .await
        .expect("insert");
    txn.commit().await.expect("commit");
    assert_eq!(
        proxy.round_trips().await,
        3,
        "BEGIN (with its isolation level), INSERT, COMMIT"
    );

    db.execute_unprepared("INSERT INTO t VALUES (2)").await.expect("insert");
    assert_eq!(
        proxy.round_trips().await,
        1,
        "one statement, no ping when taken or given back"
    );

    let ids: Vec<i32> = first(&db, "SELECT array_agg(id ORDER BY id) FROM t").await;
    assert_eq!(ids, [1, 2]);
    db.close().await.expect("close");
}

#[tokio::test]
async fn a_transaction_dropped_uncommitted_is_rolled_back_at_once_and_its_connection_lent_again() {
    let scratch = Scratch::new("dropped").await;
    let db = open(&scratch.url(), 1).await;
    let txn = begin_write(&db).await.expect("begin");
    txn.execute_unprepared("INSERT INTO t VALUES (1)")
        .await
        .expect("insert");
    drop(txn);

    // Another session may take the key at once: the dropped transaction holds no lock on it.
    let other = Database::connect(scratch.url()).await.expect("connect");
    other
        .execute_unprepared("SET lock_timeout = '2s'")
        .await
        .expect("lock timeout");
    other
        .execute_unprepared("INSERT INTO t VALUES (1)")
        .await
        .expect("the dropped transaction's row lock is gone");
    other.close().await.ok();

    // The pool's only connection is fit for use, outside any transaction.
    let txn = begin_write(&db).await.expect("begin on the same connection");
    txn.execute_unprepared("INSERT INTO t VALUES (2)")
        .await
        .expect("insert");
    txn.commit().await.expect("commit");
    let count: i64 = first(&db, "SELECT count(*) FROM t").await;
    assert_eq!(count, 2);
    db.close().await.expect("close");
}

#[tokio::test]
async fn a_statement_cancelled_in_flight_leaves_nothing_behind_for_the_next_user_of_its_connection() {
    let scratch = Scratch::new("cancelled").await;
    let db = open(&scratch.url(), 1).await;
    let slow = db.execute_unprepared("SELECT pg_sleep(0.3)");
    cut_short(slow).await;
    db.execute_unprepared("INSERT INTO t VALUES (7)").await.expect("insert");
    let id: i32 = first(&db, "SELECT id FROM t").await;
    assert_eq!(id, 7, "the answer is this statement's, not the cancelled one's");
    db.close().await.expect("close");
}

#[tokio::test]
async fn a_connection_whose_session_ended_fails_its_statement_as_unavailable_and_is_replaced() {
    let scratch = Scratch::new("ended").await;
    let db = open(&scratch.url(), 1).await;
    scratch
        .admin
        .execute_unprepared(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
            scratch.name
        ))
        .await
        .expect("terminate");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let err = db
        .execute_unprepared("INSERT INTO t VALUES (1)")
        .await
        .expect_err("the session is gone");
    assert!(is_unavailable(&err), "{err:?}");
    db.execute_unprepared("INSERT INTO t VALUES (1)")
        .await
        .expect("a new connection");
    assert_eq!(db.usage(), (1, 1), "the broken connection was closed, not kept");
    db.close().await.expect("close");
}

/// The errors a real outage produces, classified: a constraint violation is not unavailable; a session
/// terminated under a transaction, and connecting to a database that refuses connections, are.
#[tokio::test]
async fn a_database_taken_away_is_unavailable_in_flight_and_on_connect() {
    let scratch = Scratch::new("outage").await;
    let db = open(&scratch.url(), 2).await;
    db.execute_unprepared("INSERT INTO t VALUES (1)").await.expect("insert");
    let duplicate = db
        .execute_unprepared("INSERT INTO t VALUES (1)")
        .await
        .expect_err("duplicate key");
    assert!(!is_unavailable(&duplicate), "{duplicate:?}");
    let txn = begin_write(&db).await.expect("begin");
    txn.execute_unprepared("INSERT INTO t VALUES (2)").await.expect("write");

    for refuse in [
        format!("ALTER DATABASE {} ALLOW_CONNECTIONS false", scratch.name),
        format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
            scratch.name
        ),
    ] {
        scratch
            .admin
            .execute_unprepared(&refuse)
            .await
            .expect("take the database away");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;

    let in_flight = txn
        .execute_unprepared("INSERT INTO t VALUES (3)")
        .await
        .expect_err("the session was terminated");
    assert!(is_unavailable(&in_flight), "{in_flight:?}");
    drop(txn);
    let reconnect = db
        .execute_unprepared("SELECT 1")
        .await
        .expect_err("not accepting connections");
    assert!(is_unavailable(&reconnect), "{reconnect:?}");
    db.close().await.ok();
}

#[tokio::test]
async fn a_statement_left_running_is_not_answered_to_the_next_user_of_its_connection() {
    let scratch = Scratch::new("left").await;
    let db = open(&scratch.url(), 1).await;
    // Fails after its caller stopped waiting: that failure belongs to nobody else.
    let failing_late = db.execute_unprepared(FAILING_LATE);
    cut_short(failing_late).await;
    db.execute_unprepared("INSERT INTO t VALUES (1)")
        .await
        .expect("the next statement gets its own answer, not the late failure");
    db.close().await.expect("close");
}

#[tokio::test]
async fn a_transaction_dropped_during_a_statement_gives_its_slot_back_at_once() {
    let scratch = Scratch::new("midway").await;
    let db = open(&scratch.url(), 1).await;
    let txn = begin_write(&db).await.expect("begin");
    txn.execute_unprepared("INSERT INTO t VALUES (1)")
        .await
        .expect("insert");
    let slow = txn.execute_unprepared("SELECT pg_sleep(0.3)");
    cut_short(slow).await;
    drop(txn);
    assert_eq!(db.usage(), (0, 0), "closed: no waiting for the statement to finish");
    db.execute_unprepared("INSERT INTO t VALUES (2)")
        .await
        .expect("a new connection in the freed slot");
    // The server ends the abandoned transaction once it sees its session gone: its row never commits
    // (once it is gone, the key is free; had it committed, the insert would find a duplicate).
    db.execute_unprepared("SET lock_timeout = '5s'")
        .await
        .expect("lock timeout");
    db.execute_unprepared("INSERT INTO t VALUES (1)")
        .await
        .expect("the dropped transaction's row never committed");
    db.close().await.expect("close");
}

#[tokio::test]
async fn a_statement_timeout_leaves_its_session_in_use() {
    let scratch = Scratch::new("timeout").await;
    let db = open(&scratch.url(), 1).await;
    db.execute_unprepared("SET statement_timeout = '50ms'")
        .await
        .expect("set");
    let err = db
        .execute_unprepared("SELECT pg_sleep(0.3)")
        .await
        .expect_err("timed out");
    assert!(
        is_unavailable(&err),
        "a timeout under load is a transient outage: {err:?}"
    );
    let timeout: String = first(&db, "SHOW statement_timeout").await;
    assert_eq!(timeout, "50ms", "the same session, kept");
    db.close().await.expect("close");
}

#[tokio::test]
async fn a_transaction_whose_statement_was_abandoned_refuses_the_next_one() {
    let scratch = Scratch::new("abandoned").await;
    let db = open(&scratch.url(), 1).await;
    let txn = begin_write(&db).await.expect("begin");
    let failing_late = txn.execute_unprepared(FAILING_LATE);
    cut_short(failing_late).await;
    let err = txn
        .execute_unprepared("INSERT INTO t VALUES (1)")
        .await
        .expect_err("refused: the answer waiting is the abandoned statement's");
    assert!(is_unavailable(&err), "{err:?}");
    assert!(!err.to_string().contains("late failure"), "{err}");
    drop(txn);
    assert_eq!(db.usage(), (0, 0), "its connection was closed");
    db.close().await.expect("close");
}
