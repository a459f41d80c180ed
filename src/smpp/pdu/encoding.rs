//! Message text as SMPP carries it (GSM 03.38 / 3GPP TS 23.040), pure.
//!
//! Outbound, a text goes in the GSM 7-bit default alphabet (`data_coding`
//! 0x00, one septet per octet, as SMSCs expect over SMPP) when every
//! character fits, else in UCS-2 (`data_coding` 0x08, UTF-16 big-endian).
//! A text longer than one segment is cut exactly where
//! [`crate::domain::message_body`] counts its segments (153 septets or 67
//! units a part, never splitting an escape pair or a surrogate pair), and
//! each part starts with a 6-octet user data header: the concatenation
//! element with an 8-bit reference, the part count and the part number.
//! Inbound, the same header (8- or 16-bit reference) is recognised and
//! the text decoded from GSM (unpacked), Latin-1/IA5 or UCS-2.
//! [`pack_septets`]/[`unpack_septets`] give the packed form for links
//! that need it.

use crate::domain::gsm7::{self, BASIC, ESCAPE, EXTENSION, Septet};
use crate::domain::message_body::{Encoding, MAX_SEGMENTS, encoding_of};

/// `data_coding` for the SMSC default alphabet (GSM 03.38).
pub const DATA_CODING_GSM: u8 = 0x00;
/// `data_coding` for UCS-2.
pub const DATA_CODING_UCS2: u8 = 0x08;

/// A text ready for `submit_sm`: its `data_coding` and one `short_message`
/// per segment (with its header when there are several).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    pub data_coding: u8,
    /// True when the segments carry a user data header (set `esm_class` UDHI).
    pub udhi: bool,
    pub segments: Vec<Vec<u8>>,
}

/// Appends the units of `c` (GSM septets, one octet each, or UTF-16 code
/// units, big-endian) to `out`; returns how many it appended.
fn push_units(c: char, encoding: Encoding, out: &mut Vec<u8>) -> usize {
    match encoding {
        Encoding::Gsm7 => match gsm7::septet(c) {
            Some(Septet::Basic(s)) => {
                out.push(s);
                1
            }
            Some(Septet::Extended(s)) => {
                out.extend([ESCAPE, s]);
                2
            }
            // Not reached: a text goes in GSM only when every character has a septet.
            None => {
                out.push(b'?');
                1
            }
        },
        Encoding::Ucs2 => {
            let mut buf = [0u16; 2];
            let units = c.encode_utf16(&mut buf);
            for unit in units.iter() {
                out.extend(unit.to_be_bytes());
            }
            units.len()
        }
    }
}

/// Encodes `text` in segments; `reference` ties the parts of one message
/// together (keep it the same when a part is sent again).
pub fn encode(text: &str, reference: u8) -> Encoded {
    let encoding = encoding_of(text);
    // Lengths in units: GSM counts septets (one octet each here), UCS-2 counts
    // 16-bit units (two octets each).
    let (single, part, unit_bytes, data_coding) = match encoding {
        Encoding::Gsm7 => (160, 153, 1, DATA_CODING_GSM),
        Encoding::Ucs2 => (70, 67, 2, DATA_CODING_UCS2),
    };
    // One pass: the units of the whole text, and where parts of `part`
    // units would start (a character that does not fit whole starts the
    // next one, as the segment count cuts).
    let mut whole = Vec::with_capacity(text.len() * unit_bytes);
    let (mut total, mut used, mut cuts) = (0, 0, Vec::new());
    for c in text.chars() {
        let start = whole.len();
        let units = push_units(c, encoding, &mut whole);
        if used + units > part {
            cuts.push(start);
            used = 0;
        }
        used += units;
        total += units;
    }
    if total <= single {
        return Encoded {
            data_coding,
            udhi: false,
            segments: vec![whole],
        };
    }
    let bounds: Vec<usize> = std::iter::once(0)
        .chain(cuts)
        .chain(std::iter::once(whole.len()))
        .collect();
    let parts: Vec<&[u8]> = bounds.windows(2).map(|w| &whole[w[0]..w[1]]).collect();
    let count = parts.len().min(255) as u8;
    let segments = parts
        .into_iter()
        .enumerate()
        .map(|(i, payload)| {
            let mut sm = vec![0x05, 0x00, 0x03, reference, count, (i + 1) as u8];
            sm.extend_from_slice(payload);
            sm
        })
        .collect();
    Encoded {
        data_coding,
        udhi: true,
        segments,
    }
}

/// The concatenation header of an inbound part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Concat {
    pub reference: u16,
    pub total: u8,
    pub number: u8,
}

/// An inbound `short_message` decoded: its concatenation header, if any,
/// and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub concat: Option<Concat>,
    pub text: String,
}

/// Decodes an inbound `short_message` (`udhi`: the `esm_class` UDHI bit).
pub fn decode(data_coding: u8, udhi: bool, bytes: &[u8]) -> Decoded {
    let (concat, payload) = if udhi {
        split_udh(bytes)
    } else {
        (None, bytes)
    };
    let text = match data_coding {
        DATA_CODING_UCS2 => decode_ucs2(payload),
        // IA5 (ASCII) and Latin-1: one octet, one character.
        0x01 | 0x03 => payload.iter().map(|b| char::from(*b)).collect(),
        0x00 | 0xF0..=0xF3 => decode_gsm(payload),
        _ => String::from_utf8_lossy(payload).into_owned(),
    };
    Decoded { concat, text }
}

/// Separates the user data header from the payload.
fn split_udh(bytes: &[u8]) -> (Option<Concat>, &[u8]) {
    let Some(&len) = bytes.first() else {
        return (None, bytes);
    };
    let end = 1 + usize::from(len);
    if end > bytes.len() {
        return (None, bytes);
    }
    let mut concat = None;
    let mut at = 1;
    while at + 1 < end {
        let (iei, ie_len) = (bytes[at], usize::from(bytes[at + 1]));
        let data = &bytes[(at + 2).min(end)..(at + 2 + ie_len).min(end)];
        match (iei, data) {
            (0x00, [reference, total, number]) => {
                concat = Some(Concat {
                    reference: u16::from(*reference),
                    total: *total,
                    number: *number,
                })
            }
            (0x08, [hi, lo, total, number]) => {
                concat = Some(Concat {
                    reference: u16::from_be_bytes([*hi, *lo]),
                    total: *total,
                    number: *number,
                })
            }
            _ => {}
        }
        at += 2 + ie_len;
    }
    (concat, &bytes[end..])
}

fn decode_ucs2(bytes: &[u8]) -> String {
    let units: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|p| u16::from_be_bytes([p[0], p[1]]))
        .collect();
    String::from_utf16_lossy(&units)
}

/// Decodes unpacked septets (one per octet).
pub fn decode_gsm(septets: &[u8]) -> String {
    let mut text = String::with_capacity(septets.len());
    let mut escaped = false;
    for &s in septets {
        let s = s & 0x7F;
        if escaped {
            escaped = false;
            match EXTENSION.iter().find(|(code, _)| *code == s) {
                Some((_, c)) => text.push(*c),
                // An unknown extension shows the basic character (23.038).
                None => text.push(BASIC[usize::from(s)]),
            }
        } else if s == ESCAPE {
            escaped = true;
        } else {
            text.push(BASIC[usize::from(s)]);
        }
    }
    text
}

/// Packs septets eight to seven octets (3GPP TS 23.038 section 6.1.2.1).
pub fn pack_septets(septets: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(septets.len() * 7 / 8 + 1);
    let mut acc: u16 = 0;
    let mut bits = 0;
    for &s in septets {
        acc |= u16::from(s & 0x7F) << bits;
        bits += 7;
        while bits >= 8 {
            out.push((acc & 0xFF) as u8);
            acc >>= 8;
            bits -= 8;
        }
    }
    if bits > 0 {
        out.push((acc & 0xFF) as u8);
    }
    out
}

/// Unpacks `count` septets from packed octets.
pub fn unpack_septets(octets: &[u8], count: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(count);
    let mut acc: u16 = 0;
    let mut bits = 0;
    for &o in octets {
        acc |= u16::from(o) << bits;
        bits += 8;
        while bits >= 7 && out.len() < count {
            out.push((acc & 0x7F) as u8);
            acc >>= 7;
            bits -= 7;
        }
    }
    out
}

/// The most segments [`encode`] produces for an accepted message.
pub const fn max_segments() -> usize {
    MAX_SEGMENTS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::message_body::MessageBody;
    use proptest::prelude::*;

    #[test]
    fn short_gsm_text_is_one_unpacked_segment() {
        let e = encode("Hi @ 5€", 7);
        assert_eq!(e.data_coding, 0);
        assert!(!e.udhi);
        assert_eq!(
            e.segments,
            vec![vec![0x48, 0x69, 0x20, 0x00, 0x20, 0x35, 0x1B, 0x65]]
        );
    }

    #[test]
    fn long_ucs2_text_gets_headers_of_one_reference() {
        let text = "ж".repeat(150);
        let e = encode(&text, 42);
        assert_eq!(e.data_coding, 8);
        assert!(e.udhi);
        assert_eq!(e.segments.len(), 3);
        for (i, s) in e.segments.iter().enumerate() {
            assert_eq!(&s[..6], &[5, 0, 3, 42, 3, i as u8 + 1]);
        }
        assert_eq!(e.segments[0].len(), 6 + 134);
        assert_eq!(e.segments[2].len(), 6 + 16 * 2);
    }

    #[test]
    fn packing_matches_the_textbook_example() {
        // "hellohello" packed, from 3GPP TS 23.038 examples.
        let septets: Vec<u8> = "hellohello".bytes().collect();
        assert_eq!(hex::encode(pack_septets(&septets)), "e8329bfd4697d9ec37");
    }

    #[test]
    fn a_sixteen_bit_reference_is_read() {
        let bytes = [6, 0x08, 4, 0x12, 0x34, 2, 1, b'h', b'i'];
        let d = decode(0, true, &bytes);
        assert_eq!(
            d.concat,
            Some(Concat {
                reference: 0x1234,
                total: 2,
                number: 1
            })
        );
        assert_eq!(d.text, "hi");
    }

    proptest! {
        #[test]
        fn segments_agree_with_the_counted_segments(text in any::<String>(), reference in any::<u8>()) {
            let counted = MessageBody::measure(&text).segments().max(1);
            prop_assume!(counted <= max_segments());
            let e = encode(&text, reference);
            prop_assert_eq!(e.segments.len(), counted);
            // Every part fits a short_message and decodes back to the text.
            let mut joined = String::new();
            for s in &e.segments {
                prop_assert!(s.len() <= 140 || e.data_coding == DATA_CODING_GSM && s.len() <= 166);
                let d = decode(e.data_coding, e.udhi, s);
                prop_assert_eq!(d.concat.map(|c| c.reference), e.udhi.then_some(u16::from(reference)));
                joined.push_str(&d.text);
            }
            prop_assert_eq!(joined, text);
        }

        #[test]
        fn packing_round_trips(septets in proptest::collection::vec(0u8..128, 0..400)) {
            let packed = pack_septets(&septets);
            prop_assert_eq!(packed.len(), (septets.len() * 7).div_ceil(8));
            prop_assert_eq!(unpack_septets(&packed, septets.len()), septets);
        }
    }
}
