//! The dump file of `moms admin export` / `import`: UTF-8 text, one JSON
//! document a line, readable and writable one row at a time.
//!
//! ```text
//! {"format":"moms-dump","format_version":1,"schema_version":7,…,"tables":[{"name":"clients","rows":2,"columns":[…]},…]}
//! {"table":"clients"}
//! [1001,"Acme","5e88…",…,{"real":"2.5"},0]
//! [1002,"Bolt",…]
//! {"end":"clients","rows":2,"checksum":"…"}
//! {"table":"campaigns"}
//! …
//! {"end_of_dump":true,"checksum":"…"}
//! ```
//!
//! A row is a JSON array in the header's column order: integers are JSON
//! integers, text JSON strings, NULL `null`; floats are `{"real":"…"}` and
//! blobs `{"base64":"…"}`, so that no integer can come back as a float nor
//! a float lose a bit to a JSON parser's rounding.
//!
//! A table's checksum is the sum, modulo 2^256, of the SHA-256 of each row's
//! canonical encoding ([`Checksum`]): it does not depend on the order rows
//! are read in, which SQLite and PostgreSQL do not agree on (text keys sort
//! by collation; two tables have no key at all). The overall checksum is the
//! SHA-256 of every table's name, row count and checksum, in the header's
//! order.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// What the first line's `format` says.
pub const FORMAT: &str = "moms-dump";
/// The version of this layout; a reader refuses a newer one.
pub const FORMAT_VERSION: u32 = 1;

/// The first line: what the dump holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub format_version: u32,
    /// The highest migration applied to the database it came from.
    pub schema_version: i64,
    /// `sqlite` or `postgres`.
    pub source: String,
    /// Unix seconds.
    pub created_at: i64,
    pub tables: Vec<TableHeader>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableHeader {
    pub name: String,
    /// Counted in the same snapshot the rows were read from.
    pub rows: u64,
    pub columns: Vec<Column>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: Kind,
}

/// A column's declared type, as far as the dump cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Integer,
    Real,
    Text,
    Blob,
}

impl Kind {
    /// The kind of a declared column type of SQLite (by its affinity rules)
    /// or PostgreSQL (`bigint`, `double precision`, `text`, `bytea`, …);
    /// `None` for types the dump does not carry (dates, booleans, …).
    pub fn from_declared(declared: &str) -> Option<Kind> {
        let declared = declared.to_ascii_uppercase();
        let has = |part: &str| declared.contains(part);
        if has("INT") {
            Some(Kind::Integer)
        } else if has("CHAR") || has("CLOB") || has("TEXT") {
            Some(Kind::Text)
        } else if has("BLOB") || has("BYTEA") {
            Some(Kind::Blob)
        } else if has("REAL") || has("FLOA") || has("DOUB") {
            Some(Kind::Real)
        } else {
            None
        }
    }

    /// The kinds to try, in order, when decoding a stored value of a column
    /// of this kind: SQLite keeps whatever type a value was written with,
    /// whatever the column says. The declared kind comes first; blobs come
    /// last, as a text value also reads as bytes.
    pub fn decoding_order(self) -> [Kind; 4] {
        match self {
            Kind::Integer | Kind::Blob => [Kind::Integer, Kind::Real, Kind::Text, Kind::Blob],
            Kind::Real => [Kind::Real, Kind::Integer, Kind::Text, Kind::Blob],
            Kind::Text => [Kind::Text, Kind::Integer, Kind::Real, Kind::Blob],
        }
    }
}

/// One stored value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => serializer.serialize_unit(),
            Value::Integer(value) => serializer.serialize_i64(*value),
            Value::Text(value) => serializer.serialize_str(value),
            Value::Real(value) => {
                // Rust prints the shortest text that reads back as the same
                // f64, `NaN` and `inf` included.
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("real", &value.to_string())?;
                map.end()
            }
            Value::Blob(bytes) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry(
                    "base64",
                    &base64::engine::general_purpose::STANDARD.encode(bytes),
                )?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(r#"null, an integer, a string, {"real": "…"} or {"base64": "…"}"#)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Value, E> {
        Ok(Value::Integer(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Value, E> {
        i64::try_from(value)
            .map(Value::Integer)
            .map_err(|_| E::custom(format!("integer {value} is out of range")))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Value, E> {
        Err(E::custom(format!(
            "bare number {value}: floats are written {{\"real\": \"…\"}}"
        )))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Value, E> {
        Ok(Value::Text(value.to_string()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Value, E> {
        Ok(Value::Text(value))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let Some((tag, text)) = map.next_entry::<String, String>()? else {
            return Err(de::Error::custom("empty object"));
        };
        if map.next_key::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::custom("an object value has one key"));
        }
        match tag.as_str() {
            "real" => text
                .parse()
                .map(Value::Real)
                .map_err(|_| de::Error::custom(format!("{text:?} is not a float"))),
            "base64" => base64::engine::general_purpose::STANDARD
                .decode(&text)
                .map(Value::Blob)
                .map_err(|e| de::Error::custom(format!("bad base64: {e}"))),
            other => Err(de::Error::custom(format!("unknown value tag {other:?}"))),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Value, A::Error> {
        Err(de::Error::custom("a value cannot be an array"))
    }
}

/// An order-independent digest of a set of rows (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checksum([u8; 32]);

impl Checksum {
    pub fn add_row(&mut self, row: &[Value]) {
        let digest = row_digest(row);
        // 256-bit big-endian addition; the carry out of the top is dropped.
        let mut carry = 0u16;
        for (sum, byte) in self.0.iter_mut().zip(digest.iter()).rev() {
            let total = u16::from(*sum) + u16::from(*byte) + carry;
            *sum = total as u8;
            carry = total >> 8;
        }
    }

    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }
}

/// SHA-256 of a row's canonical encoding: per value a type tag, then the
/// integer or float's 8 bytes big-endian, or the text or blob's length and
/// bytes. The same for a row read from SQLite, PostgreSQL or a dump.
fn row_digest(row: &[Value]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for value in row {
        match value {
            Value::Null => hasher.update([0]),
            Value::Integer(value) => {
                hasher.update([1]);
                hasher.update(value.to_be_bytes());
            }
            Value::Real(value) => {
                // NaN has many bit patterns; a database may hand back another.
                let bits = if value.is_nan() {
                    f64::NAN.to_bits()
                } else {
                    value.to_bits()
                };
                hasher.update([2]);
                hasher.update(bits.to_be_bytes());
            }
            Value::Text(text) => {
                hasher.update([3]);
                hasher.update((text.len() as u64).to_be_bytes());
                hasher.update(text.as_bytes());
            }
            Value::Blob(bytes) => {
                hasher.update([4]);
                hasher.update((bytes.len() as u64).to_be_bytes());
                hasher.update(bytes);
            }
        }
    }
    hasher.finalize().into()
}

/// A table's row count and checksum, from a database or a dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    pub table: String,
    pub rows: u64,
    pub checksum: Checksum,
}

impl Tally {
    pub fn new(table: &str) -> Tally {
        Tally {
            table: table.to_string(),
            rows: 0,
            checksum: Checksum::default(),
        }
    }

    pub fn add(&mut self, row: &[Value]) {
        self.rows += 1;
        self.checksum.add_row(row);
    }
}

/// The checksum of a whole dump: SHA-256 over each table's name, row count
/// and checksum, in order.
pub fn overall_checksum(tallies: &[Tally]) -> String {
    let mut hasher = Sha256::new();
    for tally in tallies {
        hasher.update(tally.table.as_bytes());
        hasher.update([0]);
        hasher.update(tally.rows.to_be_bytes());
        hasher.update(tally.checksum.0);
    }
    hex::encode(hasher.finalize())
}

#[derive(Serialize, Deserialize)]
struct TableStart {
    table: String,
}

#[derive(Serialize, Deserialize)]
struct TableEnd {
    end: String,
    rows: u64,
    checksum: String,
}

#[derive(Serialize, Deserialize)]
struct DumpEnd {
    end_of_dump: bool,
    checksum: String,
}

/// Writes a dump to `<path>.partial`, renamed to `path` once complete, so
/// an export that fails never leaves a file that looks finished.
pub struct DumpWriter {
    out: BufWriter<File>,
    partial: PathBuf,
    path: PathBuf,
    finished: bool,
}

impl Drop for DumpWriter {
    /// An export that failed removes what it wrote.
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

impl DumpWriter {
    pub fn create(path: &Path, header: &Header) -> anyhow::Result<DumpWriter> {
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let file = File::create(&partial)
            .with_context(|| format!("cannot create {}", partial.display()))?;
        let mut writer = DumpWriter {
            out: BufWriter::with_capacity(1 << 20, file),
            partial,
            path: path.to_path_buf(),
            finished: false,
        };
        writer.line(header)?;
        Ok(writer)
    }

    fn line(&mut self, value: &impl Serialize) -> anyhow::Result<()> {
        serde_json::to_writer(&mut self.out, value)?;
        self.out
            .write_all(b"\n")
            .with_context(|| format!("cannot write {}", self.partial.display()))
    }

    pub fn begin_table(&mut self, table: &str) -> anyhow::Result<()> {
        self.line(&TableStart {
            table: table.to_string(),
        })
    }

    pub fn row(&mut self, row: &[Value]) -> anyhow::Result<()> {
        self.line(&row)
    }

    pub fn end_table(&mut self, tally: &Tally) -> anyhow::Result<()> {
        self.line(&TableEnd {
            end: tally.table.clone(),
            rows: tally.rows,
            checksum: tally.checksum.to_hex(),
        })
    }

    /// Writes the last line, flushes to disk and gives the file its name.
    pub fn finish(mut self, overall: &str) -> anyhow::Result<()> {
        self.line(&DumpEnd {
            end_of_dump: true,
            checksum: overall.to_string(),
        })?;
        self.out
            .flush()
            .with_context(|| format!("cannot write {}", self.partial.display()))?;
        self.out.get_ref().sync_all()?;
        std::fs::rename(&self.partial, &self.path).with_context(|| {
            format!(
                "cannot rename {} to {}",
                self.partial.display(),
                self.path.display()
            )
        })?;
        self.finished = true;
        Ok(())
    }
}

/// Reads a dump table by table, row by row, checking as it goes: each
/// table's end line must match the rows read and the header, and the last
/// line the whole. [`DumpReader::next_row`] returns `None` only once the
/// table's rows are proven whole.
pub struct DumpReader {
    input: BufReader<File>,
    path: PathBuf,
    line: String,
    line_number: u64,
    header: Header,
    /// The table being read (an index into the header's tables).
    table: Option<usize>,
    tallies: Vec<Tally>,
    current: Tally,
}

impl DumpReader {
    /// Opens a dump and reads its header; refuses files that are not dumps
    /// or are of a newer format.
    pub fn open(path: &Path) -> anyhow::Result<DumpReader> {
        let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut reader = DumpReader {
            input: BufReader::with_capacity(1 << 20, file),
            path: path.to_path_buf(),
            line: String::new(),
            line_number: 0,
            header: Header {
                format: String::new(),
                format_version: 0,
                schema_version: 0,
                source: String::new(),
                created_at: 0,
                tables: Vec::new(),
            },
            table: None,
            tallies: Vec::new(),
            current: Tally::new(""),
        };
        let not_a_dump = || {
            format!(
                "{} is not a moms dump (one is made by `moms admin export FILE`)",
                path.display()
            )
        };
        reader.next_line().with_context(not_a_dump)?;
        let format: serde_json::Value =
            serde_json::from_str(&reader.line).with_context(not_a_dump)?;
        if format.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
            anyhow::bail!(not_a_dump());
        }
        let version = format.get("format_version").and_then(|v| v.as_u64());
        if version != Some(u64::from(FORMAT_VERSION)) {
            anyhow::bail!(
                "{} is a moms dump of format {}, which this version of moms does not read (it reads {FORMAT_VERSION}); use the moms that wrote it, or a newer one",
                path.display(),
                version.map_or("?".to_string(), |v| v.to_string())
            );
        }
        reader.header = serde_json::from_value(format)
            .map_err(|e| reader.damaged(format_args!("its header is unreadable ({e})")))?;
        Ok(reader)
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The tallies of the tables read to their end so far.
    pub fn tallies(&self) -> &[Tally] {
        &self.tallies
    }

    fn damaged(&self, what: std::fmt::Arguments) -> anyhow::Error {
        anyhow::anyhow!(
            "{} is damaged: {what} (line {}); nothing of it can be trusted, export again",
            self.path.display(),
            self.line_number
        )
    }

    /// Reads the next line into `self.line`, without its newline.
    fn next_line(&mut self) -> anyhow::Result<()> {
        self.line.clear();
        self.line_number += 1;
        let read = self.input.read_line(&mut self.line).map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidData {
                self.damaged(format_args!("a line is not UTF-8 text"))
            } else {
                anyhow::anyhow!("cannot read {}: {e}", self.path.display())
            }
        })?;
        if read == 0 || !self.line.ends_with('\n') {
            anyhow::bail!(
                "{} ends early, at line {}: the dump is incomplete (cut off while written or copied); export again",
                self.path.display(),
                self.line_number
            );
        }
        self.line.pop();
        Ok(())
    }

    /// Reads the next table's first line; its header is returned.
    pub fn begin_table(&mut self) -> anyhow::Result<&TableHeader> {
        let index = self.table.map_or(0, |i| i + 1);
        let expected = self
            .header
            .tables
            .get(index)
            .map(|t| t.name.clone())
            .ok_or_else(|| anyhow::anyhow!("the dump has no more tables"))?;
        self.next_line()?;
        match serde_json::from_str::<TableStart>(&self.line) {
            Ok(start) if start.table == expected => {}
            _ => return Err(self.damaged(format_args!("expected the start of table {expected}"))),
        }
        self.table = Some(index);
        self.current = Tally::new(&expected);
        Ok(&self.header.tables[index])
    }

    /// The table's next row, or `None` after its end line proved the rows
    /// read complete and unaltered.
    pub fn next_row(&mut self) -> anyhow::Result<Option<Vec<Value>>> {
        let table = &self.header.tables[self.table.expect("begin_table first")];
        let (name, columns, announced) = (table.name.clone(), table.columns.len(), table.rows);
        self.next_line()?;
        if self.line.starts_with('[') {
            let row: Vec<Value> = serde_json::from_str(&self.line).map_err(|e| {
                self.damaged(format_args!("a row of table {name} is unreadable ({e})"))
            })?;
            if row.len() != columns {
                return Err(self.damaged(format_args!(
                    "a row of table {name} has {} values for {columns} columns",
                    row.len()
                )));
            }
            self.current.add(&row);
            return Ok(Some(row));
        }
        let end: TableEnd = serde_json::from_str(&self.line)
            .map_err(|_| self.damaged(format_args!("expected a row or the end of table {name}")))?;
        if end.end != name {
            return Err(self.damaged(format_args!("expected the end of table {name}")));
        }
        if end.rows != self.current.rows || announced != self.current.rows {
            return Err(self.damaged(format_args!(
                "table {name} holds {} rows where the dump announces {announced} and its end line {}",
                self.current.rows, end.rows
            )));
        }
        if end.checksum != self.current.checksum.to_hex() {
            return Err(self.damaged(format_args!(
                "the rows of table {name} do not match their checksum"
            )));
        }
        self.tallies.push(self.current.clone());
        Ok(None)
    }

    /// Reads the last line after the last table: the overall checksum must
    /// match, and nothing may follow.
    pub fn finish(&mut self) -> anyhow::Result<String> {
        if self.tallies.len() != self.header.tables.len() {
            anyhow::bail!("the dump's tables have not all been read");
        }
        self.next_line()?;
        let end: DumpEnd = serde_json::from_str(&self.line)
            .map_err(|_| self.damaged(format_args!("expected the end of the dump")))?;
        let overall = overall_checksum(&self.tallies);
        if !end.end_of_dump || end.checksum != overall {
            return Err(self.damaged(format_args!("the overall checksum does not match")));
        }
        let mut rest = String::new();
        if self.input.read_line(&mut rest)? != 0 {
            self.line_number += 1;
            return Err(self.damaged(format_args!("something follows the end of the dump")));
        }
        Ok(overall)
    }

    /// Reads the rest of the dump to its end, checking every table; their
    /// tallies and the overall checksum.
    pub fn verify_rest(
        &mut self,
        mut on_rows: impl FnMut(&str, u64),
    ) -> anyhow::Result<(Vec<Tally>, String)> {
        while self.tallies.len() < self.header.tables.len() {
            let name = self.begin_table()?.name.clone();
            let mut unreported = 0;
            while self.next_row()?.is_some() {
                unreported += 1;
                if unreported == 10_000 {
                    on_rows(&name, unreported);
                    unreported = 0;
                }
            }
            on_rows(&name, unreported);
        }
        let overall = self.finish()?;
        Ok((self.tallies.clone(), overall))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Value> {
        vec![
            Value::Null,
            Value::Integer(i64::MIN),
            Value::Integer(3),
            Value::Real(3.0),
            Value::Real(0.1),
            Value::Real(f64::INFINITY),
            Value::Text("é \"quoted\"\n\u{1F600}".into()),
            Value::Text("3".into()),
            Value::Blob(vec![0, 255, 10]),
        ]
    }

    #[test]
    fn values_keep_their_type_through_json() {
        let row = sample();
        let line = serde_json::to_string(&row).unwrap();
        let back: Vec<Value> = serde_json::from_str(&line).unwrap();
        assert_eq!(back, row, "{line}");
    }

    #[test]
    fn a_bare_float_is_refused() {
        assert!(serde_json::from_str::<Vec<Value>>("[1.5]").is_err());
    }

    #[test]
    fn the_checksum_ignores_row_order_but_not_types_or_duplicates() {
        let (a, b) = (vec![Value::Integer(1)], vec![Value::Text("1".into())]);
        let (mut ab, mut ba, mut aa) = (
            Checksum::default(),
            Checksum::default(),
            Checksum::default(),
        );
        ab.add_row(&a);
        ab.add_row(&b);
        ba.add_row(&b);
        ba.add_row(&a);
        aa.add_row(&a);
        aa.add_row(&a);
        assert_eq!(ab, ba);
        assert_ne!(ab, aa);
        let mut one = Checksum::default();
        one.add_row(&a);
        assert_ne!(aa, one, "a duplicated row counts");
    }

    #[test]
    fn declared_types_map_to_kinds() {
        for (declared, kind) in [
            ("INTEGER", Some(Kind::Integer)),
            ("bigint", Some(Kind::Integer)),
            ("REAL", Some(Kind::Real)),
            ("double precision", Some(Kind::Real)),
            ("TEXT", Some(Kind::Text)),
            ("character varying", Some(Kind::Text)),
            ("BLOB", Some(Kind::Blob)),
            ("bytea", Some(Kind::Blob)),
            ("boolean", None),
        ] {
            assert_eq!(Kind::from_declared(declared), kind, "{declared}");
        }
    }
}
