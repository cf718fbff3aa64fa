//! One integer width: every integer column wider than `smallint` holds an `i64`.

use sea_orm::{ConnectionTrait, DbBackend, DbErr};
use sea_orm_migration::{MigrationName, MigrationTrait, SchemaManager};

/// Makes `columns` of `table` PostgreSQL `bigint`s. On SQLite they already are: sea-query declares
/// `integer()` and `big_integer()` alike as SQLite's 64-bit `integer`, which the SQLite engine reads as
/// `i64` (see `crate::sqlite`), so a column created with `integer()` must be an `i64` in its entity on
/// both databases.
pub struct WidenToBigint {
    /// The migration's name.
    pub name: &'static str,
    /// The table.
    pub table: &'static str,
    /// Its columns to widen.
    pub columns: &'static [&'static str],
}

impl MigrationName for WidenToBigint {
    fn name(&self) -> &str {
        self.name
    }
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for WidenToBigint {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        for column in self.columns {
            manager
                .get_connection()
                .execute_unprepared(&format!(
                    r#"ALTER TABLE "{}" ALTER COLUMN "{column}" TYPE bigint"#,
                    self.table
                ))
                .await?;
        }
        Ok(())
    }
}
