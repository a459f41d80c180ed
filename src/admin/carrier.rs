//! `moms admin carrier …`: the operator's carriers (spec section 7) — add,
//! list, update, remove — and bulk imports of ported numbers and carrier
//! blacklists from CSV files of any size.
//!
//! Every change is audited and bumps the store's change counter, so a
//! running server reloads its carrier table within a quarter of a second.
//! Imports stream the file: rows are parsed one at a time and written in
//! batches of [`BATCH_ROWS`], so memory stays flat for millions of rows.

use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rlibphonenumber::enums::Region;
use serde_json::{Value, json};

use super::print;
use crate::config::Config;
use crate::domain::carrier::{Carrier, parse_prefixes};
use crate::domain::phone::{PhoneNumber, parse_region};
use crate::store::Store;

/// Rows written per SQL transaction by an import.
pub const BATCH_ROWS: usize = 10_000;

/// Rejected lines shown in an import's summary; the rest are only counted.
const SHOWN_REJECTIONS: usize = 10;

#[derive(Debug, Subcommand)]
pub enum CarrierCommand {
    /// Add a carrier
    Add {
        /// Carrier id (a positive integer of your choice)
        #[arg(long)]
        id: i64,
        #[arg(long)]
        name: String,
        /// E.164 digit prefixes, comma-separated (e.g. 1310,1424)
        #[arg(long, default_value = "")]
        prefixes: String,
        /// Whether messages to its numbers are sent (false: 605) [default: true]
        #[arg(long)]
        served: Option<bool>,
        /// Whether it carries MMS (false: MMS fail with 607) [default: true]
        #[arg(long)]
        mms: Option<bool>,
        /// sandbox, smpp or mm7 [default: sandbox]
        #[arg(long)]
        connector: Option<String>,
        /// The largest MMS it carries, in bytes (0: no limit) [default: 1048576]
        #[arg(long)]
        mms_max_bytes: Option<i64>,
    },
    /// List carriers with their counts of ported and barred numbers
    List,
    /// Change a carrier; options not given stay as they are
    Update {
        #[arg(long)]
        id: i64,
        #[arg(long)]
        name: Option<String>,
        /// Replaces every prefix (empty: none)
        #[arg(long)]
        prefixes: Option<String>,
        #[arg(long)]
        served: Option<bool>,
        #[arg(long)]
        mms: Option<bool>,
        #[arg(long)]
        connector: Option<String>,
        /// The largest MMS it carries, in bytes (0: no limit)
        #[arg(long)]
        mms_max_bytes: Option<i64>,
    },
    /// Remove a carrier, with its ported and barred numbers
    Remove {
        #[arg(long)]
        id: i64,
    },
    /// Import ported numbers from a CSV file of `number,carrier_id` lines
    ImportPorted { file: PathBuf },
    /// Import barred numbers from a CSV file of `number,carrier_id` lines
    ImportBlacklist { file: PathBuf },
    /// Forget one ported-number entry (the number's prefix decides again)
    RemovePorted { number: String },
    /// Lift the bar on a number (on every carrier unless --carrier is given)
    Unbar {
        number: String,
        #[arg(long)]
        carrier: Option<i64>,
    },
}

pub async fn run(
    store: &Store,
    config: &Config,
    command: CarrierCommand,
    as_json: bool,
) -> anyhow::Result<()> {
    let region = parse_region(&config.default_region).unwrap_or(Region::US);
    match command {
        CarrierCommand::Add {
            id,
            name,
            prefixes,
            served,
            mms,
            connector,
            mms_max_bytes,
        } => {
            if store.carrier(id).await?.is_some() {
                anyhow::bail!(
                    "carrier {id} exists already: change it with `moms admin carrier update --id {id}` or choose another id"
                );
            }
            let carrier = Carrier {
                id,
                name: name.trim().to_string(),
                prefixes: parse_prefixes(&prefixes).map_err(anyhow::Error::msg)?,
                served: served.unwrap_or(true),
                mms: mms.unwrap_or(true),
                connector: connector_of(connector.as_deref().unwrap_or("sandbox")),
                mms_max_bytes: mms_max_bytes_of(
                    mms_max_bytes.unwrap_or(crate::domain::carrier::DEFAULT_MMS_MAX_BYTES),
                )?,
            };
            save(store, config, &carrier, "carrier.add", as_json).await
        }
        CarrierCommand::List => list(store, as_json).await,
        CarrierCommand::Update {
            id,
            name,
            prefixes,
            served,
            mms,
            connector,
            mms_max_bytes,
        } => {
            let mut carrier = stored_or_builtin(store, id).await?;
            if let Some(name) = name {
                carrier.name = name.trim().to_string();
            }
            if let Some(prefixes) = prefixes {
                carrier.prefixes = parse_prefixes(&prefixes).map_err(anyhow::Error::msg)?;
            }
            carrier.served = served.unwrap_or(carrier.served);
            carrier.mms = mms.unwrap_or(carrier.mms);
            if let Some(connector) = connector {
                carrier.connector = connector_of(&connector);
            }
            if let Some(max) = mms_max_bytes {
                carrier.mms_max_bytes = mms_max_bytes_of(max)?;
            }
            save(store, config, &carrier, "carrier.update", as_json).await
        }
        CarrierCommand::Remove { id } => remove(store, config, id, as_json).await,
        CarrierCommand::ImportPorted { file } => {
            import(store, region, &file, ImportKind::Ported, as_json).await
        }
        CarrierCommand::ImportBlacklist { file } => {
            import(store, region, &file, ImportKind::Blacklist, as_json).await
        }
        CarrierCommand::RemovePorted { number } => {
            let number = phone_arg(&number, region)?;
            let removed = store.remove_ported(&number).await?;
            if removed {
                store
                    .audit("operator", "carrier.remove-ported", number.digits())
                    .await?;
                store.bump_carrier_generation().await?;
            }
            print(
                as_json,
                json!({"number": number.digits(), "removed": removed}),
                &if removed {
                    format!("{} is no longer ported", number.digits())
                } else {
                    format!("{} had no ported-number entry", number.digits())
                },
            );
            Ok(())
        }
        CarrierCommand::Unbar { number, carrier } => {
            let number = phone_arg(&number, region)?;
            let lifted = store.unbar_number(&number, carrier).await?;
            if lifted > 0 {
                let on = carrier.map_or("every carrier".into(), |id| format!("carrier {id}"));
                store
                    .audit(
                        "operator",
                        "carrier.unbar",
                        &format!("{} on {on}", number.digits()),
                    )
                    .await?;
                store.bump_carrier_generation().await?;
            }
            print(
                as_json,
                json!({"number": number.digits(), "unbarred": lifted}),
                &format!("{} bars lifted from {}", lifted, number.digits()),
            );
            Ok(())
        }
    }
}

fn connector_of(text: &str) -> String {
    text.trim().to_ascii_lowercase()
}

fn phone_arg(text: &str, region: Region) -> anyhow::Result<PhoneNumber> {
    PhoneNumber::parse(text, region).map_err(|_| {
        anyhow::anyhow!(
            "{text:?} is not a phone number (write it with its country code, e.g. +13105550123)"
        )
    })
}

/// The stored carrier; on a store without carriers, id 1 is the built-in
/// sandbox carrier, so the operator can change it like any other.
async fn stored_or_builtin(store: &Store, id: i64) -> anyhow::Result<Carrier> {
    if let Some(carrier) = store.carrier(id).await? {
        return Ok(carrier);
    }
    let builtin = Carrier::sandbox_default();
    if id == builtin.id && store.carriers().await?.is_empty() {
        return Ok(builtin);
    }
    anyhow::bail!(
        "no carrier {id} (see `moms admin carrier list`; add one with `moms admin carrier add`)"
    )
}

/// Validates, checks that no other carrier claims its prefixes, stores,
/// audits and tells running servers.
async fn save(
    store: &Store,
    config: &Config,
    carrier: &Carrier,
    action: &str,
    as_json: bool,
) -> anyhow::Result<()> {
    carrier.validate().map_err(anyhow::Error::msg)?;
    let stored = store.carriers().await?;
    let builtin = Carrier::sandbox_default();
    if stored.is_empty() && carrier.id != builtin.id {
        eprintln!(
            "note: the built-in sandbox carrier (id 1, prefix 1) applies only while no carrier is configured; keep it with `moms admin carrier add --id 1 --name \"{}\" --prefixes 1`",
            builtin.name
        );
    }
    for other in stored {
        if other.id == carrier.id {
            continue;
        }
        if let Some(prefix) = carrier.prefixes.iter().find(|p| other.prefixes.contains(p)) {
            anyhow::bail!(
                "prefix {prefix} belongs to carrier {} ({}) already; a prefix routes to one carrier: take it off there first with `moms admin carrier update --id {} --prefixes …`",
                other.id,
                other.name,
                other.id
            );
        }
    }
    warn_if_declared(config, carrier.id);
    store.upsert_carrier(carrier).await?;
    store
        .audit(
            "operator",
            action,
            &format!(
                "carrier {} ({}): prefixes {}, served {}, mms {}, connector {}, mms_max_bytes {}",
                carrier.id,
                carrier.name,
                carrier.prefixes.join(","),
                carrier.served,
                carrier.mms,
                carrier.connector,
                carrier.mms_max_bytes
            ),
        )
        .await?;
    store.bump_carrier_generation().await?;
    print(as_json, carrier_json(carrier), &carrier_line(carrier));
    Ok(())
}

/// Changing a carrier the configuration file declares lasts only until the
/// next start, which writes the declared one back; say so.
fn warn_if_declared(config: &Config, id: i64) {
    if config.carriers.iter().any(|c| c.id == id) {
        eprintln!(
            "note: carrier {id} is declared in the configuration file ([[carriers]]); `moms serve` writes it back as declared at its next start"
        );
    }
}

fn carrier_json(carrier: &Carrier) -> Value {
    json!({
        "carrier_id": carrier.id,
        "name": carrier.name,
        "prefixes": carrier.prefixes,
        "served": carrier.served,
        "mms": carrier.mms,
        "connector": carrier.connector,
        "mms_max_bytes": carrier.mms_max_bytes,
    })
}

fn carrier_line(carrier: &Carrier) -> String {
    format!(
        "{}  {}  prefixes {}  served {}  mms {}  connector {}  mms_max_bytes {}",
        carrier.id,
        carrier.name,
        if carrier.prefixes.is_empty() {
            "-".to_string()
        } else {
            carrier.prefixes.join(",")
        },
        carrier.served,
        carrier.mms,
        carrier.connector,
        carrier.mms_max_bytes
    )
}

/// A size limit from the command line: 0 (no limit) or a positive byte count.
fn mms_max_bytes_of(value: i64) -> anyhow::Result<i64> {
    if value < 0 {
        anyhow::bail!(
            "--mms-max-bytes {value} is negative: give the largest MMS in bytes (e.g. 1048576), or 0 for no limit"
        );
    }
    Ok(value)
}

async fn list(store: &Store, as_json: bool) -> anyhow::Result<()> {
    let stored = store.carriers().await?;
    let built_in = stored.is_empty();
    let carriers = if built_in {
        vec![Carrier::sandbox_default()]
    } else {
        stored
    };
    let counts = store.carrier_counts().await?;
    let mut rows = Vec::with_capacity(carriers.len());
    let mut text = String::from("id  name  prefixes  served  mms  connector  ported  barred");
    for carrier in &carriers {
        let count = counts.get(&carrier.id).copied().unwrap_or_default();
        let mut row = carrier_json(carrier);
        row["ported"] = json!(count.ported);
        row["barred"] = json!(count.barred);
        row["built_in"] = json!(built_in);
        rows.push(row);
        text.push_str(&format!(
            "\n{}  ported {}  barred {}",
            carrier_line(carrier),
            count.ported,
            count.barred
        ));
    }
    if built_in {
        text.push_str("\n(the built-in sandbox carrier: no carrier is configured)");
    }
    print(as_json, json!({"carriers": rows}), &text);
    Ok(())
}

async fn remove(store: &Store, config: &Config, id: i64, as_json: bool) -> anyhow::Result<()> {
    let removed = store
        .remove_carrier(id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no carrier {id} (see `moms admin carrier list`)"))?;
    warn_if_declared(config, id);
    store
        .audit(
            "operator",
            "carrier.remove",
            &format!(
                "carrier {id}, with {} ported and {} barred numbers",
                removed.ported, removed.barred
            ),
        )
        .await?;
    store.bump_carrier_generation().await?;
    print(
        as_json,
        json!({"carrier_id": id, "removed": true, "ported_removed": removed.ported, "barred_removed": removed.barred}),
        &format!(
            "carrier {id} removed, with {} ported and {} barred numbers",
            removed.ported, removed.barred
        ),
    );
    Ok(())
}

/// What an import file fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportKind {
    Ported,
    Blacklist,
}

impl ImportKind {
    fn action(self) -> &'static str {
        match self {
            ImportKind::Ported => "carrier.import-ported",
            ImportKind::Blacklist => "carrier.import-blacklist",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            ImportKind::Ported => "ported numbers",
            ImportKind::Blacklist => "barred numbers",
        }
    }
}

/// The outcome of an import.
#[derive(Debug, Default)]
pub struct ImportSummary {
    pub imported: u64,
    pub rejected: u64,
    pub elapsed: Duration,
    /// The first rejected lines: (line number, reason).
    pub rejections: Vec<(u64, String)>,
}

impl ImportSummary {
    fn reject(&mut self, line: u64, reason: String) {
        self.rejected += 1;
        if self.rejections.len() < SHOWN_REJECTIONS {
            self.rejections.push((line, reason));
        }
    }

    fn to_json(&self) -> Value {
        let rejections: Vec<Value> = self
            .rejections
            .iter()
            .map(|(line, reason)| json!({"line": line, "reason": reason}))
            .collect();
        json!({
            "imported": self.imported,
            "rejected": self.rejected,
            "seconds": (self.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            "rejections": rejections,
        })
    }

    fn to_text(&self, kind: ImportKind) -> String {
        let mut text = format!(
            "imported {} {}, rejected {} lines, in {:.1} s",
            self.imported,
            kind.noun(),
            self.rejected,
            self.elapsed.as_secs_f64()
        );
        for (line, reason) in &self.rejections {
            text.push_str(&format!("\n  line {line}: {reason}"));
        }
        if self.rejected > self.rejections.len() as u64 {
            text.push_str(&format!(
                "\n  … and {} more",
                self.rejected - self.rejections.len() as u64
            ));
        }
        text
    }
}

/// Imports a CSV file, prints the summary, audits it and tells running
/// servers. The progress bar shows only on a terminal and without `--json`.
async fn import(
    store: &Store,
    region: Region,
    file: &Path,
    kind: ImportKind,
    as_json: bool,
) -> anyhow::Result<()> {
    let total = std::fs::metadata(file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?
        .len();
    let target = if as_json || !std::io::stderr().is_terminal() {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let progress = ProgressBar::with_draw_target(Some(total), target);
    progress.set_style(
        ProgressStyle::with_template(
            "{bar:40} {bytes}/{total_bytes} {msg} ({elapsed}, {eta} left)",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let summary = import_file(store, region, file, kind, &progress).await?;
    progress.finish_and_clear();
    if summary.imported > 0 {
        store.bump_carrier_generation().await?;
    }
    store
        .audit(
            "operator",
            kind.action(),
            &format!(
                "{}: {} imported, {} rejected",
                file.display(),
                summary.imported,
                summary.rejected
            ),
        )
        .await?;
    print(as_json, summary.to_json(), &summary.to_text(kind));
    Ok(())
}

/// The carrier ids rows may name: the stored carriers, or the built-in
/// sandbox carrier when none is stored.
async fn known_carriers(store: &Store) -> sqlx::Result<HashSet<i64>> {
    let stored: HashSet<i64> = store.carriers().await?.iter().map(|c| c.id).collect();
    Ok(if stored.is_empty() {
        HashSet::from([Carrier::sandbox_default().id])
    } else {
        stored
    })
}

/// Streams `number,carrier_id` rows from `file` into the store in batches.
/// A first line whose carrier id is not a number is a header.
pub async fn import_file(
    store: &Store,
    region: Region,
    file: &Path,
    kind: ImportKind,
    progress: &ProgressBar,
) -> anyhow::Result<ImportSummary> {
    let started = Instant::now();
    let known = known_carriers(store).await?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .buffer_capacity(1 << 16)
        .from_path(file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    let mut summary = ImportSummary::default();
    let mut batch: Vec<(String, i64)> = Vec::with_capacity(BATCH_ROWS);
    let mut record = csv::ByteRecord::new();
    let mut first = true;
    loop {
        let more = reader
            .read_byte_record(&mut record)
            .map_err(|e| anyhow::anyhow!("{} is not readable as CSV: {e}", file.display()))?;
        if !more {
            break;
        }
        let line = record.position().map_or(0, |p| p.line());
        let header = std::mem::take(&mut first);
        match parse_row(&record, region, &known) {
            Ok(row) => batch.push(row),
            Err(RowError::CarrierNotNumeric) if header => continue,
            Err(error) => summary.reject(line, error.to_string()),
        }
        if batch.len() >= BATCH_ROWS {
            write_batch(store, kind, &batch).await?;
            summary.imported += batch.len() as u64;
            batch.clear();
            progress.set_position(record.position().map_or(0, |p| p.byte()));
            progress.set_message(format!(
                "{} imported, {} rejected",
                summary.imported, summary.rejected
            ));
        }
    }
    if !batch.is_empty() {
        write_batch(store, kind, &batch).await?;
        summary.imported += batch.len() as u64;
    }
    summary.elapsed = started.elapsed();
    Ok(summary)
}

async fn write_batch(store: &Store, kind: ImportKind, batch: &[(String, i64)]) -> sqlx::Result<()> {
    match kind {
        ImportKind::Ported => store.import_ported(batch).await,
        ImportKind::Blacklist => store.import_blacklist(batch).await,
    }
}

/// Why a CSV row was rejected.
#[derive(Debug, thiserror::Error)]
enum RowError {
    #[error("expected 2 fields (number,carrier_id), found {0}")]
    Fields(usize),
    #[error("the carrier id is not a number")]
    CarrierNotNumeric,
    #[error("no carrier {0} (see `moms admin carrier list`)")]
    UnknownCarrier(i64),
    #[error("{0:?} is not a phone number")]
    Number(String),
}

fn parse_row(
    record: &csv::ByteRecord,
    region: Region,
    known: &HashSet<i64>,
) -> Result<(String, i64), RowError> {
    if record.len() != 2 {
        return Err(RowError::Fields(record.len()));
    }
    let carrier_id: i64 = std::str::from_utf8(&record[1])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(RowError::CarrierNotNumeric)?;
    let raw = String::from_utf8_lossy(&record[0]);
    let number = PhoneNumber::parse(&raw, region).map_err(|_| RowError::Number(raw.to_string()))?;
    if !known.contains(&carrier_id) {
        return Err(RowError::UnknownCarrier(carrier_id));
    }
    Ok((number.digits().to_string(), carrier_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: &[&str]) -> csv::ByteRecord {
        csv::ByteRecord::from(fields.to_vec())
    }

    #[test]
    fn rows_are_checked_field_by_field() {
        let known = HashSet::from([1, 5]);
        let ok = parse_row(&record(&["(310) 555-0123", "5"]), Region::US, &known).unwrap();
        assert_eq!(ok, ("13105550123".to_string(), 5));
        let err = |fields: &[&str]| {
            parse_row(&record(fields), Region::US, &known)
                .unwrap_err()
                .to_string()
        };
        assert!(err(&["3105550123"]).contains("expected 2 fields"));
        assert!(err(&["3105550123", "x"]).contains("not a number"));
        assert!(err(&["3105550123", "9"]).contains("no carrier 9"));
        assert!(err(&["hello", "5"]).contains("\"hello\" is not a phone number"));
    }
}
