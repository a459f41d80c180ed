//! Phone numbers and senders (spec section 4): parsed once, at the edge,
//! into values that are known to be valid.

use std::fmt;

use rlibphonenumber::enums::Region;
use rlibphonenumber::{PhoneNumber as Parsed, PhoneNumberType};

/// A recipient's number as E.164 digits without the `+` (`13108675309`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhoneNumber(String);

/// What kind of line a number is, as far as numbering plans tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineType {
    /// Mobile, or geographic North American (which plans cannot tell apart).
    Mobile,
    /// A type that cannot receive messages: fixed line, toll-free, premium,
    /// shared-cost, pager.
    CannotReceive,
    /// Valid but of a type numbering plans do not say.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhoneError {
    /// Not a phone number at all.
    Unparseable,
}

/// A sender: a short code (5–6 digits) or a phone number.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Sender {
    ShortCode(String),
    Number(PhoneNumber),
}

impl PhoneNumber {
    /// Parses what a client sent: 10-digit North American numbers, 11 digits
    /// with the leading 1, E.164 with `+`, with spaces, dashes, dots and
    /// parentheses; other countries in E.164.
    pub fn parse(input: &str, region: Region) -> Result<PhoneNumber, PhoneError> {
        let trimmed = input.trim();
        if trimmed.is_empty() || trimmed.len() > 40 {
            return Err(PhoneError::Unparseable);
        }
        // Only digits and the separators people write; letters are never a number here.
        if !trimmed
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '.' | '(' | ')' | '+'))
        {
            return Err(PhoneError::Unparseable);
        }
        let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
        let plus = trimmed.starts_with('+');
        if trimmed.matches('+').count() > usize::from(plus) {
            return Err(PhoneError::Unparseable);
        }
        // North American forms first: they are what the old clients send, and
        // they must work for fictional 555 numbers too (the sandbox uses them).
        if region == Region::US || region == Region::CA {
            let national = match digits.len() {
                10 if !plus => Some(&digits[..]),
                11 if digits.starts_with('1') => Some(&digits[1..]),
                _ => None,
            };
            if let Some(national) = national {
                return if is_nanp_national(national) {
                    Ok(PhoneNumber(format!("1{national}")))
                } else {
                    Err(PhoneError::Unparseable)
                };
            }
        }
        let parsed = Parsed::parse(trimmed, Some(region)).map_err(|_| PhoneError::Unparseable)?;
        if !parsed.is_valid() {
            return Err(PhoneError::Unparseable);
        }
        let e164 = parsed.to_string();
        Ok(PhoneNumber(e164.trim_start_matches('+').to_string()))
    }

    /// Rebuilds a number from stored E.164 digits.
    pub fn from_e164_digits(digits: &str) -> PhoneNumber {
        PhoneNumber(digits.to_string())
    }

    pub fn digits(&self) -> &str {
        &self.0
    }

    pub fn is_north_american(&self) -> bool {
        self.0.len() == 11 && self.0.starts_with('1')
    }

    /// The line type (spec section 3, code 602).
    pub fn line_type(&self) -> LineType {
        if self.is_north_american() {
            let area = &self.0[1..4];
            // Toll-free and premium area codes of the North American plan.
            return match area {
                "800" | "833" | "844" | "855" | "866" | "877" | "888" | "900" => {
                    LineType::CannotReceive
                }
                _ => LineType::Mobile,
            };
        }
        let Ok(parsed) = Parsed::parse(format!("+{}", self.0), None) else {
            return LineType::Unknown;
        };
        match parsed.get_type() {
            PhoneNumberType::Mobile | PhoneNumberType::FixedLineOrMobile => LineType::Mobile,
            PhoneNumberType::FixedLine
            | PhoneNumberType::TollFree
            | PhoneNumberType::PremiumRate
            | PhoneNumberType::SharedCost
            | PhoneNumberType::Pager => LineType::CannotReceive,
            _ => LineType::Unknown,
        }
    }
}

/// NANP national number: NPA and NXX both start with 2–9.
fn is_nanp_national(national: &str) -> bool {
    let b = national.as_bytes();
    b.len() == 10 && b.iter().all(u8::is_ascii_digit) && b[0] >= b'2' && b[3] >= b'2'
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Sender {
    /// A short code of 5–6 digits, or a phone number.
    pub fn parse(input: &str, region: Region) -> Option<Sender> {
        let trimmed = input.trim();
        if (5..=6).contains(&trimmed.len()) && trimmed.bytes().all(|b| b.is_ascii_digit()) {
            return Some(Sender::ShortCode(trimmed.to_string()));
        }
        PhoneNumber::parse(trimmed, region).ok().map(Sender::Number)
    }

    /// The digits stored and compared: the short code, or E.164 digits.
    pub fn digits(&self) -> &str {
        match self {
            Sender::ShortCode(code) => code,
            Sender::Number(number) => number.digits(),
        }
    }

    pub fn is_short_code(&self) -> bool {
        matches!(self, Sender::ShortCode(_))
    }
}

/// Parses a configured region code such as `US`.
pub fn parse_region(code: &str) -> Option<Region> {
    let region = code.trim().to_ascii_uppercase().parse::<Region>().ok()?;
    // `ZZ` and other codes parse but have no numbering plan.
    rlibphonenumber::PHONE_NUMBER_UTIL
        .get_supported_regions()
        .any(|r| r == region)
        .then_some(region)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(input: &str) -> Result<PhoneNumber, PhoneError> {
        PhoneNumber::parse(input, Region::US)
    }

    #[test]
    fn north_american_forms_normalise_to_e164_digits() {
        for input in [
            "3108675309",
            "13108675309",
            "+13108675309",
            "(310) 867-5309",
            "310.867.5309",
            "+1 310-867-5309",
        ] {
            assert_eq!(us(input).unwrap().digits(), "13108675309", "{input}");
        }
    }

    #[test]
    fn fictional_555_numbers_parse() {
        assert_eq!(us("310-555-0600").unwrap().digits(), "13105550600");
    }

    #[test]
    fn garbage_is_rejected() {
        for input in [
            "",
            "12",
            "abc",
            "310867530x",
            "0108675309",
            "++13108675309",
            "1-800-FLOWERS",
        ] {
            assert!(us(input).is_err(), "{input}");
        }
    }

    #[test]
    fn other_countries_in_e164() {
        assert_eq!(us("+44 7911 123456").unwrap().digits(), "447911123456");
        assert_eq!(us("+447911123456").unwrap().line_type(), LineType::Mobile);
        assert_eq!(
            us("+442079460000").unwrap().line_type(),
            LineType::CannotReceive
        );
    }

    #[test]
    fn toll_free_cannot_receive() {
        assert_eq!(
            us("8005551234").unwrap().line_type(),
            LineType::CannotReceive
        );
        assert_eq!(us("3108675309").unwrap().line_type(), LineType::Mobile);
    }

    #[test]
    fn senders_are_short_codes_or_numbers() {
        assert_eq!(
            Sender::parse("21534", Region::US),
            Some(Sender::ShortCode("21534".into()))
        );
        assert!(matches!(
            Sender::parse("3108675309", Region::US),
            Some(Sender::Number(_))
        ));
        assert_eq!(Sender::parse("1234", Region::US), None);
    }

    #[test]
    fn region_codes_parse() {
        assert_eq!(parse_region("us"), Some(Region::US));
        assert_eq!(parse_region("zz"), None);
    }
}
