//! The report service's schema.

use sea_orm_migration::{prelude::*, schema::*};

/// Every migration of the report database, in order.
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            // The report emits no events, but the runtime's relay polls `outbox_events`.
            Box::new(baemin_mesh_events::migration::CreateOutbox),
            Box::new(baemin_mesh_events::migration::CreateInbox),
            Box::new(CreateDeliveryViews),
            Box::new(baemin_mesh_events::lease::CreateOutboxLease),
            Box::new(baemin_mesh_events::failures::CreateEventFailures),
            Box::new(baemin_mesh_events::migration::IndexInboxByAge),
            Box::new(baemin_mesh_events::failures::widen_event_failures()),
        ]
    }
}

struct CreateDeliveryViews;

impl MigrationName for CreateDeliveryViews {
    fn name(&self) -> &str {
        "m20261125_000401_report_create_delivery_views"
    }
}

const TABLE: &str = "delivery_views";

#[async_trait::async_trait]
impl MigrationTrait for CreateDeliveryViews {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(TABLE)
                    .if_not_exists()
                    .col(string_len("call_id", 36).primary_key())
                    .col(string_len_null("restaurant_id", 64))
                    .col(string_len_null("destination", 255))
                    .col(big_integer_null("fee"))
                    .col(string_len_null("status", 16))
                    .col(small_integer_null("status_rank"))
                    .col(string_len_null("rider_id", 64))
                    .col(string_len_null("payment_state", 16))
                    .col(big_integer_null("settled_amount"))
                    .col(big_integer_null("commission"))
                    .col(big_integer_null("called_at"))
                    .col(big_integer_null("accepted_at"))
                    .col(big_integer_null("picked_at"))
                    .col(big_integer_null("completed_at"))
                    .col(big_integer_null("cancelled_at"))
                    .col(big_integer("updated_at"))
                    .to_owned(),
            )
            .await?;
        for column in ["status", "restaurant_id", "rider_id"] {
            manager
                .create_index(
                    Index::create()
                        .if_not_exists()
                        .name(format!("{TABLE}_{column}"))
                        .table(TABLE)
                        .col(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(TABLE).to_owned()).await
    }
}
