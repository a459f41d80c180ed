//! Several nodes sharing one PostgreSQL.
//!
//! Nodes keep no state of their own: any node answers the API and claims
//! deliveries (claims skip rows another node holds, see
//! `store::delivery`). What only one node may do at a time, holding an SMPP
//! bind, goes by a [`Lease`] in the store. Nodes wake each other through
//! PostgreSQL's LISTEN/NOTIFY ([`listen`]): a send accepted on one node
//! wakes the worker of the node holding its carrier's bind at once, and an
//! operator's change drops every node's caches at once rather than at the
//! next poll.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::app::App;
use crate::config::Config;
use crate::store::{Db, now_ms};

/// The channel nodes notify each other on; the payload says what changed.
pub const CHANNEL: &str = "moms_wake";
/// New deliveries are due.
pub const DELIVERIES: &str = "deliveries";
/// Cached objects changed (the change counters moved).
pub const CHANGED: &str = "changed";

/// This node's name: `cluster.node`, else `<hostname>:<listen port>`, so a
/// node restarted in place is the same holder and gets its leases back at
/// once instead of waiting for them to lapse.
pub fn node_name(config: &Config) -> String {
    if !config.cluster.node.trim().is_empty() {
        return config.cluster.node.trim().to_string();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "moms".into());
    let port = config.listen.rsplit(':').next().unwrap_or("");
    format!("{host}:{port}")
}

/// A lease this node takes, keeps and gives up (see `store::lease`).
#[derive(Clone)]
pub struct Lease {
    app: Arc<App>,
    pub name: String,
}

impl Lease {
    pub fn new(app: Arc<App>, name: String) -> Lease {
        Lease { app, name }
    }

    fn lease_ms(&self) -> i64 {
        (self.app.config.cluster.lease_secs.max(1) * 1000) as i64
    }

    /// Tries the lease every third of its length until it is this node's;
    /// false when `stop` came first.
    pub async fn take(&self, stop: &mut watch::Receiver<bool>) -> bool {
        let mut waiting = false;
        loop {
            if *stop.borrow() {
                return false;
            }
            if self.try_take().await {
                tracing::info!(lease = %self.name, node = %self.app.node, "lease taken");
                return true;
            }
            if !waiting {
                waiting = true;
                let holder = self.app.store.lease(&self.name).await.ok().flatten();
                tracing::info!(lease = %self.name, holder = ?holder.map(|h| h.0), "lease held by another node; waiting");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.renew_every()) => {}
                _ = stop.changed() => {}
            }
        }
    }

    /// Takes or renews the lease once; false while another node holds it
    /// (or the store cannot say).
    pub async fn try_take(&self) -> bool {
        match self.attempt(now_ms()).await {
            Ok(taken) => taken,
            Err(error) => {
                tracing::warn!(lease = %self.name, %error, "cannot take the lease");
                false
            }
        }
    }

    /// One take or renewal of the lease, as of `now_ms`.
    async fn attempt(&self, now_ms: i64) -> sqlx::Result<bool> {
        let app = &self.app;
        app.store
            .take_lease(&self.name, &app.node, now_ms, self.lease_ms())
            .await
    }

    fn renew_every(&self) -> Duration {
        Duration::from_millis((self.lease_ms() / 3) as u64)
    }

    /// Renews the lease until `stop` changes or the lease is lost, then
    /// raises `halt`. A renewal that fails for a moment (the database
    /// restarting) is retried as long as the lease still runs; once it may
    /// have lapsed, another node may hold it, so this one must stop.
    pub async fn keep(&self, mut stop: watch::Receiver<bool>, halt: watch::Sender<bool>) {
        let mut held_until = now_ms() + self.lease_ms();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.renew_every()) => {}
                _ = stop.changed() => break,
            }
            let now = now_ms();
            match self.attempt(now).await {
                Ok(true) => held_until = now + self.lease_ms(),
                Ok(false) => {
                    tracing::warn!(lease = %self.name, "lease lost to another node");
                    break;
                }
                Err(error) if now + self.renew_every().as_millis() as i64 >= held_until => {
                    tracing::warn!(lease = %self.name, %error, "cannot renew the lease before it lapses; letting go");
                    break;
                }
                Err(error) => {
                    tracing::warn!(lease = %self.name, %error, "lease renewal failed; retrying")
                }
            }
        }
        let _ = halt.send(true);
    }

    /// Gives the lease up at a clean stop.
    pub async fn release(&self) {
        if let Err(error) = self
            .app
            .store
            .release_lease(&self.name, &self.app.node)
            .await
        {
            tracing::warn!(lease = %self.name, %error, "cannot release the lease; it lapses by itself");
        }
    }
}

/// Wakes this node's loops when another node notifies (PostgreSQL only).
pub async fn listen(app: Arc<App>, mut stop: watch::Receiver<bool>) {
    let Db::Postgres { pool } = &app.store.db else {
        return;
    };
    let mut failures = 0u32;
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect_with(pool).await {
            Ok(listener) => listener,
            Err(error) => {
                failures += 1;
                tracing::warn!(%error, "cannot listen for other nodes; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(crate::smpp::session::backoff(failures)) => continue,
                    _ = stop.changed() => return,
                }
            }
        };
        if let Err(error) = listener.listen(CHANNEL).await {
            tracing::warn!(%error, "LISTEN failed; retrying");
            failures += 1;
            continue;
        }
        failures = 0;
        loop {
            tokio::select! {
                notification = listener.try_recv() => match notification {
                    Ok(Some(notification)) => wake(&app, notification.payload()),
                    Ok(None) => {
                        // The connection dropped (the next call reconnects):
                        // whatever was notified meanwhile is found by a look now.
                        tracing::warn!("lost the connection listening for other nodes; reconnecting");
                        wake(&app, DELIVERIES);
                        wake(&app, CHANGED);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot listen for other nodes; retrying");
                        failures += 1;
                        break;
                    }
                },
                _ = stop.changed() => return,
            }
        }
    }
}

fn wake(app: &App, what: &str) {
    match what {
        DELIVERIES => app.delivery_wake.notify_one(),
        CHANGED => app.changed_wake.notify_one(),
        _ => {}
    }
}
