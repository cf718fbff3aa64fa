//! Everything that can go wrong in payment, by kind; mapped to gRPC status in `inbound::status`.

use baemin_kernel::InvalidInput;

/// Why the payment's status refused a command: a stable reason a caller can act on (the message is
/// for people).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The fee was voided (the call was cancelled): it can be neither settled nor registered again.
    FeeVoided,
    /// The fee was settled: it can no longer be voided.
    FeeSettled,
    /// The fee was settled with a rider other than the one asking.
    SettledWithAnotherRider,
    /// The fee is held for the rider who picked the food up: it can no longer be voided.
    FeeHeld,
    /// The fee is held for a rider other than the one asking.
    HeldForAnotherRider,
}

/// Why a payment command was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// A field of the request is malformed.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// The caller may not do this (a person writing money, or reading it without being the company).
    #[error("{0}")]
    Forbidden(String),
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
    /// The payment's status does not allow the command; `Refusal` says why, for machines.
    #[error("{1}")]
    IllegalState(Refusal, String),
    /// Concurrent commands kept changing the payment; the client may retry.
    #[error("{0}")]
    Contention(String),
    /// The database failed.
    #[error("payment database")]
    Db(#[from] sea_orm::DbErr),
}
