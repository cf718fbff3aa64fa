//! Free text a person types: the destination of a delivery, the reason for a cancellation.

use std::fmt;

use crate::FieldViolation;

/// Longest accepted destination, in characters.
const MAX_DESTINATION: usize = 200;
/// Longest accepted cancellation reason, in characters.
const MAX_REASON: usize = 200;

fn clean(raw: &str, field: &str, max: usize) -> Result<String, FieldViolation> {
    let trimmed = raw.trim();
    if trimmed.chars().count() > max {
        return Err(FieldViolation::new(field, format!("must be at most {max} characters")));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(FieldViolation::new(field, "must not contain control characters"));
    }
    Ok(trimmed.to_owned())
}

/// Where the food goes: trimmed, 1..=200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination(String);

impl Destination {
    /// Parses a destination from a request field.
    pub fn parse(raw: &str, field: &str) -> Result<Self, FieldViolation> {
        let text = clean(raw, field, MAX_DESTINATION)?;
        if text.is_empty() {
            return Err(FieldViolation::new(field, "is required"));
        }
        Ok(Self(text))
    }

    /// The destination text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a call was cancelled: optional, trimmed, at most 200 characters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CancelReason(String);

impl CancelReason {
    /// Parses a reason from a request field (empty is allowed).
    pub fn parse(raw: &str, field: &str) -> Result<Self, FieldViolation> {
        clean(raw, field, MAX_REASON).map(Self)
    }

    /// The reason text (possibly empty).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destination_is_trimmed_and_required() {
        assert_eq!(
            Destination::parse("  Gangnam-gu 1  ", "destination").unwrap().as_str(),
            "Gangnam-gu 1"
        );
        assert_eq!(
            Destination::parse("   ", "destination").unwrap_err().description,
            "is required"
        );
    }

    #[test]
    fn destination_counts_characters_not_bytes() {
        let korean = "서울시 강남구 테헤란로".repeat(18); // 216 chars
        assert!(Destination::parse(&korean, "destination").is_err());
        assert!(Destination::parse(&"강".repeat(200), "destination").is_ok());
    }

    #[test]
    fn text_with_control_characters_is_refused() {
        assert!(Destination::parse("a\u{0}b", "destination").is_err());
        assert!(CancelReason::parse("line\nbreak", "reason").is_err());
    }

    #[test]
    fn cancel_reason_may_be_empty_but_not_oversized() {
        assert_eq!(CancelReason::parse("", "reason").unwrap().as_str(), "");
        assert!(CancelReason::parse(&"x".repeat(201), "reason").is_err());
    }
}
