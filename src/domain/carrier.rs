//! Carriers and how a number finds its carrier (spec section 7): a ported
//! number entry, else the longest matching prefix, else unknown. All in
//! memory, so resolution costs a few hash lookups on the send path.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::phone::PhoneNumber;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carrier {
    pub id: i64,
    pub name: String,
    /// E.164 digit prefixes (`1`, `1310`, `44`).
    pub prefixes: Vec<String>,
    pub served: bool,
    pub mms: bool,
    /// `sandbox`, `smpp` or `mm7`.
    pub connector: String,
}

impl Carrier {
    /// The built-in carrier of an empty store (spec section 7).
    pub fn sandbox_default() -> Carrier {
        Carrier {
            id: 1,
            name: "Sandbox Wireless".into(),
            prefixes: vec!["1".into()],
            served: true,
            mms: true,
            connector: "sandbox".into(),
        }
    }

    /// The carrier the sandbox's `NXX-555-0605` numbers belong to: known,
    /// not served. It exists only inside the sandbox's test-number rules.
    pub fn sandbox_unserved() -> Carrier {
        Carrier {
            id: 2,
            name: "Sandbox Unserved".into(),
            prefixes: Vec::new(),
            served: false,
            mms: false,
            connector: "sandbox".into(),
        }
    }

    pub fn is_sandbox(&self) -> bool {
        self.connector == "sandbox"
    }
}

/// The sandbox's documented test numbers (`NXX-555-06xx`, any area code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestNumber {
    /// Accepted, then FAILED 600.
    Undeliverable,
    /// Accepted, never acknowledged: FAILED 601 when the validity period ends.
    NeverAcknowledged,
    /// A fixed line: 602 at once.
    FixedLine,
    /// No carrier: 603 at once.
    NoCarrier,
    /// Accepted, then FAILED 604 and blacklisted.
    Barred,
    /// A carrier that is not served: 605 at once.
    Unserved,
}

impl TestNumber {
    pub fn of(number: &PhoneNumber) -> Option<TestNumber> {
        let digits = number.digits();
        if !number.is_north_american() || &digits[4..9] != "55506" {
            return None;
        }
        match &digits[9..] {
            "00" => Some(TestNumber::Undeliverable),
            "01" => Some(TestNumber::NeverAcknowledged),
            "02" => Some(TestNumber::FixedLine),
            "03" => Some(TestNumber::NoCarrier),
            "04" => Some(TestNumber::Barred),
            "05" => Some(TestNumber::Unserved),
            _ => None,
        }
    }
}

/// Every carrier with its prefixes, ported numbers and blacklist.
#[derive(Debug, Default)]
pub struct CarrierTable {
    carriers: HashMap<i64, Arc<Carrier>>,
    /// Prefix → carrier id.
    prefixes: HashMap<String, i64>,
    longest_prefix: usize,
    ported: HashMap<String, i64>,
    /// Barred numbers per carrier; grows while running (sandbox 604, receipts).
    blacklist: RwLock<HashMap<String, Vec<i64>>>,
}

impl CarrierTable {
    /// Builds the table; with no carriers configured, the sandbox default.
    pub fn new(
        mut carriers: Vec<Carrier>,
        ported: HashMap<String, i64>,
        blacklist: Vec<(String, i64)>,
    ) -> CarrierTable {
        if carriers.is_empty() {
            carriers.push(Carrier::sandbox_default());
        }
        let mut table = CarrierTable {
            ported,
            ..CarrierTable::default()
        };
        for carrier in carriers {
            for prefix in &carrier.prefixes {
                table.longest_prefix = table.longest_prefix.max(prefix.len());
                table.prefixes.insert(prefix.clone(), carrier.id);
            }
            table.carriers.insert(carrier.id, Arc::new(carrier));
        }
        let mut barred: HashMap<String, Vec<i64>> = HashMap::new();
        for (number, carrier_id) in blacklist {
            barred.entry(number).or_default().push(carrier_id);
        }
        table.blacklist = RwLock::new(barred);
        table
    }

    pub fn carrier(&self, id: i64) -> Option<Arc<Carrier>> {
        self.carriers.get(&id).cloned()
    }

    pub fn carriers(&self) -> impl Iterator<Item = &Arc<Carrier>> {
        self.carriers.values()
    }

    /// The number's carrier, or `None` when unknown (603).
    pub fn resolve(&self, number: &PhoneNumber) -> Option<Arc<Carrier>> {
        let digits = number.digits();
        let found = match self.ported.get(digits) {
            Some(id) => self.carriers.get(id).cloned(),
            None => (1..=self.longest_prefix.min(digits.len()))
                .rev()
                .find_map(|len| self.prefixes.get(&digits[..len]))
                .and_then(|id| self.carriers.get(id).cloned()),
        };
        let carrier = found?;
        if carrier.is_sandbox() {
            match TestNumber::of(number) {
                Some(TestNumber::NoCarrier) => return None,
                Some(TestNumber::Unserved) => return Some(Arc::new(Carrier::sandbox_unserved())),
                _ => {}
            }
        }
        Some(carrier)
    }

    pub fn is_blacklisted(&self, number: &PhoneNumber, carrier_id: i64) -> bool {
        self.blacklist
            .read()
            .expect("blacklist lock")
            .get(number.digits())
            .is_some_and(|ids| ids.contains(&carrier_id))
    }

    /// Bars a number in memory (the store keeps the durable copy).
    pub fn bar(&self, number: &PhoneNumber, carrier_id: i64) {
        let mut blacklist = self.blacklist.write().expect("blacklist lock");
        let ids = blacklist.entry(number.digits().to_string()).or_default();
        if !ids.contains(&carrier_id) {
            ids.push(carrier_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(digits: &str) -> PhoneNumber {
        PhoneNumber::from_e164_digits(digits)
    }

    fn carrier(id: i64, prefixes: &[&str]) -> Carrier {
        Carrier {
            id,
            name: format!("Carrier {id}"),
            prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            served: true,
            mms: true,
            connector: "smpp".into(),
        }
    }

    #[test]
    fn empty_table_is_the_sandbox() {
        let table = CarrierTable::new(Vec::new(), HashMap::new(), Vec::new());
        assert_eq!(table.resolve(&number("13108675309")).unwrap().id, 1);
        assert!(table.resolve(&number("447911123456")).is_none());
    }

    #[test]
    fn ported_entry_beats_longest_prefix_beats_shorter() {
        let ported = HashMap::from([("13105551234".to_string(), 3)]);
        let table = CarrierTable::new(
            vec![
                carrier(1, &["1"]),
                carrier(2, &["1310"]),
                carrier(3, &["44"]),
            ],
            ported,
            Vec::new(),
        );
        assert_eq!(table.resolve(&number("12125550000")).unwrap().id, 1);
        assert_eq!(table.resolve(&number("13108675309")).unwrap().id, 2);
        assert_eq!(table.resolve(&number("13105551234")).unwrap().id, 3);
    }

    #[test]
    fn sandbox_test_numbers() {
        let table = CarrierTable::new(Vec::new(), HashMap::new(), Vec::new());
        assert!(table.resolve(&number("12125550603")).is_none());
        let unserved = table.resolve(&number("12125550605")).unwrap();
        assert!(!unserved.served);
        assert_eq!(
            TestNumber::of(&number("14155550600")),
            Some(TestNumber::Undeliverable)
        );
        assert_eq!(TestNumber::of(&number("14155550699")), None);
    }

    #[test]
    fn barring_is_per_carrier() {
        let table = CarrierTable::new(Vec::new(), HashMap::new(), vec![("13108675309".into(), 1)]);
        assert!(table.is_blacklisted(&number("13108675309"), 1));
        assert!(!table.is_blacklisted(&number("13108675309"), 2));
        table.bar(&number("13108675300"), 1);
        assert!(table.is_blacklisted(&number("13108675300"), 1));
    }
}
