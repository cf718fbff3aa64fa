//! SQLite through rusqlite, without a thread hand-off per statement: see [`engine`].

mod columns;
mod engine;
mod statements;

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use sea_orm::{DbErr, ProxyDatabaseTrait, ProxyExecResult, ProxyRow, Statement};

pub(crate) use engine::{Engine, Transaction};

/// The engine as a sea-orm `DatabaseConnection`, for sea-orm-migration (which takes only sea-orm's own
/// connection types). Migrations on SQLite run statement by statement, outside transactions (sea-orm-
/// migration's default there). A proxy cannot report a failed COMMIT, so a migration asking for a
/// transaction (`use_transaction() == Some(true)`) is refused: its statements fail, saying why, instead
/// of running without the atomicity it asked for.
#[derive(Debug)]
pub(crate) struct MigrationProxy {
    engine: Arc<Engine>,
    in_transaction: AtomicBool,
}

impl MigrationProxy {
    pub(crate) fn new(engine: Arc<Engine>) -> Self {
        Self {
            engine,
            in_transaction: AtomicBool::new(false),
        }
    }

    fn refuse_transactions(&self) -> Result<(), DbErr> {
        if self.in_transaction.load(Ordering::Acquire) {
            return Err(DbErr::Migration(
                "a SQLite migration asked for a transaction: migrations here run without one \
                 (use_transaction must not be Some(true))"
                    .into(),
            ));
        }
        Ok(())
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Engine")
    }
}

#[sea_orm_migration::async_trait::async_trait]
impl ProxyDatabaseTrait for MigrationProxy {
    async fn query(&self, statement: Statement) -> Result<Vec<ProxyRow>, DbErr> {
        self.refuse_transactions()?;
        self.engine.query(&statement).await
    }

    async fn execute(&self, statement: Statement) -> Result<ProxyExecResult, DbErr> {
        self.refuse_transactions()?;
        self.engine.execute(&statement).await
    }

    async fn begin(&self) {
        self.in_transaction.store(true, Ordering::Release);
    }

    async fn commit(&self) {
        self.in_transaction.store(false, Ordering::Release);
    }

    async fn rollback(&self) {
        self.in_transaction.store(false, Ordering::Release);
    }

    fn start_rollback(&self) {
        self.in_transaction.store(false, Ordering::Release);
    }
}
