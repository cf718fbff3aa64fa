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

impl PageToken {
    /// The token that resumes after the item with key `last_key`.
    pub fn after(last_key: &str) -> Self {
        Self(last_key.to_owned())
    }

    /// Parses `page_token`; empty means the first page.
    pub fn parse(raw: &str, field: &str) -> Result<Option<Self>, FieldViolation> {
        if raw.is_empty() {
            return Ok(None);
        }
        let invalid = || FieldViolation::new(field, "is not a token returned by this service");
        let hex = raw.strip_prefix(PREFIX).ok_or_else(invalid)?;
        if hex.len() % 2 != 0 || hex.len() > 512 {
            return Err(invalid());
        }
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| invalid())?;
        String::from_utf8(bytes)
            .map(|key| Some(Self(key)))
            .map_err(|_| invalid())
    }

    /// The sort key of the last item of the previous page.
    pub fn last_key(&self) -> &str {
        &self.0
    }

    /// The opaque form sent to clients.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(PREFIX.len() + self.0.len() * 2);
        out.push_str(PREFIX);
        for b in self.0.bytes() {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
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
}
