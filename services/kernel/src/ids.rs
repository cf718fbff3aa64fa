//! Identifiers: the call id that correlates a delivery everywhere, and the actors' ids.

use std::fmt;

use crate::FieldViolation;

/// The id of a call, made by the call service: a UUIDv7 in its canonical lowercase form.
///
/// UUIDv7 sorts by creation time, so ordering by call id is ordering by age (used for paging).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(String);

impl CallId {
    /// A fresh call id.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    /// Parses a call id sent by a client, reported under field `field` when malformed.
    pub fn parse(raw: &str, field: &str) -> Result<Self, FieldViolation> {
        match uuid::Uuid::try_parse(raw) {
            Ok(id) if id.get_version_num() == 7 => Ok(Self(id.to_string())),
            Ok(_) => Err(FieldViolation::new(field, "must be a UUIDv7 call id")),
            Err(_) if raw.is_empty() => Err(FieldViolation::new(field, "is required")),
            Err(_) => Err(FieldViolation::new(field, "must be a UUIDv7 call id")),
        }
    }

    /// The canonical string form.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Longest accepted actor id or idempotency key.
const MAX_ID_LEN: usize = 64;

fn parse_token(raw: &str, field: &str) -> Result<String, FieldViolation> {
    if raw.is_empty() {
        return Err(FieldViolation::new(field, "is required"));
    }
    if raw.len() > MAX_ID_LEN {
        return Err(FieldViolation::new(
            field,
            format!("must be at most {MAX_ID_LEN} characters"),
        ));
    }
    if !raw
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    {
        return Err(FieldViolation::new(
            field,
            "may contain only ASCII letters, digits and - _ . :",
        ));
    }
    Ok(raw.to_owned())
}

macro_rules! token_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Parses the id from a request field: 1..=64 ASCII letters, digits or `-_.:`.
            pub fn parse(raw: &str, field: &str) -> Result<Self, FieldViolation> {
                parse_token(raw, field).map(Self)
            }

            /// The id as sent.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

token_id!(
    /// The restaurant that placed a call.
    RestaurantId
);
token_id!(
    /// A rider (the seed's driver / 배민파트너).
    RiderId
);
token_id!(
    /// A client's idempotency key for PlaceCall.
    RequestId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_call_ids_parse_back_and_sort_by_age() {
        let first = CallId::generate();
        let second = CallId::generate();
        assert_eq!(CallId::parse(first.as_str(), "call_id"), Ok(first.clone()));
        assert!(first < second);
    }

    #[test]
    fn call_id_rejects_empty_garbage_and_other_uuid_versions() {
        assert_eq!(CallId::parse("", "call_id").unwrap_err().description, "is required");
        assert!(CallId::parse("not-a-uuid", "call_id").is_err());
        assert!(
            CallId::parse("67e55044-10b1-426f-9247-bb680e5fe0c8", "call_id").is_err(),
            "v4 is refused"
        );
    }

    #[test]
    fn call_id_is_canonicalised_to_lowercase() {
        let id = CallId::generate();
        let upper = id.as_str().to_uppercase();
        assert_eq!(CallId::parse(&upper, "call_id"), Ok(id));
    }

    #[test]
    fn actor_ids_accept_plain_tokens_and_name_the_field_when_refused() {
        assert!(RiderId::parse("r-7", "rider_id").is_ok());
        assert!(RestaurantId::parse("store:42_a.b", "restaurant_id").is_ok());
        let err = RiderId::parse("r 7", "rider_id").unwrap_err();
        assert_eq!(err.field, "rider_id");
        assert!(RiderId::parse("", "rider_id").is_err());
        assert!(RequestId::parse(&"x".repeat(65), "request_id").is_err());
        assert!(RequestId::parse(&"x".repeat(64), "request_id").is_ok());
    }
}
