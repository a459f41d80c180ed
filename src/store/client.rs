//! Clients: the businesses that call the API, their credentials and senders.

use crate::store::dual;
use crate::with_db;
use ipnet::IpNet;
use rand::Rng;
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{Store, now};

/// A client as the API needs it on every request.
#[derive(Debug, Clone)]
pub struct Client {
    pub id: i64,
    pub name: String,
    /// SHA-256 of the token.
    pub token_hash: [u8; 32],
    pub callback_secret: String,
    /// Short codes and E.164 numbers this client may send from.
    pub senders: Vec<String>,
    /// Allowed networks; empty allows every address.
    pub whitelist: Vec<IpNet>,
    /// Sends a second this client may make; 0: no limit.
    pub send_per_second: f64,
    /// Messages a day (in the configured time zone); 0: no limit.
    pub daily_quota: i64,
    pub created_at: i64,
}

/// What `client create` and `client rotate-token` show once.
#[derive(Debug, Clone)]
pub struct NewCredentials {
    pub client_id: i64,
    pub token: String,
    pub callback_secret: String,
}

impl Client {
    /// The default short code: the first sender of 5–6 digits (spec section 4).
    pub fn default_short_code(&self) -> Option<&str> {
        self.senders
            .iter()
            .map(String::as_str)
            .find(|s| (5..=6).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()))
    }

    pub fn may_send_from(&self, sender: &str) -> bool {
        self.senders.iter().any(|s| s == sender)
    }

    pub fn allows_ip(&self, ip: std::net::IpAddr) -> bool {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.whitelist.is_empty() || self.whitelist.iter().any(|net| net.contains(&ip))
    }
}

/// 32 lower-case hex characters from the OS random source.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill(&mut buf[..]);
    hex::encode(buf)
}

pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Parses a comma-separated CIDR list; a bare address is a /32 or /128.
pub fn parse_whitelist(text: &str) -> Result<Vec<IpNet>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    format!(
                        "{s:?} is not an IP address or CIDR (e.g. 203.0.113.0/24, 2001:db8::/32)"
                    )
                })
        })
        .collect()
}

fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

impl Store {
    /// Creates a client; senders are stored as given (already normalised).
    pub async fn create_client(
        &self,
        name: &str,
        senders: &[String],
        whitelist: &[IpNet],
    ) -> sqlx::Result<NewCredentials> {
        with_db!(self, |pool, writer| {
            let token = random_hex(16);
            let callback_secret = random_hex(32);
            let whitelist: Vec<String> = whitelist.iter().map(ToString::to_string).collect();
            let mut tx = on::begin_exclusive(writer, super::Exclusive::Clients).await?;
            let client_id: i64 = sqlx::query_scalar(
                "INSERT INTO clients (id, name, token_hash, callback_secret, senders, whitelist, created_at)
                 VALUES ((SELECT COALESCE(MAX(id) + 1, 1001) FROM clients WHERE id >= 1001), $1, $2, $3, $4, $5, $6)
                 RETURNING id",
            )
            .bind(name)
            .bind(hex::encode(hash_token(&token)))
            .bind(&callback_secret)
            .bind(senders.join(","))
            .bind(whitelist.join(","))
            .bind(now())
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            self.bump_generation().await?;
            Ok(NewCredentials {
                client_id,
                token,
                callback_secret,
            })
        })
    }

    pub async fn client(&self, id: i64) -> sqlx::Result<Option<Client>> {
        self.check_faults()?;
        with_db!(self, |pool, writer| {
            let row = sqlx::query("SELECT * FROM clients WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(on::client_from_row).transpose()
        })
    }

    pub async fn clients(&self) -> sqlx::Result<Vec<Client>> {
        with_db!(self, |pool, writer| {
            let rows = sqlx::query("SELECT * FROM clients ORDER BY id")
                .fetch_all(pool)
                .await?;
            rows.iter().map(on::client_from_row).collect()
        })
    }

    /// A new token (and callback secret); the old token stops working at once.
    pub async fn rotate_token(&self, id: i64) -> sqlx::Result<Option<NewCredentials>> {
        with_db!(self, |pool, writer| {
            let token = random_hex(16);
            let done = sqlx::query("UPDATE clients SET token_hash = $1 WHERE id = $2")
                .bind(hex::encode(hash_token(&token)))
                .bind(id)
                .execute(writer)
                .await?;
            if done.rows_affected() == 0 {
                return Ok(None);
            }
            self.bump_generation().await?;
            let callback_secret: String =
                sqlx::query_scalar("SELECT callback_secret FROM clients WHERE id = $1")
                    .bind(id)
                    .fetch_one(pool)
                    .await?;
            Ok(Some(NewCredentials {
                client_id: id,
                token,
                callback_secret,
            }))
        })
    }

    pub async fn set_whitelist(&self, id: i64, whitelist: &[IpNet]) -> sqlx::Result<bool> {
        with_db!(self, |pool, writer| {
            let text: Vec<String> = whitelist.iter().map(ToString::to_string).collect();
            let done = sqlx::query("UPDATE clients SET whitelist = $1 WHERE id = $2")
                .bind(text.join(","))
                .bind(id)
                .execute(writer)
                .await?;
            self.bump_generation().await?;
            Ok(done.rows_affected() > 0)
        })
    }

    pub async fn set_senders(&self, id: i64, senders: &[String]) -> sqlx::Result<bool> {
        with_db!(self, |pool, writer| {
            let done = sqlx::query("UPDATE clients SET senders = $1 WHERE id = $2")
                .bind(senders.join(","))
                .bind(id)
                .execute(writer)
                .await?;
            self.bump_generation().await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// Sets a client's send limits (0: none); false when there is no such client.
    pub async fn set_client_limits(
        &self,
        id: i64,
        per_second: f64,
        daily: i64,
    ) -> sqlx::Result<bool> {
        with_db!(self, |pool, writer| {
            let done = sqlx::query(
                "UPDATE clients SET send_per_second = $1, daily_quota = $2 WHERE id = $3",
            )
            .bind(per_second)
            .bind(daily)
            .bind(id)
            .execute(writer)
            .await?;
            self.bump_generation().await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// How many messages a client has sent since `since` (unix seconds).
    pub async fn sends_since(&self, client_id: i64, since: i64) -> sqlx::Result<i64> {
        with_db!(self, |pool, writer| {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM transactions WHERE client_id = $1 AND created_at >= $2",
            )
            .bind(client_id)
            .bind(since)
            .fetch_one(pool)
            .await
        })
    }
}

dual! {
    pub(crate) fn client_from_row(row: &DbRow) -> sqlx::Result<Client> {
        let hash_hex: String = row.try_get("token_hash")?;
        let mut token_hash = [0u8; 32];
        hex::decode_to_slice(&hash_hex, &mut token_hash)
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        let whitelist: String = row.try_get("whitelist")?;
        Ok(Client {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            token_hash,
            callback_secret: row.try_get("callback_secret")?,
            senders: split_list(&row.try_get::<String, _>("senders")?),
            whitelist: parse_whitelist(&whitelist).unwrap_or_default(),
            send_per_second: row.try_get("send_per_second")?,
            daily_quota: row.try_get("daily_quota")?,
            created_at: row.try_get("created_at")?,
        })
    }
}
