//! The one place where rider errors become gRPC status codes (AIP-193).

use tonic::Status;

use crate::domain::RiderError;

impl From<RiderError> for Status {
    fn from(err: RiderError) -> Self {
        match err {
            RiderError::Invalid(invalid) => {
                baemin_mesh_server::status::invalid_argument(invalid.0.into_iter().map(|v| (v.field, v.description)))
            }
            RiderError::NotFound(_) => Status::not_found(err.to_string()),
            RiderError::NotYours(_) | RiderError::ActingAsAnother { .. } | RiderError::Forbidden(_) => {
                Status::permission_denied(err.to_string())
            }
            RiderError::Taken(_)
            | RiderError::Cancelled(_)
            | RiderError::IllegalState(_)
            | RiderError::NothingToSettle(_)
            | RiderError::PaymentRefused(..) => Status::failed_precondition(err.to_string()),
            RiderError::Contention(_) => Status::aborted(err.to_string()),
            // Transient: payment decides once it is reachable and has the fee; the client retries.
            RiderError::PaymentUnavailable(..) | RiderError::FeeNotRegistered(_) => {
                Status::unavailable(err.to_string())
            }
            RiderError::PaymentFailed(_) => baemin_mesh_server::status::internal("settling with payment", &err),
            RiderError::Db(ref db) => baemin_mesh_runtime::status::database("rider", db),
        }
    }
}

#[cfg(test)]
mod tests {
    use baemin_kernel::{CallId, FieldViolation, InvalidInput};
    use tonic::Code;

    use super::*;

    #[test]
    fn every_error_kind_has_its_code() {
        let id = CallId::generate;
        let cases = [
            (
                RiderError::Invalid(InvalidInput(vec![FieldViolation::new("call_id", "is required")])),
                Code::InvalidArgument,
            ),
            (RiderError::NotFound(id()), Code::NotFound),
            (RiderError::NotYours(id()), Code::PermissionDenied),
            (RiderError::Taken(id()), Code::FailedPrecondition),
            (RiderError::Cancelled(id()), Code::FailedPrecondition),
            (RiderError::NothingToSettle(id()), Code::FailedPrecondition),
            (
                RiderError::PaymentRefused(id(), "settled with another rider".into()),
                Code::FailedPrecondition,
            ),
            (RiderError::FeeNotRegistered(id()), Code::Unavailable),
            (RiderError::Contention(id()), Code::Aborted),
            (RiderError::PaymentUnavailable(id(), "down".into()), Code::Unavailable),
            (RiderError::PaymentFailed("odd".into()), Code::Internal),
        ];
        for (err, code) in cases {
            assert_eq!(Status::from(err).code(), code);
        }
    }
}
