//! The one place where call errors become gRPC status codes (AIP-193).

use baemin_mesh_server::status::{invalid_argument, unavailable};
use tonic::Status;

use crate::domain::CallError;

impl From<CallError> for Status {
    fn from(err: CallError) -> Self {
        match err {
            CallError::Invalid(invalid) => invalid_argument(invalid.0.into_iter().map(|v| (v.field, v.description))),
            CallError::NotFound(_) => Status::not_found(err.to_string()),
            CallError::RequestIdReused(_) => Status::already_exists(err.to_string()),
            CallError::Forbidden(_) => Status::permission_denied(err.to_string()),
            CallError::Illegal(_) | CallError::PickedUpFirst | CallError::PaymentRefused(_) => {
                Status::failed_precondition(err.to_string())
            }
            CallError::PaymentUnavailable(detail) => unavailable("payment", detail),
            CallError::ShuttingDown => Status::unavailable(err.to_string()),
            CallError::Contended(_) => Status::aborted(err.to_string()),
            CallError::Db(ref db) => baemin_mesh_runtime::status::database("call", db),
        }
    }
}

#[cfg(test)]
mod tests {
    use baemin_kernel::{DeliveryStatus, FieldViolation, IllegalTransition, InvalidInput};
    use tonic::Code;

    use super::*;

    #[test]
    fn each_error_kind_has_its_code() {
        let cases: [(CallError, Code); 10] = [
            (CallError::Forbidden("not yours".into()), Code::PermissionDenied),
            (CallError::ShuttingDown, Code::Unavailable),
            (
                InvalidInput(vec![FieldViolation::new("fee", "bad")]).into(),
                Code::InvalidArgument,
            ),
            (CallError::NotFound("x".into()), Code::NotFound),
            (CallError::RequestIdReused("k".into()), Code::AlreadyExists),
            (
                IllegalTransition {
                    from: DeliveryStatus::Picked,
                    action: "cancel",
                }
                .into(),
                Code::FailedPrecondition,
            ),
            (CallError::PickedUpFirst, Code::FailedPrecondition),
            (CallError::PaymentRefused("voided".into()), Code::FailedPrecondition),
            (CallError::PaymentUnavailable("down".into()), Code::Unavailable),
            (CallError::Contended("retry".into()), Code::Aborted),
        ];
        for (err, code) in cases {
            assert_eq!(Status::from(err).code(), code);
        }
    }

    #[test]
    fn unavailable_names_payment_and_illegal_names_the_status() {
        let status = Status::from(CallError::PaymentUnavailable("connection refused".into()));
        assert_eq!(status.message(), "payment is unavailable: connection refused");
        let status = Status::from(CallError::from(IllegalTransition {
            from: DeliveryStatus::Picked,
            action: "cancel",
        }));
        assert_eq!(status.message(), "cannot cancel a delivery that is PICKED");
    }
}
