//! The store: the only module that speaks SQL. One [`Store`] over a SQLite
//! file (the default); every object keeps its queries in a file of its own
//! name (`store/list.rs` for lists, …).
//!
//! SQLite runs in WAL mode with `synchronous = NORMAL`: a commit survives
//! the process being killed (`kill -9`); only a power loss can take the last
//! commits back. Writers are serialised by SQLite itself, so the hot path
//! batches: see [`sends`].

pub mod blast;
pub mod campaign;
pub mod carrier;
pub mod client;
pub mod delivery;
pub mod inbound;
pub mod keyword;
pub mod list;
pub mod media;
pub mod mm7;
pub mod opt_reads;
pub mod privacy;
pub mod promo;
pub mod sends;
pub mod smpp;
pub mod sqlite_thread;
pub mod transaction;
pub mod user;
pub mod webhook;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Executor, SqlitePool};

use crate::config::Config;

/// Migrations, numbered alike for every backend, applied in order.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "smpp",
        include_str!("../../migrations/sqlite/0002_smpp.sql"),
    ),
    (
        3,
        "fair_claims",
        include_str!("../../migrations/sqlite/0003_fair_claims.sql"),
    ),
    (
        4,
        "webhook_order",
        include_str!("../../migrations/sqlite/0004_webhook_order.sql"),
    ),
    (
        5,
        "client_limits",
        include_str!("../../migrations/sqlite/0005_client_limits.sql"),
    ),
    (
        6,
        "carrier_generation",
        include_str!("../../migrations/sqlite/0006_carrier_generation.sql"),
    ),
    (
        7,
        "mms",
        include_str!("../../migrations/sqlite/0007_mms.sql"),
    ),
];

/// The change counters running servers watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation {
    /// Moves on every operator or API change of a cached object.
    pub any: i64,
    /// Moves only when carriers, ported numbers or the blacklist change.
    pub carriers: i64,
}

#[derive(Clone)]
pub struct Store {
    /// Reads: several connections, which WAL lets run beside the writer.
    pub pool: SqlitePool,
    /// Writes: one connection. SQLite takes one writer at a time anyway;
    /// queueing writers here, in order, beats letting them collide and
    /// back off in SQLite's busy handler (tens of milliseconds each).
    pub writer: SqlitePool,
    /// The send path's opt-status reads, gathered into one query each.
    opt_reads: opt_reads::OptReads,
    /// The hot paths' own connection (a SQLite file only).
    thread: Option<std::sync::Arc<sqlite_thread::SqliteThread>>,
    #[cfg(feature = "fault-injection")]
    pub faults: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Store {
    /// Opens (creating if needed) the store the configuration names and
    /// brings its schema up to date.
    pub async fn open(config: &Config) -> anyhow::Result<Store> {
        if !config.store.url.is_empty() && !config.store.url.starts_with("sqlite:") {
            anyhow::bail!(
                "store.url {:?}: this build supports SQLite only; leave store.url empty to use <data_dir>/moms.db",
                config.store.url
            );
        }
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!("cannot create data folder {} (set --data-dir or MOMS_DATA_DIR to a writable folder)", config.data_dir.display())
        })?;
        let options = if config.store.url.is_empty() {
            SqliteConnectOptions::new().filename(config.database_path())
        } else {
            SqliteConnectOptions::from_str(&config.store.url)?
        }
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .pragma("cache_size", "-65536")
        .pragma("temp_store", "memory");
        let opening = || {
            format!(
                "cannot open the database {}",
                config.database_path().display()
            )
        };
        // A pool pings a connection before lending it by default: for SQLite
        // that is a round trip to the connection's thread for nothing (there
        // is no network to lose), which doubled the cost of a one-query read.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .with_context(opening)?;
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .with_context(opening)?;
        let mut store = Store {
            opt_reads: opt_reads::OptReads::start(pool.clone()),
            pool,
            writer,
            thread: None,
            #[cfg(feature = "fault-injection")]
            faults: Default::default(),
        };
        store.migrate().await?;
        store.thread = open_thread(&store.writer).map(std::sync::Arc::new);
        if store.thread.is_some() {
            // The thread's checkpointer folds the log back now: commits on the
            // writer no longer stop to do it (see sqlite_thread).
            sqlx::query("PRAGMA wal_autocheckpoint = 0")
                .execute(&store.writer)
                .await?;
        }
        Ok(store)
    }

    /// Applies the migrations not applied yet; returns how many ran.
    pub async fn migrate(&self) -> anyhow::Result<usize> {
        self.writer
            .execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
            )
            .await?;
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations")
            .fetch_all(&self.pool)
            .await?;
        let mut ran = 0;
        for (version, name, sql) in MIGRATIONS {
            if applied.contains(version) {
                continue;
            }
            let mut tx = self.writer.begin().await?;
            sqlx::raw_sql(*sql)
                .execute(&mut *tx)
                .await
                .with_context(|| format!("migration {version} ({name}) failed"))?;
            sqlx::query(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            )
            .bind(version)
            .bind(name)
            .bind(now())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            ran += 1;
        }
        Ok(ran)
    }

    /// The operator-change counter; caches are dropped when it moves.
    pub async fn generation(&self) -> sqlx::Result<Generation> {
        let (any, carriers) = sqlx::query_as("SELECT value, carriers FROM generation WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(Generation { any, carriers })
    }

    /// Tells every running server that carriers, ported numbers or the
    /// blacklist changed (and so, like any change, drops their caches).
    pub async fn bump_carrier_generation(&self) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE generation SET value = value + 1, carriers = carriers + 1 WHERE id = 1",
        )
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    /// Tells every running server that cached objects changed.
    pub async fn bump_generation(&self) -> sqlx::Result<()> {
        sqlx::query("UPDATE generation SET value = value + 1 WHERE id = 1")
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    pub async fn audit(&self, actor: &str, action: &str, detail: &str) -> sqlx::Result<()> {
        sqlx::query("INSERT INTO audit (at, actor, action, detail) VALUES ($1, $2, $3, $4)")
            .bind(now())
            .bind(actor)
            .bind(action)
            .bind(detail)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    /// The newest audit entries, optionally only those naming `number`:
    /// (unix seconds, actor, action, detail).
    pub async fn audit_entries(
        &self,
        number: Option<&str>,
        limit: i64,
    ) -> sqlx::Result<Vec<(i64, String, String, String)>> {
        sqlx::query_as(
            "SELECT at, actor, action, detail FROM audit
             WHERE $1 IS NULL OR instr(detail, $1) > 0 ORDER BY id DESC LIMIT $2",
        )
        .bind(number)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    /// Whether the hot paths have their own SQLite thread.
    pub(crate) fn has_thread(&self) -> bool {
        self.thread.is_some()
    }

    /// Runs `f` on the hot paths' SQLite thread, holding the writer
    /// connection meanwhile so no other writer of this process runs; `None`
    /// when the store has no such thread (then use sqlx).
    pub(crate) async fn write_on_thread<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut rusqlite::Connection) -> R + Send + 'static,
    ) -> Option<Result<R, String>> {
        let thread = self.thread.as_ref()?;
        let turn = match self.writer.acquire().await {
            Ok(turn) => turn,
            Err(error) => return Some(Err(error.to_string())),
        };
        let result = thread.run(f).await;
        drop(turn);
        Some(result)
    }

    /// Runs a read on the hot paths' SQLite thread; `None` without one.
    pub(crate) async fn read_on_thread<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut rusqlite::Connection) -> R + Send + 'static,
    ) -> Option<Result<R, String>> {
        Some(self.thread.as_ref()?.run(f).await)
    }

    /// In test builds, a switch that makes store calls of the API fail, so
    /// code 500 can be provoked.
    pub fn check_faults(&self) -> sqlx::Result<()> {
        #[cfg(feature = "fault-injection")]
        if self.faults.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(sqlx::Error::Protocol("injected fault".into()));
        }
        Ok(())
    }

    /// In test builds, runs a pragma on every connection that writes (the
    /// pool's writer and the hot paths' thread), so a test can make the
    /// store full (`max_page_count`) or read-only (`query_only`) for real.
    #[cfg(feature = "fault-injection")]
    pub async fn pragma_on_writers(&self, pragma: String) -> Result<(), String> {
        // Test input, not a client's.
        sqlx::query(sqlx::AssertSqlSafe(pragma.clone()))
            .execute(&self.writer)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(run) = self
            .write_on_thread(move |conn| conn.execute_batch(&pragma))
            .await
        {
            run?.map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// The hot paths' thread for a SQLite file; `None` (sqlx only) for an
/// in-memory database or when it cannot be opened.
fn open_thread(writer: &SqlitePool) -> Option<sqlite_thread::SqliteThread> {
    let options = writer.connect_options();
    let path = options.get_filename();
    if path.as_os_str().is_empty() || path.to_string_lossy().contains(":memory:") {
        return None;
    }
    match sqlite_thread::SqliteThread::open(path) {
        Ok(thread) => Some(thread),
        Err(error) => {
            tracing::warn!(%error, "cannot open the database on a thread of its own; using the pool only");
            None
        }
    }
}

/// Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
