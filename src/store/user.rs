//! Users (spec section 5.3): a phone number's opt status per campaign, its
//! carrier as last resolved, its handset, and the transactions sent to it.
//!
//! Opt changes are proof that a person asked to stop (or start), so every
//! change writes an `audit` row in the same SQL transaction.

use crate::store::dual;
use crate::with_db;
use sqlx::Row;

use super::{Store, now, now_ms};
use crate::domain::opt::OptStatus;

/// Longest User-Agent kept; longer ones are cut (they are only used to name
/// a handset).
const MAX_USER_AGENT: usize = 512;
/// Longest handset name derived from a User-Agent.
const MAX_HANDSET_NAME: usize = 64;

/// What is known of a number: ids of its carrier and handset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserRow {
    pub carrier_id: Option<i64>,
    /// Handset id and name.
    pub handset: Option<(i64, String)>,
}

/// One row of `user.transactions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserTransaction {
    pub message_id: i64,
    pub hash: String,
    pub campaign_id: i64,
    pub campaign_name: String,
    pub sender: String,
    pub from_name: String,
    pub recipient: String,
    pub to_name: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// Narrows `user.transactions`.
#[derive(Debug, Clone, Default)]
pub struct TransactionFilter {
    pub campaign_id: Option<i64>,
    /// Unix seconds, inclusive.
    pub from: Option<i64>,
    /// Unix seconds, exclusive.
    pub until: Option<i64>,
    pub limit: i64,
}

/// Who changed an opt status, for `opt_status.source` and the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptSource {
    /// `user.setopt` by a client.
    Api { client_id: i64 },
    /// A keyword texted by the user (STOP, START, …).
    Keyword,
}

impl OptSource {
    fn name(self) -> &'static str {
        match self {
            OptSource::Api { .. } => "api",
            OptSource::Keyword => "keyword",
        }
    }

    fn actor(self) -> String {
        match self {
            OptSource::Api { client_id } => format!("client {client_id}"),
            OptSource::Keyword => "user".to_string(),
        }
    }
}

impl Store {
    /// The status of a number for one campaign.
    pub async fn opt_status(&self, number: &str, campaign_id: i64) -> sqlx::Result<OptStatus> {
        self.check_faults()?;
        with_db!(self, |pool, writer| {
            let mut conn = pool.acquire().await?;
            on::opt_status_in(&mut conn, number, campaign_id).await
        })
    }

    /// Every live campaign of the client that has a status for the number.
    pub async fn opt_statuses(
        &self,
        client_id: i64,
        number: &str,
    ) -> sqlx::Result<Vec<(i64, OptStatus)>> {
        self.check_faults()?;
        with_db!(self, |pool, writer| {
            let rows: Vec<(i64, i64)> = sqlx::query_as(
                "SELECT o.campaign_id, o.status FROM opt_status o JOIN campaigns c ON c.id = o.campaign_id
                 WHERE o.number = $1 AND c.client_id = $2 AND c.destroyed_at IS NULL
                 ORDER BY o.campaign_id",
            )
            .bind(number)
            .bind(client_id)
            .fetch_all(pool)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(id, code)| (id, OptStatus::from_stored(Some(code))))
                .collect())
        })
    }

    /// Sets a status through the API, with its audit row, in one commit.
    /// Opting a GREY number in releases its held messages, as a texted YES
    /// would.
    pub async fn set_opt(
        &self,
        number: &str,
        campaign_id: i64,
        status: OptStatus,
        source: OptSource,
    ) -> sqlx::Result<OptStatus> {
        self.check_faults()?;
        with_db!(self, |pool, writer| {
            let mut tx = writer.begin().await?;
            let before = on::set_opt_in(&mut tx, number, campaign_id, status, source).await?;
            if before == OptStatus::Grey && status == OptStatus::OptedIn {
                on::release_held(&mut tx, number, campaign_id).await?;
            }
            tx.commit().await?;
            Ok(before)
        })
    }

    /// The stored carrier and handset of a number.
    pub async fn user(&self, number: &str) -> sqlx::Result<UserRow> {
        self.check_faults()?;
        with_db!(self, |pool, writer| {
            let row = sqlx::query(
                "SELECT u.carrier_id, h.id AS handset_id, h.name AS handset_name
                 FROM users u LEFT JOIN handsets h ON h.id = u.handset_id WHERE u.number = $1",
            )
            .bind(number)
            .fetch_optional(pool)
            .await?;
            let Some(row) = row else {
                return Ok(UserRow::default());
            };
            let handset_id: Option<i64> = row.try_get("handset_id")?;
            let handset_name: Option<String> = row.try_get("handset_name")?;
            Ok(UserRow {
                carrier_id: row.try_get("carrier_id")?,
                handset: handset_id.zip(handset_name),
            })
        })
    }

    /// Remembers the carrier a number resolved to (`None`: no carrier).
    pub async fn set_user_carrier(
        &self,
        number: &str,
        carrier_id: Option<i64>,
    ) -> sqlx::Result<()> {
        self.check_faults()?;
        with_db!(self, |pool, writer| {
            sqlx::query(
                "INSERT INTO users (number, carrier_id, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (number) DO UPDATE SET carrier_id = excluded.carrier_id, updated_at = excluded.updated_at",
            )
            .bind(number)
            .bind(carrier_id)
            .bind(now())
            .execute(writer)
            .await?;
            Ok(())
        })
    }

    /// Forgets the stored carrier and handset of a number.
    pub async fn uncache_user(&self, number: &str) -> sqlx::Result<()> {
        self.check_faults()?;
        with_db!(self, |pool, writer| {
            sqlx::query("DELETE FROM users WHERE number = $1")
                .bind(number)
                .execute(writer)
                .await?;
            Ok(())
        })
    }

    /// Remembers the handset a number uses, named from the User-Agent its
    /// phone sent when it fetched a smart URL.
    pub async fn record_handset(&self, number: &str, user_agent: &str) -> sqlx::Result<()> {
        with_db!(self, |pool, writer| {
            let user_agent = truncate_chars(user_agent.trim(), MAX_USER_AGENT);
            if user_agent.is_empty() {
                return Ok(());
            }
            let mut tx = writer.begin().await?;
            let handset_id: i64 = sqlx::query_scalar(
                "INSERT INTO handsets (user_agent, name) VALUES ($1, $2)
                 ON CONFLICT (user_agent) DO UPDATE SET name = excluded.name RETURNING id",
            )
            .bind(user_agent)
            .bind(handset_name(user_agent))
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO users (number, handset_id, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (number) DO UPDATE SET handset_id = excluded.handset_id, updated_at = excluded.updated_at",
            )
            .bind(number)
            .bind(handset_id)
            .bind(now())
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        })
    }

    /// The client's transactions to a number, newest first.
    pub async fn user_transactions(
        &self,
        client_id: i64,
        number: &str,
        filter: &TransactionFilter,
    ) -> sqlx::Result<Vec<UserTransaction>> {
        self.check_faults()?;
        with_db!(self, |pool, writer| {
            let rows = sqlx::query(
                "SELECT t.id, t.hash, t.campaign_id, c.name AS campaign_name, t.sender, t.from_name,
                        t.recipient, t.to_name, t.created_at
                 FROM transactions t JOIN campaigns c ON c.id = t.campaign_id AND c.client_id = t.client_id
                 WHERE t.client_id = $1 AND t.recipient = $2
                   AND ($3 IS NULL OR t.campaign_id = $3)
                   AND ($4 IS NULL OR t.created_at >= $4)
                   AND ($5 IS NULL OR t.created_at < $5)
                 ORDER BY t.created_at DESC, t.id DESC
                 LIMIT $6",
            )
            .bind(client_id)
            .bind(number)
            .bind(filter.campaign_id)
            .bind(filter.from)
            .bind(filter.until)
            .bind(filter.limit)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok(UserTransaction {
                        message_id: row.try_get("id")?,
                        hash: row.try_get("hash")?,
                        campaign_id: row.try_get("campaign_id")?,
                        campaign_name: row.try_get("campaign_name")?,
                        sender: row.try_get("sender")?,
                        from_name: row.try_get("from_name")?,
                        recipient: row.try_get("recipient")?,
                        to_name: row.try_get("to_name")?,
                        created_at: row.try_get("created_at")?,
                    })
                })
                .collect()
        })
    }
}

/// A handset's name from a User-Agent: the model token of the common
/// formats (`Android 13; SM-G991B Build/…`, `(iPhone; …`, `Nokia6230/2.0`),
/// else the text itself, shortened.
pub fn handset_name(user_agent: &str) -> String {
    let ua = user_agent.trim();
    let name = android_model(ua)
        .or_else(|| apple_device(ua))
        .or_else(|| feature_phone_model(ua))
        .unwrap_or(ua);
    truncate_chars(name.trim(), MAX_HANDSET_NAME).to_string()
}

/// `Mozilla/5.0 (Linux; Android 13; SM-G991B Build/TP1A) …` → `SM-G991B`.
fn android_model(ua: &str) -> Option<&str> {
    let inside = parenthesised(ua)?;
    let mut parts = inside.split(';').map(str::trim);
    parts.find(|p| p.starts_with("Android"))?;
    let model = parts.find(|p| !p.is_empty() && *p != "U" && !is_language_tag(p) && *p != "K")?;
    let model = model.split(" Build/").next().unwrap_or(model).trim();
    Some(model).filter(|m| !m.is_empty())
}

/// `Mozilla/5.0 (iPhone; CPU iPhone OS 16_0 like Mac OS X) …` → `iPhone`.
fn apple_device(ua: &str) -> Option<&str> {
    let first = parenthesised(ua)?.split(';').next()?.trim();
    matches!(first, "iPhone" | "iPad" | "iPod" | "iPod touch").then_some(first)
}

/// `SAMSUNG-SGH-A867/A867UCHJ3 SHP/VPP/R5 …` → `SAMSUNG-SGH-A867`: feature
/// phones put the model first. Browsers that start with `Mozilla/` or
/// `Opera/` say nothing of the phone that way.
fn feature_phone_model(ua: &str) -> Option<&str> {
    let first = ua.split(['/', ' ']).next()?.trim();
    let generic = ["Mozilla", "Opera", "Dalvik", "curl", "Wget"];
    (!first.is_empty()
        && !generic.iter().any(|g| first.eq_ignore_ascii_case(g))
        && ua.contains('/'))
    .then_some(first)
}

fn parenthesised(ua: &str) -> Option<&str> {
    let start = ua.find('(')? + 1;
    let end = start + ua[start..].find(')')?;
    Some(&ua[start..end])
}

/// `en-us`, `de`, `zh-CN`: the locale some Android browsers add.
fn is_language_tag(part: &str) -> bool {
    let mut pieces = part.split(['-', '_']);
    let first_ok = pieces
        .next()
        .is_some_and(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_alphabetic()));
    first_ok
        && pieces
            .all(|p| (2..=4).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

fn truncate_chars(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

dual! {
    /// The status of a number for one campaign, inside a transaction.
    pub(crate) async fn opt_status_in(
        conn: &mut Conn,
        number: &str,
        campaign_id: i64,
    ) -> sqlx::Result<OptStatus> {
        let code: Option<i64> =
            sqlx::query_scalar("SELECT status FROM opt_status WHERE number = $1 AND campaign_id = $2")
                .bind(number)
                .bind(campaign_id)
                .fetch_optional(&mut *conn)
                .await?;
        Ok(OptStatus::from_stored(code))
    }

    /// Sets a status and writes its audit row; returns the status before.
    /// UNSEEN removes the row, because sends opt in only numbers without one.
    pub(crate) async fn set_opt_in(
        conn: &mut Conn,
        number: &str,
        campaign_id: i64,
        status: OptStatus,
        source: OptSource,
    ) -> sqlx::Result<OptStatus> {
        let before = on::opt_status_in(conn, number, campaign_id).await?;
        if status == OptStatus::Unseen {
            sqlx::query("DELETE FROM opt_status WHERE number = $1 AND campaign_id = $2")
                .bind(number)
                .bind(campaign_id)
                .execute(&mut *conn)
                .await?;
        } else {
            sqlx::query(
                "INSERT INTO opt_status (number, campaign_id, status, source, updated_at) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (number, campaign_id) DO UPDATE SET status = excluded.status,
                     source = excluded.source, updated_at = excluded.updated_at",
            )
            .bind(number)
            .bind(campaign_id)
            .bind(status.code())
            .bind(source.name())
            .bind(now())
            .execute(&mut *conn)
            .await?;
        }
        sqlx::query("INSERT INTO audit (at, actor, action, detail) VALUES ($1, $2, $3, $4)")
            .bind(now())
            .bind(source.actor())
            .bind(format!("opt.{}", source.name()))
            .bind(format!(
                "{number} campaign {campaign_id}: {before} -> {status}"
            ))
            .execute(&mut *conn)
            .await?;
        Ok(before)
    }

    /// Queues the messages held for a double opt-in answer (spec section 7:
    /// HELD → QUEUED); returns how many.
    pub(crate) async fn release_held(
        conn: &mut Conn,
        number: &str,
        campaign_id: i64,
    ) -> sqlx::Result<u64> {
        let now_ms = now_ms();
        sqlx::query(
            "UPDATE deliveries SET stage = 'submit', due_ms = $3 WHERE stage = 'held' AND transaction_id IN
                 (SELECT id FROM transactions WHERE recipient = $1 AND campaign_id = $2 AND status = 'HELD')",
        )
        .bind(number)
        .bind(campaign_id)
        .bind(now_ms)
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "INSERT INTO history (transaction_id, at_ms, event)
             SELECT id, $3, 'Transaction Queued' FROM transactions
             WHERE recipient = $1 AND campaign_id = $2 AND status = 'HELD'",
        )
        .bind(number)
        .bind(campaign_id)
        .bind(now_ms)
        .execute(&mut *conn)
        .await?;
        let done = sqlx::query(
            "UPDATE transactions SET status = 'QUEUED', updated_at = $3
             WHERE recipient = $1 AND campaign_id = $2 AND status = 'HELD'",
        )
        .bind(number)
        .bind(campaign_id)
        .bind(now_ms / 1000)
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn android_model_token_names_the_handset() {
        assert_eq!(
            handset_name(
                "Mozilla/5.0 (Linux; Android 13; SM-G991B Build/TP1A.220624.014) AppleWebKit/537.36"
            ),
            "SM-G991B"
        );
        assert_eq!(
            handset_name(
                "Mozilla/5.0 (Linux; U; Android 4.0.2; en-us; Galaxy Nexus Build/ICL53F) AppleWebKit/534.30"
            ),
            "Galaxy Nexus"
        );
        assert_eq!(
            handset_name("Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36"),
            "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36"
        );
    }

    #[test]
    fn apple_devices_are_named_by_their_kind() {
        assert_eq!(
            handset_name(
                "Mozilla/5.0 (iPhone; CPU iPhone OS 16_0 like Mac OS X) AppleWebKit/605.1.15"
            ),
            "iPhone"
        );
    }

    #[test]
    fn feature_phones_put_the_model_first() {
        assert_eq!(
            handset_name("SAMSUNG-SGH-A867/A867UCHJ3 SHP/VPP/R5 NetFront/35 SMM-MMS/1.2.0"),
            "SAMSUNG-SGH-A867"
        );
        assert_eq!(
            handset_name("Nokia6230/2.0 (04.44) Profile/MIDP-2.0"),
            "Nokia6230"
        );
    }

    #[test]
    fn anything_else_is_the_text_shortened() {
        let long = "x".repeat(200);
        assert_eq!(handset_name(&long).len(), MAX_HANDSET_NAME);
        assert_eq!(handset_name("  MMS client  "), "MMS client");
    }
}
