//! The outbox and inbox tables; each service lists these migrations in its own migrator.

use sea_orm_migration::{prelude::*, schema::*};

/// Creates `outbox_events`: events written in the same transaction as the state change they announce.
pub struct CreateOutbox;

impl MigrationName for CreateOutbox {
    fn name(&self) -> &str {
        "m20261125_000001_mesh_create_outbox"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateOutbox {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("outbox_events")
                    .if_not_exists()
                    .col(big_pk_auto("id"))
                    .col(string_len_uniq("event_id", 36))
                    .col(string_len("subject", 128))
                    .col(blob("payload"))
                    .col(string_len_null("traceparent", 64))
                    .col(big_integer("created_at"))
                    .col(big_integer_null("published_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("outbox_events_unpublished")
                    .table("outbox_events")
                    .col("published_at")
                    .col("id")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("outbox_events").to_owned())
            .await
    }
}

/// Creates `inbox_events`: ids of events already applied, written with the change they caused.
pub struct CreateInbox;

impl MigrationName for CreateInbox {
    fn name(&self) -> &str {
        "m20261125_000002_mesh_create_inbox"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateInbox {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("inbox_events")
                    .if_not_exists()
                    .col(string_len("event_id", 36).primary_key())
                    .col(string_len("subject", 128))
                    .col(big_integer("processed_at"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table("inbox_events").to_owned()).await
    }
}

/// An index on `inbox_events.processed_at`, for pruning by age (`crate::retention`).
pub struct IndexInboxByAge;

impl MigrationName for IndexInboxByAge {
    fn name(&self) -> &str {
        "m20261207_000003_mesh_index_inbox_by_age"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for IndexInboxByAge {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("inbox_events_processed_at")
                    .table("inbox_events")
                    .col("processed_at")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("inbox_events_processed_at")
                    .table("inbox_events")
                    .to_owned(),
            )
            .await
    }
}
