//! What the rider domain needs from other services: holding and settling a fee with payment.

use baemin_kernel::{CallId, RiderId, Settlement};
use futures::future::BoxFuture;

/// Why a call to payment did not settle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentCallError {
    /// Payment is down, slow, overloaded, or its circuit is open: the call may succeed later.
    #[error("{0}")]
    Unavailable(String),
    /// Payment refused because the fee was voided (reason `FEE_VOIDED`): the call was cancelled.
    #[error("{0}")]
    Voided(String),
    /// Payment refused for any other reason (FAILED_PRECONDITION, e.g. the fee is held for or was
    /// settled with another rider): retrying cannot change it.
    #[error("{0}")]
    Refused(String),
    /// Payment knows no fee for the call.
    #[error("{0}")]
    NotFound(String),
    /// Any other answer: a bug on one side or a mesh misconfiguration.
    #[error("{0}")]
    Unexpected(String),
}

/// The payment service, as the rider domain uses it.
pub trait Payments: Send + Sync {
    /// Holds the fee of `call_id` for `rider`, who is picking the food up: payment refuses to void it
    /// from then on (the pick-up won over any cancellation not yet applied). Idempotent per rider.
    fn hold<'a>(&'a self, call_id: &'a CallId, rider: &'a RiderId) -> BoxFuture<'a, Result<(), PaymentCallError>>;

    /// Settles the fee of `call_id` with `rider`; idempotent at payment (settling twice never pays twice).
    fn settle<'a>(
        &'a self,
        call_id: &'a CallId,
        rider: &'a RiderId,
    ) -> BoxFuture<'a, Result<Settlement, PaymentCallError>>;
}
