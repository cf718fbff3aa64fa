//! Field violations: how a request that cannot become a domain value says why (google.rpc.BadRequest).

use std::fmt;

/// One field of a request that is malformed or out of range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// The request field, as named in the protobuf contract (`fee`, `destination`, ...).
    pub field: String,
    /// What is wrong with it, for a person.
    pub description: String,
}

impl FieldViolation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }

    /// The same violation reported under another field name (a nested or renamed field).
    pub fn at(mut self, field: impl Into<String>) -> Self {
        self.field = field.into();
        self
    }
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.description)
    }
}

/// A request with one or more invalid fields; every violation is collected, not just the first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid request: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct InvalidInput(pub Vec<FieldViolation>);

impl InvalidInput {
    /// Collects violations while a request is parsed field by field.
    pub fn collector() -> Collector {
        Collector(Vec::new())
    }
}

impl From<FieldViolation> for InvalidInput {
    fn from(violation: FieldViolation) -> Self {
        Self(vec![violation])
    }
}

/// Gathers the outcome of parsing each field, then yields all violations at once.
#[derive(Debug, Default)]
pub struct Collector(Vec<FieldViolation>);

impl Collector {
    /// Keeps the value, or records the violation and returns `None`.
    pub fn take<T>(&mut self, parsed: Result<T, FieldViolation>) -> Option<T> {
        match parsed {
            Ok(value) => Some(value),
            Err(violation) => {
                self.0.push(violation);
                None
            }
        }
    }

    /// `Ok(())` when no field was invalid.
    pub fn finish(self) -> Result<(), InvalidInput> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(InvalidInput(self.0))
        }
    }
}
