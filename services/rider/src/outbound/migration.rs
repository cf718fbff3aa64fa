//! The rider service's schema.

use sea_orm_migration::{prelude::*, schema::*};

/// Every migration of the rider database, in order.
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(baemin_mesh_events::migration::CreateOutbox),
            Box::new(baemin_mesh_events::migration::CreateInbox),
            Box::new(CreateDeliveries),
            Box::new(baemin_mesh_events::lease::CreateOutboxLease),
            Box::new(baemin_mesh_events::failures::CreateEventFailures),
            Box::new(AddHoldRequestedAt),
            Box::new(baemin_mesh_events::migration::IndexInboxByAge),
            Box::new(baemin_mesh_events::failures::widen_event_failures()),
        ]
    }
}

struct CreateDeliveries;

impl MigrationName for CreateDeliveries {
    fn name(&self) -> &str {
        "m20261125_000201_rider_create_deliveries"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateDeliveries {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("deliveries")
                    .if_not_exists()
                    .col(string_len("call_id", 36).primary_key())
                    .col(string_len_null("restaurant_id", 64))
                    .col(string_len_null("destination", 200))
                    // Null only for a tombstone: a cancellation that arrived before its call.
                    .col(big_integer_null("fee"))
                    .col(string_len("status", 16))
                    .col(string_len_null("rider_id", 64))
                    .col(big_integer_null("commission"))
                    .col(big_integer_null("payout"))
                    .col(big_integer_null("called_at"))
                    .col(big_integer_null("accepted_at"))
                    .col(big_integer_null("picked_at"))
                    .col(big_integer_null("completed_at"))
                    .col(big_integer_null("cancelled_at"))
                    // CompleteDelivery's write-ahead mark: Settle sent, outcome not yet recorded.
                    .col(big_integer_null("settle_requested_at"))
                    .col(big_integer("updated_at"))
                    .to_owned(),
            )
            .await?;
        for column in ["status", "rider_id", "settle_requested_at"] {
            manager
                .create_index(
                    Index::create()
                        .if_not_exists()
                        .name(format!("deliveries_{column}"))
                        .table("deliveries")
                        .col(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table("deliveries").to_owned()).await
    }
}

/// Marks every delivery picked up before payment held fees (PICKED, or COMPLETED with its settlement
/// pending) for the repair worker to hold its fee.
pub(crate) const MARK_PICKED_BEFORE_HOLDS: &str = "UPDATE deliveries SET hold_requested_at = COALESCE(picked_at, updated_at) \
     WHERE status = 'PICKED' OR (status = 'COMPLETED' AND payout IS NULL)";

/// PickUp's write-ahead mark: HoldCost sent, outcome not yet recorded.
struct AddHoldRequestedAt;

impl MigrationName for AddHoldRequestedAt {
    fn name(&self) -> &str {
        "m20261207_000201_rider_add_hold_requested_at"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddHoldRequestedAt {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("deliveries")
                    .add_column(big_integer_null("hold_requested_at"))
                    .to_owned(),
            )
            .await?;
        // Deliveries picked up before payment held fees: the repair worker holds their fees (so no
        // cancellation can void them any more) at its first round.
        manager
            .get_connection()
            .execute_unprepared(MARK_PICKED_BEFORE_HOLDS)
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("deliveries_hold_requested_at")
                    .table("deliveries")
                    .col("hold_requested_at")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("deliveries_hold_requested_at")
                    .table("deliveries")
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("deliveries")
                    .drop_column("hold_requested_at")
                    .to_owned(),
            )
            .await
    }
}
