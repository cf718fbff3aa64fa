//! Everything that can go wrong in the call service, by kind; mapped to gRPC status in `inbound::status`.

use baemin_kernel::{IllegalTransition, InvalidInput};

/// Why a call command was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// A field of the request is malformed.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// No call with this id.
    #[error("no call {0}")]
    NotFound(String),
    /// The idempotency key was used before with another body.
    #[error("request_id {0:?} was already used by this restaurant for a call with a different destination or fee")]
    RequestIdReused(String),
    /// The caller may not do this to this call (another restaurant's call, a rider's command).
    #[error("{0}")]
    Forbidden(String),
    /// The lifecycle does not allow the command.
    #[error(transparent)]
    Illegal(#[from] IllegalTransition),
    /// Payment refused to void the fee: it is held for the rider who picked the food up (or settled),
    /// so the pick-up came first and the call can no longer be cancelled.
    #[error("the rider picked the food up first: a picked-up call cannot be cancelled")]
    PickedUpFirst,
    /// Payment refused to register the fee.
    #[error("payment refused the fee: {0}")]
    PaymentRefused(String),
    /// Payment could not be reached or did not answer in time.
    #[error("payment is unavailable: {0}")]
    PaymentUnavailable(String),
    /// Lost a race that retrying later resolves.
    #[error("{0}")]
    Contended(String),
    /// The service is shutting down: a long-lived stream ends so the server can drain.
    #[error("the call service is shutting down; watch again")]
    ShuttingDown,
    /// The database failed.
    #[error("call database")]
    Db(#[from] sea_orm::DbErr),
}
