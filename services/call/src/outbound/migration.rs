//! The call service's schema: calls, PlaceCall intents, and the mesh's outbox and inbox.

use sea_orm_migration::{prelude::*, schema::*};

/// Every migration of the call database, in order.
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(baemin_mesh_events::migration::CreateOutbox),
            Box::new(baemin_mesh_events::migration::CreateInbox),
            Box::new(CreateCalls),
            Box::new(CreateRegistrations),
            Box::new(baemin_mesh_events::lease::CreateOutboxLease),
            Box::new(baemin_mesh_events::failures::CreateEventFailures),
            Box::new(baemin_mesh_events::migration::IndexInboxByAge),
            Box::new(baemin_mesh_events::failures::widen_event_failures()),
            Box::new(baemin_mesh_store::WidenToBigint {
                name: "m20261208_000203_call_widen_payment_attempts",
                table: "calls",
                columns: &["payment_attempts"],
            }),
        ]
    }
}

struct CreateCalls;

impl MigrationName for CreateCalls {
    fn name(&self) -> &str {
        "m20261125_000201_call_create_calls"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateCalls {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("calls")
                    .if_not_exists()
                    .col(string_len("call_id", 36).primary_key())
                    .col(string_len("request_id", 64))
                    .col(text("request_fingerprint"))
                    .col(string_len("restaurant_id", 64))
                    .col(string_len("destination", 200))
                    .col(big_integer("fee"))
                    .col(string_len("status", 16))
                    .col(string_len_null("rider_id", 64))
                    .col(string_len("payment_state", 16))
                    .col(big_integer_null("settled_amount"))
                    .col(string_len_null("cancel_reason", 200))
                    .col(big_integer_null("cancel_requested_at"))
                    .col(integer("payment_attempts").default(0))
                    .col(big_integer_null("next_attempt_at"))
                    .col(big_integer("created_at"))
                    .col(big_integer("updated_at"))
                    .col(big_integer("version"))
                    .to_owned(),
            )
            .await?;
        // The idempotency key is per restaurant: two restaurants may use the same request id.
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("calls_restaurant_request")
                    .table("calls")
                    .col("restaurant_id")
                    .col("request_id")
                    .unique()
                    .to_owned(),
            )
            .await?;
        for column in ["status", "rider_id", "cancel_requested_at", "next_attempt_at"] {
            manager
                .create_index(
                    Index::create()
                        .if_not_exists()
                        .name(format!("calls_{column}"))
                        .table("calls")
                        .col(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table("calls").to_owned()).await
    }
}

struct CreateRegistrations;

impl MigrationName for CreateRegistrations {
    fn name(&self) -> &str {
        "m20261125_000202_call_create_registrations"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateRegistrations {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("registrations")
                    .if_not_exists()
                    .col(string_len("restaurant_id", 64))
                    .col(string_len("request_id", 64))
                    .col(string_len("call_id", 36))
                    .col(text("request_fingerprint"))
                    .col(big_integer("created_at"))
                    .col(big_integer_null("void_requested_at"))
                    .primary_key(Index::create().col("restaurant_id").col("request_id"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("registrations_created_at")
                    .table("registrations")
                    .col("created_at")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("registrations").to_owned())
            .await
    }
}
