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
    if trimmed.chars().any(is_format_char) {
        return Err(FieldViolation::new(
            field,
            "must not contain invisible format characters",
        ));
    }
    // Like a newline, these break a line in logs and terminals; unlike it they are not control characters.
    if trimmed.chars().any(|c| matches!(c, '\u{2028}' | '\u{2029}')) {
        return Err(FieldViolation::new(
            field,
            "must not contain line or paragraph separators",
        ));
    }
    Ok(trimmed.to_owned())
}

/// Whether `c` is an invisible format character: Unicode general category Cf (Unicode 16.0 table).
///
/// These render as nothing yet change what a person sees: a bidi override (U+202E) reverses the text
/// after it, zero-width characters hide inside words, tag characters smuggle text. No Hangul is in Cf.
fn is_format_char(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'                      // soft hyphen
            | '\u{0600}'..='\u{0605}'   // Arabic number signs
            | '\u{061C}'                // Arabic letter mark
            | '\u{06DD}'                // Arabic end of ayah
            | '\u{070F}'                // Syriac abbreviation mark
            | '\u{0890}'..='\u{0891}'   // Arabic pound and piastre marks above
            | '\u{08E2}'                // Arabic disputed end of ayah
            | '\u{180E}'                // Mongolian vowel separator
            | '\u{200B}'..='\u{200F}'   // zero-width space, non-joiner, joiner; LRM, RLM
            | '\u{202A}'..='\u{202E}'   // bidi embeddings and overrides
            | '\u{2060}'..='\u{2064}'   // word joiner, invisible operators
            | '\u{2066}'..='\u{206F}'   // bidi isolates, deprecated shaping controls
            | '\u{FEFF}'                // zero-width no-break space (byte order mark)
            | '\u{FFF9}'..='\u{FFFB}'   // interlinear annotation
            | '\u{110BD}'               // Kaithi number sign
            | '\u{110CD}'               // Kaithi number sign above
            | '\u{13430}'..='\u{1343F}' // Egyptian hieroglyph format controls
            | '\u{1BCA0}'..='\u{1BCA3}' // shorthand format controls
            | '\u{1D173}'..='\u{1D17A}' // musical symbol format controls
            | '\u{E0001}'               // language tag
            | '\u{E0020}'..='\u{E007F}' // tag characters
    )
}

/// Where the food goes: trimmed, 1..=200 characters, no control, format or line separator characters.
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

/// Why a call was cancelled: optional, trimmed, at most 200 characters, the same characters as a destination.
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
    use proptest::prelude::*;

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

    #[test]
    fn text_with_a_bidi_override_or_other_invisible_format_character_is_refused() {
        for hidden in [
            '\u{202E}',
            '\u{200B}',
            '\u{200D}',
            '\u{2066}',
            '\u{FEFF}',
            '\u{00AD}',
            '\u{E0041}',
        ] {
            let raw = format!("강남구 {hidden}1층");
            let err = Destination::parse(&raw, "destination").unwrap_err();
            assert_eq!(
                err.description, "must not contain invisible format characters",
                "{hidden:?}"
            );
            assert_eq!(CancelReason::parse(&raw, "reason").unwrap_err().field, "reason");
        }
    }

    #[test]
    fn text_with_a_line_or_paragraph_separator_inside_is_refused() {
        for separator in ['\u{2028}', '\u{2029}'] {
            let err = CancelReason::parse(&format!("late{separator}again"), "reason").unwrap_err();
            assert_eq!(err.description, "must not contain line or paragraph separators");
        }
    }

    #[test]
    fn korean_text_with_its_filler_characters_is_accepted() {
        let raw = "서울시 강남구 테헤란로 1, 배민빌딩 3층 (ㄱㄴ\u{3164}ㅏ)";
        assert_eq!(Destination::parse(raw, "destination").unwrap().as_str(), raw);
        assert_eq!(
            CancelReason::parse("손님 요청으로 취소", "reason").unwrap().as_str(),
            "손님 요청으로 취소"
        );
    }

    /// Any character, Korean, spaces and the characters text must refuse, mixed, up to past the limit.
    fn text_from_clients() -> impl Strategy<Value = String> {
        let hazards = prop::sample::select(vec![
            '\0',
            '\n',
            '\t',
            '\u{7F}',
            '\u{85}',
            '\u{AD}',
            '\u{61C}',
            '\u{180E}',
            '\u{200B}',
            '\u{200D}',
            '\u{200F}',
            '\u{202E}',
            '\u{2028}',
            '\u{2029}',
            '\u{2064}',
            '\u{2069}',
            '\u{FEFF}',
            '\u{FFFB}',
            '\u{E0001}',
            '\u{E007F}',
            '\u{3164}',
            '\u{A0}',
            '\u{3000}',
        ]);
        let character = prop_oneof![
            4 => prop::char::range('가', '힣'),
            2 => Just(' '),
            2 => any::<char>(),
            1 => hazards,
        ];
        prop::collection::vec(character, 0..260).prop_map(String::from_iter)
    }

    /// What every accepted text satisfies, whichever parser accepted it.
    fn assert_clean(text: &str) -> Result<(), TestCaseError> {
        prop_assert!(text.chars().count() <= 200, "{} characters", text.chars().count());
        prop_assert_eq!(text, text.trim());
        prop_assert!(!text.chars().any(char::is_control), "control character in {:?}", text);
        prop_assert!(!text.chars().any(is_format_char), "format character in {:?}", text);
        prop_assert!(!text.contains(['\u{2028}', '\u{2029}']), "separator in {:?}", text);
        Ok(())
    }

    proptest! {
        #[test]
        fn destination_parse_never_panics_and_accepts_only_clean_text(raw in text_from_clients()) {
            match Destination::parse(&raw, "destination") {
                Ok(destination) => {
                    prop_assert!(!destination.as_str().is_empty());
                    prop_assert_eq!(destination.as_str(), raw.trim());
                    assert_clean(destination.as_str())?;
                }
                Err(violation) => prop_assert_eq!(violation.field, "destination"),
            }
        }

        #[test]
        fn cancel_reason_parse_never_panics_and_accepts_only_clean_text(raw in text_from_clients()) {
            match CancelReason::parse(&raw, "reason") {
                Ok(reason) => {
                    prop_assert_eq!(reason.as_str(), raw.trim());
                    assert_clean(reason.as_str())?;
                }
                Err(violation) => prop_assert_eq!(violation.field, "reason"),
            }
        }

        #[test]
        fn text_parse_never_panics_on_any_string(raw in any::<String>()) {
            if let Ok(destination) = Destination::parse(&raw, "destination") {
                assert_clean(destination.as_str())?;
            }
            if let Ok(reason) = CancelReason::parse(&raw, "reason") {
                assert_clean(reason.as_str())?;
            }
        }

        #[test]
        fn a_format_character_anywhere_in_text_is_refused(
            before in "[가-힣a-z0-9 ]{0,20}",
            hidden in "\\p{Cf}",
            after in "[가-힣a-z0-9 ]{0,20}",
        ) {
            let raw = format!("{before}{hidden}{after}");
            let err = Destination::parse(&raw, "destination").unwrap_err();
            prop_assert_eq!(err.description, "must not contain invisible format characters");
        }

        #[test]
        fn korean_text_within_the_limit_is_accepted(raw in "[가-힣][가-힣ㄱ-ㅎㅏ-ㅣ\u{3164}0-9 ,.()-]{0,198}[가-힣0-9]") {
            let destination = Destination::parse(&raw, "destination").map(|d| d.as_str().to_owned());
            prop_assert_eq!(destination, Ok(raw.clone()));
            let reason = CancelReason::parse(&raw, "reason").map(|r| r.as_str().to_owned());
            prop_assert_eq!(reason, Ok(raw));
        }

        /// Checks the hand-written table against the Unicode tables that proptest's regex support carries.
        #[test]
        fn is_format_char_matches_unicode_general_category_cf(
            format in "\\p{Cf}",
            other in "\\P{Cf}",
        ) {
            for c in format.chars() {
                prop_assert!(is_format_char(c), "{:?} is Cf", c);
            }
            for c in other.chars() {
                prop_assert!(!is_format_char(c), "{:?} is not Cf", c);
            }
        }
    }
}
