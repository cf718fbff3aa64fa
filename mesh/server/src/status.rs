//! Shared pieces of each service's error mapping to `tonic::Status` (AIP-193).

use std::error::Error;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// INVALID_ARGUMENT carrying a `google.rpc.BadRequest` with one violation per `(field, description)`.
pub fn invalid_argument<I, F, D>(violations: I) -> Status
where
    I: IntoIterator<Item = (F, D)>,
    F: Into<String>,
    D: Into<String>,
{
    let mut details = ErrorDetails::new();
    let mut message = String::from("invalid request");
    for (i, (field, description)) in violations.into_iter().enumerate() {
        let (field, description) = (field.into(), description.into());
        message.push_str(if i == 0 { ": " } else { "; " });
        message.push_str(&format!("{field} {description}"));
        details.add_bad_request_violation(field, description);
    }
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// An unexpected failure: logged with its whole cause chain, answered with a generic INTERNAL.
///
/// The client learns nothing about internals; the operator finds everything in the log.
pub fn internal(context: &str, err: &(dyn Error + 'static)) -> Status {
    let mut chain = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    tracing::error!(error = %chain, "{context} failed");
    Status::internal(format!("{context} failed; see the service log"))
}

/// UNAVAILABLE naming the dependency that could not be reached.
pub fn unavailable(dependency: &str, detail: impl std::fmt::Display) -> Status {
    Status::unavailable(format!("{dependency} is unavailable: {detail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_carries_every_field_violation() {
        let status = invalid_argument([("fee", "must be positive"), ("destination", "is required")]);
        assert_eq!(status.code(), Code::InvalidArgument);
        let bad = status.get_details_bad_request().expect("BadRequest detail");
        let fields: Vec<_> = bad.field_violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["fee", "destination"]);
        assert!(status.message().contains("fee must be positive"));
    }

    #[test]
    fn internal_hides_the_cause_from_the_client() {
        let err = std::io::Error::other("disk on fire at /var/lib/secret");
        let status = internal("storing the call", &err);
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("secret"));
    }
}
