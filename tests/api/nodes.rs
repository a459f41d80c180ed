//! Several real `moms serve` processes on one PostgreSQL database, as the
//! README's "Running several nodes" sets them up: sends spread over every
//! node while the node holding the SMPP bind is killed, an opt-out made on
//! one node honoured by another at once, and nodes started together on an
//! empty database.
//!
//! These tests need a PostgreSQL server: `MOMS_TEST_DATABASE_URL` names it
//! (e.g. `postgres://postgres@127.0.0.1:5432/postgres`); without it they
//! return at once. Each test's nodes share a database made for it and
//! dropped after it.
//! The load test sends `MOMS_NODES_MESSAGES` messages (3,000) from
//! `MOMS_NODES_SENDERS` tasks (12) and prints its figures.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sqlx::PgPool;

use crate::common::smsc::{Smsc, Submitted};
use crate::common::*;
use crate::crash::{Moms, Sent, env_number, send_one, smsc_sections};

/// The nodes' names, `cluster.node` of each.
const NODES: [&str; 3] = ["n1", "n2", "n3"];

/// `cluster.lease_secs`: short, so the bind moves soon after a kill.
const LEASE_SECS: u64 = 2;

/// The SMPP window of the bind: at most this many submits are in flight, so
/// at most this many can be sent again after a kill.
const WINDOW: usize = 64;

/// The database the nodes share: the one the suite makes with a data
/// folder (see `common::database`), dropped with it.
struct Database {
    home: DataDir,
    url: String,
}

impl Database {
    /// `None` (and a line on stderr) on SQLite runs.
    fn create() -> Option<Database> {
        if postgres_url().is_none() {
            eprintln!(
                "skipped: several nodes need PostgreSQL; set MOMS_TEST_DATABASE_URL \
                 (e.g. postgres://postgres@127.0.0.1:5432/postgres)"
            );
            return None;
        }
        // reqwest's clients need a TLS provider, even for plain HTTP.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let home = data_dir();
        let url = database_url(home.path()).expect("a PostgreSQL run");
        Some(Database { home, url })
    }

    async fn connect(&self) -> PgPool {
        PgPool::connect(&self.url).await.unwrap()
    }

    /// A client that sends from short code 21534 and a campaign that owns
    /// the short code's STOP, made through the library.
    async fn seed(&self) -> (Creds, String) {
        let store = moms::store::Store::open(&test_config(self.home.path()))
            .await
            .unwrap();
        let creds = new_client(&store, "Nodes", &["21534"]).await;
        let campaign = moms::store::campaign::Campaign {
            stop_message: "Nodes: you are unsubscribed".into(),
            ..campaign_settings(&creds, "Nodes")
        };
        let campaign = store
            .create_campaign(&campaign, Some("21534"))
            .await
            .unwrap();
        close_store(store).await;
        (creds, campaign.to_string())
    }
}

/// The configuration of node `node` on the shared database, with a short
/// bind lease; with `smsc`, every `+1` number goes to it through carrier 2
/// on one connection, the same bind on every node.
fn write_config(dir: &Path, database: &Database, node: &str, smsc: Option<&Smsc>) -> PathBuf {
    let smpp = smsc.map_or(String::new(), |smsc| {
        smsc_sections(smsc.port, &format!("binds = 1\nwindow = {WINDOW}\n"))
    });
    let text = format!(
        r#"demo = false
[store]
url = "{url}"
[cluster]
node = "{node}"
lease_secs = {LEASE_SECS}
[delivery]
poll_millis = 20
[fetch]
allow_private_networks = true
{smpp}"#,
        url = database.url
    );
    let path = dir.join("moms.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Nodes named `NODES[..count]`, each on a data folder of its own, started
/// at the same moment; each has answered HTTP when this returns.
async fn start_nodes(
    database: &Database,
    smsc: Option<&Smsc>,
    count: usize,
) -> (Vec<tempfile::TempDir>, Vec<Option<Moms>>) {
    let dirs: Vec<tempfile::TempDir> = (0..count).map(|_| tempfile::tempdir().unwrap()).collect();
    let configs: Vec<PathBuf> = dirs
        .iter()
        .zip(NODES)
        .map(|(dir, node)| write_config(dir.path(), database, node, smsc))
        .collect();
    let starting = dirs
        .iter()
        .zip(&configs)
        .map(|(dir, config)| Moms::start(dir.path(), config));
    let nodes = futures_util::future::join_all(starting).await;
    (dirs, nodes.into_iter().map(Some).collect())
}

/// Polls `probe` until it answers, for `secs` at most.
async fn until<T>(what: &str, secs: u64, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "not within {secs} s: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// The node whose lease on carrier 2's bind has not expired, if any.
async fn bind_holder(pool: &PgPool) -> Option<String> {
    sqlx::query_scalar("SELECT holder FROM leases WHERE name LIKE 'smpp:2:%' AND expires_ms > $1")
        .bind(now_ms())
        .fetch_optional(pool)
        .await
        .unwrap()
}

async fn send(http: &reqwest::Client, base: &str, creds: &Creds, campaign: &str, to: &str) -> Sent {
    let form = [
        ("client_id", creds.client_id.as_str()),
        ("token", creds.token.as_str()),
        ("campaign_id", campaign),
        ("to", to),
        ("message", "nodes test"),
    ];
    send_one(http, base, &form).await
}

/// The number of message `n`.
fn number(n: usize) -> String {
    format!("1310{:07}", 4_000_000 + n)
}

#[derive(Default)]
struct Tally {
    /// (message id, number, node) of every send answered with code 1.
    accepted: Vec<(i64, String, usize)>,
    /// (code, number) of sends answered otherwise.
    refused: Vec<(u16, String)>,
    /// Numbers whose send got no answer.
    cut: Vec<String>,
}

/// The senders' shared state: which message is next and which nodes may
/// still be sent to.
struct Load {
    total: usize,
    next: AtomicUsize,
    bases: Vec<String>,
    alive: Vec<AtomicBool>,
    creds: Creds,
    campaign: String,
    tally: Mutex<Tally>,
}

impl Load {
    /// One sender: takes the next message and sends it through the next
    /// node alive, in turn, until every message was taken.
    async fn run(&self) {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        loop {
            let n = self.next.fetch_add(1, Ordering::SeqCst);
            if n >= self.total {
                return;
            }
            let alive: Vec<usize> = (0..self.bases.len())
                .filter(|i| self.alive[*i].load(Ordering::SeqCst))
                .collect();
            let node = alive[n % alive.len()];
            let to = number(n);
            let sent = send(&http, &self.bases[node], &self.creds, &self.campaign, &to).await;
            let mut tally = self.tally.lock().unwrap();
            match sent {
                Sent::Accepted(id) => tally.accepted.push((id, to, node)),
                Sent::Refused(code) => tally.refused.push((code, to)),
                Sent::Cut => tally.cut.push(to),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_the_load_and_the_bind_moves_when_its_holder_is_killed() {
    let Some(database) = Database::create() else {
        return;
    };
    let total = env_number("MOMS_NODES_MESSAGES", 3000);
    let senders = env_number("MOMS_NODES_SENDERS", 12);
    let smsc = Smsc::start().await;
    // A store-and-forward SMSC: a receipt the killed node never answered is
    // sent again on the next bind, whichever node makes it.
    smsc.set(|b| b.redeliver_receipts = true);
    let (creds, campaign) = database.seed().await;
    let pool = database.connect().await;
    let (_dirs, mut nodes) = start_nodes(&database, Some(&smsc), NODES.len()).await;
    until("a node holding the bind", 30, async || {
        bind_holder(&pool)
            .await
            .filter(|_| !smsc.bound_now().is_empty())
    })
    .await;

    let load = Arc::new(Load {
        total,
        next: AtomicUsize::new(0),
        bases: nodes.iter().flatten().map(|m| m.base.clone()).collect(),
        alive: NODES.iter().map(|_| AtomicBool::new(true)).collect(),
        creds,
        campaign,
        tally: Mutex::default(),
    });
    let started = Instant::now();
    let tasks: Vec<_> = (0..senders)
        .map(|_| {
            let load = load.clone();
            tokio::spawn(async move { load.run().await })
        })
        .collect();

    // Midway, the node holding the bind dies without a word.
    while load.next.load(Ordering::SeqCst) < total / 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let holder = until("a node holding the bind", 30, async || {
        bind_holder(&pool).await
    })
    .await;
    let killed = NODES
        .iter()
        .position(|n| *n == holder)
        .expect("a node holds it");
    let bound = smsc.bound_now();
    assert_eq!(bound.len(), 1, "one session bound before the kill");
    let killed_session = bound[0];
    let binds_before = smsc.bound_log().len();
    load.alive[killed].store(false, Ordering::SeqCst);
    nodes[killed].take().unwrap().kill();
    let killed_at = Instant::now();

    // Another node takes the bind once the lease runs out.
    let (new_holder, rebound) = until("the bind on another node", LEASE_SECS + 20, async || {
        let holder = bind_holder(&pool).await.filter(|h| *h != NODES[killed])?;
        let log = smsc.bound_log();
        (log.len() > binds_before).then(|| (holder, log[binds_before]))
    })
    .await;
    let moved_after = killed_at.elapsed();
    let rebound_after = rebound.at.saturating_duration_since(killed_at);

    for task in tasks {
        task.await.unwrap();
    }
    let sent_in = started.elapsed();
    let tally = std::mem::take(&mut *load.tally.lock().unwrap());

    // Work the killed node had claimed comes back when its claim lease ends.
    let statuses: HashMap<i64, String> = until("every accepted message ended", 300, async || {
        let rows: Vec<(i64, String)> = sqlx::query_as("SELECT id, status FROM transactions")
            .fetch_all(&pool)
            .await
            .unwrap();
        let statuses: HashMap<i64, String> = rows.into_iter().collect();
        let open = tally.accepted.iter().any(|(id, _, _)| {
            !statuses
                .get(id)
                .is_some_and(|s| s == "COMPLETE" || s == "FAILED")
        });
        (!open).then_some(statuses)
    })
    .await;
    let settled_in = started.elapsed();
    until("every receipt answered", 30, async || {
        (smsc.unanswered_receipts() == 0).then_some(())
    })
    .await;

    // Submits per number, in order.
    let submits = smsc.submits();
    let mut by_number: HashMap<&str, Vec<&Submitted>> = HashMap::new();
    for submit in &submits {
        by_number
            .entry(&submit.destination)
            .or_default()
            .push(submit);
    }
    // SMPP delivers at least once: a submit the killed node had written, and
    // the SMSC maybe acknowledged, but the node had not yet recorded when it
    // died is submitted again by the node that takes its work over. That is
    // the only second submit allowed; there can be no more of them than the
    // window held.
    // How long before the kill each one was first submitted, and whether
    // the SMSC had acknowledged it then.
    let mut resent_after_kill: Vec<(Duration, bool)> = Vec::new();
    let mut sent_twice_otherwise = Vec::new();
    for (to, seen) in &by_number {
        for pair in seen.windows(2) {
            if pair[0].session == killed_session && pair[1].session != killed_session {
                let age = killed_at.saturating_duration_since(pair[0].at);
                resent_after_kill.push((age, pair[0].id.is_some()));
            } else {
                sent_twice_otherwise.push((to.to_string(), pair[0].session, pair[1].session));
            }
        }
    }
    let known: HashSet<&str> = tally
        .accepted
        .iter()
        .map(|(_, to, _)| to.as_str())
        .chain(tally.cut.iter().map(String::as_str))
        .collect();
    let phantoms = by_number.keys().filter(|to| !known.contains(*to)).count();
    let not_complete: Vec<(i64, &str)> = tally
        .accepted
        .iter()
        .filter(|(id, _, _)| statuses[id] != "COMPLETE")
        .map(|(id, _, _)| (*id, statuses[id].as_str()))
        .collect();
    let per_node: Vec<usize> = (0..NODES.len())
        .map(|node| tally.accepted.iter().filter(|a| a.2 == node).count())
        .collect();
    resent_after_kill.sort();
    let acknowledged = resent_after_kill.iter().filter(|r| r.1).count();
    let within = |ms: u64| {
        resent_after_kill
            .iter()
            .filter(|r| r.0 <= Duration::from_millis(ms))
            .count()
    };
    println!(
        "nodes test: {total} sends from {senders} tasks over {} nodes in {:.1} s, all ended after {:.1} s; \
         accepted {} ({per_node:?} by node), refused {}, cut {}; killed {holder} (session {killed_session}); \
         lease taken by {new_holder} after {:.1} s, SMSC bound again (session {}) {:.1} s after the kill; \
         binds {}; most bound at once {}; submits {}; resent after the kill {} ({acknowledged} of them acknowledged \
         by the SMSC; first sent within 50 ms of the kill: {}, 250 ms: {}, 1 s: {}, longest {:?})",
        NODES.len(),
        sent_in.as_secs_f64(),
        settled_in.as_secs_f64(),
        tally.accepted.len(),
        tally.refused.len(),
        tally.cut.len(),
        moved_after.as_secs_f64(),
        rebound.session,
        rebound_after.as_secs_f64(),
        smsc.bound_log().len(),
        smsc.most_bound_at_once(),
        submits.len(),
        resent_after_kill.len(),
        within(50),
        within(250),
        within(1000),
        resent_after_kill.last().map(|r| r.0).unwrap_or_default(),
    );

    assert_ne!(new_holder, holder, "the lease moved");
    assert_ne!(rebound.session, killed_session, "the SMSC saw a new bind");
    assert_eq!(
        smsc.most_bound_at_once(),
        1,
        "the SMSC never had two sessions bound at once"
    );
    assert!(
        tally.refused.is_empty(),
        "sends refused: {:?}",
        tally.refused
    );
    assert!(
        per_node.iter().all(|n| *n > 0),
        "every node took sends: {per_node:?}"
    );
    assert!(
        not_complete.is_empty(),
        "accepted and not COMPLETE: {not_complete:?}"
    );
    assert_eq!(phantoms, 0, "the SMSC got numbers nobody sent to");
    assert!(
        sent_twice_otherwise.is_empty(),
        "submitted twice with no kill between (number, first session, second): {sent_twice_otherwise:?}"
    );
    assert!(
        resent_after_kill.len() < WINDOW,
        "{} resent after one kill: more than a window",
        resent_after_kill.len()
    );
    for node in nodes.into_iter().flatten() {
        let exit = node.terminate().await;
        assert!(exit.success(), "a node exited with {exit}");
    }
    pool.close().await;
}

/// Calls `method` of the node at `base` with the client's credentials.
async fn call(base: &str, creds: &Creds, method: &str, params: &[(&str, &str)]) -> Resp {
    let mut form = vec![
        ("client_id", creds.client_id.as_str()),
        ("token", creds.token.as_str()),
    ];
    form.extend_from_slice(params);
    let response = reqwest::Client::new()
        .post(format!("{base}/moms/{method}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded_pairs(&form))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} on {base}: {e}"));
    Resp::read(response).await
}

/// `number`'s opt status label for `campaign`, read through the node at `base`.
async fn opt_status(base: &str, creds: &Creds, campaign: &str, number: &str) -> String {
    let resp = call(
        base,
        creds,
        "user.getopt",
        &[
            ("number", number),
            ("campaign_id", campaign),
            ("format", "json"),
        ],
    )
    .await;
    resp.json()["response"]["campaigns"][0]["status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The code a send to `to` through `base` is answered with.
async fn send_code(base: &str, creds: &Creds, campaign: &str, to: &str) -> u16 {
    match send(&reqwest::Client::new(), base, creds, campaign, to).await {
        Sent::Accepted(_) => 1,
        Sent::Refused(code) => code,
        Sent::Cut => panic!("no answer from {base}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opt_out_on_one_node_is_honoured_by_another_at_once() {
    let Some(database) = Database::create() else {
        return;
    };
    let smsc = Smsc::start().await;
    let (creds, campaign) = database.seed().await;
    let pool = database.connect().await;
    let (_dirs, nodes) = start_nodes(&database, Some(&smsc), 2).await;
    let bases: Vec<&str> = nodes.iter().flatten().map(|m| m.base.as_str()).collect();
    // Through the API: out on node 1, refused by node 2 right away (which
    // had just sent to the number, so nothing it remembers may hide this).
    let number = "13105550111";
    assert_eq!(send_code(bases[1], &creds, &campaign, number).await, 1);
    let opted_out = call(
        bases[0],
        &creds,
        "user.setopt",
        &[
            ("number", number),
            ("campaign_id", &campaign),
            ("status_code", "-2"),
        ],
    )
    .await;
    assert_code(&opted_out, 1);
    assert_eq!(send_code(bases[1], &creds, &campaign, number).await, 606);
    assert_eq!(send_code(bases[0], &creds, &campaign, number).await, 606);

    let holder = until("a node holding the bind", 30, async || {
        bind_holder(&pool)
            .await
            .filter(|_| !smsc.bound_now().is_empty())
    })
    .await;
    let holder = NODES.iter().position(|n| *n == holder).unwrap();
    let other = 1 - holder;

    // By STOP from the phone: it reaches the node holding the bind; the
    // other node refuses the number as soon as the opt-out is recorded.
    let number = "13105550122";
    assert_eq!(send_code(bases[other], &creds, &campaign, number).await, 1);
    smsc.inject(number, "21534", 0, 0, b"STOP");
    until("the STOP recorded", 30, async || {
        (opt_status(bases[holder], &creds, &campaign, number).await == "OPTEDOUT").then_some(())
    })
    .await;
    assert_eq!(
        send_code(bases[other], &creds, &campaign, number).await,
        606
    );
    until("the STOP confirmation", 30, async || {
        smsc.submits()
            .iter()
            .any(|s| {
                s.destination == number
                    && String::from_utf8_lossy(&s.short_message).contains("unsubscribed")
            })
            .then_some(())
    })
    .await;
    for node in nodes.into_iter().flatten() {
        assert!(node.terminate().await.success());
    }
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_started_together_on_an_empty_database_all_come_up() {
    let Some(database) = Database::create() else {
        return;
    };
    // Every node finds the database empty and migrates it at the same moment.
    let (_dirs, nodes) = start_nodes(&database, None, NODES.len()).await;
    let pool = database.connect().await;
    let (applied, versions): (i64, i64) =
        sqlx::query_as("SELECT COUNT(*), COUNT(DISTINCT version) FROM schema_migrations")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(applied > 0, "migrations ran");
    assert_eq!(applied, versions, "each migration applied once");

    // And every node works on what they made together.
    let (creds, campaign) = database.seed().await;
    for (n, node) in nodes.iter().flatten().enumerate() {
        let to = format!("131055502{n:02}");
        assert_eq!(send_code(&node.base, &creds, &campaign, &to).await, 1);
    }
    for node in nodes.into_iter().flatten() {
        assert!(node.terminate().await.success());
    }
    pool.close().await;
}
