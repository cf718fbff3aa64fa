//! Everything that can go wrong in the rider service, by kind; mapped to gRPC status in `inbound::status`.

use baemin_kernel::{CallId, InvalidInput, RiderId};

/// Why a rider command was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RiderError {
    /// A field of the request is malformed.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// No delivery for this call (the call is unknown, or its CallPlaced has not arrived yet).
    #[error("no delivery for call {0}")]
    NotFound(CallId),
    /// The delivery belongs to another rider (BOLA).
    #[error("call {0} is another rider's delivery")]
    NotYours(CallId),
    /// The caller's identity (set by the gateway) is another rider than the one the request names.
    #[error("the caller may act only as rider {caller}, not as {requested}")]
    ActingAsAnother {
        /// The verified subject of the caller.
        caller: String,
        /// The rider named in the request.
        requested: RiderId,
    },
    /// The caller may not read this (a restaurant on the riders' board, or another restaurant's rows).
    #[error("{0}")]
    Forbidden(String),
    /// Another rider accepted the call first.
    #[error("call {0} was already taken")]
    Taken(CallId),
    /// The call service cancelled the call.
    #[error("call {0} was cancelled")]
    Cancelled(CallId),
    /// Any other transition the lifecycle does not allow from the delivery's status.
    #[error("{0}")]
    IllegalState(String),
    /// Payment refused to settle because the fee was voided: the call was cancelled meanwhile.
    #[error("call {0} was cancelled; nothing to settle")]
    NothingToSettle(CallId),
    /// Payment refused to hold or settle for a reason other than a voided fee (the fee is held for or
    /// was settled with another rider); the delivery is left as it is.
    #[error("payment refused call {0}: {1}")]
    PaymentRefused(CallId, String),
    /// Payment has no fee registered for the call (it may still be pending registration); the hold or
    /// settlement is retried by the repair worker.
    #[error("payment has no fee registered for call {0} yet; it is retried")]
    FeeNotRegistered(CallId),
    /// Payment could not be reached to hold the fee of a pick-up: whether the pick-up or a pending
    /// cancellation wins is not decided yet. The pick-up is retried by the repair worker (and by the
    /// rider retrying).
    #[error("payment is unavailable, so the pick-up of call {0} is not confirmed yet ({1}); retry")]
    PaymentUnavailable(CallId, String),
    /// Payment answered in a way it never should (a bug or a mesh misconfiguration).
    #[error("payment answered unexpectedly: {0}")]
    PaymentFailed(String),
    /// The delivery kept changing under concurrent commands; the client may retry.
    #[error("call {0} is changing concurrently; retry")]
    Contention(CallId),
    /// The database failed.
    #[error("rider database")]
    Db(#[from] sea_orm::DbErr),
}
