//! Delivery receipts (SMPP 3.4 appendix B, 5.0 section 4.8.4.50), pure.
//!
//! A receipt names the message by the `receipted_message_id` TLV and its
//! outcome by the `message_state` TLV; when they are missing (many 3.4
//! SMSCs), both come from the text `id:… sub:… dlvrd:… submit date:… done
//! date:… stat:DELIVRD err:…`. SMSCs disagree on how they write an id:
//! some answer `submit_sm` with a hex id and put it in the receipt in
//! decimal, some pad with zeros, some change case. So an id is stored
//! normalised ([`normalise_id`]: lower case, no leading zeros) and a
//! receipt is matched against every reading of its id ([`candidates`]):
//! as written, and converted hex↔decimal.

/// What a receipt says of its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// A final failure (UNDELIV, REJECTD, EXPIRED, DELETED, UNKNOWN, SKIPPED).
    Failed,
    /// Not final (ENROUTE, ACCEPTD, SCHEDULED): nothing changes.
    Intermediate,
}

/// A parsed receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The id as the SMSC wrote it.
    pub message_id: String,
    pub outcome: Outcome,
    /// The state's name (`DELIVRD`, `UNDELIV`, …).
    pub stat: String,
    /// The `err:` field of the text, if any.
    pub err: String,
}

/// Reads a receipt from its TLVs (`receipted_message_id`, `message_state`)
/// and its text; `None` when no id can be found.
pub fn parse(tlv_id: Option<&str>, tlv_state: Option<u8>, text: &[u8]) -> Option<Receipt> {
    let text = String::from_utf8_lossy(text);
    let field = |name: &str| text_field(&text, name);
    let message_id = tlv_id
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        // `id:` with nothing after it names no message: matching it would
        // take any message the SMSC accepted with an empty id.
        .or_else(|| field("id").filter(|id| !id.is_empty()))?;
    let (outcome, stat) = match tlv_state {
        Some(state) => state_of_tlv(state),
        None => {
            let stat = field("stat").unwrap_or_default().to_ascii_uppercase();
            (outcome_of_stat(&stat), stat)
        }
    };
    Some(Receipt {
        message_id,
        outcome,
        stat,
        err: field("err").unwrap_or_default(),
    })
}

/// The `message_state` TLV values of SMPP 5.0 table 4-56 (same in 3.4).
fn state_of_tlv(state: u8) -> (Outcome, String) {
    let (outcome, stat) = match state {
        0 => (Outcome::Intermediate, "SCHEDULED"),
        1 => (Outcome::Intermediate, "ENROUTE"),
        2 => (Outcome::Delivered, "DELIVRD"),
        3 => (Outcome::Failed, "EXPIRED"),
        4 => (Outcome::Failed, "DELETED"),
        5 => (Outcome::Failed, "UNDELIV"),
        6 => (Outcome::Intermediate, "ACCEPTD"),
        8 => (Outcome::Failed, "REJECTD"),
        9 => (Outcome::Failed, "SKIPPED"),
        _ => (Outcome::Failed, "UNKNOWN"),
    };
    (outcome, stat.to_string())
}

fn outcome_of_stat(stat: &str) -> Outcome {
    match stat {
        "DELIVRD" | "DELIVERED" => Outcome::Delivered,
        "ENROUTE" | "ACCEPTD" | "ACCEPTED" | "SCHEDULED" | "" => Outcome::Intermediate,
        _ => Outcome::Failed,
    }
}

/// The value after `name:` in a receipt text, up to the next space; keys
/// match case-insensitively and only at the start of a word.
fn text_field(text: &str, name: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let key = format!("{name}:");
    let mut from = 0;
    while let Some(found) = lower[from..].find(&key) {
        let at = from + found;
        let starts_word = at == 0 || lower[..at].ends_with(char::is_whitespace);
        if starts_word {
            let rest = &text[at + key.len()..];
            let value: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
            return Some(value);
        }
        from = at + key.len();
    }
    None
}

/// The stored form of an SMSC message id: trimmed, lower case, without
/// leading zeros ("0" stays "0").
pub fn normalise_id(id: &str) -> String {
    let lower = id.trim().to_ascii_lowercase();
    let trimmed = lower.trim_start_matches('0');
    if trimmed.is_empty() && !lower.is_empty() {
        "0".to_string()
    } else {
        trimmed.to_string()
    }
}

/// Every normalised id a receipt's id may stand for, the id as written
/// first: its decimal reading in hex, and its hex reading in decimal.
pub fn candidates(id: &str) -> Vec<String> {
    let normal = normalise_id(id);
    let mut all = vec![normal.clone()];
    let mut push = |c: String| {
        if !all.contains(&c) {
            all.push(c);
        }
    };
    if !normal.is_empty()
        && normal.bytes().all(|b| b.is_ascii_digit())
        && let Ok(n) = normal.parse::<u128>()
    {
        push(format!("{n:x}"));
    }
    if !normal.is_empty()
        && normal.len() <= 32
        && normal.bytes().all(|b| b.is_ascii_hexdigit())
        && let Ok(n) = u128::from_str_radix(&normal, 16)
    {
        push(n.to_string());
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TEXT: &[u8] = b"id:0000A1B2 sub:001 dlvrd:001 submit date:2611270101 done date:2611270102 stat:DELIVRD err:000 Text:hello";

    #[test]
    fn the_text_gives_id_state_and_error() {
        let r = parse(None, None, TEXT).unwrap();
        assert_eq!(r.message_id, "0000A1B2");
        assert_eq!(r.outcome, Outcome::Delivered);
        assert_eq!(r.stat, "DELIVRD");
        assert_eq!(r.err, "000");
    }

    #[test]
    fn tlvs_win_over_the_text() {
        let r = parse(Some("77"), Some(5), TEXT).unwrap();
        assert_eq!(r.message_id, "77");
        assert_eq!(r.outcome, Outcome::Failed);
        assert_eq!(r.stat, "UNDELIV");
    }

    #[test]
    fn failures_and_intermediate_states_are_told_apart() {
        for (stat, outcome) in [
            ("UNDELIV", Outcome::Failed),
            ("rejectd", Outcome::Failed),
            ("EXPIRED", Outcome::Failed),
            ("ENROUTE", Outcome::Intermediate),
            ("ACCEPTD", Outcome::Intermediate),
        ] {
            let text = format!("id:1 sub:001 dlvrd:000 stat:{stat} err:001");
            assert_eq!(parse(None, None, text.as_bytes()).unwrap().outcome, outcome);
        }
    }

    #[test]
    fn a_receipt_without_an_id_is_not_a_receipt() {
        assert_eq!(parse(None, None, b"hello there"), None);
        // "dlvrd:" does not hide an "id:" key.
        assert_eq!(parse(None, None, b"dlvrd:001 stat:DELIVRD"), None);
    }

    #[test]
    fn ids_match_across_hex_decimal_case_and_zeros() {
        assert_eq!(normalise_id("00A1B2"), "a1b2");
        assert_eq!(normalise_id("000"), "0");
        assert!(candidates("41394").contains(&normalise_id("0000A1B2")));
        assert!(candidates("0xA1B2".trim_start_matches("0x")).contains(&"41394".to_string()));
        assert_eq!(candidates("zz-1")[0], "zz-1");
    }

    proptest! {
        #[test]
        fn a_number_is_found_from_either_writing(n in any::<u64>(), zeros in 0usize..4, upper in any::<bool>()) {
            let hex = format!("{}{n:x}", "0".repeat(zeros));
            let hex = if upper { hex.to_uppercase() } else { hex };
            let dec = format!("{}{n}", "0".repeat(zeros));
            // Submitted as hex, receipted in decimal, and the other way round.
            prop_assert!(candidates(&dec).contains(&normalise_id(&hex)));
            prop_assert!(candidates(&hex).contains(&normalise_id(&dec)));
        }

        #[test]
        fn the_text_id_round_trips(id in "[0-9A-Za-z]{1,20}") {
            let text = format!("id:{id} sub:001 dlvrd:001 submit date:2601010000 done date:2601010000 stat:UNDELIV err:001");
            let r = parse(None, None, text.as_bytes()).unwrap();
            prop_assert_eq!(r.message_id, id);
            prop_assert_eq!(r.outcome, Outcome::Failed);
        }
    }
}
