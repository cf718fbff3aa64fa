//! The one place where report errors become gRPC status codes (AIP-193).

use tonic::Status;

use crate::domain::ReportError;

impl From<ReportError> for Status {
    fn from(err: ReportError) -> Self {
        match err {
            ReportError::Invalid(invalid) => {
                baemin_mesh_server::status::invalid_argument(invalid.0.into_iter().map(|v| (v.field, v.description)))
            }
            ReportError::NotFound(_) => Status::not_found(err.to_string()),
            ReportError::PermissionDenied(_) => Status::permission_denied(err.to_string()),
            ReportError::ShuttingDown => Status::unavailable(err.to_string()),
            ReportError::Db(ref db) => baemin_mesh_runtime::status::database("report", db),
        }
    }
}
