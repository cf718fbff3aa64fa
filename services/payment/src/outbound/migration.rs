//! The payment service's schema.

use sea_orm_migration::{prelude::*, schema::*};

/// Every migration of the payment database, in order.
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(baemin_mesh_events::migration::CreateOutbox),
            Box::new(CreatePayments),
            Box::new(baemin_mesh_events::lease::CreateOutboxLease),
            Box::new(AddHeldAt),
        ]
    }
}

struct CreatePayments;

impl MigrationName for CreatePayments {
    fn name(&self) -> &str {
        "m20261125_000101_payment_create_payments"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreatePayments {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("payments")
                    .if_not_exists()
                    .col(string_len("call_id", 36).primary_key())
                    .col(string_len_uniq("payment_id", 36))
                    .col(big_integer("fee"))
                    .col(string_len("status", 16))
                    .col(string_len_null("rider_id", 64))
                    .col(big_integer_null("commission"))
                    .col(big_integer_null("rider_payout"))
                    .col(big_integer("registered_at"))
                    .col(big_integer_null("settled_at"))
                    .col(big_integer_null("voided_at"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table("payments").to_owned()).await
    }
}

/// `held_at`: when the fee was held for the rider who picked the food up (HoldCost).
struct AddHeldAt;

impl MigrationName for AddHeldAt {
    fn name(&self) -> &str {
        "m20261207_000102_payment_add_held_at"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddHeldAt {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("payments")
                    .add_column(big_integer_null("held_at"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table("payments").drop_column("held_at").to_owned())
            .await
    }
}
