//! Opt-in status of a number for one campaign (spec section 5.3). The store
//! keeps no row for UNSEEN, so sends that opt a number in can tell a number
//! never seen from one that answered.

use std::fmt;

/// One of the four states of spec section 5.3's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OptStatus {
    /// -1: never seen by the campaign.
    Unseen,
    /// 0: asked to join (double opt-in prompt sent), not confirmed.
    Grey,
    /// 1: opted in.
    OptedIn,
    /// -2: opted out (texted STOP, or set through the API).
    OptedOut,
}

impl OptStatus {
    pub const ALL: [OptStatus; 4] = [
        OptStatus::Unseen,
        OptStatus::Grey,
        OptStatus::OptedIn,
        OptStatus::OptedOut,
    ];

    /// The `status_code` of the API and the value stored in `opt_status`.
    pub fn code(self) -> i64 {
        match self {
            OptStatus::Unseen => -1,
            OptStatus::Grey => 0,
            OptStatus::OptedIn => 1,
            OptStatus::OptedOut => -2,
        }
    }

    /// The label shown next to the code.
    pub fn label(self) -> &'static str {
        match self {
            OptStatus::Unseen => "UNSEEN",
            OptStatus::Grey => "GREY",
            OptStatus::OptedIn => "OPTEDIN",
            OptStatus::OptedOut => "OPTEDOUT",
        }
    }

    pub fn from_code(code: i64) -> Option<OptStatus> {
        OptStatus::ALL.into_iter().find(|s| s.code() == code)
    }

    /// Parses a `status_code` parameter (`1`, `-2`, `0`, `-1`).
    pub fn parse(input: &str) -> Option<OptStatus> {
        let input = input.trim();
        // Only an optional minus and digits: `+1` or `1.0` are not codes.
        let digits = input.strip_prefix('-').unwrap_or(input);
        if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        input.parse().ok().and_then(OptStatus::from_code)
    }

    /// A stored value; an absent row is UNSEEN, and so is a value no
    /// version of the schema writes.
    pub fn from_stored(code: Option<i64>) -> OptStatus {
        code.and_then(OptStatus::from_code)
            .unwrap_or(OptStatus::Unseen)
    }
}

impl fmt::Display for OptStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code(), self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_labels_follow_the_spec_table() {
        let table: Vec<(i64, &str)> = OptStatus::ALL
            .iter()
            .map(|s| (s.code(), s.label()))
            .collect();
        assert_eq!(
            table,
            vec![
                (-1, "UNSEEN"),
                (0, "GREY"),
                (1, "OPTEDIN"),
                (-2, "OPTEDOUT")
            ]
        );
    }

    #[test]
    fn every_code_round_trips() {
        for status in OptStatus::ALL {
            assert_eq!(OptStatus::from_code(status.code()), Some(status));
            assert_eq!(OptStatus::parse(&status.code().to_string()), Some(status));
        }
    }

    #[test]
    fn other_values_are_not_codes() {
        for input in ["2", "-3", "", "-", "+1", "1.0", "abc", "01x", "--1", "9999"] {
            assert_eq!(OptStatus::parse(input), None, "{input:?}");
        }
        assert_eq!(OptStatus::parse(" -2 "), Some(OptStatus::OptedOut));
    }

    #[test]
    fn absent_or_unknown_stored_value_is_unseen() {
        assert_eq!(OptStatus::from_stored(None), OptStatus::Unseen);
        assert_eq!(OptStatus::from_stored(Some(7)), OptStatus::Unseen);
        assert_eq!(OptStatus::from_stored(Some(-2)), OptStatus::OptedOut);
    }
}
