//! Everything that can go wrong in payment, by kind; mapped to gRPC status in `inbound::grpc::status`.

use baemin_kernel::InvalidInput;

/// Why a payment command was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// A field of the request is malformed.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// No payment for this call.
    #[error("no payment for call {0}")]
    NotFound(String),
    /// The fee was registered before with a different amount.
    #[error("call {call_id} is already registered with fee {registered} KRW, not {requested} KRW")]
    FeeConflict {
        /// The call.
        call_id: String,
        /// The fee on record.
        registered: i64,
        /// The fee asked for now.
        requested: i64,
    },
    /// The payment's status does not allow the command.
    #[error("{0}")]
    IllegalState(String),
    /// Concurrent commands kept changing the payment; the client may retry.
    #[error("{0}")]
    Contention(String),
    /// The database failed.
    #[error("payment database")]
    Db(#[from] sea_orm::DbErr),
}
