//! Which outcomes count against a dependency: a replaceable [`Classify`], gRPC codes by default.

use std::error::Error;

use http::{HeaderMap, StatusCode};
use tonic::Code;

/// How one finished call counts toward the circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The dependency did its job (including answering "no" for a good reason).
    Success,
    /// The dependency is unwell: counts toward the failure rate.
    Failure,
    /// Neither (resilience4j's ignored exceptions): not recorded, and a half-open trial slot is
    /// given back.
    Ignored,
}

/// Decides how a call's final gRPC status, or the error that ended it, counts.
///
/// Slow calls are judged on duration separately, whatever the outcome.
pub trait Classify: Send + Sync + 'static {
    /// The outcome of a call that ended with `code`.
    fn classify_code(&self, code: Code) -> Outcome;

    /// The outcome of a call that ended with `error` instead of a response (or whose response
    /// body failed). By default a [`tonic::Status`] anywhere in the error's chain is classified by
    /// its code, and anything else (connection refused, reset, broken pipe) is a failure.
    fn classify_error(&self, error: &(dyn Error + 'static)) -> Outcome {
        match status_in(error) {
            Some(status) => self.classify_code(status.code()),
            None => Outcome::Failure,
        }
    }
}

/// Any `Fn(Code) -> Outcome` is a classifier.
impl<F> Classify for F
where
    F: Fn(Code) -> Outcome + Send + Sync + 'static,
{
    fn classify_code(&self, code: Code) -> Outcome {
        self(code)
    }
}

/// The mesh's default: UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL, RESOURCE_EXHAUSTED and UNKNOWN, and
/// every transport error, are failures; every other code (OK, INVALID_ARGUMENT, NOT_FOUND,
/// ALREADY_EXISTS, FAILED_PRECONDITION, ABORTED, PERMISSION_DENIED, ...) means the dependency is
/// working and answered.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcClassifier;

impl Classify for GrpcClassifier {
    fn classify_code(&self, code: Code) -> Outcome {
        match code {
            Code::Unavailable | Code::DeadlineExceeded | Code::Internal | Code::ResourceExhausted | Code::Unknown => {
                Outcome::Failure
            }
            _ => Outcome::Success,
        }
    }
}

/// The first [`tonic::Status`] in `error` or its chain of sources.
pub fn status_in<'a>(error: &'a (dyn Error + 'static)) -> Option<&'a tonic::Status> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(status) = e.downcast_ref::<tonic::Status>() {
            return Some(status);
        }
        current = e.source();
    }
    None
}

/// The code in a `grpc-status` header or trailer (an unparsable one is UNKNOWN, as in tonic).
pub(crate) fn grpc_status(headers: &HeaderMap) -> Option<Code> {
    headers.get("grpc-status").map(|v| Code::from_bytes(v.as_bytes()))
}

/// The final code of a response known from its head alone: a trailers-only response carries
/// `grpc-status` in its headers, and a non-200 response without one ends in the code tonic maps
/// it to. `None` means the status will come in the trailers.
pub(crate) fn code_from_head<B>(response: &http::Response<B>) -> Option<Code> {
    if let Some(code) = grpc_status(response.headers()) {
        return Some(code);
    }
    // gRPC's HTTP-to-status mapping, as tonic applies it when grpc-status is missing.
    let code = match response.status() {
        StatusCode::OK => return None,
        StatusCode::BAD_REQUEST => Code::Internal,
        StatusCode::UNAUTHORIZED => Code::Unauthenticated,
        StatusCode::FORBIDDEN => Code::PermissionDenied,
        StatusCode::NOT_FOUND => Code::Unimplemented,
        StatusCode::TOO_MANY_REQUESTS
        | StatusCode::BAD_GATEWAY
        | StatusCode::SERVICE_UNAVAILABLE
        | StatusCode::GATEWAY_TIMEOUT => Code::Unavailable,
        _ => Code::Unknown,
    };
    Some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grpc_classifier_fails_only_codes_that_say_the_dependency_is_unwell() {
        let failures = [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Internal,
            Code::ResourceExhausted,
            Code::Unknown,
        ];
        for code in failures {
            assert_eq!(GrpcClassifier.classify_code(code), Outcome::Failure, "{code:?}");
        }
        for code in [
            Code::Ok,
            Code::InvalidArgument,
            Code::NotFound,
            Code::AlreadyExists,
            Code::FailedPrecondition,
            Code::Aborted,
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::OutOfRange,
        ] {
            assert_eq!(GrpcClassifier.classify_code(code), Outcome::Success, "{code:?}");
        }
    }

    #[derive(Debug, thiserror::Error)]
    #[error("wrapped")]
    struct Wrapped(#[source] tonic::Status);

    #[test]
    fn errors_are_classified_by_the_status_in_their_chain_and_are_failures_without_one() {
        let not_found = tonic::Status::not_found("no such call");
        assert_eq!(GrpcClassifier.classify_error(&not_found), Outcome::Success);
        let wrapped = Wrapped(tonic::Status::deadline_exceeded("late"));
        assert_eq!(GrpcClassifier.classify_error(&wrapped), Outcome::Failure);
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(GrpcClassifier.classify_error(&refused), Outcome::Failure);
    }

    #[test]
    fn the_head_gives_the_code_of_trailers_only_and_non_200_responses_and_defers_the_rest() {
        let trailers_only = http::Response::builder().header("grpc-status", "5").body(()).unwrap();
        assert_eq!(code_from_head(&trailers_only), Some(Code::NotFound));
        let garbage = http::Response::builder().header("grpc-status", "x").body(()).unwrap();
        assert_eq!(code_from_head(&garbage), Some(Code::Unknown));
        let proxy_503 = http::Response::builder().status(503).body(()).unwrap();
        assert_eq!(code_from_head(&proxy_503), Some(Code::Unavailable));
        let ok = http::Response::new(());
        assert_eq!(code_from_head(&ok), None, "the status comes in the trailers");
    }

    #[test]
    fn a_closure_is_a_classifier() {
        let strict = |code: Code| {
            if code == Code::Ok {
                Outcome::Success
            } else {
                Outcome::Failure
            }
        };
        assert_eq!(strict.classify_code(Code::NotFound), Outcome::Failure);
    }
}
