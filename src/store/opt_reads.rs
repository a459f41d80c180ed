//! Opt-status reads of the send path, gathered: every `transaction.send`
//! reads its number's opt status, and with SQLite each query is a hand-off
//! to a connection's thread and back. Under load those hand-offs, not the
//! reads, were the cost, so the reads that arrive while one query runs are
//! answered together by the next query, one `VALUES` list of pairs.
//!
//! A caller still waits for its own answer, read after its request came
//! in, so nothing is answered from an older state than a direct query's.

use std::collections::HashMap;

use sqlx::{QueryBuilder, Row};

use crate::with_db;
use tokio::sync::{mpsc, oneshot};

/// The most lookups one query answers (two bound values each).
const MAX_BATCH: usize = 1024;

type Answer = Result<Option<i64>, String>;
type Lookup = ((String, i64), oneshot::Sender<Answer>);

/// Hands lookups to the reading task.
#[derive(Clone)]
pub struct OptReads {
    lookups: mpsc::Sender<Lookup>,
}

impl OptReads {
    /// Starts the reading task on the current runtime; it ends when the
    /// last handle is dropped.
    pub fn start(db: super::Db) -> OptReads {
        let (lookups, receiver) = mpsc::channel(MAX_BATCH * 4);
        tokio::spawn(reader(db, receiver));
        OptReads { lookups }
    }

    /// The status of `number` for `campaign_id`; `None` when the reading
    /// task is gone (its runtime ended), and the caller reads directly.
    pub async fn status(
        &self,
        number: &str,
        campaign_id: i64,
    ) -> Option<sqlx::Result<Option<i64>>> {
        let (reply, answer) = oneshot::channel();
        self.lookups
            .send(((number.to_string(), campaign_id), reply))
            .await
            .ok()?;
        let answer = answer.await.ok()?;
        Some(answer.map_err(sqlx::Error::Protocol))
    }
}

async fn reader(db: super::Db, mut receiver: mpsc::Receiver<Lookup>) {
    let mut batch: Vec<Lookup> = Vec::with_capacity(MAX_BATCH);
    while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
        match read(&db, &batch).await {
            Ok(found) => {
                for (key, reply) in batch.drain(..) {
                    let _ = reply.send(Ok(found.get(&key).copied()));
                }
            }
            Err(error) => {
                let error = error.to_string();
                for (_, reply) in batch.drain(..) {
                    let _ = reply.send(Err(error.clone()));
                }
            }
        }
    }
}

/// The statuses of the batch's pairs that have one (UNSEEN ones have no row).
async fn read(db: &super::Db, batch: &[Lookup]) -> sqlx::Result<HashMap<(String, i64), i64>> {
    with_db!(db, |pool, writer| {
        let mut select: QueryBuilder<Db> = QueryBuilder::new("WITH s (number, campaign_id) AS (");
        select.push_values(batch, |mut b, ((number, campaign_id), _)| {
            b.push_bind(number.as_str()).push_bind(*campaign_id);
        });
        select.push(
            ") SELECT o.number, o.campaign_id, o.status FROM s
             JOIN opt_status o ON o.number = s.number AND o.campaign_id = s.campaign_id",
        );
        // Its text changes with the batch size: not worth a cached statement.
        let rows = select.build().persistent(false).fetch_all(pool).await?;
        rows.iter()
            .map(|row| Ok(((row.try_get(0)?, row.try_get(1)?), row.try_get(2)?)))
            .collect()
    })
}

#[cfg(test)]
mod tests {

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_lookups_each_get_their_own_status() {
        let (_dir, store) = crate::store::test_store().await;
        sqlx::query(
            "INSERT INTO opt_status (number, campaign_id, status, updated_at) VALUES
             ('13105550100', 1, 1, 0), ('13105550100', 2, -2, 0), ('13105550101', 1, 0, 0)",
        )
        .execute(crate::store::test_sqlite(&store))
        .await
        .expect("seed");
        let asked = [
            ("13105550100", 1, Some(1)),
            ("13105550100", 2, Some(-2)),
            ("13105550101", 1, Some(0)),
            ("13105550101", 2, None),
            ("13105550102", 1, None),
        ];
        let lookups = (0..200).map(|i| {
            let store = store.clone();
            let (number, campaign_id, expected) = asked[i % asked.len()];
            tokio::spawn(async move {
                let status = store
                    .opt_status_of(number, campaign_id)
                    .await
                    .expect("read");
                assert_eq!(status, expected, "{number} in campaign {campaign_id}");
            })
        });
        for lookup in lookups.collect::<Vec<_>>() {
            lookup.await.expect("lookup");
        }
    }
}
