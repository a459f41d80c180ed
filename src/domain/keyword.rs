//! Keywords (spec section 5.4): the first word of an inbound message picks
//! the campaign on a short code. A [`Keyword`] is 1–20 ASCII letters and
//! digits, held upper-case because matching is case-insensitive. The words
//! that phones use to opt out, opt in or ask for help are reserved: they
//! route to the opt-out machinery, never to a campaign.

use std::fmt;

/// The words no campaign may register (spec section 5.4).
pub const RESERVED: [&str; 12] = [
    "STOP",
    "END",
    "CANCEL",
    "UNSUBSCRIBE",
    "QUIT",
    "STOPALL",
    "HELP",
    "INFO",
    "START",
    "UNSTOP",
    "YES",
    "Y",
];

/// The longest keyword, in characters.
pub const MAX_LEN: usize = 20;

/// A well-formed keyword, upper-case. It may still be reserved: callers
/// decide whether that means "not available" or an error.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Keyword(String);

/// Why a text is not a keyword a campaign can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeywordError {
    /// Empty, too long, or not only ASCII letters and digits.
    Malformed,
    /// One of [`RESERVED`].
    Reserved,
}

impl Keyword {
    /// Parses a keyword a campaign may register: well-formed and not reserved.
    pub fn parse(input: &str) -> Result<Keyword, KeywordError> {
        let keyword = Keyword::parse_any(input)?;
        if keyword.is_reserved() {
            return Err(KeywordError::Reserved);
        }
        Ok(keyword)
    }

    /// Parses a well-formed keyword, reserved or not (keyword.check answers
    /// "not available" for reserved words rather than an error).
    pub fn parse_any(input: &str) -> Result<Keyword, KeywordError> {
        let word = input.trim();
        if word.is_empty()
            || word.len() > MAX_LEN
            || !word.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(KeywordError::Malformed);
        }
        Ok(Keyword(word.to_ascii_uppercase()))
    }

    pub fn is_reserved(&self) -> bool {
        RESERVED.contains(&self.0.as_str())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Keyword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl KeywordError {
    /// A sentence a developer can act on, naming what was sent.
    pub fn explain(self, input: &str) -> String {
        match self {
            KeywordError::Malformed => {
                format!("keyword {input:?} must be 1–{MAX_LEN} letters and digits (A–Z, 0–9)")
            }
            KeywordError::Reserved => format!(
                "keyword {:?} is reserved (STOP, END, CANCEL, UNSUBSCRIBE, QUIT, STOPALL, HELP, INFO, START, UNSTOP, YES, Y)",
                input.trim().to_ascii_uppercase()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_upper_cased_letters_and_digits() {
        assert_eq!(Keyword::parse("paulf").unwrap().as_str(), "PAULF");
        assert_eq!(Keyword::parse(" Sale2024 ").unwrap().as_str(), "SALE2024");
        assert_eq!(Keyword::parse("a").unwrap().as_str(), "A");
        assert_eq!(
            Keyword::parse(&"k".repeat(20)).unwrap().as_str(),
            "K".repeat(20)
        );
    }

    #[test]
    fn malformed_keywords_are_rejected() {
        for input in [
            "",
            "   ",
            "two words",
            "dash-ed",
            "ünï",
            "x".repeat(21).as_str(),
            "a_b",
        ] {
            assert_eq!(
                Keyword::parse(input),
                Err(KeywordError::Malformed),
                "{input:?}"
            );
        }
    }

    #[test]
    fn reserved_words_are_never_available_in_any_case() {
        for word in RESERVED {
            assert_eq!(Keyword::parse(word), Err(KeywordError::Reserved), "{word}");
            let lower = word.to_ascii_lowercase();
            assert_eq!(
                Keyword::parse(&lower),
                Err(KeywordError::Reserved),
                "{lower}"
            );
            assert!(Keyword::parse_any(&lower).unwrap().is_reserved());
        }
        // Words that merely start like a reserved one are fine.
        assert!(Keyword::parse("STOPS").is_ok());
        assert!(Keyword::parse("YESNO").is_ok());
    }

    #[test]
    fn errors_explain_themselves() {
        assert!(KeywordError::Malformed.explain("a-b").contains("\"a-b\""));
        assert!(
            KeywordError::Reserved
                .explain("stop")
                .contains("\"STOP\" is reserved")
        );
    }
}
