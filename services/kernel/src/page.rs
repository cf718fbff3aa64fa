//! Paging per AIP-158: a page size with a default and a maximum, and an opaque page token.

use crate::FieldViolation;

/// How many items a page holds: 0 means the default (20); above 100 is coerced to 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize(u64);

impl PageSize {
    /// Used when the client sends 0.
    pub const DEFAULT: u64 = 20;
    /// Larger requests are coerced down to this.
    pub const MAX: u64 = 100;

    /// Parses `page_size`; negative is invalid.
    pub fn parse(raw: i32, field: &str) -> Result<Self, FieldViolation> {
        match raw {
            n if n < 0 => Err(FieldViolation::new(field, "must not be negative")),
            0 => Ok(Self(Self::DEFAULT)),
            n => Ok(Self((n as u64).min(Self::MAX))),
        }
    }

    /// The number of items.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// Where the next page starts: the sort key of the last item returned, opaque to clients.
///
/// Keyset paging: stable while rows are inserted, and each page costs an index seek, not an offset scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageToken(String);

const PREFIX: &str = "v1.";
/// Longest key a token may carry, in bytes (sort keys are call ids, 36 bytes).
const MAX_KEY_BYTES: usize = 256;

impl PageToken {
    /// The token that resumes after the item with key `last_key`.
    ///
    /// `parse` refuses keys longer than 256 bytes or holding control characters, so keys must not.
    pub fn after(last_key: &str) -> Self {
        Self(last_key.to_owned())
    }

    /// Parses `page_token`; empty means the first page.
    ///
    /// Only tokens `encode` makes are accepted: `v1.` then lowercase hex of a UTF-8 key without control
    /// characters (a NUL would reach the database as a query parameter and fail there, not here).
    pub fn parse(raw: &str, field: &str) -> Result<Option<Self>, FieldViolation> {
        if raw.is_empty() {
            return Ok(None);
        }
        let invalid = || FieldViolation::new(field, "is not a token returned by this service");
        // Bytes, not `&str` slices: a client may send any UTF-8, and slicing inside a character panics.
        let hex = raw.strip_prefix(PREFIX).ok_or_else(invalid)?.as_bytes();
        if hex.len() % 2 != 0 || hex.len() > 2 * MAX_KEY_BYTES {
            return Err(invalid());
        }
        let bytes = hex
            .chunks_exact(2)
            .map(|pair| Some((hex_digit(pair[0])? << 4) | hex_digit(pair[1])?))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(invalid)?;
        let key = String::from_utf8(bytes).map_err(|_| invalid())?;
        if key.chars().any(char::is_control) {
            return Err(invalid());
        }
        Ok(Some(Self(key)))
    }

    /// The sort key of the last item of the previous page.
    pub fn last_key(&self) -> &str {
        &self.0
    }

    /// The opaque form sent to clients.
    pub fn encode(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(PREFIX.len() + self.0.len() * 2);
        out.push_str(PREFIX);
        for b in self.0.bytes() {
            out.push(char::from(DIGITS[usize::from(b >> 4)]));
            out.push(char::from(DIGITS[usize::from(b & 0xf)]));
        }
        out
    }
}

/// The value of one lowercase hex digit (`u8::from_str_radix` would also take `+` and uppercase).
fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn page_size_defaults_and_coerces() {
        assert_eq!(PageSize::parse(0, "page_size").unwrap().get(), 20);
        assert_eq!(PageSize::parse(7, "page_size").unwrap().get(), 7);
        assert_eq!(PageSize::parse(10_000, "page_size").unwrap().get(), 100);
        assert!(PageSize::parse(-1, "page_size").is_err());
    }

    #[test]
    fn page_tokens_round_trip_and_garbage_is_refused() {
        let token = PageToken::after("0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
        assert_eq!(PageToken::parse(&token.encode(), "page_token").unwrap(), Some(token));
        assert_eq!(PageToken::parse("", "page_token").unwrap(), None);
        for bad in ["abc", "v1.zz", "v1.abc", "v1.ff"] {
            assert!(PageToken::parse(bad, "page_token").is_err(), "{bad}");
        }
    }

    #[test]
    fn page_tokens_that_this_service_never_encodes_are_refused() {
        // "+a" is 10 to `u8::from_str_radix`: it used to decode to "\n\n".
        for bad in ["v1.+a+a", "v1.4A", "v1.00", "v1.0a", "v1.7f", "v1.c285", "v1. 4"] {
            let err = PageToken::parse(bad, "page_token").unwrap_err();
            assert_eq!(err.field, "page_token", "{bad}");
        }
        assert_eq!(
            PageToken::parse("v1.4a", "page_token").unwrap().unwrap().last_key(),
            "J"
        );
    }

    #[test]
    fn page_token_keys_longer_than_the_limit_are_refused() {
        let longest = "k".repeat(MAX_KEY_BYTES);
        assert!(PageToken::parse(&PageToken::after(&longest).encode(), "page_token").is_ok());
        let over = format!("{longest}k");
        assert!(PageToken::parse(&PageToken::after(&over).encode(), "page_token").is_err());
    }

    #[test]
    fn page_token_with_a_multibyte_character_is_refused_not_a_panic() {
        let err = PageToken::parse("v1.a\u{e9}0", "page_token").unwrap_err();
        assert_eq!(err.field, "page_token");
    }

    proptest! {
        #[test]
        fn page_size_never_panics_and_is_refused_only_when_negative(raw in any::<i32>()) {
            match PageSize::parse(raw, "page_size") {
                Ok(size) => {
                    prop_assert!(raw >= 0);
                    prop_assert!((1..=PageSize::MAX).contains(&size.get()));
                    let expected = if raw == 0 { PageSize::DEFAULT } else { (raw as u64).min(PageSize::MAX) };
                    prop_assert_eq!(size.get(), expected);
                }
                Err(violation) => {
                    prop_assert!(raw < 0);
                    prop_assert_eq!(violation.field, "page_size");
                }
            }
        }

        #[test]
        fn page_token_parse_never_panics_on_any_string(raw in any::<String>()) {
            if let Err(violation) = PageToken::parse(&raw, "page_token") {
                prop_assert_eq!(violation.field, "page_token");
            }
        }

        #[test]
        fn page_token_parse_never_panics_on_any_text_after_the_prefix(rest in any::<String>()) {
            let raw = format!("v1.{rest}");
            if let Err(violation) = PageToken::parse(&raw, "page_token") {
                prop_assert_eq!(violation.field, "page_token");
            }
        }

        #[test]
        fn page_token_parse_never_panics_on_near_hex_after_the_prefix(rest in "[0-9a-fA-F+\\-é가 ]{0,12}") {
            let raw = format!("v1.{rest}");
            if let Err(violation) = PageToken::parse(&raw, "page_token") {
                prop_assert_eq!(violation.field, "page_token");
            }
        }

        #[test]
        fn accepted_page_tokens_are_exactly_the_ones_this_service_encodes(rest in "[0-9a-fA-F+\\-]{0,12}") {
            let raw = format!("v1.{rest}");
            if let Ok(Some(token)) = PageToken::parse(&raw, "page_token") {
                prop_assert_eq!(token.encode(), raw);
            }
        }

        #[test]
        fn page_tokens_round_trip_for_any_key_without_control_characters(key in "\\PC{0,64}") {
            let token = PageToken::after(&key);
            prop_assert_eq!(PageToken::parse(&token.encode(), "page_token"), Ok(Some(token)));
        }

        #[test]
        fn page_token_of_any_key_parses_back_or_is_refused_never_panics(key in any::<String>()) {
            let token = PageToken::after(&key);
            let storable = key.len() <= MAX_KEY_BYTES && !key.chars().any(char::is_control);
            match PageToken::parse(&token.encode(), "page_token") {
                Ok(parsed) => prop_assert_eq!(parsed, Some(token)),
                Err(violation) => {
                    prop_assert!(!storable, "{:?} was refused", key);
                    prop_assert_eq!(violation.field, "page_token");
                }
            }
        }

        #[test]
        fn decoded_page_token_keys_never_hold_control_characters(key in "[a\\x00\\x1f\\x7f\\u{85}]{1,8}") {
            let raw = PageToken::after(&key).encode();
            if let Ok(Some(token)) = PageToken::parse(&raw, "page_token") {
                prop_assert!(!token.last_key().chars().any(char::is_control), "{:?}", token.last_key());
            }
        }
    }
}
