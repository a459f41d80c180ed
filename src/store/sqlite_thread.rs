//! A SQLite connection of the hot paths, on a thread of its own.
//!
//! sqlx runs every SQLite statement on a per-connection worker thread and
//! hands each one over through a channel: a batch of sends (begin, five
//! inserts, commit) cost seven thread hand-overs, and under load the futex
//! wake-ups between threads cost more than SQLite itself. Here a whole
//! piece of work is one hand-over: the thread runs it with rusqlite, with
//! statements prepared once. SQLite only, and used only where measured to
//! matter (accepting sends, recording SMPP results); everything else, and
//! other stores, go through sqlx.
//!
//! Writers must still take turns: callers that write hold the store's sqlx
//! writer connection meanwhile ([`super::Store::write_on_thread`]), so the
//! two never wait in SQLite's busy handler for each other.
//!
//! Checkpoints (copying the write-ahead log back into the database file,
//! with an fsync) run on a second thread of their own, every
//! [`CHECKPOINT_EVERY`], instead of inside whichever commit crosses
//! SQLite's threshold: a checkpoint does not block writers, but a commit
//! that runs one waits for its fsync, and every send behind it too.

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use std::borrow::Cow;

use rusqlite::config::DbConfig;
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::blast::BlastPage;
use super::sends::{
    Accepted, Job, NewTransaction, Rejected, first_events, first_free_id, random_hash, stored_body,
};
use super::{now, now_ms};

type Work = Box<dyn FnOnce(&mut Connection) + Send>;

/// How often the checkpoint thread folds the log back into the database.
pub const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// The handle of the threads; they end when it is dropped.
pub struct SqliteThread {
    work: mpsc::Sender<Work>,
    /// Dropped with the handle: tells the checkpoint thread to stop.
    _checkpoints: mpsc::Sender<()>,
}

impl SqliteThread {
    /// Opens `database` (which the store has already created and migrated)
    /// and starts the thread.
    pub fn open(database: &Path) -> anyhow::Result<SqliteThread> {
        let connection = Connection::open(database)?;
        connection.busy_timeout(Duration::from_secs(10))?;
        connection.pragma_update(None, "journal_mode", "wal")?;
        connection.pragma_update(None, "synchronous", "normal")?;
        // 16 MB: the writes touch the right edge of each table and a few
        // index pages, and the operating system caches the file. A larger
        // cache only filled with a blast's pages (64 MB held the same
        // speed) and, freed and taken again at each reset of the cache,
        // left the C allocator holding three times that.
        connection.pragma_update(None, "cache_size", -16384)?;
        connection.pragma_update(None, "wal_autocheckpoint", 0)?;
        connection.set_prepared_statement_cache_capacity(128);
        // Plans that never depend on the values bound. Without this, SQLite
        // marks a statement whose plan could use a bound value (a `LIMIT ?`
        // in a subquery, as in the worker's claim) to be prepared anew at
        // its next run after any binding, even of the same value: the claim
        // was parsed and planned again at every step.
        connection.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
        let checkpoints = start_checkpoints(database)?;
        let (work, queue) = mpsc::channel::<Work>();
        std::thread::Builder::new()
            .name("moms-sqlite".into())
            .spawn(move || {
                let mut connection = connection;
                while let Ok(work) = queue.recv() {
                    // A piece of work that panics (the delivery's decisions
                    // run here) fails alone: its transaction rolls back as
                    // it unwinds, its caller gets an error, and every other
                    // write of the server goes on.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        work(&mut connection)
                    }));
                }
            })?;
        Ok(SqliteThread {
            work,
            _checkpoints: checkpoints,
        })
    }

    /// Runs `f` on the thread and returns what it returns.
    pub async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> R + Send + 'static,
    ) -> Result<R, String> {
        let (done, outcome) = tokio::sync::oneshot::channel();
        self.work
            .send(Box::new(move |connection| {
                let _ = done.send(f(connection));
            }))
            .map_err(|_| "the SQLite thread has stopped".to_string())?;
        outcome
            .await
            .map_err(|_| "the work on the SQLite thread panicked (see the log)".to_string())
    }
}

/// Starts the checkpoint thread; it stops when the returned sender is dropped.
fn start_checkpoints(database: &Path) -> anyhow::Result<mpsc::Sender<()>> {
    let connection = Connection::open(database)?;
    connection.busy_timeout(Duration::from_secs(1))?;
    let (stop, stopped) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("moms-checkpoint".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY)
            {
                // PASSIVE: copies what it can without waiting for readers or
                // blocking writers; what is left goes at the next turn.
                if let Err(error) =
                    connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                {
                    tracing::warn!(%error, "checkpoint failed");
                }
            }
        })?;
    Ok(stop)
}

/// A multi-row `INSERT`: `head`, then `VALUES` with `row` once per row,
/// then `tail`. Each `?` of `row` is one of its `width` values, in order.
pub(super) struct Insert {
    head: &'static str,
    row: &'static str,
    tail: &'static str,
    width: usize,
}

impl Insert {
    fn sql(&self, rows: usize) -> String {
        let mut sql = String::with_capacity(self.head.len() + rows * (self.row.len() + 2) + 200);
        sql.push_str(self.head);
        sql.push_str(" VALUES ");
        for n in 0..rows {
            if n > 0 {
                sql.push_str(", ");
            }
            sql.push_str(self.row);
        }
        sql.push(' ');
        sql.push_str(self.tail);
        sql
    }
}

/// Rows per statement, largest first: a batch of 100 is one statement of
/// 64, four of 8 and four of 1, each prepared once and kept.
const ROWS_PER_INSERT: [usize; 3] = [64, 8, 1];

const TRANSACTIONS: Insert = Insert {
    head:
        "INSERT INTO transactions (id, hash, client_id, campaign_id, sender, from_name, recipient,
        to_input, to_name, kind, body, subject, content_id, status, carrier_id, callback, udp,
        blast_id, created_at, updated_at)",
    row: "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    tail: "",
    width: 20,
};
pub(super) const HISTORY: Insert = Insert {
    head: "INSERT INTO history (transaction_id, at_ms, event)",
    row: "(?, ?, ?)",
    tail: "",
    width: 3,
};
const DELIVERIES: Insert = Insert {
    head: "INSERT INTO deliveries (transaction_id, stage, due_ms, expires_ms, client_id)",
    row: "(?, ?, ?, ?, ?)",
    tail: "",
    width: 5,
};
const REQUESTS: Insert = Insert {
    head: "INSERT OR REPLACE INTO request_ids (client_id, request_id, transaction_id, created_at)",
    row: "(?, ?, ?, ?)",
    tail: "",
    width: 4,
};
// Only an UNSEEN number changes: an opt-out or an earlier opt-in stays.
const OPT_STATUSES: Insert = Insert {
    head: "INSERT INTO opt_status (number, campaign_id, status, source, updated_at)",
    row: "(?, ?, ?, 'send', ?)",
    tail: "ON CONFLICT (number, campaign_id) DO NOTHING",
    width: 4,
};
// Rows go in batch order, so the last send to a number decides its
// conversation and its carrier.
const CONVERSATIONS: Insert = Insert {
    head: "INSERT INTO conversations (shortcode, number, campaign_id, updated_at)",
    row: "(?, ?, ?, ?)",
    tail: "ON CONFLICT (shortcode, number)
        DO UPDATE SET campaign_id = excluded.campaign_id, updated_at = excluded.updated_at",
    width: 4,
};
const USERS: Insert = Insert {
    head: "INSERT INTO users (number, carrier_id, updated_at)",
    row: "(?, ?, ?)",
    tail: "ON CONFLICT (number)
        DO UPDATE SET carrier_id = excluded.carrier_id, updated_at = excluded.updated_at",
    width: 3,
};
const EARLIER_REQUEST: &str =
    "SELECT t.id, t.hash FROM request_ids r JOIN transactions t ON t.id = r.transaction_id
    WHERE r.client_id = ?1 AND r.request_id = ?2 AND r.created_at > ?3";
const MAX_ID: &str = "SELECT COALESCE(MAX(id), 0) FROM transactions";
const MOVE_BLAST_CURSOR: &str =
    "UPDATE blasts SET cursor = ?3, queued = queued + ?4, skipped = skipped + ?5
    WHERE id = ?1 AND cursor = ?2 AND state = 'queueing'";
const USE_PROMO: &str = "UPDATE promos SET uses = uses + 1
    WHERE campaign_id = ?1 AND code_key = ?2 AND (max_uses IS NULL OR uses < max_uses)";

/// Commits a batch of sends in one transaction and answers each; returns
/// the next free id (on error the jobs stay unanswered). The same rules as
/// the sqlx path (`Store::insert_sends`): a repeated `request_id` gets the
/// first answer, a used-up promotion refuses the send.
pub fn commit_sends(connection: &mut Connection, jobs: &mut Vec<Job>) -> rusqlite::Result<i64> {
    let now = now();
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut rows = SendRows::with_capacity(jobs.len());
    let mut answers: Vec<Result<Accepted, Rejected>> = Vec::with_capacity(jobs.len());
    let mut seen_requests: HashMap<(i64, &str), Accepted> = HashMap::new();
    let mut next_id = next_free_id(&tx)?;
    for (send, _) in jobs.iter() {
        if let Some(request_id) = send.request_id.as_deref() {
            if let Some(first) = seen_requests.get(&(send.client_id, request_id)) {
                answers.push(Ok(first.clone()));
                continue;
            }
            let earlier = tx
                .prepare_cached(EARLIER_REQUEST)?
                .query_row(params![send.client_id, request_id, now - 86_400], |row| {
                    Ok(Accepted {
                        message_id: row.get(0)?,
                        hash: row.get(1)?,
                    })
                })
                .optional()?;
            if let Some(first) = earlier {
                seen_requests.insert((send.client_id, request_id), first.clone());
                answers.push(Ok(first));
                continue;
            }
        }
        if !use_promo(&tx, send)? {
            answers.push(Err(Rejected::PromoExhausted));
            continue;
        }
        let accepted = Accepted {
            message_id: next_id,
            hash: random_hash(),
        };
        next_id += 1;
        rows.push(accepted.message_id, accepted.hash.clone(), send);
        if let Some(request_id) = send.request_id.as_deref() {
            seen_requests.insert((send.client_id, request_id), accepted.clone());
        }
        answers.push(Ok(accepted));
    }
    rows.write(&tx)?;
    drop((seen_requests, rows));
    tx.commit()?;
    for ((_, reply), answer) in jobs.drain(..).zip(answers) {
        let _ = reply.send(answer);
    }
    Ok(next_id)
}

/// Commits a blast page (`Store::queue_blast_page`): its transactions,
/// prompts and cursor move in one transaction. Returns the members refused
/// for a used-up promotion; `None`, writing nothing, when the cursor had
/// moved.
pub fn commit_blast_page(
    connection: &mut Connection,
    page: &BlastPage,
) -> rusqlite::Result<Option<i64>> {
    let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut rows = SendRows::with_capacity(page.sends.len() + page.prompts.len());
    let mut next_id = next_free_id(&tx)?;
    let mut refused = 0;
    for send in &page.sends {
        if !use_promo(&tx, send)? {
            refused += 1;
            continue;
        }
        rows.push(next_id, random_hash(), send);
        next_id += 1;
    }
    for prompt in &page.prompts {
        rows.push(next_id, random_hash(), prompt);
        next_id += 1;
    }
    rows.write(&tx)?;
    drop(rows);
    let moved = tx.prepare_cached(MOVE_BLAST_CURSOR)?.execute(params![
        page.blast_id,
        page.from,
        page.to,
        page.sends.len() as i64 - refused,
        page.skipped + refused,
    ])?;
    if moved != 1 {
        // Dropping the transaction rolls the page back.
        return Ok(None);
    }
    tx.commit()?;
    Ok(Some(refused))
}

/// The id after the largest stored: read inside the writing transaction,
/// as sends and blast pages both take ids.
fn next_free_id(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<i64> {
    let max = tx.prepare_cached(MAX_ID)?.query_row([], |row| row.get(0))?;
    Ok(first_free_id(max))
}

/// Uses up the send's promotion, if it names one; false when it is used up.
fn use_promo(tx: &rusqlite::Transaction<'_>, send: &NewTransaction) -> rusqlite::Result<bool> {
    let Some((campaign_id, code)) = &send.promo else {
        return Ok(true);
    };
    Ok(tx
        .prepare_cached(USE_PROMO)?
        .execute(params![campaign_id, code])?
        == 1)
}

/// The rows of accepted sends, gathered, then written table by table with
/// multi-row statements. One statement per row and table (seven a member)
/// spent most of a blast page's commit setting each statement up and
/// tearing it down; a statement of 64 rows pays that once.
struct SendRows<'t> {
    rows: Vec<SendRow<'t>>,
}

struct SendRow<'t> {
    id: i64,
    hash: String,
    body: Cow<'t, str>,
    send: &'t NewTransaction,
}

impl<'t> SendRows<'t> {
    fn with_capacity(capacity: usize) -> SendRows<'t> {
        SendRows {
            rows: Vec::with_capacity(capacity),
        }
    }

    fn push(&mut self, id: i64, hash: String, send: &'t NewTransaction) {
        let body = stored_body(send, id);
        self.rows.push(SendRow {
            id,
            hash,
            body,
            send,
        });
    }

    /// Writes every row gathered: the transaction, its first events, its
    /// delivery, and what it says of its request id, its number's opt
    /// status, conversation and carrier.
    fn write(&self, tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
        let (now, now_ms) = (now(), now_ms());
        let mut table = Table::new(tx, &TRANSACTIONS);
        for SendRow {
            id,
            hash,
            body,
            send: t,
        } in &self.rows
        {
            table.add([
                int(*id),
                text(hash),
                int(t.client_id),
                int(t.campaign_id),
                text(&t.sender),
                text(&t.from_name),
                text(&t.recipient),
                text(&t.to_input),
                text(&t.to_name),
                text(t.kind),
                text(body),
                text(&t.subject),
                optional(t.content_id),
                text(if t.held { "HELD" } else { "QUEUED" }),
                optional(t.carrier_id),
                text(&t.callback),
                text(&t.udp),
                optional(t.blast_id),
                int(now),
                int(now),
            ])?;
        }
        table.finish()?;
        let mut table = Table::new(tx, &HISTORY);
        for row in &self.rows {
            for event in first_events(row.send) {
                table.add([int(row.id), int(now_ms), text(event)])?;
            }
        }
        table.finish()?;
        let mut table = Table::new(tx, &DELIVERIES);
        for SendRow { id, send: t, .. } in &self.rows {
            let (stage, due) = if t.held {
                ("held", t.expires_ms)
            } else {
                ("submit", now_ms)
            };
            table.add([
                int(*id),
                text(stage),
                int(due),
                int(t.expires_ms),
                int(t.client_id),
            ])?;
        }
        table.finish()?;
        let mut table = Table::new(tx, &REQUESTS);
        for SendRow { id, send: t, .. } in &self.rows {
            if let Some(request_id) = t.request_id.as_deref() {
                table.add([int(t.client_id), text(request_id), int(*id), int(now)])?;
            }
        }
        table.finish()?;
        let mut table = Table::new(tx, &OPT_STATUSES);
        for SendRow { send: t, .. } in &self.rows {
            if let Some(status) = t.opt_in {
                table.add([
                    text(&t.recipient),
                    int(t.campaign_id),
                    int(status),
                    int(now),
                ])?;
            }
        }
        table.finish()?;
        let mut table = Table::new(tx, &CONVERSATIONS);
        for SendRow { send: t, .. } in &self.rows {
            if let Some(code) = t.conversation.as_deref() {
                table.add([text(code), text(&t.recipient), int(t.campaign_id), int(now)])?;
            }
        }
        table.finish()?;
        let mut table = Table::new(tx, &USERS);
        for SendRow { send: t, .. } in &self.rows {
            if let Some(carrier_id) = t.carrier_id {
                table.add([text(&t.recipient), int(carrier_id), int(now)])?;
            }
        }
        table.finish()
    }
}

/// Rows of one [`Insert`] on their way: written [`ROWS_PER_INSERT`]`[0]`
/// at a time as they come, the rest by [`Table::finish`].
pub(super) struct Table<'a, 'v> {
    tx: &'a rusqlite::Transaction<'a>,
    insert: &'a Insert,
    values: Vec<ToSqlOutput<'v>>,
    /// The statement of a whole chunk, once prepared (looking it up in the
    /// cache means building and hashing its text).
    whole: Option<rusqlite::CachedStatement<'a>>,
}

impl<'a, 'v> Table<'a, 'v> {
    pub(super) fn new(tx: &'a rusqlite::Transaction<'a>, insert: &'a Insert) -> Table<'a, 'v> {
        Table {
            tx,
            insert,
            values: Vec::with_capacity(ROWS_PER_INSERT[0] * insert.width),
            whole: None,
        }
    }

    pub(super) fn add<const N: usize>(
        &mut self,
        row: [ToSqlOutput<'v>; N],
    ) -> rusqlite::Result<()> {
        debug_assert_eq!(N, self.insert.width);
        self.values.extend(row);
        if self.values.len() < ROWS_PER_INSERT[0] * self.insert.width {
            return Ok(());
        }
        let statement = match &mut self.whole {
            Some(statement) => statement,
            whole => whole.insert(
                self.tx
                    .prepare_cached(&self.insert.sql(ROWS_PER_INSERT[0]))?,
            ),
        };
        statement.execute(rusqlite::params_from_iter(&self.values))?;
        self.values.clear();
        Ok(())
    }

    /// Writes the rows left, in the largest statements they fill.
    pub(super) fn finish(self) -> rusqlite::Result<()> {
        let mut rest = &self.values[..];
        for rows in ROWS_PER_INSERT {
            let width = rows * self.insert.width;
            if rest.len() < width {
                continue;
            }
            let mut statement = self.tx.prepare_cached(&self.insert.sql(rows))?;
            while rest.len() >= width {
                let (these, after) = rest.split_at(width);
                statement.execute(rusqlite::params_from_iter(these))?;
                rest = after;
            }
        }
        Ok(())
    }
}

pub(super) fn int(n: i64) -> ToSqlOutput<'static> {
    ToSqlOutput::Owned(Value::Integer(n))
}

fn optional(n: Option<i64>) -> ToSqlOutput<'static> {
    n.map_or(ToSqlOutput::Owned(Value::Null), int)
}

pub(super) fn text(s: &str) -> ToSqlOutput<'_> {
    ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_that_panics_fails_alone_and_rolls_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let database = dir.path().join("thread.db");
        Connection::open(&database)
            .and_then(|c| c.execute_batch("CREATE TABLE t (n INTEGER)"))
            .expect("create");
        let thread = SqliteThread::open(&database).expect("open");
        let panicked = thread
            .run::<()>(|c| {
                let tx = c.transaction().expect("begin");
                tx.execute("INSERT INTO t VALUES (1)", []).expect("insert");
                panic!("a decision failed");
            })
            .await;
        assert!(panicked.unwrap_err().contains("panicked"));
        let count = thread
            .run(|c| c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get::<_, i64>(0)))
            .await
            .expect("the thread still runs")
            .expect("count");
        assert_eq!(count, 0, "the panicking work's insert was rolled back");
    }
}
