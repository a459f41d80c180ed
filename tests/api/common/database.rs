//! Which database a test's server uses. By default each data folder holds
//! its own SQLite file, so `cargo test` needs nothing installed. With
//! `MOMS_TEST_DATABASE_URL` set to a PostgreSQL server, every data folder
//! gets a fresh database on it instead, dropped with the folder.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{LazyLock, Mutex};

use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// The PostgreSQL server the suite runs against, or None: SQLite.
pub fn postgres_url() -> Option<String> {
    std::env::var("MOMS_TEST_DATABASE_URL")
        .ok()
        .filter(|url| !url.is_empty())
}

/// On PostgreSQL runs, says why a test of SQLite's own behaviour does not
/// run, and returns true: the test then returns at once.
pub fn skip_on_postgres(why: &str) -> bool {
    if postgres_url().is_some() {
        eprintln!("skipped on PostgreSQL: {why}");
        return true;
    }
    false
}

/// The database URL of each live data folder (PostgreSQL runs only), so
/// that a restart on the same folder, or a `moms` process started on it,
/// finds the same database.
static DATABASES: LazyLock<Mutex<HashMap<PathBuf, String>>> = LazyLock::new(Default::default);

/// The `store.url` for the data folder `dir`: None on SQLite runs (the
/// store's file in `dir`), else the database made with the folder.
pub fn database_url(dir: &Path) -> Option<String> {
    postgres_url()?;
    let url = DATABASES.lock().unwrap().get(dir).cloned();
    Some(url.unwrap_or_else(|| {
        panic!(
            "{} was not made by common::data_dir(): on PostgreSQL each data folder needs its database",
            dir.display()
        )
    }))
}

/// `moms` (the built binary) for the data folder `dir`, told the folder's
/// database on PostgreSQL runs.
pub fn moms_command(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_moms"));
    if let Some(url) = database_url(dir) {
        command.env("MOMS_DATABASE_URL", url);
    }
    command
}

/// The `[store]` section of a configuration file for the data folder `dir`
/// (empty on SQLite runs: the store's file in the folder).
pub fn store_section(dir: &Path) -> String {
    match database_url(dir) {
        Some(url) => format!("[store]\nurl = {url:?}\n"),
        None => String::new(),
    }
}

/// Opens the store of a `moms` process running on the data folder `dir`,
/// for the test beside it to read with `moms::with_db!(db, |pool, writer| …)`:
/// on SQLite read-only, so the test takes no part in the process's writes.
pub async fn store_view(dir: &Path) -> moms::store::Db {
    match database_url(dir) {
        Some(url) => moms::store::Db::Postgres {
            pool: sqlx::PgPool::connect(&url).await.expect("database opens"),
        },
        None => {
            let file = format!("sqlite://{}?mode=ro", dir.join("moms.db").display());
            let pool = sqlx::SqlitePool::connect(&file)
                .await
                .expect("database opens");
            moms::store::Db::Sqlite {
                writer: pool.clone(),
                pool,
            }
        }
    }
}

/// A temp data folder; on PostgreSQL runs also a database of its own.
/// Both go when it is dropped.
pub struct DataDir {
    // Dropped first: the registry entry goes before the folder's path can
    // be handed out again.
    database: Option<TestDatabase>,
    temp: tempfile::TempDir,
}

/// A new data folder (and database, on PostgreSQL runs).
pub fn data_dir() -> DataDir {
    let temp = tempfile::tempdir().expect("temp dir");
    let database = postgres_url().map(|server| {
        let database = TestDatabase::create(&server);
        DATABASES
            .lock()
            .unwrap()
            .insert(temp.path().to_path_buf(), database.url.clone());
        database
    });
    DataDir { database, temp }
}

impl DataDir {
    pub fn path(&self) -> &Path {
        self.temp.path()
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if self.database.is_some() {
            DATABASES.lock().unwrap().remove(self.temp.path());
        }
    }
}

/// A database made for one data folder on the PostgreSQL server.
struct TestDatabase {
    /// The server's URL, for the statements that create and drop it.
    server: String,
    name: String,
    url: String,
}

impl TestDatabase {
    fn create(server: &str) -> TestDatabase {
        let name = format!("moms_test_{:016x}", rand::random::<u64>());
        run_on_server(server, format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("cannot create database {name} on {server}: {e}"));
        TestDatabase {
            server: server.to_string(),
            url: with_database(server, &name),
            name,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // FORCE: a server the test did not stop may still hold connections.
        let dropped = run_on_server(
            &self.server,
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
        if let Err(e) = dropped {
            eprintln!("cannot drop test database {}: {e}", self.name);
        }
    }
}

/// Runs one statement on the server's default database. Called from Drop
/// and from sync code, so on a thread of its own with its own runtime
/// (the caller may be inside a runtime, where blocking on one is refused).
fn run_on_server(server: &str, statement: String) -> Result<(), sqlx::Error> {
    let server = server.to_string();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let mut connection = PgConnection::connect(&server).await?;
            sqlx::raw_sql(AssertSqlSafe(statement))
                .execute(&mut connection)
                .await?;
            connection.close().await
        })
    })
    .join()
    .expect("database statement thread")
}

/// `url` naming the database `name` instead of its own (user, host, port
/// and parameters kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let host_start = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[host_start..]
        .find('/')
        .map_or(base.len(), |i| host_start + i);
    format!("{}/{name}{query}", &base[..host_end])
}

#[test]
fn a_database_name_replaces_the_one_in_the_url() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgres://u:p@db/main?sslmode=disable", "x"),
        "postgres://u:p@db/x?sslmode=disable"
    );
    assert_eq!(
        with_database("postgres://db:5433", "x"),
        "postgres://db:5433/x"
    );
}
