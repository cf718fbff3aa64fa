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
            // The version nibble alone is not enough: a UUIDv7 also has the RFC 9562 variant bits.
            Ok(id) if id.get_version_num() == 7 && id.get_variant() == uuid::Variant::RFC4122 => {
                Ok(Self(id.to_string()))
            }
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
    // The alphabet first: once it is ASCII, bytes are characters and the length check says the truth.
    if !raw
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        return Err(FieldViolation::new(
            field,
            "may contain only ASCII letters, digits and - _ . :",
        ));
    }
    if raw.len() > MAX_ID_LEN {
        return Err(FieldViolation::new(
            field,
            format!("must be at most {MAX_ID_LEN} characters"),
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
    use proptest::prelude::*;

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
    fn call_id_with_the_v7_nibble_but_not_the_rfc_variant_is_refused() {
        let err = CallId::parse("00000000-0000-7000-0000-000000000000", "call_id").unwrap_err();
        assert_eq!(
            (err.field.as_str(), err.description.as_str()),
            ("call_id", "must be a UUIDv7 call id")
        );
        assert!(
            CallId::parse("0193a1b2-c3d4-7e5f-ca9b-0c1d2e3f4a5b", "call_id").is_err(),
            "Microsoft variant"
        );
        assert!(CallId::parse("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "call_id").is_ok());
    }

    #[test]
    fn short_non_ascii_actor_id_is_refused_for_its_alphabet_not_its_length() {
        let err = RiderId::parse(&"강".repeat(30), "rider_id").unwrap_err();
        assert_eq!(err.description, "may contain only ASCII letters, digits and - _ . :");
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

    /// Every client-parsed actor id type, to check each with the same properties.
    fn parse_actor_id(kind: usize, raw: &str, field: &str) -> Result<String, FieldViolation> {
        match kind {
            0 => RiderId::parse(raw, field).map(|id| id.as_str().to_owned()),
            1 => RestaurantId::parse(raw, field).map(|id| id.as_str().to_owned()),
            _ => RequestId::parse(raw, field).map(|id| id.as_str().to_owned()),
        }
    }

    proptest! {
        #[test]
        fn call_id_parse_never_panics_and_refusals_name_the_field(raw in any::<String>()) {
            if let Err(violation) = CallId::parse(&raw, "call_id") {
                prop_assert_eq!(violation.field, "call_id");
            }
        }

        #[test]
        fn call_id_parse_never_panics_on_uuid_shaped_garbage(raw in "[{(]?(urn:uuid:)?[0-9a-fA-Fg-]{28,40}[})]?") {
            if let Err(violation) = CallId::parse(&raw, "call_id") {
                prop_assert_eq!(violation.field, "call_id");
            }
        }

        #[test]
        fn any_uuidv7_round_trips_in_every_spelling(millis in 0u64..(1 << 48), random in any::<[u8; 10]>()) {
            let uuid = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();
            let id = CallId::parse(&uuid.to_string(), "call_id").unwrap();
            prop_assert_eq!(id.as_str(), uuid.hyphenated().to_string());
            prop_assert_eq!(CallId::parse(id.as_str(), "call_id"), Ok(id.clone()));
            for spelling in [uuid.simple().to_string(), uuid.urn().to_string(), uuid.braced().to_string()] {
                prop_assert_eq!(CallId::parse(&spelling, "call_id"), Ok(id.clone()));
                prop_assert_eq!(CallId::parse(&spelling.to_uppercase(), "call_id"), Ok(id.clone()));
            }
        }

        #[test]
        fn only_rfc_uuidv7_bits_are_accepted_as_call_ids(bits in any::<u128>(), version in 0u128..16, variant in 0u128..4) {
            // Force the version nibble and the two top variant bits so every combination is tried.
            let bits = (bits & !(0xF << 76) & !(0b11 << 62)) | (version << 76) | (variant << 62);
            let uuid = uuid::Uuid::from_u128(bits);
            let parsed = CallId::parse(&uuid.to_string(), "call_id");
            let is_v7 = version == 7 && variant == 0b10;
            prop_assert_eq!(parsed.is_ok(), is_v7, "{} {:?}", uuid, parsed);
        }

        #[test]
        fn actor_id_parse_never_panics_and_refusals_name_the_field(kind in 0usize..3, raw in any::<String>()) {
            match parse_actor_id(kind, &raw, "some_id") {
                Ok(id) => {
                    prop_assert_eq!(&id, &raw);
                    prop_assert!((1..=MAX_ID_LEN).contains(&id.len()));
                    prop_assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c)));
                }
                Err(violation) => prop_assert_eq!(violation.field, "some_id"),
            }
        }

        #[test]
        fn valid_actor_ids_round_trip_unchanged(kind in 0usize..3, raw in "[A-Za-z0-9_.:-]{1,64}") {
            prop_assert_eq!(parse_actor_id(kind, &raw, "some_id"), Ok(raw));
        }

        #[test]
        fn actor_ids_are_refused_as_too_long_only_when_over_the_character_limit(kind in 0usize..3, raw in "\\PC{1,80}") {
            if let Err(violation) = parse_actor_id(kind, &raw, "some_id")
                && violation.description.contains("at most")
            {
                prop_assert!(raw.chars().count() > MAX_ID_LEN, "{:?}: {}", raw, violation.description);
            }
        }
    }
}
