//! The one place where payment errors become gRPC status codes (AIP-193).

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::{PaymentError, Refusal};

use baemin_proto::payment::reasons;

/// The `google.rpc.ErrorInfo` domain of payment's machine-readable reasons.
pub const ERROR_DOMAIN: &str = reasons::DOMAIN;

/// The `google.rpc.ErrorInfo` reason of a refusal: stable names callers branch on (AIP-193).
pub fn reason(refusal: Refusal) -> &'static str {
    match refusal {
        Refusal::FeeVoided => reasons::FEE_VOIDED,
        Refusal::FeeSettled => reasons::FEE_SETTLED,
        Refusal::SettledWithAnotherRider => reasons::SETTLED_WITH_ANOTHER_RIDER,
        Refusal::FeeHeld => reasons::FEE_HELD,
        Refusal::HeldForAnotherRider => reasons::HELD_FOR_ANOTHER_RIDER,
    }
}

impl From<PaymentError> for Status {
    fn from(err: PaymentError) -> Self {
        match err {
            PaymentError::Invalid(invalid) => {
                baemin_mesh_server::status::invalid_argument(invalid.0.into_iter().map(|v| (v.field, v.description)))
            }
            PaymentError::NotFound(_) => Status::not_found(err.to_string()),
            PaymentError::Forbidden(_) => Status::permission_denied(err.to_string()),
            PaymentError::FeeConflict { .. } => Status::already_exists(err.to_string()),
            PaymentError::IllegalState(refusal, message) => Status::with_error_details(
                Code::FailedPrecondition,
                message,
                ErrorDetails::with_error_info(reason(refusal), ERROR_DOMAIN, HashMap::new()),
            ),
            PaymentError::Contention(_) => Status::aborted(err.to_string()),
            PaymentError::Db(ref db) => baemin_mesh_runtime::status::database("payment", db),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_is_failed_precondition_with_its_error_info_reason() {
        for (refusal, expected) in [
            (Refusal::FeeVoided, "FEE_VOIDED"),
            (Refusal::FeeSettled, "FEE_SETTLED"),
            (Refusal::SettledWithAnotherRider, "SETTLED_WITH_ANOTHER_RIDER"),
            (Refusal::FeeHeld, "FEE_HELD"),
            (Refusal::HeldForAnotherRider, "HELD_FOR_ANOTHER_RIDER"),
        ] {
            let status = Status::from(PaymentError::IllegalState(refusal, "refused".into()));
            assert_eq!(status.code(), Code::FailedPrecondition);
            assert_eq!(status.message(), "refused");
            let info = status.get_details_error_info().expect("ErrorInfo attached");
            assert_eq!((info.reason.as_str(), info.domain.as_str()), (expected, ERROR_DOMAIN));
        }
    }

    #[test]
    fn other_errors_keep_their_codes() {
        assert_eq!(Status::from(PaymentError::NotFound("c".into())).code(), Code::NotFound);
        assert_eq!(
            Status::from(PaymentError::Contention("busy".into())).code(),
            Code::Aborted
        );
    }
}
