//! Carriers, ported numbers and blacklists as stored. Numbers are stored
//! as E.164 digits (TEXT); the in-memory table keys them as integers.
//!
//! Imports of ported numbers and blacklists come in batches: one SQL
//! transaction per batch, multi-row `INSERT … ON CONFLICT` statements
//! inside it, so millions of rows take seconds and a running server's
//! writes interleave between batches.

use crate::store::dual;
use crate::with_db;
use futures_util::TryStreamExt;
use std::collections::{HashMap, HashSet};

use sqlx::{QueryBuilder, Row};

use super::{Store, now};
use crate::config::CarrierConfig;
use crate::domain::carrier::{Carrier, CarrierTable, number_key};
use crate::domain::phone::PhoneNumber;

/// Rows per `INSERT` statement of an import batch: two or three bound
/// values each stays well under SQLite's limit of 32,766 variables.
const ROWS_PER_STATEMENT: usize = 2_000;

/// The carrier table's rows come packed, 50,000 to a string (see
/// [`Store::load_numbers`]); `$1` is the last rowid read.
const PORTED_CHUNK: &str = "SELECT max(rowid), group_concat(number || ':' || carrier_id, ',')
    FROM (SELECT rowid, number, carrier_id FROM ported_numbers WHERE rowid > $1 ORDER BY rowid LIMIT 50000)";
const BLACKLIST_CHUNK: &str = "SELECT max(rowid), group_concat(number || ':' || carrier_id, ',')
    FROM (SELECT rowid, number, carrier_id FROM blacklist WHERE rowid > $1 ORDER BY rowid LIMIT 50000)";
/// PostgreSQL has no rowid, and hands rows over a socket cheaply: its rows
/// are streamed one by one.
const PORTED_ROWS: &str = "SELECT number, carrier_id FROM ported_numbers";
const BLACKLIST_ROWS: &str = "SELECT number, carrier_id FROM blacklist";

/// How many ported numbers and barred numbers name a carrier.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CarrierCounts {
    pub ported: i64,
    pub barred: i64,
}

impl Store {
    /// Loads every carrier, ported number and barred number into memory.
    /// Rows are streamed into the maps, so a million ported numbers never
    /// sit in memory twice.
    pub async fn carrier_table(&self) -> sqlx::Result<CarrierTable> {
        with_db!(self, |pool, writer| {
            let started = std::time::Instant::now();
            let carriers = self.carriers().await?;
            let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ported_numbers")
                .fetch_one(pool)
                .await?;
            let mut ported = HashMap::with_capacity(usize::try_from(count).unwrap_or(0));
            self.load_numbers(PORTED_CHUNK, PORTED_ROWS, |key, carrier_id| {
                ported.insert(key, carrier_id);
            })
            .await?;
            let mut blacklist = HashSet::new();
            self.load_numbers(BLACKLIST_CHUNK, BLACKLIST_ROWS, |key, carrier_id| {
                blacklist.insert((key, carrier_id));
            })
            .await?;
            let (ported_len, barred_len) = (ported.len(), blacklist.len());
            let table = CarrierTable::new(carriers, ported, blacklist);
            tracing::debug!(
                ported = ported_len,
                barred = barred_len,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "carrier table loaded"
            );
            Ok(table)
        })
    }

    /// Reads every (number, carrier id) that `chunk_sql` packs into `each`.
    /// Rows come packed, tens of thousands to a string, because handing
    /// SQLite rows over one at a time costs microseconds each: over a
    /// million rows, seconds.
    async fn load_numbers(
        &self,
        chunk_sql: &'static str,
        rows_sql: &'static str,
        mut each: impl FnMut(u64, i64),
    ) -> sqlx::Result<()> {
        with_db!(self, |pool, writer| {
            if PG {
                let mut rows = sqlx::query_as::<_, (String, i64)>(rows_sql).fetch(pool);
                while let Some((number, carrier_id)) = rows.try_next().await? {
                    if let Some(key) = number_key(&number) {
                        each(key, carrier_id);
                    }
                }
                return Ok(());
            }
            let mut after = 0_i64;
            loop {
                let (last, packed): (Option<i64>, Option<String>) = sqlx::query_as(chunk_sql)
                    .bind(after)
                    .fetch_one(pool)
                    .await?;
                let (Some(last), Some(packed)) = (last, packed) else {
                    return Ok(());
                };
                for pair in packed.split(',') {
                    let parsed = pair.split_once(':').and_then(|(number, carrier_id)| {
                        Some((number_key(number)?, carrier_id.parse().ok()?))
                    });
                    if let Some((key, carrier_id)) = parsed {
                        each(key, carrier_id);
                    }
                }
                after = last;
            }
        })
    }

    /// Every stored carrier, by id.
    pub async fn carriers(&self) -> sqlx::Result<Vec<Carrier>> {
        with_db!(self, |pool, writer| {
            sqlx::query("SELECT id, name, prefixes, served, mms, connector, mms_max_bytes FROM carriers ORDER BY id")
                .fetch_all(pool)
                .await?
                .iter()
                .map(on::carrier_from_row)
                .collect()
        })
    }

    pub async fn carrier(&self, id: i64) -> sqlx::Result<Option<Carrier>> {
        with_db!(self, |pool, writer| {
            sqlx::query("SELECT id, name, prefixes, served, mms, connector, mms_max_bytes FROM carriers WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?
                .as_ref()
                .map(on::carrier_from_row)
                .transpose()
        })
    }

    /// Ported and barred numbers per carrier id.
    pub async fn carrier_counts(&self) -> sqlx::Result<HashMap<i64, CarrierCounts>> {
        with_db!(self, |pool, writer| {
            let mut counts: HashMap<i64, CarrierCounts> = HashMap::new();
            let ported: Vec<(i64, i64)> = sqlx::query_as(
                "SELECT carrier_id, COUNT(*) FROM ported_numbers GROUP BY carrier_id",
            )
            .fetch_all(pool)
            .await?;
            for (id, n) in ported {
                counts.entry(id).or_default().ported = n;
            }
            let barred: Vec<(i64, i64)> =
                sqlx::query_as("SELECT carrier_id, COUNT(*) FROM blacklist GROUP BY carrier_id")
                    .fetch_all(pool)
                    .await?;
            for (id, n) in barred {
                counts.entry(id).or_default().barred = n;
            }
            Ok(counts)
        })
    }

    /// Inserts or replaces a carrier; `true` when the stored row changed.
    pub async fn upsert_carrier(&self, carrier: &Carrier) -> sqlx::Result<bool> {
        with_db!(self, |pool, writer| {
            if self.carrier(carrier.id).await?.as_ref() == Some(carrier) {
                return Ok(false);
            }
            sqlx::query(
                "INSERT INTO carriers (id, name, prefixes, served, mms, connector, mms_max_bytes) VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, prefixes = excluded.prefixes,
                    served = excluded.served, mms = excluded.mms, connector = excluded.connector,
                    mms_max_bytes = excluded.mms_max_bytes",
            )
            .bind(carrier.id)
            .bind(&carrier.name)
            .bind(carrier.prefixes.join(","))
            .bind(i64::from(carrier.served))
            .bind(i64::from(carrier.mms))
            .bind(&carrier.connector)
            .bind(carrier.mms_max_bytes)
            .execute(writer)
            .await?;
            Ok(true)
        })
    }

    /// Removes a carrier with its ported and barred numbers (they would
    /// point nowhere); `None` when there was no such carrier.
    pub async fn remove_carrier(&self, id: i64) -> sqlx::Result<Option<CarrierCounts>> {
        with_db!(self, |pool, writer| {
            let mut tx = writer.begin().await?;
            let removed = sqlx::query("DELETE FROM carriers WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if removed == 0 {
                return Ok(None);
            }
            let ported = sqlx::query("DELETE FROM ported_numbers WHERE carrier_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let barred = sqlx::query("DELETE FROM blacklist WHERE carrier_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            Ok(Some(CarrierCounts {
                ported: ported as i64,
                barred: barred as i64,
            }))
        })
    }

    /// Upserts the carriers declared in the configuration file (spec
    /// section 7), leaving stored carriers of other ids alone, and tells
    /// running servers when anything changed. Returns how many changed.
    pub async fn apply_configured_carriers(
        &self,
        configured: &[CarrierConfig],
    ) -> anyhow::Result<usize> {
        let mut seen = HashSet::new();
        let mut carriers = Vec::with_capacity(configured.len());
        for entry in configured {
            let carrier = entry.to_carrier();
            carrier
                .validate()
                .map_err(|e| anyhow::anyhow!("[[carriers]] in the configuration: {e}"))?;
            if !seen.insert(carrier.id) {
                anyhow::bail!(
                    "[[carriers]] in the configuration: id {} appears twice; give each carrier its own id",
                    carrier.id
                );
            }
            carriers.push(carrier);
        }
        let mut changed = 0;
        for carrier in &carriers {
            if self.upsert_carrier(carrier).await? {
                changed += 1;
            }
        }
        if changed > 0 {
            self.audit(
                "config",
                "carrier.configure",
                &format!("{changed} carriers from the configuration file"),
            )
            .await?;
            self.bump_carrier_generation().await?;
        }
        Ok(changed)
    }

    /// Writes one batch of ported numbers (E.164 digits, carrier id) in one
    /// transaction; a number already ported moves to the new carrier.
    pub async fn import_ported(&self, rows: &[(String, i64)]) -> sqlx::Result<()> {
        with_db!(self, |pool, writer| {
            let mut tx = writer.begin().await?;
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                let mut insert: QueryBuilder<Db> =
                    QueryBuilder::new("INSERT INTO ported_numbers (number, carrier_id) ");
                insert.push_values(chunk, |mut row, (number, carrier_id)| {
                    row.push_bind(number).push_bind(carrier_id);
                });
                insert.push(" ON CONFLICT (number) DO UPDATE SET carrier_id = excluded.carrier_id");
                insert.build().execute(&mut *tx).await?;
            }
            tx.commit().await
        })
    }

    /// Writes one batch of barred numbers (E.164 digits, carrier id) in one
    /// transaction; numbers already barred stay as they are.
    pub async fn import_blacklist(&self, rows: &[(String, i64)]) -> sqlx::Result<()> {
        with_db!(self, |pool, writer| {
            let at = now();
            let mut tx = writer.begin().await?;
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                let mut insert: QueryBuilder<Db> =
                    QueryBuilder::new("INSERT INTO blacklist (number, carrier_id, created_at) ");
                insert.push_values(chunk, |mut row, (number, carrier_id)| {
                    row.push_bind(number).push_bind(carrier_id).push_bind(at);
                });
                insert.push(" ON CONFLICT (number, carrier_id) DO NOTHING");
                insert.build().execute(&mut *tx).await?;
            }
            tx.commit().await
        })
    }

    /// Forgets a ported-number entry; `false` when there was none.
    pub async fn remove_ported(&self, number: &PhoneNumber) -> sqlx::Result<bool> {
        with_db!(self, |pool, writer| {
            let done = sqlx::query("DELETE FROM ported_numbers WHERE number = $1")
                .bind(number.digits())
                .execute(writer)
                .await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// Lifts a bar on one carrier, or on every carrier with `None`;
    /// returns how many bars were lifted.
    pub async fn unbar_number(
        &self,
        number: &PhoneNumber,
        carrier_id: Option<i64>,
    ) -> sqlx::Result<u64> {
        with_db!(self, |pool, writer| {
            let done = sqlx::query(
                "DELETE FROM blacklist WHERE number = $1 AND ($2 IS NULL OR carrier_id = $2)",
            )
            .bind(number.digits())
            .bind(carrier_id)
            .execute(writer)
            .await?;
            Ok(done.rows_affected())
        })
    }

    /// Bars a number on a carrier, durably.
    pub async fn bar_number(&self, number: &PhoneNumber, carrier_id: i64) -> sqlx::Result<()> {
        with_db!(self, |pool, writer| {
            sqlx::query("INSERT INTO blacklist (number, carrier_id, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
                .bind(number.digits())
                .bind(carrier_id)
                .bind(now())
                .execute(writer)
                .await?;
            Ok(())
        })
    }
}

dual! {
    pub(crate) fn carrier_from_row(row: &DbRow) -> sqlx::Result<Carrier> {
        let prefixes: String = row.try_get("prefixes")?;
        Ok(Carrier {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            prefixes: prefixes
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect(),
            served: row.try_get::<i64, _>("served")? != 0,
            mms: row.try_get::<i64, _>("mms")? != 0,
            connector: row.try_get("connector")?,
            mms_max_bytes: row.try_get("mms_max_bytes")?,
        })
    }
}
