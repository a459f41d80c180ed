//! Accepting messages, batched: the hot path of `transaction.send`.
//!
//! Each accepted message is a transaction row, its first two history
//! events and its delivery row, committed together, so an answer of code 1
//! means the message survives a crash. Concurrent sends are gathered by one
//! writer task and committed as multi-row inserts in one transaction, which
//! is what lets SQLite take tens of thousands of sends a second. With a
//! SQLite file the commits run on the store's own thread
//! ([`super::sqlite_thread`]); this module's sqlx path serves the rest.

use crate::store::dual;
use crate::with_db;
use std::collections::HashMap;
use std::sync::Arc;

use rand::Rng;
use sqlx::QueryBuilder;
use tokio::sync::{Notify, mpsc, oneshot};

use super::sqlite_thread::commit_sends;
use super::{Store, now, now_ms};

/// The most messages one commit takes.
const MAX_BATCH: usize = 2048;
/// Rows per multi-row INSERT (SQLite binds at most 32,766 values).
pub(super) const ROWS_PER_STATEMENT: usize = 500;
/// message_ids start above this, so they look like the old service's.
const FIRST_ID: i64 = 100_000_000;

/// The id after the largest stored one (ids start above [`FIRST_ID`]).
pub(super) fn first_free_id(max: i64) -> i64 {
    max.max(FIRST_ID) + 1
}

/// A message ready to be stored: every field already validated.
#[derive(Debug, Clone, Default)]
pub struct NewTransaction {
    pub client_id: i64,
    pub campaign_id: i64,
    pub sender: String,
    pub from_name: String,
    pub recipient: String,
    pub to_input: String,
    pub to_name: String,
    /// `sms` or `mms`.
    pub kind: &'static str,
    pub body: String,
    pub subject: String,
    pub content_id: Option<i64>,
    pub carrier_id: Option<i64>,
    pub callback: String,
    /// JSON array of `[name, value]`.
    pub udp: String,
    pub request_id: Option<String>,
    pub blast_id: Option<i64>,
    /// Held for a double opt-in answer rather than queued.
    pub held: bool,
    /// A promotion to use up: (campaign_id, upper-case code).
    pub promo: Option<(i64, String)>,
    /// The opt status this send sets when the number is UNSEEN (single: 1, double: 0).
    pub opt_in: Option<i64>,
    /// The short code a reply will come to, for routing replies to this campaign.
    pub conversation: Option<String>,
    /// When the validity period ends (unix ms).
    pub expires_ms: i64,
}

/// The answer of an accepted send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub message_id: i64,
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    /// The promotion was used up by sends committed first.
    PromoExhausted,
    /// The store failed; the message was not accepted.
    Store(String),
}

pub(super) type Job = (NewTransaction, oneshot::Sender<Result<Accepted, Rejected>>);

/// Hands sends to the writer task and waits for their commit.
#[derive(Clone)]
pub struct SendBatcher {
    jobs: mpsc::Sender<Job>,
    idle: Arc<Notify>,
}

impl SendBatcher {
    pub fn start(store: Store, wake: Arc<Notify>) -> SendBatcher {
        let (jobs, receiver) = mpsc::channel(MAX_BATCH * 4);
        let idle = Arc::new(Notify::new());
        tokio::spawn(writer(store, receiver, wake, idle.clone()));
        SendBatcher { jobs, idle }
    }

    /// Stores one message; returns once it is committed.
    pub async fn accept(&self, transaction: NewTransaction) -> Result<Accepted, Rejected> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send((transaction, reply))
            .await
            .map_err(|_| Rejected::Store("the writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| Rejected::Store("the writer has stopped".into()))?
    }

    /// Waits until every send handed in so far is committed.
    pub async fn flush(&self) {
        while self.jobs.capacity() < self.jobs.max_capacity() {
            let notified = self.idle.notified();
            if self.jobs.capacity() == self.jobs.max_capacity() {
                break;
            }
            let _ = tokio::time::timeout(std::time::Duration::from_millis(50), notified).await;
        }
    }
}

async fn writer(
    store: Store,
    mut receiver: mpsc::Receiver<Job>,
    wake: Arc<Notify>,
    idle: Arc<Notify>,
) {
    let mut next_id: Option<i64> = None;
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        if next_id.is_none() {
            match store.max_transaction_id().await {
                Ok(max) => next_id = Some(first_free_id(max)),
                Err(error) => {
                    fail_all(&mut batch, &error.to_string());
                    continue;
                }
            }
        }
        let first = next_id.expect("set above");
        let mut result = commit(&store, &mut batch, first).await;
        if result.is_err() {
            // Another process (an admin command, an inbound reply) may have taken
            // ids we meant to use: read the highest again and retry once.
            if let Ok(max) = store.max_transaction_id().await {
                result = commit(&store, &mut batch, first_free_id(max)).await;
            }
        }
        match result {
            Ok(next) => {
                next_id = Some(next);
                wake.notify_one();
            }
            Err(error) => {
                tracing::error!(%error, "accepting sends failed");
                next_id = None;
                fail_all(&mut batch, &error.to_string());
            }
        }
        batch.clear();
        idle.notify_waiters();
    }
}

/// Commits a batch on the store's SQLite thread, or through sqlx without one.
async fn commit(store: &Store, batch: &mut Vec<Job>, first_id: i64) -> Result<i64, String> {
    store.check_faults().map_err(|e| e.to_string())?;
    if !store.has_thread() {
        return store
            .insert_sends(batch, first_id)
            .await
            .map_err(|e| e.to_string());
    }
    // Jobs the thread never gives back (it stopped) are dropped with their
    // answer channels: their senders see the writer gone. The thread reads
    // the first free id inside its transaction: blast pages take ids too.
    let jobs = std::mem::take(batch);
    let on_thread = store
        .write_on_thread(move |connection| {
            let mut jobs = jobs;
            let result = commit_sends(connection, &mut jobs);
            (jobs, result.map_err(|e| e.to_string()))
        })
        .await;
    match on_thread {
        Some(Ok((jobs, result))) => {
            *batch = jobs;
            result
        }
        Some(Err(error)) => Err(error),
        None => Err("the store has no SQLite thread".into()),
    }
}

fn fail_all(batch: &mut Vec<Job>, error: &str) {
    for (_, reply) in batch.drain(..) {
        let _ = reply.send(Err(Rejected::Store(error.to_string())));
    }
}

/// 8 characters `[a-z0-9]` (spec section 4).
pub fn random_hash() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..8)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// The text stored (and sent) for a transaction given its id. A fallback
/// SMS (an SMS that keeps its `content_id`) ends with the media's smart
/// URL, which gets `?r=<id>` here, once the id exists: the phone that opens
/// the link then names its recipient, whose handset is recorded.
pub(super) fn stored_body(t: &NewTransaction, id: i64) -> std::borrow::Cow<'_, str> {
    if t.kind == "sms" && t.content_id.is_some() {
        format!("{}?r={id}", t.body).into()
    } else {
        t.body.as_str().into()
    }
}

/// The two events written at acceptance (spec section 7): history never
/// holds a single event. An SMS with media is an MMS that its carrier
/// cannot carry, sent as text and a link: that is said too.
pub(super) fn first_events(t: &NewTransaction) -> impl Iterator<Item = &'static str> {
    let first = if t.held {
        ["Transaction Created", "Opt-in Requested"]
    } else {
        ["Transaction Created", "Transaction Queued"]
    };
    let fallback = (t.kind == "sms" && t.content_id.is_some()).then_some("MMS Fallback to SMS");
    first.into_iter().chain(fallback)
}

impl Store {
    /// Stores one message at once, outside the batcher: for processes that
    /// have none (admin commands) and for rare internal messages (replies to
    /// inbound keywords).
    pub async fn accept_now(&self, transaction: NewTransaction) -> Result<Accepted, Rejected> {
        let (reply, answer) = oneshot::channel();
        let mut batch = vec![(transaction, reply)];
        let first = self
            .max_transaction_id()
            .await
            .map_err(|e| Rejected::Store(e.to_string()))
            .map(first_free_id)?;
        if let Err(error) = self.insert_sends(&mut batch, first).await {
            fail_all(&mut batch, &error.to_string());
        }
        answer
            .await
            .map_err(|_| Rejected::Store("no answer".into()))?
    }

    /// The answer already given to this client's `request_id` within 24
    /// hours, if any: a retry is answered with it before anything else is checked.
    pub async fn request_answer(
        &self,
        client_id: i64,
        request_id: &str,
    ) -> sqlx::Result<Option<Accepted>> {
        self.check_faults()?;
        with_db!(self, |pool, writer| {
            let mut conn = pool.acquire().await?;
            on::earlier_request(&mut conn, client_id, request_id, now()).await
        })
    }

    pub async fn max_transaction_id(&self) -> sqlx::Result<i64> {
        with_db!(self, |pool, writer| {
            sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM transactions")
                .fetch_one(pool)
                .await
        })
    }

    /// Commits a batch of sends, ids from `first_id` on, answering each job
    /// once committed. Returns the next free id. On error the jobs stay in
    /// `batch`, unanswered.
    async fn insert_sends(&self, batch: &mut Vec<Job>, first_id: i64) -> sqlx::Result<i64> {
        self.check_faults()?;
        with_db!(self, |pool, writer| {
            let now = now();
            let now_ms = now_ms();
            let mut tx = writer.begin().await?;
            let mut answers: Vec<Result<Accepted, Rejected>> = Vec::with_capacity(batch.len());
            let mut rows: Vec<(i64, String, &NewTransaction)> = Vec::with_capacity(batch.len());
            let mut seen_requests: HashMap<(i64, &str), Accepted> = HashMap::new();
            let mut ids = on::new_ids(&mut tx, batch.len() as i64, Some(first_id))
                .await?
                .into_iter();
            let mut next_id = first_id;
            for (send, _) in batch.iter() {
                if let Some(request_id) = send.request_id.as_deref() {
                    if let Some(first) = seen_requests.get(&(send.client_id, request_id)) {
                        answers.push(Ok(first.clone()));
                        continue;
                    }
                    if let Some(first) =
                        on::earlier_request(&mut tx, send.client_id, request_id, now).await?
                    {
                        seen_requests.insert((send.client_id, request_id), first.clone());
                        answers.push(Ok(first));
                        continue;
                    }
                }
                if let Some((campaign_id, code)) = &send.promo
                    && !on::use_promo(&mut tx, *campaign_id, code).await?
                {
                    answers.push(Err(Rejected::PromoExhausted));
                    continue;
                }
                let Some(message_id) = ids.next() else {
                    return Err(sqlx::Error::Protocol("no transaction id left".into()));
                };
                let accepted = Accepted {
                    message_id,
                    hash: random_hash(),
                };
                next_id = next_id.max(message_id + 1);
                if let Some(request_id) = send.request_id.as_deref() {
                    seen_requests.insert((send.client_id, request_id), accepted.clone());
                }
                rows.push((accepted.message_id, accepted.hash.clone(), send));
                answers.push(Ok(accepted));
            }
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                on::insert_rows(&mut tx, chunk, now, now_ms).await?;
            }
            if !rows.is_empty() {
                on::notify_nodes(&mut tx, crate::cluster::DELIVERIES).await?;
            }
            tx.commit().await?;
            for ((_, reply), answer) in batch.drain(..).zip(answers) {
                let _ = reply.send(answer);
            }
            Ok(next_id)
        })
    }
}

dual! {
    /// `count` new transaction ids. On SQLite this process is the only
    /// writer and counts on from `first_id` (`None`: from the largest
    /// stored, read in this transaction); nodes sharing PostgreSQL take
    /// theirs from one sequence (unused ones are left as gaps).
    pub(crate) async fn new_ids(
        tx: &mut Conn,
        count: i64,
        first_id: Option<i64>,
    ) -> sqlx::Result<Vec<i64>> {
        if PG {
            return sqlx::query_scalar("SELECT nextval('transaction_ids') FROM generate_series(1, $1)")
                .bind(count)
                .fetch_all(&mut *tx)
                .await;
        }
        let first = match first_id {
            Some(first) => first,
            None => first_free_id(
                sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM transactions")
                    .fetch_one(&mut *tx)
                    .await?,
            ),
        };
        Ok((first..first + count).collect())
    }

    /// The answer given to an earlier send with this `request_id` within 24 hours.
    pub(crate) async fn earlier_request(
        tx: &mut Conn,
        client_id: i64,
        request_id: &str,
        now: i64,
    ) -> sqlx::Result<Option<Accepted>> {
        let row: Option<(i64, String)> = sqlx::query_as(
            "SELECT t.id, t.hash FROM request_ids r JOIN transactions t ON t.id = r.transaction_id
             WHERE r.client_id = $1 AND r.request_id = $2 AND r.created_at > $3",
        )
        .bind(client_id)
        .bind(request_id)
        .bind(now - 86_400)
        .fetch_optional(&mut *tx)
        .await?;
        Ok(row.map(|(message_id, hash)| Accepted { message_id, hash }))
    }

    /// Uses a promotion once; false when it is used up.
    pub(crate) async fn use_promo(tx: &mut Conn, campaign_id: i64, code: &str) -> sqlx::Result<bool> {
        let done = sqlx::query(
            "UPDATE promos SET uses = uses + 1
             WHERE campaign_id = $1 AND code_key = $2 AND (max_uses IS NULL OR uses < max_uses)",
        )
        .bind(campaign_id)
        .bind(code)
        .execute(&mut *tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn insert_rows(
        tx: &mut Conn,
        rows: &[(i64, String, &NewTransaction)],
        now: i64,
        now_ms: i64,
    ) -> sqlx::Result<()> {
        let mut insert: QueryBuilder<Db> = QueryBuilder::new(
            "INSERT INTO transactions (id, hash, client_id, campaign_id, sender, from_name, recipient, to_input, to_name,
             kind, body, subject, content_id, status, carrier_id, callback, udp, blast_id, created_at, updated_at) ",
        );
        insert.push_values(rows, |mut b, (id, hash, t)| {
            b.push_bind(*id)
                .push_bind(hash.as_str())
                .push_bind(t.client_id)
                .push_bind(t.campaign_id)
                .push_bind(t.sender.as_str())
                .push_bind(t.from_name.as_str())
                .push_bind(t.recipient.as_str())
                .push_bind(t.to_input.as_str())
                .push_bind(t.to_name.as_str())
                .push_bind(t.kind)
                .push_bind(stored_body(t, *id).into_owned())
                .push_bind(t.subject.as_str())
                .push_bind(t.content_id)
                .push_bind(if t.held { "HELD" } else { "QUEUED" })
                .push_bind(t.carrier_id)
                .push_bind(t.callback.as_str())
                .push_bind(t.udp.as_str())
                .push_bind(t.blast_id)
                .push_bind(now)
                .push_bind(now);
        });
        insert.build().execute(&mut *tx).await?;

        let mut history: QueryBuilder<Db> =
            QueryBuilder::new("INSERT INTO history (transaction_id, at_ms, event) ");
        let events = rows
            .iter()
            .flat_map(|(id, _, t)| first_events(t).map(move |event| (*id, event)));
        history.push_values(events, |mut b, (id, event)| {
            b.push_bind(id).push_bind(now_ms).push_bind(event);
        });
        history.build().execute(&mut *tx).await?;

        let mut deliveries: QueryBuilder<Db> = QueryBuilder::new(
            "INSERT INTO deliveries (transaction_id, stage, due_ms, expires_ms, client_id) ",
        );
        deliveries.push_values(rows, |mut b, (id, _, t)| {
            let (stage, due) = if t.held {
                ("held", t.expires_ms)
            } else {
                ("submit", now_ms)
            };
            b.push_bind(*id)
                .push_bind(stage)
                .push_bind(due)
                .push_bind(t.expires_ms)
                .push_bind(t.client_id);
        });
        deliveries.build().execute(&mut *tx).await?;

        let requests: Vec<_> = rows
            .iter()
            .filter_map(|(id, _, t)| t.request_id.as_deref().map(|r| (*id, t.client_id, r)))
            .collect();
        if !requests.is_empty() {
            let mut insert: QueryBuilder<Db> = QueryBuilder::new(
                "INSERT INTO request_ids (client_id, request_id, transaction_id, created_at) ",
            );
            insert.push_values(&requests, |mut b, (id, client_id, request_id)| {
                b.push_bind(*client_id)
                    .push_bind(*request_id)
                    .push_bind(*id)
                    .push_bind(now);
            });
            // An id older than a day may be given again: it now names the new send.
            insert.push(
                " ON CONFLICT (client_id, request_id) DO UPDATE
                 SET transaction_id = excluded.transaction_id, created_at = excluded.created_at",
            );
            insert.build().execute(&mut *tx).await?;
        }

        let opts: Vec<_> = rows
            .iter()
            .filter_map(|(_, _, t)| t.opt_in.map(|s| (t.recipient.as_str(), t.campaign_id, s)))
            .collect();
        if !opts.is_empty() {
            let mut insert: QueryBuilder<Db> = QueryBuilder::new(
                "INSERT INTO opt_status (number, campaign_id, status, source, updated_at) ",
            );
            insert.push_values(&opts, |mut b, (number, campaign_id, status)| {
                b.push_bind(*number)
                    .push_bind(*campaign_id)
                    .push_bind(*status)
                    .push_bind("send")
                    .push_bind(now);
            });
            // Only an UNSEEN number changes: an opt-out or an earlier opt-in stays.
            insert.push(" ON CONFLICT (number, campaign_id) DO NOTHING");
            insert.build().execute(&mut *tx).await?;
        }

        // The last send of the batch to a number decides its conversation.
        let conversations: HashMap<(&str, &str), i64> = rows
            .iter()
            .filter_map(|(_, _, t)| {
                t.conversation
                    .as_deref()
                    .map(|code| ((code, t.recipient.as_str()), t.campaign_id))
            })
            .collect();
        if !conversations.is_empty() {
            let mut upsert: QueryBuilder<Db> = QueryBuilder::new(
                "INSERT INTO conversations (shortcode, number, campaign_id, updated_at) ",
            );
            upsert.push_values(&conversations, |mut b, ((code, number), campaign_id)| {
                b.push_bind(*code)
                    .push_bind(*number)
                    .push_bind(*campaign_id)
                    .push_bind(now);
            });
            upsert.push(
                " ON CONFLICT (shortcode, number) DO UPDATE SET campaign_id = excluded.campaign_id, updated_at = excluded.updated_at",
            );
            upsert.build().execute(&mut *tx).await?;
        }

        // The carrier each recipient resolved to, for user.info. One row per
        // number: an upsert may not touch the same row twice in one statement.
        let carriers: HashMap<&str, i64> = rows
            .iter()
            .filter_map(|(_, _, t)| t.carrier_id.map(|id| (t.recipient.as_str(), id)))
            .collect();
        if !carriers.is_empty() {
            let mut upsert: QueryBuilder<Db> =
                QueryBuilder::new("INSERT INTO users (number, carrier_id, updated_at) ");
            upsert.push_values(&carriers, |mut b, (number, carrier_id)| {
                b.push_bind(*number).push_bind(*carrier_id).push_bind(now);
            });
            upsert.push(
                " ON CONFLICT (number) DO UPDATE SET carrier_id = excluded.carrier_id, updated_at = excluded.updated_at",
            );
            upsert.build().execute(&mut *tx).await?;
        }
        Ok(())
    }
}
