//! What the call domain needs from payment, as a port: the gRPC client in production, a fake in tests.

use baemin_kernel::{CallId, Fee};
use futures::future::BoxFuture;

/// How a synchronous call to payment failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentCallError {
    /// Unreachable, too slow, or failing: the outcome is unknown (it may have been applied).
    #[error("payment is unavailable: {0}")]
    Unavailable(String),
    /// Payment answered and refused (the fee is settled, voided, or registered differently).
    #[error("payment refused: {0}")]
    Refused(String),
    /// Payment has no fee for the call.
    #[error("payment has no fee for the call")]
    NotFound,
}

/// The fee operations of the payment service the call service relies on. Both are idempotent.
pub trait Payments: Send + Sync + 'static {
    /// Registers `fee` for `call_id` (`PaymentService.RegisterCost`).
    fn register_cost(&self, call_id: CallId, fee: Fee) -> BoxFuture<'_, Result<(), PaymentCallError>>;

    /// Voids the fee of `call_id` (`PaymentService.VoidCost`); voiding a voided fee succeeds.
    fn void_cost(&self, call_id: CallId) -> BoxFuture<'_, Result<(), PaymentCallError>>;
}
