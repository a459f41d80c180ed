//! Message text and its cost in SMS segments (spec section 7).
//!
//! A text is sent in GSM 03.38 when every character is in the GSM basic
//! table or its extension table (an extension character costs two septets:
//! the escape and the character), else in UCS-2, where a character outside
//! the Basic Multilingual Plane costs two UTF-16 units. One segment carries
//! 160 septets or 70 units; a longer text is split into concatenated
//! segments of 153 septets or 67 units each (the rest is the concatenation
//! header), never splitting an escape pair or a surrogate pair. More than
//! [`MAX_SEGMENTS`] is refused (code 607).

use super::gsm7::{self, Septet};

/// The most segments one message may take.
pub const MAX_SEGMENTS: usize = 10;

/// How a text goes over the air.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Gsm7,
    Ucs2,
}

/// A text that fits in at most [`MAX_SEGMENTS`] segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageBody {
    text: String,
    encoding: Encoding,
    /// Septets (GSM) or UTF-16 units (UCS-2).
    units: usize,
    segments: usize,
}

/// Why a text cannot be sent as one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// It would take this many segments.
    TooLong { segments: usize },
}

impl MessageBody {
    /// Measures `text`; refuses it when it needs more than [`MAX_SEGMENTS`].
    pub fn parse(text: &str) -> Result<MessageBody, BodyError> {
        let body = MessageBody::measure(text);
        if body.segments > MAX_SEGMENTS {
            return Err(BodyError::TooLong {
                segments: body.segments,
            });
        }
        Ok(body)
    }

    /// Measures `text` without a limit.
    pub fn measure(text: &str) -> MessageBody {
        let encoding = encoding_of(text);
        let (single, part) = match encoding {
            Encoding::Gsm7 => (160, 153),
            Encoding::Ucs2 => (70, 67),
        };
        let (units, parts) = packed(text.chars().map(|c| cost(c, encoding)), part);
        let segments = match units {
            0 => 0,
            units if units <= single => 1,
            _ => parts,
        };
        MessageBody {
            text: text.to_string(),
            encoding,
            units,
            segments,
        }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    /// Septets (GSM) or UTF-16 units (UCS-2).
    pub fn units(&self) -> usize {
        self.units
    }

    /// Segments on the air; 0 for an empty text.
    pub fn segments(&self) -> usize {
        self.segments
    }
}

/// GSM 03.38 when every character fits, else UCS-2.
pub fn encoding_of(text: &str) -> Encoding {
    if text.chars().all(|c| gsm7::septet(c).is_some()) {
        Encoding::Gsm7
    } else {
        Encoding::Ucs2
    }
}

fn cost(c: char, encoding: Encoding) -> usize {
    match encoding {
        Encoding::Gsm7 => gsm7::septet(c).map_or(1, Septet::septets),
        Encoding::Ucs2 => c.len_utf16(),
    }
}

/// The units of characters of the given costs, and the parts of `part`
/// units they take when packed greedily without splitting a character.
fn packed(costs: impl Iterator<Item = usize>, part: usize) -> (usize, usize) {
    let (mut units, mut used, mut parts) = (0, 0, 1);
    for c in costs {
        if used + c > part {
            parts += 1;
            used = 0;
        }
        used += c;
        units += c;
    }
    (units, parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn segments_of(text: &str) -> usize {
        MessageBody::measure(text).segments()
    }

    #[test]
    fn plain_ascii_is_gsm() {
        let body = MessageBody::parse("Hello, world!").unwrap();
        assert_eq!(body.encoding(), Encoding::Gsm7);
        assert_eq!(body.units(), 13);
        assert_eq!(body.segments(), 1);
    }

    #[test]
    fn extension_characters_cost_two_septets() {
        let body = MessageBody::measure("€[]");
        assert_eq!(body.encoding(), Encoding::Gsm7);
        assert_eq!(body.units(), 6);
        assert_eq!(segments_of(&"€".repeat(80)), 1);
        assert_eq!(segments_of(&format!("{}a", "€".repeat(80))), 2);
    }

    #[test]
    fn gsm_limits_are_160_then_153() {
        assert_eq!(segments_of(&"a".repeat(160)), 1);
        assert_eq!(segments_of(&"a".repeat(161)), 2);
        assert_eq!(segments_of(&"a".repeat(306)), 2);
        assert_eq!(segments_of(&"a".repeat(307)), 3);
        assert_eq!(segments_of(&"a".repeat(1530)), 10);
        assert_eq!(
            MessageBody::parse(&"a".repeat(1531)),
            Err(BodyError::TooLong { segments: 11 })
        );
    }

    #[test]
    fn escape_pair_is_not_split_across_segments() {
        // 152 septets then a 2-septet character: it moves to the second part.
        let text = format!("{}€{}", "a".repeat(152), "a".repeat(10));
        assert_eq!(segments_of(&text), 2);
        let text = format!("{}€{}", "a".repeat(152), "a".repeat(152));
        assert_eq!(segments_of(&text), 3);
    }

    #[test]
    fn anything_else_is_ucs2_with_70_then_67() {
        let body = MessageBody::measure("Привет");
        assert_eq!(body.encoding(), Encoding::Ucs2);
        assert_eq!(body.units(), 6);
        assert_eq!(segments_of(&"ж".repeat(70)), 1);
        assert_eq!(segments_of(&"ж".repeat(71)), 2);
        assert_eq!(segments_of(&"ж".repeat(134)), 2);
        assert_eq!(segments_of(&"ж".repeat(670)), 10);
        assert!(MessageBody::parse(&"ж".repeat(671)).is_err());
    }

    #[test]
    fn one_non_gsm_character_makes_the_whole_text_ucs2() {
        let body = MessageBody::measure(&format!("{}ж", "a".repeat(100)));
        assert_eq!(body.encoding(), Encoding::Ucs2);
        assert_eq!(body.segments(), 2);
    }

    #[test]
    fn characters_outside_the_bmp_count_two() {
        let body = MessageBody::measure("😀");
        assert_eq!(body.encoding(), Encoding::Ucs2);
        assert_eq!(body.units(), 2);
        assert_eq!(segments_of(&"😀".repeat(35)), 1);
        assert_eq!(segments_of(&"😀".repeat(36)), 2);
        // 66 units then a pair: the pair moves to the next part, not split.
        let text = format!("{}😀{}", "ж".repeat(66), "ж".repeat(10));
        assert_eq!(segments_of(&text), 2);
    }

    #[test]
    fn empty_text_takes_no_segment() {
        assert_eq!(segments_of(""), 0);
    }

    proptest! {
        #[test]
        fn segments_match_the_arithmetic_for_uniform_costs(
            n in 0usize..2000,
            kind in 0u8..3,
        ) {
            let (c, per_unit) = match kind { 0 => ('a', 1), 1 => ('€', 2), _ => ('ж', 1) };
            let text: String = std::iter::repeat_n(c, n).collect();
            let body = MessageBody::measure(&text);
            let units = n * per_unit;
            prop_assert_eq!(body.units(), units);
            let (single, part) = if kind == 2 { (70, 67) } else { (160, 153) };
            let per_part = part / per_unit;
            let expected = if n == 0 { 0 } else if units <= single { 1 } else { n.div_ceil(per_part) };
            prop_assert_eq!(body.segments(), expected);
        }

        #[test]
        fn any_text_measures_consistently(text in any::<String>()) {
            let body = MessageBody::measure(&text);
            let (single, part) = match body.encoding() {
                Encoding::Gsm7 => (160, 153),
                Encoding::Ucs2 => (70, 67),
            };
            let units = body.units();
            if units == 0 {
                prop_assert_eq!(body.segments(), 0);
            } else if units <= single {
                prop_assert_eq!(body.segments(), 1);
            } else {
                // Parts are full but for at most one unit left over by a two-unit character.
                prop_assert!(body.segments() >= units.div_ceil(part));
                prop_assert!(body.segments() <= units.div_ceil(part - 1));
            }
            if body.encoding() == Encoding::Ucs2 {
                prop_assert_eq!(body.units(), text.encode_utf16().count());
            }
            prop_assert_eq!(MessageBody::parse(&text).is_ok(), body.segments() <= MAX_SEGMENTS);
        }
    }
}
