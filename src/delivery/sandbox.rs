//! The built-in sandbox carrier (spec section 7): a simulated carrier that
//! accepts every message and reports delivery a moment later, except for
//! the documented test numbers `NXX-555-06xx`, which fail the way real
//! carriers do. Nothing leaves the machine, so there is no I/O here.

use crate::domain::carrier::TestNumber;
use crate::domain::phone::PhoneNumber;

/// What happens after the sandbox accepted a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// A receipt comes at this time (unix ms).
    ReceiptAt(i64),
    /// No receipt will ever come (`NXX-555-0601`): wait until the validity
    /// period ends, then fail 601.
    NeverAcknowledged,
}

/// The receipt the sandbox reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    Delivered,
    /// `NXX-555-0600`: FAILED 600.
    Undeliverable,
    /// `NXX-555-0604`: FAILED 604, and the number is barred from then on.
    Barred,
}

/// Hands a message to the sandbox at `now_ms`.
pub fn submit(number: &PhoneNumber, now_ms: i64, receipt_millis: i64) -> Accepted {
    match TestNumber::of(number) {
        Some(TestNumber::NeverAcknowledged) => Accepted::NeverAcknowledged,
        _ => Accepted::ReceiptAt(now_ms + receipt_millis.max(0)),
    }
}

/// The receipt for a message the sandbox accepted.
pub fn receipt(number: &PhoneNumber) -> Receipt {
    match TestNumber::of(number) {
        Some(TestNumber::Undeliverable) => Receipt::Undeliverable,
        Some(TestNumber::Barred) => Receipt::Barred,
        _ => Receipt::Delivered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(digits: &str) -> PhoneNumber {
        PhoneNumber::from_e164_digits(digits)
    }

    #[test]
    fn ordinary_numbers_are_delivered_after_the_receipt_delay() {
        assert_eq!(
            submit(&number("13108675309"), 1_000, 100),
            Accepted::ReceiptAt(1_100)
        );
        assert_eq!(receipt(&number("13108675309")), Receipt::Delivered);
    }

    #[test]
    fn test_numbers_fail_as_documented_in_any_area_code() {
        assert_eq!(receipt(&number("12125550600")), Receipt::Undeliverable);
        assert_eq!(receipt(&number("14155550604")), Receipt::Barred);
        assert_eq!(
            submit(&number("13105550601"), 0, 100),
            Accepted::NeverAcknowledged
        );
        assert_eq!(receipt(&number("13105550699")), Receipt::Delivered);
    }
}
