//! The store: the only module that speaks SQL. One [`Store`] over a SQLite
//! file (the default) or a PostgreSQL database shared by several nodes
//! (see [`backend`]); every object keeps its queries in a file of its own
//! name (`store/list.rs` for lists, …).
//!
//! SQLite runs in WAL mode with `synchronous = NORMAL`: a commit survives
//! the process being killed (`kill -9`); only a power loss can take the last
//! commits back. Writers are serialised by SQLite itself, so the hot path
//! batches: see [`sends`].

pub mod backend;
pub mod blast;
pub mod campaign;
pub mod carrier;
pub mod client;
pub mod delivery;
pub mod inbound;
pub mod keyword;
pub mod lease;
pub mod list;
pub mod media;
pub mod mm7;
pub mod opt_reads;
pub mod privacy;
pub mod promo;
pub mod sends;
pub mod smpp;
pub mod sqlite_reads;
mod sqlite_steps;
pub mod sqlite_thread;
pub mod transaction;
pub mod user;
pub mod webhook;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Acquire, Executor, SqlitePool};

use crate::with_db;
pub use backend::Db;
pub(crate) use backend::dual;

use crate::config::Config;

/// Migrations, numbered alike for both databases, applied in order:
/// (version, name, SQLite text, PostgreSQL text).
const MIGRATIONS: &[(i64, &str, &str, &str)] = &[
    (
        1,
        "init",
        include_str!("../../migrations/sqlite/0001_init.sql"),
        include_str!("../../migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        "smpp",
        include_str!("../../migrations/sqlite/0002_smpp.sql"),
        include_str!("../../migrations/postgres/0002_smpp.sql"),
    ),
    (
        3,
        "fair_claims",
        include_str!("../../migrations/sqlite/0003_fair_claims.sql"),
        include_str!("../../migrations/postgres/0003_fair_claims.sql"),
    ),
    (
        4,
        "webhook_order",
        include_str!("../../migrations/sqlite/0004_webhook_order.sql"),
        include_str!("../../migrations/postgres/0004_webhook_order.sql"),
    ),
    (
        5,
        "client_limits",
        include_str!("../../migrations/sqlite/0005_client_limits.sql"),
        include_str!("../../migrations/postgres/0005_client_limits.sql"),
    ),
    (
        6,
        "carrier_generation",
        include_str!("../../migrations/sqlite/0006_carrier_generation.sql"),
        include_str!("../../migrations/postgres/0006_carrier_generation.sql"),
    ),
    (
        7,
        "mms",
        include_str!("../../migrations/sqlite/0007_mms.sql"),
        include_str!("../../migrations/postgres/0007_mms.sql"),
    ),
    (
        8,
        "cluster",
        include_str!("../../migrations/sqlite/0008_cluster.sql"),
        include_str!("../../migrations/postgres/0008_cluster.sql"),
    ),
    (
        9,
        "drop_deliveries_due",
        include_str!("../../migrations/sqlite/0009_drop_deliveries_due.sql"),
        include_str!("../../migrations/postgres/0009_drop_deliveries_due.sql"),
    ),
    (
        10,
        "keyed_numbers",
        include_str!("../../migrations/sqlite/0010_keyed_numbers.sql"),
        include_str!("../../migrations/postgres/0010_keyed_numbers.sql"),
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
    pub db: Db,
    /// The send path's opt-status reads, gathered into one query each.
    opt_reads: opt_reads::OptReads,
    /// The hot paths' own connection (a SQLite file only).
    thread: Option<std::sync::Arc<sqlite_thread::SqliteThread>>,
    /// The hot paths' reads, run in place (a SQLite file only).
    reads: Option<std::sync::Arc<sqlite_reads::SqliteReads>>,
    #[cfg(feature = "fault-injection")]
    pub faults: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Store {
    /// Opens (creating if needed) the store the configuration names and
    /// brings its schema up to date.
    pub async fn open(config: &Config) -> anyhow::Result<Store> {
        let store = Store::connect(config).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Opens the store without touching its schema (`moms migrate` then
    /// says how many migrations it applied).
    pub async fn connect(config: &Config) -> anyhow::Result<Store> {
        let db = if is_postgres_url(&config.store.url) {
            open_postgres(&config.store.url).await?
        } else {
            open_sqlite(config).await?
        };
        let mut store = Store {
            opt_reads: opt_reads::OptReads::start(db.clone()),
            db,
            thread: None,
            reads: None,
            #[cfg(feature = "fault-injection")]
            faults: Default::default(),
        };
        if let Db::Sqlite { writer, .. } = &store.db {
            store.thread = open_thread(writer).map(std::sync::Arc::new);
            store.reads = open_reads(writer).map(std::sync::Arc::new);
            if store.thread.is_some() {
                // The thread's checkpointer folds the log back now: commits on
                // the writer no longer stop to do it (see sqlite_thread).
                sqlx::query("PRAGMA wal_autocheckpoint = 0")
                    .execute(writer)
                    .await?;
            }
        }
        Ok(store)
    }

    /// Applies the migrations not applied yet; returns how many ran.
    pub async fn migrate(&self) -> anyhow::Result<usize> {
        with_db!(self, |pool, writer| {
            if PG {
                // Nodes starting together would race to apply the same
                // migration: the first takes this lock, the others wait and
                // then find it applied.
                let mut lock = writer.acquire().await?;
                sqlx::query("SELECT pg_advisory_lock($1)")
                    .bind(Exclusive::Migrations as i64)
                    .execute(&mut *lock)
                    .await?;
                let ran = on::migrate_on(&mut lock).await;
                sqlx::query("SELECT pg_advisory_unlock($1)")
                    .bind(Exclusive::Migrations as i64)
                    .execute(&mut *lock)
                    .await?;
                ran
            } else {
                let mut conn = writer.acquire().await?;
                on::migrate_on(&mut conn).await
            }
        })
    }

    /// The operator-change counter; caches are dropped when it moves.
    pub async fn generation(&self) -> sqlx::Result<Generation> {
        let (any, carriers) = with_db!(self, |pool, writer| {
            sqlx::query_as("SELECT value, carriers FROM generation WHERE id = 1")
                .fetch_one(pool)
                .await?
        });
        Ok(Generation { any, carriers })
    }

    /// Tells every running server that carriers, ported numbers or the
    /// blacklist changed (and so, like any change, drops their caches).
    pub async fn bump_carrier_generation(&self) -> sqlx::Result<()> {
        with_db!(self, |pool, writer| {
            let mut conn = writer.acquire().await?;
            sqlx::query(
                "UPDATE generation SET value = value + 1, carriers = carriers + 1 WHERE id = 1",
            )
            .execute(&mut *conn)
            .await?;
            on::notify_nodes(&mut conn, crate::cluster::CHANGED).await?;
        });
        Ok(())
    }

    /// Tells every running server that cached objects changed.
    pub async fn bump_generation(&self) -> sqlx::Result<()> {
        with_db!(self, |pool, writer| {
            let mut conn = writer.acquire().await?;
            sqlx::query("UPDATE generation SET value = value + 1 WHERE id = 1")
                .execute(&mut *conn)
                .await?;
            on::notify_nodes(&mut conn, crate::cluster::CHANGED).await?;
        });
        Ok(())
    }

    pub async fn audit(&self, actor: &str, action: &str, detail: &str) -> sqlx::Result<()> {
        with_db!(self, |pool, writer| {
            sqlx::query("INSERT INTO audit (at, actor, action, detail) VALUES ($1, $2, $3, $4)")
                .bind(now())
                .bind(actor)
                .bind(action)
                .bind(detail)
                .execute(writer)
                .await?;
        });
        Ok(())
    }

    /// The newest audit entries, optionally only those naming `number`:
    /// (unix seconds, actor, action, detail).
    pub async fn audit_entries(
        &self,
        number: Option<&str>,
        limit: i64,
    ) -> sqlx::Result<Vec<(i64, String, String, String)>> {
        with_db!(self, |pool, writer| {
            // `$1 || ''` types the parameter as text for PostgreSQL.
            sqlx::query_as(
                "SELECT at, actor, action, detail FROM audit
                 WHERE $1 IS NULL OR detail LIKE '%' || $1 || '%' ESCAPE '\\' ORDER BY id DESC LIMIT $2",
            )
            .bind(number.map(escape_like))
            .bind(limit)
            .fetch_all(pool)
            .await
        })
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
        let Db::Sqlite { writer, .. } = &self.db else {
            return None;
        };
        let turn = match writer.acquire().await {
            Ok(turn) => turn,
            Err(error) => return Some(Err(error.to_string())),
        };
        let result = thread.run(f).await;
        drop(turn);
        Some(result)
    }

    /// Runs a write on the hot paths' SQLite thread, as
    /// [`Store::write_on_thread`], for callers that checked the store has
    /// one ([`Store::has_thread`]): the thread's absence or failure, and
    /// SQLite's errors, come back as sqlx's.
    pub(crate) async fn write_on_thread_checked<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut rusqlite::Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> sqlx::Result<T> {
        let result = self.write_on_thread(f).await;
        flatten(result.unwrap_or_else(|| Err("the store has no SQLite thread".into())))
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
        let Db::Sqlite { writer, .. } = &self.db else {
            return Err("pragmas are SQLite's".into());
        };
        // Test input, not a client's.
        sqlx::query(sqlx::AssertSqlSafe(pragma.clone()))
            .execute(writer)
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

/// A store on a fresh SQLite file, for unit tests; the folder goes with
/// the returned guard.
#[cfg(test)]
pub(crate) async fn test_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config::load(None).expect("defaults");
    config.data_dir = dir.path().to_path_buf();
    let store = Store::open(&config).await.expect("store");
    (dir, store)
}

/// The SQLite pool unit tests inspect rows through.
#[cfg(test)]
pub(crate) fn test_sqlite(store: &Store) -> &SqlitePool {
    match &store.db {
        Db::Sqlite { writer, .. } => writer,
        Db::Postgres { .. } => panic!("unit tests run on SQLite"),
    }
}

/// Whether `store.url` names a PostgreSQL database.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

async fn open_sqlite(config: &Config) -> anyhow::Result<Db> {
    if !config.store.url.is_empty() && !config.store.url.starts_with("sqlite:") {
        anyhow::bail!(
            "store.url {:?}: expected postgres://user@host/database, sqlite:PATH, or empty for <data_dir>/moms.db",
            config.store.url
        );
    }
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create data folder {} (set --data-dir or MOMS_DATA_DIR to a writable folder)",
            config.data_dir.display()
        )
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
    Ok(Db::Sqlite { pool, writer })
}

async fn open_postgres(url: &str) -> anyhow::Result<Db> {
    let options = PgConnectOptions::from_str(url)
        .with_context(|| format!("store.url {:?} is not a PostgreSQL URL (postgres://user:password@host:5432/database)", redacted(url)))?
        .application_name("moms")
        // Notices ("relation … already exists, skipping" at every start)
        // are not worth a log line; warnings still are.
        .options([("client_min_messages", "warning")]);
    let pool = PgPoolOptions::new()
        .max_connections(16)
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
        .with_context(|| {
            format!(
                "cannot connect to PostgreSQL at {} (is it running, does the database exist, may this user log in?)",
                redacted(url)
            )
        })?;
    Ok(Db::Postgres { pool })
}

/// A database URL fit for a log or an error: the password replaced
/// (`postgres://user:password@host` → `postgres://user:<redacted>@host`).
pub fn redacted(url: &str) -> String {
    let mut shown = url.to_string();
    if let Some(at) = shown.find('@')
        && let Some(colon) = shown[..at].rfind(':').filter(|c| *c > 12)
    {
        shown.replace_range(colon + 1..at, "<redacted>");
    }
    shown
}

/// What a writer that must not interleave with another of its kind locks:
/// on SQLite the one write lock (`BEGIN IMMEDIATE`), on PostgreSQL an
/// advisory lock of this number, held until the transaction ends, so nodes
/// take turns too.
#[derive(Debug, Clone, Copy)]
#[repr(i64)]
pub(crate) enum Exclusive {
    Migrations = 7_160_667,
    Clients = 7_160_668,
    Campaigns = 7_160_669,
    Callbacks = 7_160_670,
}

dual! {
    /// Tells the other nodes sharing this PostgreSQL what changed (see
    /// [`crate::cluster`]); sent when the transaction commits. Nothing on
    /// SQLite, which one node uses alone.
    pub(crate) async fn notify_nodes(conn: &mut Conn, what: &str) -> sqlx::Result<()> {
        if PG {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(crate::cluster::CHANNEL)
                .bind(what)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }

    /// Begins a transaction that no other writer of the same kind
    /// interleaves with (see [`Exclusive`]).
    pub(crate) async fn begin_exclusive(
        pool: &sqlx::Pool<Db>,
        kind: Exclusive,
    ) -> sqlx::Result<sqlx::Transaction<'static, Db>> {
        if PG {
            let mut tx = pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(kind as i64)
                .execute(&mut *tx)
                .await?;
            Ok(tx)
        } else {
            pool.begin_with("BEGIN IMMEDIATE").await
        }
    }

    /// Applies the migrations missing on one connection.
    pub(crate) async fn migrate_on(conn: &mut Conn) -> anyhow::Result<usize> {
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
        )
        .await?;
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations")
            .fetch_all(&mut *conn)
            .await?;
        let mut ran = 0;
        for (version, name, sqlite, postgres) in MIGRATIONS {
            if applied.contains(version) {
                continue;
            }
            let mut tx = conn.begin().await?;
            sqlx::raw_sql(if PG { *postgres } else { *sqlite })
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
}

/// Every file's helpers of one database, reached as `on::name` in store
/// code. Public (their items are not) because `with_db!` names them
/// wherever it is expanded, the integration tests included.
macro_rules! helpers_of {
    ($module:ident, $db:ident) => {
        #[doc(hidden)]
        pub mod $module {
            pub(crate) use super::blast::$db::*;
            pub(crate) use super::campaign::$db::*;
            pub(crate) use super::carrier::$db::*;
            pub(crate) use super::client::$db::*;
            pub(crate) use super::delivery::$db::*;
            pub(crate) use super::inbound::$db::*;
            pub(crate) use super::keyword::$db::*;
            pub(crate) use super::list::$db::*;
            pub(crate) use super::media::$db::*;
            pub(crate) use super::privacy::$db::*;
            pub(crate) use super::sends::$db::*;
            pub(crate) use super::smpp::$db::*;
            pub(crate) use super::transaction::$db::*;
            pub(crate) use super::user::$db::*;
            pub(crate) use super::webhook::$db::*;
            pub(crate) use super::$db::*;
            pub(crate) use crate::inbound::$db::*;
        }
    };
}
helpers_of!(on_sqlite, sqlite);
helpers_of!(on_postgres, postgres);

/// The database file of a SQLite pool; `None` for an in-memory database.
fn database_file(writer: &SqlitePool) -> Option<std::path::PathBuf> {
    let path = writer.connect_options().get_filename().to_path_buf();
    let in_memory = path.as_os_str().is_empty() || path.to_string_lossy().contains(":memory:");
    (!in_memory).then_some(path)
}

/// A result from the store's SQLite thread as sqlx's.
pub(crate) fn flatten<T>(result: Result<rusqlite::Result<T>, String>) -> sqlx::Result<T> {
    result
        .map_err(sqlx::Error::Protocol)?
        .map_err(from_rusqlite)
}

/// A rusqlite error (the hot paths' own connections) as sqlx's, which
/// the rest of the store speaks.
pub(crate) fn from_rusqlite(error: rusqlite::Error) -> sqlx::Error {
    sqlx::Error::Protocol(error.to_string())
}

/// The hot paths' thread for a SQLite file; `None` (sqlx only) for an
/// in-memory database or when it cannot be opened.
fn open_thread(writer: &SqlitePool) -> Option<sqlite_thread::SqliteThread> {
    open_beside(
        writer,
        "a thread of its own",
        sqlite_thread::SqliteThread::open,
    )
}

/// The hot paths' in-place readers for a SQLite file; `None` (sqlx only)
/// for an in-memory database or when they cannot be opened.
fn open_reads(writer: &SqlitePool) -> Option<sqlite_reads::SqliteReads> {
    open_beside(writer, "in-place readers", sqlite_reads::SqliteReads::open)
}

/// Connections of the pool's database file opened beside it by `open`;
/// on failure the pool alone serves (said once in the log).
fn open_beside<T>(
    writer: &SqlitePool,
    what: &str,
    open: impl FnOnce(&std::path::Path) -> anyhow::Result<T>,
) -> Option<T> {
    match open(&database_file(writer)?) {
        Ok(opened) => Some(opened),
        Err(error) => {
            tracing::warn!(%error, "cannot open the database for {what}; using the pool only");
            None
        }
    }
}

/// `text` with LIKE's wildcards escaped (by a backslash) so it matches
/// only itself.
pub fn escape_like(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
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
