//! SQLite reads of the hot paths, run in place on the caller's thread.
//!
//! sqlx hands every statement to its connection's own thread and back. For
//! a point read of a database whose pages are in memory (microseconds of
//! SQLite) those two wake-ups are most of the cost: under load, half of a
//! `transaction.lookup`'s CPU time was the scheduler switching threads.
//! These connections are used by the calling task itself, one at a time
//! each. SQLite only (other stores read through sqlx), and only for the
//! reads measured to matter: a send's opt status and a lookup, point reads
//! of a handful of pages (a page not in the operating system's cache
//! holds the caller's worker thread while it is read from disk).

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::transaction::{Event, Transaction};

/// Connections: more than the runtime's worker threads, so a reader
/// almost never waits for another.
const CONNECTIONS: usize = 4;

pub struct SqliteReads {
    connections: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl SqliteReads {
    /// Opens the read connections on `database`, created and migrated.
    pub fn open(database: &Path) -> anyhow::Result<SqliteReads> {
        let mut connections = Vec::with_capacity(CONNECTIONS);
        for _ in 0..CONNECTIONS {
            let connection = Connection::open(database)?;
            connection.busy_timeout(Duration::from_secs(10))?;
            connection.pragma_update(None, "query_only", true)?;
            // Small: the reads are by key, and the operating system caches the file.
            connection.pragma_update(None, "cache_size", -8192)?;
            connection.set_prepared_statement_cache_capacity(16);
            connections.push(Mutex::new(connection));
        }
        Ok(SqliteReads {
            connections,
            next: AtomicUsize::new(0),
        })
    }

    /// Runs `f` on a free connection (or, when all are busy, the next one in
    /// turn, once it is free).
    fn read<R>(&self, f: impl FnOnce(&Connection) -> R) -> R {
        for connection in &self.connections {
            if let Ok(connection) = connection.try_lock() {
                return f(&connection);
            }
        }
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        let connection = self.connections[turn]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&connection)
    }

    /// A number's opt status for a campaign (`Store::opt_status_of`).
    pub fn opt_status(&self, number: &str, campaign_id: i64) -> rusqlite::Result<Option<i64>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT status FROM opt_status WHERE number = ?1 AND campaign_id = ?2",
            )?
            .query_row(params![number, campaign_id], |row| row.get(0))
            .optional()
        })
    }

    /// A transaction and its history (`Store::transaction_with_history`).
    pub fn transaction_with_history(
        &self,
        id: i64,
    ) -> rusqlite::Result<Option<(Transaction, Vec<Event>)>> {
        self.read(|c| {
            // One read transaction: the history matches the status.
            let c = c.unchecked_transaction()?;
            let transaction = c
                .prepare_cached(
                    "SELECT id, hash, client_id, campaign_id, sender, from_name, recipient, to_input,
                     to_name, kind, content_id, status, code, carrier_id, blast_id
                     FROM transactions WHERE id = ?1",
                )?
                .query_row([id], |row| {
                    Ok(Transaction {
                        id: row.get(0)?,
                        hash: row.get(1)?,
                        client_id: row.get(2)?,
                        campaign_id: row.get(3)?,
                        sender: row.get(4)?,
                        from_name: row.get(5)?,
                        recipient: row.get(6)?,
                        to_input: row.get(7)?,
                        to_name: row.get(8)?,
                        kind: row.get(9)?,
                        content_id: row.get(10)?,
                        status: row.get(11)?,
                        code: row.get(12)?,
                        carrier_id: row.get(13)?,
                        blast_id: row.get(14)?,
                    })
                })
                .optional()?;
            let Some(transaction) = transaction else {
                return Ok(None);
            };
            let events = c
                .prepare_cached(
                    "SELECT at_ms, event FROM history WHERE transaction_id = ?1 ORDER BY at_ms, rowid",
                )?
                .query_map([id], |row| {
                    Ok(Event {
                        at_ms: row.get(0)?,
                        event: row.get(1)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<Event>>>()?;
            Ok(Some((transaction, events)))
        })
    }
}
