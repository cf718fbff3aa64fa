//! The one place where payment errors become gRPC status codes (AIP-193).

use tonic::Status;

use crate::domain::PaymentError;

impl From<PaymentError> for Status {
    fn from(err: PaymentError) -> Self {
        match err {
            PaymentError::Invalid(invalid) => {
                baemin_mesh_server::status::invalid_argument(invalid.0.into_iter().map(|v| (v.field, v.description)))
            }
            PaymentError::NotFound(_) => Status::not_found(err.to_string()),
            PaymentError::FeeConflict { .. } => Status::already_exists(err.to_string()),
            PaymentError::IllegalState(_) => Status::failed_precondition(err.to_string()),
            PaymentError::Contention(_) => Status::aborted(err.to_string()),
            PaymentError::Db(ref db) => baemin_mesh_server::status::internal("payment storage", db),
        }
    }
}
