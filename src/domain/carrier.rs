//! Carriers and how a number finds its carrier (spec section 7): a ported
//! number entry, else the longest matching prefix, else unknown. All in
//! memory, so resolution costs a few hash lookups on the send path.

use std::collections::{HashMap, HashSet};
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
    /// The largest MMS it carries, in bytes; 0: no limit. Larger images
    /// are scaled down to fit, larger audio and video fail with 607.
    pub mms_max_bytes: i64,
}

/// A carrier's largest MMS unless configured otherwise: 1 MiB, what the
/// large North American carriers accept.
pub const DEFAULT_MMS_MAX_BYTES: i64 = 1_048_576;

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
            mms_max_bytes: DEFAULT_MMS_MAX_BYTES,
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
            mms_max_bytes: DEFAULT_MMS_MAX_BYTES,
        }
    }

    pub fn is_sandbox(&self) -> bool {
        self.connector == "sandbox"
    }

    /// Whether an MMS can go to its numbers as an MMS: the operator says it
    /// carries MMS and its connector can send one (SMPP carries text only).
    pub fn carries_mms(&self) -> bool {
        self.mms && self.connector != "smpp"
    }

    /// The size limit as a byte count; `None`: no limit.
    pub fn mms_limit(&self) -> Option<u64> {
        (self.mms_max_bytes > 0).then_some(self.mms_max_bytes as u64)
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

/// A number's key in the ported and barred sets: its E.164 digits as an
/// integer. Fifteen digits fit a `u64`, and E.164 numbers never start with
/// 0, so the key is unique; it takes 8 bytes where a `String` key takes 24
/// plus a heap block, which matters with millions of ported numbers.
/// `None` for anything that is not 1–15 digits without a leading 0.
pub fn number_key(digits: &str) -> Option<u64> {
    let valid = (1..=15).contains(&digits.len())
        && !digits.starts_with('0')
        && digits.bytes().all(|b| b.is_ascii_digit());
    if valid { digits.parse().ok() } else { None }
}

/// The connectors a carrier can use (spec section 7).
pub const CONNECTORS: &[&str] = &["sandbox", "smpp", "mm7"];

/// Checks one E.164 digit prefix (`1`, `1310`, `44`).
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() || prefix.len() > 15 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "prefix {prefix:?} is not an E.164 digit prefix: write 1–15 digits with the country code and no + (e.g. 1310 for +1 310)"
        ));
    }
    if prefix.starts_with('0') {
        return Err(format!(
            "prefix {prefix:?} starts with 0, which no country code does: write the country code first (e.g. 44 for the UK)"
        ));
    }
    Ok(())
}

/// Parses a comma-separated prefix list, checked and without duplicates.
pub fn parse_prefixes(text: &str) -> Result<Vec<String>, String> {
    let mut prefixes: Vec<String> = Vec::new();
    for prefix in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        check_prefix(prefix)?;
        if !prefixes.iter().any(|p| p == prefix) {
            prefixes.push(prefix.to_string());
        }
    }
    Ok(prefixes)
}

impl Carrier {
    /// Checks every field, with messages that name the fix.
    pub fn validate(&self) -> Result<(), String> {
        if self.id < 1 {
            return Err(format!("carrier id {} must be a positive integer", self.id));
        }
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(char::is_control) {
            return Err(format!(
                "carrier {}: the name must be 1–64 characters without control characters",
                self.id
            ));
        }
        for prefix in &self.prefixes {
            check_prefix(prefix).map_err(|e| format!("carrier {}: {e}", self.id))?;
        }
        if !CONNECTORS.contains(&self.connector.as_str()) {
            return Err(format!(
                "carrier {}: connector {:?} is not one of {}",
                self.id,
                self.connector,
                CONNECTORS.join(", ")
            ));
        }
        if self.mms_max_bytes < 0 {
            return Err(format!(
                "carrier {}: mms_max_bytes {} is negative: give the largest MMS in bytes, or 0 for no limit",
                self.id, self.mms_max_bytes
            ));
        }
        Ok(())
    }
}

/// Every carrier with its prefixes, ported numbers and blacklist.
#[derive(Debug, Default)]
pub struct CarrierTable {
    carriers: HashMap<i64, Arc<Carrier>>,
    /// Prefix → carrier id.
    prefixes: HashMap<String, i64>,
    longest_prefix: usize,
    /// [`number_key`] → carrier id.
    ported: HashMap<u64, i64>,
    /// ([`number_key`], carrier id) of barred numbers; grows while running
    /// (sandbox 604, receipts).
    blacklist: RwLock<HashSet<(u64, i64)>>,
}

impl CarrierTable {
    /// Builds the table; with no carriers configured, the sandbox default.
    /// Where two carriers claim the same prefix, the lower id keeps it, so
    /// the outcome does not depend on load order.
    pub fn new(
        mut carriers: Vec<Carrier>,
        ported: HashMap<u64, i64>,
        blacklist: HashSet<(u64, i64)>,
    ) -> CarrierTable {
        if carriers.is_empty() {
            carriers.push(Carrier::sandbox_default());
        }
        carriers.sort_by_key(|c| c.id);
        let mut table = CarrierTable {
            ported,
            blacklist: RwLock::new(blacklist),
            ..CarrierTable::default()
        };
        for carrier in carriers {
            for prefix in &carrier.prefixes {
                table.longest_prefix = table.longest_prefix.max(prefix.len());
                table.prefixes.entry(prefix.clone()).or_insert(carrier.id);
            }
            table.carriers.insert(carrier.id, Arc::new(carrier));
        }
        table
    }

    pub fn carrier(&self, id: i64) -> Option<Arc<Carrier>> {
        self.carriers.get(&id).cloned()
    }

    pub fn carriers(&self) -> impl Iterator<Item = &Arc<Carrier>> {
        self.carriers.values()
    }

    /// How many ported numbers the table holds.
    pub fn ported_len(&self) -> usize {
        self.ported.len()
    }

    /// The number's carrier, or `None` when unknown (603). A ported entry
    /// naming a carrier that is no longer configured is ignored, so the
    /// prefix decides.
    pub fn resolve(&self, number: &PhoneNumber) -> Option<Arc<Carrier>> {
        let digits = number.digits();
        let ported = number_key(digits)
            .and_then(|key| self.ported.get(&key))
            .and_then(|id| self.carriers.get(id));
        let carrier = match ported {
            Some(carrier) => carrier.clone(),
            None => (1..=self.longest_prefix.min(digits.len()))
                .rev()
                .find_map(|len| self.prefixes.get(&digits[..len]))
                .and_then(|id| self.carriers.get(id).cloned())?,
        };
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
        number_key(number.digits()).is_some_and(|key| {
            self.blacklist
                .read()
                .expect("blacklist lock")
                .contains(&(key, carrier_id))
        })
    }

    /// Bars a number in memory (the store keeps the durable copy).
    pub fn bar(&self, number: &PhoneNumber, carrier_id: i64) {
        if let Some(key) = number_key(number.digits()) {
            self.blacklist
                .write()
                .expect("blacklist lock")
                .insert((key, carrier_id));
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
            mms_max_bytes: DEFAULT_MMS_MAX_BYTES,
        }
    }

    #[test]
    fn empty_table_is_the_sandbox() {
        let table = CarrierTable::new(Vec::new(), HashMap::new(), HashSet::new());
        assert_eq!(table.resolve(&number("13108675309")).unwrap().id, 1);
        assert!(table.resolve(&number("447911123456")).is_none());
    }

    #[test]
    fn ported_entry_beats_longest_prefix_beats_shorter() {
        let ported = HashMap::from([(13105551234, 3), (13105559999, 9)]);
        let table = CarrierTable::new(
            vec![
                carrier(1, &["1"]),
                carrier(2, &["1310"]),
                carrier(3, &["44"]),
            ],
            ported,
            HashSet::new(),
        );
        assert_eq!(table.resolve(&number("12125550000")).unwrap().id, 1);
        assert_eq!(table.resolve(&number("13108675309")).unwrap().id, 2);
        assert_eq!(table.resolve(&number("13105551234")).unwrap().id, 3);
        // Ported to a carrier no longer configured: the prefix decides.
        assert_eq!(table.resolve(&number("13105559999")).unwrap().id, 2);
    }

    #[test]
    fn sandbox_test_numbers() {
        let table = CarrierTable::new(Vec::new(), HashMap::new(), HashSet::new());
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
        let table = CarrierTable::new(
            Vec::new(),
            HashMap::new(),
            HashSet::from([(13108675309, 1)]),
        );
        assert!(table.is_blacklisted(&number("13108675309"), 1));
        assert!(!table.is_blacklisted(&number("13108675309"), 2));
        table.bar(&number("13108675300"), 1);
        assert!(table.is_blacklisted(&number("13108675300"), 1));
    }

    #[test]
    fn shared_prefix_goes_to_the_lower_id() {
        let table = CarrierTable::new(
            vec![carrier(7, &["44"]), carrier(3, &["44"])],
            HashMap::new(),
            HashSet::new(),
        );
        assert_eq!(table.resolve(&number("447911123456")).unwrap().id, 3);
    }

    #[test]
    fn number_keys_are_e164_digits_only() {
        assert_eq!(number_key("13105550123"), Some(13105550123));
        assert_eq!(number_key("999999999999999"), Some(999_999_999_999_999));
        assert_eq!(number_key("1234567890123456"), None);
        assert_eq!(number_key("0123"), None);
        assert_eq!(number_key(""), None);
        assert_eq!(number_key("1310a"), None);
    }

    #[test]
    fn validation_names_the_fix() {
        assert_eq!(
            parse_prefixes(" 1310, 1424,1310 ").unwrap(),
            vec!["1310", "1424"]
        );
        assert!(parse_prefixes("+1310").unwrap_err().contains("1–15 digits"));
        assert!(parse_prefixes("0044").unwrap_err().contains("country code"));
        let mut bad = carrier(5, &["1"]);
        bad.connector = "http".into();
        assert!(bad.validate().unwrap_err().contains("sandbox, smpp, mm7"));
        bad.connector = "mm7".into();
        bad.name = " ".into();
        assert!(bad.validate().unwrap_err().contains("1–64 characters"));
        bad.id = 0;
        assert!(bad.validate().unwrap_err().contains("positive"));
    }

    /// Resident memory in bytes (Linux), for the figures printed below.
    fn resident_bytes() -> Option<u64> {
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        Some(pages * 4096)
    }

    /// Prints what a million ported numbers cost to hold and to resolve
    /// (no assertion on time: machines differ). Run with `--nocapture`.
    #[test]
    fn a_million_ported_numbers_stay_compact_and_fast() {
        const ROWS: u64 = 1_000_000;
        let before = resident_bytes();
        let started = std::time::Instant::now();
        let ported: HashMap<u64, i64> = (0..ROWS)
            .map(|i| (13_100_000_000 + i * 7, (i % 3 + 2) as i64))
            .collect();
        let table = CarrierTable::new(
            vec![
                carrier(1, &["1"]),
                carrier(2, &["1310"]),
                carrier(3, &["1424"]),
                carrier(4, &["44"]),
            ],
            ported,
            HashSet::new(),
        );
        let built = started.elapsed();
        let grown = resident_bytes()
            .zip(before)
            .map(|(after, before)| after.saturating_sub(before));
        assert_eq!(table.ported_len(), ROWS as usize);
        // A number's digits are what the send path has; half of these are ported.
        let numbers: Vec<PhoneNumber> = (0..ROWS)
            .map(|i| number(&(13_100_000_000 + i * 14 / 2 + (i % 2)).to_string()))
            .collect();
        let started = std::time::Instant::now();
        let mut found = 0u64;
        for n in &numbers {
            if let Some(carrier) = table.resolve(n) {
                found += carrier.id as u64;
            }
        }
        let resolved = started.elapsed();
        assert!(found > 0);
        // hashbrown: one control byte plus the entry per bucket.
        let estimate = table.ported.capacity() * (std::mem::size_of::<(u64, i64)>() + 1);
        println!(
            "ported table: {ROWS} rows built in {built:?}; about {:.1} MiB by capacity, resident growth {}",
            estimate as f64 / 1048576.0,
            grown.map_or("unknown".into(), |b| format!(
                "{:.1} MiB",
                b as f64 / 1048576.0
            )),
        );
        println!(
            "{ROWS} resolutions in {resolved:?} ({:.0} ns each)",
            resolved.as_nanos() as f64 / ROWS as f64
        );
    }
}
