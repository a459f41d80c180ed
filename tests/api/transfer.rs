//! `moms admin export` / `moms admin import`: a store filled through the API
//! goes through a dump into a fresh store (and through PostgreSQL and back
//! when `MOMS_TEST_DATABASE_URL` names a server) and comes out row for row,
//! type for type; damaged dumps and occupied targets are refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use moms::admin::transfer::TABLES;
use serde_json::Value;
use sqlx::SqlitePool;
use sqlx::sqlite::SqliteConnectOptions;

use crate::common::*;

/// Runs `moms --data-dir DIR --json ARGS…`, against `database_url` when
/// given (PostgreSQL), else the SQLite file of the folder.
fn moms(dir: &Path, database_url: Option<&str>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_moms"));
    command
        .arg("--data-dir")
        .arg(dir)
        .arg("--json")
        .args(args)
        .env("MOMS_LOG", "warn")
        .env_remove("MOMS_DATABASE_URL")
        .env_remove("MOMS_STORE__URL");
    if let Some(url) = database_url {
        command.env("MOMS_DATABASE_URL", url);
    }
    command.output().expect("moms runs")
}

/// Runs a command that must succeed; its JSON.
#[track_caller]
fn moms_json(dir: &Path, database_url: Option<&str>, args: &[&str]) -> Value {
    let output = moms(dir, database_url, args);
    assert!(
        output.status.success(),
        "moms {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("one JSON object")
}

/// Runs a command that must fail; its error message.
#[track_caller]
fn moms_error(dir: &Path, database_url: Option<&str>, args: &[&str]) -> String {
    let output = moms(dir, database_url, args);
    assert!(
        !output.status.success(),
        "moms {args:?} succeeded: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

async fn open_sqlite(dir: &Path) -> SqlitePool {
    SqlitePool::connect_with(SqliteConnectOptions::new().filename(dir.join("moms.db")))
        .await
        .expect("the store's SQLite file opens")
}

/// Polls until `sql` (a count) reaches `at_least`.
async fn wait_for_count(db: &SqlitePool, sql: &'static str, at_least: i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let count: i64 = sqlx::query_scalar(sql).fetch_one(db).await.unwrap();
        if count >= at_least {
            return;
        }
        assert!(Instant::now() < deadline, "{sql}: {count} < {at_least}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A transaction id beyond those PostgreSQL's sequence hands out first.
const FAR_TRANSACTION_ID: i64 = 900_000_000_000;

/// A store with some of everything, made through the API where the API
/// makes it; its data folder, with the server stopped.
async fn filled_store() -> DataDir {
    // SQLite whatever the suite runs on: the PostgreSQL leg is a test of
    // its own.
    let server = Server::start_with(|config| config.store.url.clear()).await;
    let store = &server.app.store;
    let creds = server.client().await;
    let client_id: i64 = creds.client_id.parse().unwrap();
    let mut west = moms::domain::carrier::Carrier::sandbox_default();
    store.upsert_carrier(&west).await.unwrap();
    west.id = 7;
    west.name = "West \"Wireless\"".into();
    west.prefixes = vec!["44".into()];
    store.upsert_carrier(&west).await.unwrap();
    store
        .import_ported(&[("13105550188".into(), 7), ("13105550189".into(), 1)])
        .await
        .unwrap();
    store
        .import_blacklist(&[("13105550177".into(), 1)])
        .await
        .unwrap();

    let campaign = crate::campaign::create(
        &server,
        &creds,
        &[
            ("name", "Spring ✓ sale"),
            ("from", "21534"),
            ("keyword", "SPRING"),
            ("type", "mms"),
        ],
    )
    .await;
    for params in [
        vec![("code", "Save10")],
        vec![
            ("code", "SUMMER"),
            ("starts", "2024-06-01"),
            ("ends", "2024-08-31"),
            ("max_uses", "100"),
        ],
    ] {
        let mut params = params;
        params.push(("campaign_id", &campaign));
        assert_code(&server.call(&creds, "promo.create", &params).await, 1);
    }
    for (number, status) in [("3105550123", "-2"), ("3105550124", "1")] {
        let params = [
            ("number", number),
            ("campaign_id", campaign.as_str()),
            ("status_code", status),
        ];
        assert_code(&server.call(&creds, "user.setopt", &params).await, 1);
    }
    for (to, message) in [
        ("3108675309", "Hello"),
        ("3108675310", "Ünïcödé 😀 \"quoted\"\nsecond line"),
    ] {
        let params = [
            ("campaign_id", campaign.as_str()),
            ("to", to),
            ("message", message),
            // Nothing listens there: the callback stays queued with its error.
            ("callback", "http://127.0.0.1:9/callback"),
            ("request_id", to),
        ];
        assert_code(&server.call(&creds, "transaction.send", &params).await, 1);
    }
    let list = server
        .call_json(&creds, "list.create", &[("name", "vip")])
        .await["response"]["list_id"]
        .to_string();
    let params = [
        ("list_id", list.as_str()),
        ("numbers", "3108675311,3108675312"),
    ];
    assert_code(&server.call(&creds, "list.append", &params).await, 1);
    let params = [
        ("list_id", list.as_str()),
        ("campaign_id", campaign.as_str()),
        ("message", "To the list"),
    ];
    assert_code(&server.call(&creds, "list.send", &params).await, 1);
    crate::media::uploaded(&server, &creds, "image", "pixel.gif", crate::media::gif()).await;
    for text in ["SPRING hello", "STOP"] {
        moms::inbound::receive_sandbox(store, &server.app.config, "3105550125", "21534", text)
            .await
            .unwrap();
    }

    // A float column, set last: a tenth of a send a second would stop the sends.
    store.set_client_limits(client_id, 0.1, 5000).await.unwrap();

    let db = open_sqlite(server.dir()).await;
    wait_for_count(&db, "SELECT COUNT(*) FROM blasts WHERE state = 'done'", 1).await;
    wait_for_count(
        &db,
        "SELECT COUNT(*) FROM transactions WHERE status IN ('COMPLETE', 'FAILED')",
        4,
    )
    .await;
    db.close().await;
    let dir = server.stop().await;

    // What the API does not write without an SMSC or MMSC, and values at
    // the edges: the widest integers, a duplicated row in a table without
    // a key, NULLs.
    let db = open_sqlite(dir.path()).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TEMP TABLE far AS SELECT * FROM transactions LIMIT 1;
         UPDATE far SET id = {FAR_TRANSACTION_ID};
         INSERT INTO transactions SELECT * FROM far;"
    )))
    .execute(&db)
    .await
    .unwrap();
    for sql in [
        "INSERT INTO smpp_segments VALUES (1, 1, 2, 'abc123', 'DELIVRD', 1, 1700000000000)",
        "INSERT INTO smpp_segments VALUES (1, 2, 2, NULL, '', NULL, NULL)",
        "INSERT INTO smpp_pending_receipts VALUES ('ff', 'FF', 'DELIVRD', 1, '000', 5)",
        "INSERT INTO smpp_pending_receipts VALUES ('ff', 'FF', 'DELIVRD', 1, '000', 5)",
        "INSERT INTO mm7_messages VALUES ('mmsc-1', 7, 1)",
        "INSERT INTO users VALUES ('19999999999', 9223372036854775807, -9223372036854775808, 0)",
        "INSERT INTO history VALUES (1, 1, 'same event twice')",
        "INSERT INTO history VALUES (1, 1, 'same event twice')",
    ] {
        sqlx::query(sql).execute(&db).await.unwrap();
    }
    db.close().await;
    dir
}

/// Every row of every table, as SQLite's own type and literal of each
/// value, sorted: two stores hold the same data when these are equal.
async fn contents(dir: &Path) -> Vec<(String, Vec<String>)> {
    let db = open_sqlite(dir).await;
    let mut tables = Vec::new();
    for table in TABLES {
        let columns: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info($1) ORDER BY cid")
                .bind(table.name)
                .fetch_all(&db)
                .await
                .unwrap();
        let values: Vec<String> = columns
            .iter()
            .map(|c| format!("typeof(\"{c}\") || ':' || quote(\"{c}\")"))
            .collect();
        let sql = format!(
            "SELECT {} FROM \"{}\"",
            values.join(" || ' | ' || "),
            table.name
        );
        let mut rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .fetch_all(&db)
            .await
            .unwrap();
        rows.sort();
        tables.push((table.name.to_string(), rows));
    }
    db.close().await;
    tables
}

/// The rows of the tables the store reads in insertion order (rowid), in
/// that order.
async fn insertion_order(dir: &Path) -> Vec<Vec<String>> {
    let db = open_sqlite(dir).await;
    let mut tables = Vec::new();
    for sql in [
        "SELECT transaction_id || ' ' || at_ms || ' ' || event FROM history ORDER BY rowid",
        "SELECT shortcode || ' ' || keyword FROM keywords ORDER BY rowid",
        "SELECT campaign_id || ' ' || code FROM promos ORDER BY rowid",
    ] {
        tables.push(sqlx::query_scalar(sql).fetch_all(&db).await.unwrap());
    }
    db.close().await;
    tables
}

#[track_caller]
fn assert_same_contents(left: &[(String, Vec<String>)], right: &[(String, Vec<String>)]) {
    for ((table, a), (_, b)) in left.iter().zip(right) {
        assert_eq!(a, b, "table {table} differs");
    }
}

/// (table, rows, checksum) of an export's or import's summary.
fn tallies(summary: &Value) -> Vec<(String, u64, String)> {
    summary["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .map(|t| {
            (
                t["table"].as_str().unwrap().to_string(),
                t["rows"].as_u64().unwrap(),
                t["checksum"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn dump_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("moms.dump")
}

#[tokio::test]
async fn a_dump_carries_every_row_and_type_into_a_fresh_sqlite_store() {
    let source = filled_store().await;
    // SQLite keeps a value's own type whatever the column declares: such
    // values come back with their type.
    let db = open_sqlite(source.path()).await;
    for sql in [
        "INSERT INTO users VALUES ('19999999998', 'not a number', 1.5, 2.25)",
        "INSERT INTO audit (at, actor, action, detail) VALUES (1, 'test', 'blob', X'00FF10')",
    ] {
        sqlx::query(sql).execute(&db).await.unwrap();
    }
    db.close().await;
    let work = tempfile::tempdir().unwrap();
    let dump = dump_path(&work);
    let dump_arg = dump.to_str().unwrap();

    let exported = moms_json(source.path(), None, &["admin", "export", dump_arg]);
    let target = data_dir();
    let imported = moms_json(target.path(), None, &["admin", "import", dump_arg]);

    assert_eq!(tallies(&exported), tallies(&imported));
    assert_eq!(exported["checksum"], imported["checksum"]);
    let names: Vec<String> = tallies(&exported).into_iter().map(|t| t.0).collect();
    let known: Vec<&str> = TABLES.iter().map(|t| t.name).collect();
    assert_eq!(names, known, "every table, in the list's order");
    for table in [
        "clients",
        "transactions",
        "history",
        "media",
        "inbound",
        "opt_status",
        "list_members",
        "blasts",
        "webhooks",
        "smpp_pending_receipts",
    ] {
        let rows = tallies(&exported)
            .into_iter()
            .find(|t| t.0 == table)
            .unwrap()
            .1;
        assert!(rows > 0, "the filled store has rows in {table}: {exported}");
    }
    assert_same_contents(
        &contents(source.path()).await,
        &contents(target.path()).await,
    );

    // The copy is a working store: a server starts on it.
    let mut config = test_config(target.path());
    config.store.url.clear();
    Server::start_in(target, config).await.stop().await;
}

#[tokio::test]
async fn sqlite_to_postgresql_and_back_loses_nothing() {
    // On PostgreSQL runs, a data folder comes with a database of its own.
    let work = data_dir();
    let Some(url) = database_url(work.path()) else {
        eprintln!("MOMS_TEST_DATABASE_URL is not set: skipped");
        return;
    };
    let source = filled_store().await;
    let (to_postgres, from_postgres) = (work.path().join("a.dump"), work.path().join("b.dump"));
    let (a, b) = (
        to_postgres.to_str().unwrap(),
        from_postgres.to_str().unwrap(),
    );
    let pg = Some(url.as_str());

    let exported = moms_json(source.path(), None, &["admin", "export", a]);
    let into_postgres = moms_json(work.path(), pg, &["admin", "import", a]);
    let out_of_postgres = moms_json(work.path(), pg, &["admin", "export", b]);
    let back = tempfile::tempdir().unwrap();
    let into_sqlite = moms_json(back.path(), None, &["admin", "import", b]);

    for summary in [&into_postgres, &out_of_postgres, &into_sqlite] {
        assert_eq!(tallies(&exported), tallies(summary));
        assert_eq!(exported["checksum"], summary["checksum"]);
    }
    assert_same_contents(&contents(source.path()).await, &contents(back.path()).await);
    assert_eq!(
        insertion_order(source.path()).await,
        insertion_order(back.path()).await
    );

    // The id sequences moved past the imported ids: rows added after the
    // import get new ids instead of colliding.
    let db = sqlx::PgPool::connect(&url).await.unwrap();
    for (table, insert) in [
        (
            "audit",
            "INSERT INTO audit (at, actor, action) VALUES (1, 'test', 'after') RETURNING id",
        ),
        (
            "inbound",
            "INSERT INTO inbound (sender, shortcode, created_at) VALUES ('1', '2', 3) RETURNING id",
        ),
    ] {
        let imported: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT MAX(id) FROM {table}")))
                .fetch_one(&db)
                .await
                .unwrap();
        let added: i64 = sqlx::query_scalar(insert).fetch_one(&db).await.unwrap();
        assert!(
            added > imported,
            "{table}: new id {added}, imported up to {imported}"
        );
    }
    let next: i64 = sqlx::query_scalar("SELECT nextval('transaction_ids')")
        .fetch_one(&db)
        .await
        .unwrap();
    assert!(
        next > FAR_TRANSACTION_ID,
        "transaction ids go on from {next}"
    );
    db.close().await;
}

#[tokio::test]
async fn import_refuses_a_database_that_holds_anything() {
    let work = tempfile::tempdir().unwrap();
    let dump = dump_path(&work);
    let empty = tempfile::tempdir().unwrap();
    moms_json(
        empty.path(),
        None,
        &["admin", "export", dump.to_str().unwrap()],
    );

    let occupied = tempfile::tempdir().unwrap();
    moms_json(
        occupied.path(),
        None,
        &[
            "admin",
            "client",
            "create",
            "--name",
            "Here",
            "--senders",
            "21534",
        ],
    );
    let error = moms_error(
        occupied.path(),
        None,
        &["admin", "import", dump.to_str().unwrap()],
    );
    assert!(error.contains("not empty"), "{error}");
    assert!(error.contains("clients has 1 rows"), "{error}");
    assert!(error.contains("fresh database"), "{error}");
}

/// Writes `text` as a dump and tries to import it into `target`; the error.
fn import_error(target: &Path, work: &Path, name: &str, text: &[u8]) -> String {
    let path = work.join(name);
    std::fs::write(&path, text).unwrap();
    moms_error(target, None, &["admin", "import", path.to_str().unwrap()])
}

#[tokio::test]
async fn a_damaged_truncated_or_newer_dump_is_refused_before_a_row_is_written() {
    let source = filled_store().await;
    let work = tempfile::tempdir().unwrap();
    let dump = dump_path(&work);
    moms_json(
        source.path(),
        None,
        &["admin", "export", dump.to_str().unwrap()],
    );
    let good = std::fs::read(&dump).unwrap();
    let text = String::from_utf8(good.clone()).unwrap();
    let target = tempfile::tempdir().unwrap();

    // One byte changed in a row of the last tables (after earlier tables
    // would already have been loaded, were the dump not checked first).
    let audit = "{\"table\":\"audit\"}\n[";
    let digit = text.find(audit).expect("audit rows") + audit.len();
    let mut flipped = good.clone();
    flipped[digit] = if flipped[digit] == b'1' { b'2' } else { b'1' };
    let error = import_error(target.path(), work.path(), "flipped.dump", &flipped);
    assert!(error.contains("is damaged"), "{error}");
    assert!(error.contains("checksum"), "{error}");

    let half = &good[..good.len() / 2];
    let error = import_error(target.path(), work.path(), "half.dump", half);
    assert!(error.contains("ends early"), "{error}");
    assert!(error.contains("incomplete"), "{error}");

    let without_end = &good[..text.trim_end().rfind('\n').unwrap() + 1];
    let error = import_error(target.path(), work.path(), "cut.dump", without_end);
    assert!(error.contains("ends early"), "{error}");

    let error = import_error(
        target.path(),
        work.path(),
        "other.dump",
        b"number,carrier_id\n",
    );
    assert!(error.contains("is not a moms dump"), "{error}");

    let header: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let version = header["schema_version"].as_i64().unwrap();
    let newer = text.replacen(
        &format!("\"schema_version\":{version}"),
        &format!("\"schema_version\":{}", version + 1),
        1,
    );
    let error = import_error(target.path(), work.path(), "newer.dump", newer.as_bytes());
    assert!(error.contains("newer than this moms knows"), "{error}");

    // Nothing was written: the good dump still goes in.
    moms_json(
        target.path(),
        None,
        &["admin", "import", dump.to_str().unwrap()],
    );
    assert_same_contents(
        &contents(source.path()).await,
        &contents(target.path()).await,
    );
}
