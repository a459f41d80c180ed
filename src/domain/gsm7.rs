//! The GSM 03.38 default alphabet: which characters a GSM text can carry,
//! and the septet of each. One table serves both the segment count
//! ([`super::message_body`]) and the SMPP encoding, so they never disagree.

/// The basic table in septet order; 0x1B (the escape) is a placeholder
/// that never matches a character.
pub const BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1b}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à',
];

/// The extension table: (septet after the escape, character).
pub const EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{c}'),
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// The septet that announces a character of the extension table.
pub const ESCAPE: u8 = 0x1B;

/// How a character is written in GSM 03.38.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Septet {
    /// This septet of the basic table.
    Basic(u8),
    /// The escape, then this septet of the extension table.
    Extended(u8),
}

impl Septet {
    /// Septets it takes on the air.
    pub fn septets(self) -> usize {
        match self {
            Septet::Basic(_) => 1,
            Septet::Extended(_) => 2,
        }
    }
}

/// The septet of `c`; `None` when GSM 03.38 has no such character.
pub fn septet(c: char) -> Option<Septet> {
    if c.is_ascii() {
        return match ASCII[c as usize] {
            NONE => None,
            s if s & EXTENDED != 0 => Some(Septet::Extended(s & !EXTENDED)),
            s => Some(Septet::Basic(s)),
        };
    }
    // The few letters beyond ASCII (accented, Greek) and the euro sign.
    searched(c)
}

/// The septet of `c`, found by searching the tables: what [`ASCII`] holds
/// for each ASCII character.
fn searched(c: char) -> Option<Septet> {
    if c != '\u{1b}'
        && let Some(at) = BASIC.iter().position(|b| *b == c)
    {
        return Some(Septet::Basic(at as u8));
    }
    EXTENSION
        .iter()
        .find(|(_, e)| *e == c)
        .map(|(code, _)| Septet::Extended(*code))
}

/// The septet of every ASCII character, found by one look-up: texts are
/// mostly ASCII, and searching the tables for each character was a
/// measurable part of accepting a send.
const ASCII: [u8; 128] = ascii_septets();
/// In [`ASCII`]: no septet.
const NONE: u8 = 0xFF;
/// In [`ASCII`]: the septet is of the extension table.
const EXTENDED: u8 = 0x80;

const fn ascii_septets() -> [u8; 128] {
    let mut table = [NONE; 128];
    let mut at = 0;
    while at < BASIC.len() {
        let c = BASIC[at] as usize;
        if c < 128 && at != ESCAPE as usize {
            table[c] = at as u8;
        }
        at += 1;
    }
    let mut i = 0;
    while i < EXTENSION.len() {
        let (code, c) = EXTENSION[i];
        if (c as usize) < 128 {
            table[c as usize] = EXTENDED | code;
        }
        i += 1;
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_look_up_agrees_with_the_tables_for_every_character_they_hold_and_ascii() {
        let held = BASIC.iter().chain(EXTENSION.iter().map(|(_, c)| c));
        for c in held.copied().chain((0u8..128).map(char::from)) {
            assert_eq!(septet(c), searched(c), "{c:?}");
        }
    }

    #[test]
    fn the_escape_itself_and_characters_beyond_the_tables_have_none() {
        for c in ['\u{1b}', '`', '\t', 'ж', '😀', 'ç'] {
            assert_eq!(septet(c), None, "{c:?}");
        }
        assert_eq!(septet('@'), Some(Septet::Basic(0)));
        assert_eq!(septet('€'), Some(Septet::Extended(0x65)));
        assert_eq!(septet('['), Some(Septet::Extended(0x3C)));
        assert_eq!(septet('[').map(Septet::septets), Some(2));
    }
}
