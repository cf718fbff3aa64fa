//! SQLite through rusqlite, without a thread hand-off per statement: see [`engine`].

mod columns;
mod engine;
mod statements;

use std::sync::Arc;

use sea_orm::{DbErr, ProxyDatabaseTrait, ProxyExecResult, ProxyRow, Statement};

pub(crate) use engine::{Engine, MetricCallback, Transaction};

/// The engine as a sea-orm `DatabaseConnection`, for sea-orm-migration (which takes only sea-orm's own
/// connection types). Migrations on SQLite run statement by statement, outside transactions (sea-orm-
/// migration's default there); a proxy cannot report a failed COMMIT, so transactions are refused.
#[derive(Debug)]
pub(crate) struct MigrationProxy(pub(crate) Arc<Engine>);

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Engine")
    }
}

#[sea_orm_migration::async_trait::async_trait]
impl ProxyDatabaseTrait for MigrationProxy {
    async fn query(&self, statement: Statement) -> Result<Vec<ProxyRow>, DbErr> {
        self.0.query(&statement).await
    }

    async fn execute(&self, statement: Statement) -> Result<ProxyExecResult, DbErr> {
        self.0.execute(&statement).await
    }

    async fn begin(&self) {
        tracing::error!("a SQLite migration asked for a transaction; migrations here run without one");
    }
}
