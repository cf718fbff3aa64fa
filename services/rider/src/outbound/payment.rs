//! The payment service behind the domain's [`Payments`] port: a tonic client on the mesh client stack
//! (in-flight limit, circuit breaker, deadline), its idempotent `HoldCost` and `Settle` retried within a
//! budget.

use baemin_kernel::{CallId, RiderId, Settlement};
use baemin_mesh_client::{ClientError, ClientSettings, MeshChannel, RetryPolicy, connect_lazy, outcome_unknown};
use baemin_proto::payment::{
    reasons,
    v1::{HoldCostRequest, Payment, PaymentStatus, SettleRequest, payment_service_client::PaymentServiceClient},
};
use futures::future::BoxFuture;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::domain::{PaymentCallError, Payments};

/// Payment over gRPC.
#[derive(Clone)]
pub struct GrpcPayments {
    client: PaymentServiceClient<MeshChannel>,
    retry: RetryPolicy,
}

impl GrpcPayments {
    /// A client of the payment service at `url`; connects on first use, so start-up never waits for it.
    pub fn connect(settings: &ClientSettings, metrics: &baemin_mesh_runtime::Metrics) -> Result<Self, ClientError> {
        let channel = connect_lazy(settings, metrics)?;
        Ok(Self {
            client: PaymentServiceClient::new(channel),
            retry: RetryPolicy::default(),
        })
    }
}

impl GrpcPayments {
    /// Sends `rpc` with `send` (idempotent at payment, so a call lost on the network is retried) and
    /// returns the payment it answered with.
    async fn answered<F, Fut>(&self, rpc: &str, send: F) -> Result<Payment, PaymentCallError>
    where
        F: Fn(PaymentServiceClient<MeshChannel>) -> Fut,
        Fut: Future<Output = Result<Option<Payment>, Status>>,
    {
        self.retry
            .idempotent(|| send(self.client.clone()))
            .await
            .map_err(classify)?
            .ok_or_else(|| PaymentCallError::Unexpected(format!("{rpc} answered without a payment")))
    }
}

impl Payments for GrpcPayments {
    fn hold<'a>(&'a self, call_id: &'a CallId, rider: &'a RiderId) -> BoxFuture<'a, Result<(), PaymentCallError>> {
        Box::pin(async move {
            let request = HoldCostRequest {
                call_id: call_id.to_string(),
                rider_id: rider.to_string(),
            };
            let payment = self
                .answered("HoldCost", |mut client| {
                    let request = request.clone();
                    async move { Ok(client.hold_cost(request).await?.into_inner().payment) }
                })
                .await?;
            if payment.rider_id != rider.as_str() {
                return Err(PaymentCallError::Unexpected(format!(
                    "HoldCost answered with the fee held for {:?}",
                    payment.rider_id
                )));
            }
            Ok(())
        })
    }

    fn settle<'a>(
        &'a self,
        call_id: &'a CallId,
        rider: &'a RiderId,
    ) -> BoxFuture<'a, Result<Settlement, PaymentCallError>> {
        Box::pin(async move {
            let request = SettleRequest {
                call_id: call_id.to_string(),
                rider_id: rider.to_string(),
            };
            let payment = self
                .answered("Settle", |mut client| {
                    let request = request.clone();
                    async move { Ok(client.settle(request).await?.into_inner().payment) }
                })
                .await?;
            if payment.status != PaymentStatus::Settled as i32 {
                return Err(PaymentCallError::Unexpected(format!(
                    "Settle answered with payment status {}",
                    payment.status
                )));
            }
            Ok(Settlement {
                fee: payment.fee,
                commission: payment.commission,
                rider_payout: payment.rider_payout,
            })
        })
    }
}

/// Sorts payment's answer: what may succeed later, what payment refused, and what should never happen.
fn classify(status: Status) -> PaymentCallError {
    let message = if status.message().is_empty() {
        format!("{:?}", status.code())
    } else {
        status.message().to_owned()
    };
    match status.code() {
        code if outcome_unknown(code) => PaymentCallError::Unavailable(message),
        Code::FailedPrecondition if voided(&status) => PaymentCallError::Voided(message),
        Code::FailedPrecondition => PaymentCallError::Refused(message),
        Code::NotFound => PaymentCallError::NotFound(message),
        // Payment or the mesh is misconfigured (payment not upgraded yet, identity keys out of step):
        // a dependency problem, not a client's; keep what is owed and try again later.
        Code::Unimplemented | Code::PermissionDenied | Code::Unauthenticated | Code::DataLoss => {
            PaymentCallError::Unavailable(format!("{:?}: {message}", status.code()))
        }
        code => PaymentCallError::Unexpected(format!("{code:?}: {message}")),
    }
}

/// Whether payment's refusal carries the `FEE_VOIDED` reason. Only that reason lets the rider service
/// cancel the delivery; a refusal without it (another reason, or none) leaves the delivery alone.
fn voided(status: &Status) -> bool {
    status
        .get_details_error_info()
        .is_some_and(|info| info.reason == reasons::FEE_VOIDED && info.domain == reasons::DOMAIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::collections::HashMap;

    use tonic_types::ErrorDetails;

    fn refusal(reason: &str, domain: &str) -> Status {
        Status::with_error_details(
            Code::FailedPrecondition,
            "refused",
            ErrorDetails::with_error_info(reason, domain, HashMap::new()),
        )
    }

    #[test]
    fn only_the_fee_voided_reason_means_the_call_was_cancelled() {
        assert_eq!(
            classify(refusal(reasons::FEE_VOIDED, reasons::DOMAIN)),
            PaymentCallError::Voided("refused".into())
        );
        for other in [
            refusal(reasons::SETTLED_WITH_ANOTHER_RIDER, reasons::DOMAIN),
            refusal("FEE_SETTLED", "payment.baemin"),
            refusal("FEE_VOIDED", "elsewhere.example"),
            Status::failed_precondition("the fee was voided"),
        ] {
            let classified = classify(other);
            assert!(matches!(classified, PaymentCallError::Refused(_)), "{classified:?}");
        }
    }

    #[test]
    fn transient_failures_are_unavailable_and_other_answers_are_sorted_by_code() {
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Cancelled,
            Code::Unknown,
            Code::Internal,
            Code::ResourceExhausted,
        ] {
            assert!(matches!(
                classify(Status::new(code, "x")),
                PaymentCallError::Unavailable(_)
            ));
        }
        assert_eq!(
            classify(Status::failed_precondition("voided")),
            PaymentCallError::Refused("voided".into())
        );
        assert!(matches!(
            classify(Status::not_found("no payment")),
            PaymentCallError::NotFound(_)
        ));
        assert!(matches!(
            classify(Status::invalid_argument("bad")),
            PaymentCallError::Unexpected(_)
        ));
        for misconfigured in [Code::Unimplemented, Code::PermissionDenied, Code::Unauthenticated] {
            assert!(matches!(
                classify(Status::new(misconfigured, "x")),
                PaymentCallError::Unavailable(_)
            ));
        }
    }

    #[tokio::test]
    async fn an_unreachable_payment_is_unavailable() {
        // Port 9 (discard) on loopback refuses connections on any sane test machine.
        let env = [("PAYMENT_URL", "http://127.0.0.1:9")];
        let settings = baemin_mesh_server::config::Settings::new(&env);
        let payments = GrpcPayments::connect(
            &ClientSettings::from_settings("payment", "PAYMENT", "http://x:1", &settings).unwrap(),
            &baemin_mesh_runtime::Metrics::new(),
        )
        .unwrap();
        let call_id = CallId::generate();
        let rider = RiderId::parse("r-1", "rider_id").unwrap();
        let err = payments.settle(&call_id, &rider).await.unwrap_err();
        assert!(matches!(err, PaymentCallError::Unavailable(_)), "{err:?}");
    }
}
