//! The [`Payments`] port over `baemin.payment.v1.PaymentService`, through the mesh client stack.

use baemin_kernel::{CallId, Fee};
use baemin_mesh_client::{ClientError, ClientSettings, MeshChannel, RetryPolicy, connect_lazy, outcome_unknown};
use baemin_proto::payment::v1::{RegisterCostRequest, VoidCostRequest, payment_service_client::PaymentServiceClient};
use futures::future::BoxFuture;
use tonic::{Code, Status};

use crate::domain::{PaymentCallError, Payments};

/// A lazily connecting payment client: building it never touches the network.
#[derive(Clone)]
pub struct PaymentClient {
    client: PaymentServiceClient<MeshChannel>,
    /// RegisterCost and VoidCost are idempotent per call id, so a call lost on the network is retried.
    retry: RetryPolicy,
}

impl PaymentClient {
    /// A client of the payment service at `url`; each call ends within `deadline`.
    pub fn connect(settings: &ClientSettings, metrics: &baemin_mesh_runtime::Metrics) -> Result<Self, ClientError> {
        let channel = connect_lazy(settings, metrics)?;
        Ok(Self {
            client: PaymentServiceClient::new(channel),
            retry: RetryPolicy::default(),
        })
    }
}

impl Payments for PaymentClient {
    fn register_cost(&self, call_id: CallId, fee: Fee) -> BoxFuture<'_, Result<(), PaymentCallError>> {
        Box::pin(async move {
            let request = RegisterCostRequest {
                call_id: call_id.to_string(),
                fee: fee.krw(),
            };
            self.retry
                .idempotent(|| {
                    let (mut client, request) = (self.client.clone(), request.clone());
                    async move { client.register_cost(request).await }
                })
                .await
                .map(|_| ())
                .map_err(classify)
        })
    }

    fn void_cost(&self, call_id: CallId) -> BoxFuture<'_, Result<(), PaymentCallError>> {
        Box::pin(async move {
            let request = VoidCostRequest {
                call_id: call_id.to_string(),
            };
            self.retry
                .idempotent(|| {
                    let (mut client, request) = (self.client.clone(), request.clone());
                    async move { client.void_cost(request).await }
                })
                .await
                .map(|_| ())
                .map_err(classify)
        })
    }
}

/// Payment's answer, by what the call service can do about it.
fn classify(status: Status) -> PaymentCallError {
    match status.code() {
        code if outcome_unknown(code) => PaymentCallError::Unavailable(status.message().to_owned()),
        Code::FailedPrecondition | Code::AlreadyExists | Code::InvalidArgument | Code::OutOfRange => {
            PaymentCallError::Refused(status.message().to_owned())
        }
        Code::NotFound => PaymentCallError::NotFound,
        // PERMISSION_DENIED, UNAUTHENTICATED, UNIMPLEMENTED, DATA_LOSS: payment or the mesh is
        // misconfigured; keep what is owed (the intent stays, the repair worker retries) rather than
        // give up on a fee that may exist.
        _ => PaymentCallError::Unavailable(status.message().to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_answers_are_classified_by_what_can_be_done() {
        assert_eq!(
            classify(Status::failed_precondition("settled")),
            PaymentCallError::Refused("settled".into())
        );
        assert_eq!(classify(Status::not_found("none")), PaymentCallError::NotFound);
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
    }
}
