//! Everything that can go wrong in the report, by kind; mapped to gRPC status in `inbound::status`.

use baemin_kernel::InvalidInput;

/// Why a report query or projection was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A field of the request is malformed.
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// The report has not seen this call (yet).
    #[error("no delivery view for call {0}")]
    NotFound(String),
    /// The caller may not see these rows (another restaurant's calls, another rider's deliveries).
    #[error("{0}")]
    PermissionDenied(String),
    /// The service is stopping; a watcher should reconnect (to another replica).
    #[error("report is unavailable: the service is shutting down; reconnect")]
    ShuttingDown,
    /// The database failed.
    #[error("report database")]
    Db(#[from] sea_orm::DbErr),
}
