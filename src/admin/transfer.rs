//! `moms admin export FILE` and `moms admin import FILE`: the whole store
//! in one portable file, to move an installation between SQLite and
//! PostgreSQL (or between machines) without losing a row.
//!
//! Export reads every table in one snapshot, page by page, and streams it
//! to the file ([`dump`] describes the format). Import loads a dump into a
//! fresh database: it refuses a database that holds anything, and a dump of
//! another schema version, then reads the whole dump once to prove it whole
//! (row counts and checksums) before writing a row, loads it in batches of
//! [`BATCH_ROWS`] rows (one transaction each), and finally recounts and
//! re-checksums every table from the database and compares.
//!
//! Both print, per table and overall, the row count and checksum: the same
//! figures at both ends mean the same data.

pub mod dump;
mod sql;

use std::io::IsTerminal;
use std::path::Path;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use super::print;
use crate::store::{Db, Store};
use dump::Tally;

/// Rows per INSERT and per transaction at import.
pub const BATCH_ROWS: usize = 1_000;

/// Rows per page read at export (and when checksumming after an import).
const PAGE_ROWS: usize = 2_000;

/// One table of the schema, as export and import see it.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    pub name: &'static str,
    /// Its primary key; empty for the tables that have none.
    pub key: &'static [&'static str],
    /// A SQLite `WITHOUT ROWID` table, paged by its key instead of rowid.
    pub without_rowid: bool,
    /// The migrations write its rows themselves; import replaces them.
    pub seeded: bool,
    /// The PostgreSQL sequence that hands out its ids, if not an identity
    /// column's: moved past the imported ids.
    pub id_sequence: Option<&'static str>,
}

const fn table(name: &'static str, key: &'static [&'static str]) -> Table {
    Table {
        name,
        key,
        without_rowid: false,
        seeded: false,
        id_sequence: None,
    }
}

/// Every table of the schema (migrations/*) but `schema_migrations`, in an
/// order where no row refers to a row of a later table, so PostgreSQL's
/// foreign keys hold while loading. Export refuses a database with a table
/// missing from this list, so a new migration cannot be forgotten here.
pub const TABLES: &[Table] = &[
    table("clients", &["id"]),
    table("campaigns", &["id"]),
    table("keywords", &["shortcode", "keyword"]),
    table("promos", &["campaign_id", "code_key"]),
    table("carriers", &["id"]),
    table("handsets", &["id"]),
    Table {
        without_rowid: true,
        ..table("users", &["number"])
    },
    table("ported_numbers", &["number"]),
    table("blacklist", &["number", "carrier_id"]),
    table("media", &["id"]),
    table("lists", &["id"]),
    Table {
        without_rowid: true,
        ..table("list_members", &["list_id", "number"])
    },
    table("blasts", &["id"]),
    Table {
        id_sequence: Some("transaction_ids"),
        ..table("transactions", &["id"])
    },
    table("history", &[]),
    table("deliveries", &["transaction_id"]),
    table("request_ids", &["client_id", "request_id"]),
    Table {
        without_rowid: true,
        ..table("opt_status", &["number", "campaign_id"])
    },
    table("smpp_segments", &["transaction_id", "segment"]),
    table("smpp_pending_receipts", &[]),
    table("mm7_messages", &["carrier_id", "message_id"]),
    table("inbound", &["id"]),
    Table {
        without_rowid: true,
        ..table("conversations", &["shortcode", "number"])
    },
    table("webhooks", &["id"]),
    table("audit", &["id"]),
    table("leases", &["name"]),
    Table {
        seeded: true,
        ..table("generation", &["id"])
    },
];

/// What an export or import did: per table, and overall.
#[derive(Debug)]
pub struct Summary {
    pub schema_version: i64,
    pub tallies: Vec<Tally>,
    pub overall: String,
    pub elapsed: Duration,
}

impl Summary {
    fn rows(&self) -> u64 {
        self.tallies.iter().map(|t| t.rows).sum()
    }

    fn rows_per_second(&self) -> f64 {
        self.rows() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn to_json(&self, file: &Path) -> serde_json::Value {
        let tables: Vec<_> = self
            .tallies
            .iter()
            .map(|t| json!({"table": t.table, "rows": t.rows, "checksum": t.checksum.to_hex()}))
            .collect();
        json!({
            "file": file,
            "schema_version": self.schema_version,
            "tables": tables,
            "rows": self.rows(),
            "checksum": self.overall,
            "seconds": self.elapsed.as_secs_f64(),
            "rows_per_second": self.rows_per_second().round(),
        })
    }

    /// The table of tallies and a last line: `{done} N rows … {place} in …`.
    fn to_text(&self, done: &str, place: &str) -> String {
        let mut text = format!(
            "{:<22} {:>12}  checksum (sha-256 sum of rows)\n",
            "table", "rows"
        );
        for tally in &self.tallies {
            text.push_str(&format!(
                "{:<22} {:>12}  {}\n",
                tally.table,
                tally.rows,
                tally.checksum.to_hex()
            ));
        }
        text.push_str(&format!(
            "{:<22} {:>12}  {}\n{done} {} rows (schema version {}) {} in {:.1} s ({:.0} rows/s)",
            "all",
            self.rows(),
            self.overall,
            self.rows(),
            self.schema_version,
            place,
            self.elapsed.as_secs_f64(),
            self.rows_per_second()
        ));
        text
    }
}

/// Progress bars, one per table, on a terminal and without `--json` only.
pub struct Progress {
    hidden: bool,
}

impl Progress {
    pub fn new(as_json: bool) -> Progress {
        Progress {
            hidden: as_json || !std::io::stderr().is_terminal(),
        }
    }

    /// A bar for `total` rows of one table (or of the whole dump).
    pub fn bar(&self, doing: &str, what: &str, total: u64) -> ProgressBar {
        let target = if self.hidden {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let bar = ProgressBar::with_draw_target(Some(total), target);
        bar.set_style(
            ProgressStyle::with_template("{msg:32} {bar:30} {pos:>10}/{len:10} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(format!("{doing} {what}"));
        bar
    }
}

/// `moms admin export FILE`.
pub async fn export(store: &Store, file: &Path, as_json: bool) -> anyhow::Result<()> {
    let progress = Progress::new(as_json);
    let summary = match &store.db {
        Db::Sqlite { pool, .. } => sql::sqlite::export(pool, file, &progress).await?,
        Db::Postgres { pool } => sql::postgres::export(pool, file, &progress).await?,
    };
    print(
        as_json,
        summary.to_json(file),
        &summary.to_text("exported", &format!("to {}", file.display())),
    );
    Ok(())
}

/// `moms admin import FILE`.
pub async fn import(store: &Store, file: &Path, as_json: bool) -> anyhow::Result<()> {
    let progress = Progress::new(as_json);
    let summary = match &store.db {
        Db::Sqlite { pool, writer } => sql::sqlite::import(pool, writer, file, &progress).await?,
        Db::Postgres { pool } => sql::postgres::import(pool, pool, file, &progress).await?,
    };
    print(
        as_json,
        summary.to_json(file),
        &summary.to_text("imported", &format!("from {}", file.display())),
    );
    Ok(())
}
