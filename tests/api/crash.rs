//! The real `moms` binary killed and stopped under load: `kill -9` at
//! random moments while several tasks send through it to a fake SMSC,
//! restarted on the same data folder each time; and SIGTERM, which lets
//! requests in progress finish and unbinds.
//!
//! The kill test is short by default (3 kills, 300 messages); the
//! environment makes it longer: `MOMS_CRASH_ROUNDS`, `MOMS_CRASH_MESSAGES`,
//! `MOMS_CRASH_SENDERS` (see `scripts/crash-test`). It prints its figures.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::smsc::Smsc;
use crate::common::*;

/// A `moms serve` process on a data folder.
pub struct Moms {
    child: Child,
    pub base: String,
    pub port: u16,
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The configuration file of the crash tests: every `+1` number goes to
/// the fake SMSC through carrier 2.
fn write_config(dir: &Path, smsc: &Smsc, extra: &str) -> PathBuf {
    let path = dir.join("moms.toml");
    let text = format!(
        r#"demo = false
[delivery]
poll_millis = 20
[fetch]
allow_private_networks = true
{store}{extra}
{smsc}"#,
        store = store_section(dir),
        smsc = smsc_sections(smsc.port, ""),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// A client and a campaign, made through the library before any server runs.
async fn seed(dir: &Path) -> (Creds, String) {
    let store = moms::store::Store::open(&test_config(dir)).await.unwrap();
    let creds = new_client(&store, "Crash", &["21534"]).await;
    let campaign = store
        .create_campaign(&campaign_settings(&creds, "Crash"), None)
        .await
        .unwrap();
    close_store(store).await;
    (creds, campaign.to_string())
}

impl Moms {
    /// Starts `moms serve` and waits until it answers HTTP.
    pub async fn start(dir: &Path, config: &Path) -> Moms {
        let port = free_port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("moms.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_moms"))
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(dir)
            .arg("--config")
            .arg(config)
            .env("MOMS_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("moms starts");
        let moms = Moms {
            child,
            base: format!("http://127.0.0.1:{port}"),
            port,
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ping = http
                .get(format!("{}/moms/system.ping", moms.base))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if ping.is_ok() {
                return moms;
            }
            assert!(
                Instant::now() < deadline,
                "moms did not start: {}",
                std::fs::read_to_string(dir.join("moms.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no chance to flush, unbind or finish anything.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then waits (a minute at most) for the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() >= deadline {
                self.child.kill().unwrap();
                panic!("moms did not exit within a minute of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Moms {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One `[[smpp]]` bind (with `bind_extra` lines) to the fake SMSC on
/// `port`, and carrier 2 on it.
pub(crate) fn smsc_sections(port: u16, bind_extra: &str) -> String {
    format!(
        r#"
[[smpp]]
carrier_id = 2
host = "127.0.0.1"
port = {port}
system_id = "moms"
password = "secret"
response_timeout_secs = 2
enquire_link_secs = 5
{bind_extra}
[[carriers]]
id = 2
name = "SMSC Wireless"
prefixes = ["1"]
connector = "smpp"
"#
    )
}

pub(crate) fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What became of one send request.
pub(crate) enum Sent {
    /// Answered with code 1: the message id.
    Accepted(i64),
    /// Answered with another code.
    Refused(u16),
    /// No answer: the process died with the request open.
    Cut,
}

pub(crate) async fn send_one(http: &reqwest::Client, base: &str, form: &[(&str, &str)]) -> Sent {
    let Some(resp) = post(http, base, "transaction.send", form).await else {
        return Sent::Cut;
    };
    match resp.code() {
        1 => Sent::Accepted(resp.xml().text_of("message_id").parse().unwrap()),
        code => Sent::Refused(code),
    }
}

/// POSTs a form to `/moms/<method>`; `None` when no whole answer came.
async fn post(
    http: &reqwest::Client,
    base: &str,
    method: &str,
    form: &[(&str, &str)],
) -> Option<Resp> {
    let response = http
        .post(format!("{base}/moms/{method}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded_pairs(form))
        .send()
        .await
        .ok()?;
    Some(Resp {
        status: response.status().as_u16(),
        headers: Default::default(),
        body: response.text().await.ok()?,
    })
}

/// The number of message `n`.
fn number(n: usize) -> String {
    format!("1310{:07}", 3_000_000 + n)
}

#[derive(Default)]
struct Tally {
    /// (message id, number) of every send answered with code 1.
    accepted: Vec<(i64, String)>,
    /// Codes of sends answered otherwise.
    refused: Vec<u16>,
    /// Numbers whose send was cut by a kill.
    cut: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_accepted_message() {
    let rounds = env_number("MOMS_CRASH_ROUNDS", 3);
    let messages = env_number("MOMS_CRASH_MESSAGES", 300);
    let senders = env_number("MOMS_CRASH_SENDERS", 8);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let smsc = Smsc::start().await;
    // A store-and-forward SMSC: a receipt the killed process never answered
    // is sent again after the next bind.
    smsc.set(|b| b.redeliver_receipts = true);
    let dir = data_dir();
    let config = write_config(dir.path(), &smsc, "");
    let (creds, campaign) = seed(dir.path()).await;

    let tally = Arc::new(Mutex::new(Tally::default()));
    let next = Arc::new(AtomicUsize::new(0));
    // Submits the SMSC had seen at each kill (taken once the dust settled).
    let mut marks = Vec::new();
    let mut kills = Vec::new();
    let per_round = messages.div_ceil(rounds.max(1));
    let started = Instant::now();
    for round in 0..rounds {
        let moms = Moms::start(dir.path(), &config).await;
        let stop = Arc::new(AtomicBool::new(false));
        let end = ((round + 1) * per_round).min(messages);
        let mut tasks = Vec::new();
        for _ in 0..senders {
            let (tally, next, stop) = (tally.clone(), next.clone(), stop.clone());
            let (base, creds, campaign) = (moms.base.clone(), creds.clone(), campaign.clone());
            tasks.push(tokio::spawn(async move {
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(20))
                    .build()
                    .unwrap();
                while !stop.load(Ordering::SeqCst) {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= end {
                        next.fetch_sub(1, Ordering::SeqCst);
                        break;
                    }
                    let to = number(n);
                    let form = [
                        ("client_id", creds.client_id.as_str()),
                        ("token", creds.token.as_str()),
                        ("campaign_id", campaign.as_str()),
                        ("to", to.as_str()),
                        ("message", "crash test"),
                    ];
                    let sent = send_one(&http, &base, &form).await;
                    let mut tally = tally.lock().unwrap();
                    match sent {
                        Sent::Accepted(id) => tally.accepted.push((id, to)),
                        Sent::Refused(code) => tally.refused.push(code),
                        Sent::Cut => tally.cut.push(to),
                    }
                }
            }));
        }
        // Kill somewhere between a fifth and nine tenths of this round's sends.
        let at = round * per_round + (per_round as f64 * rand::random_range(0.2..0.9)) as usize;
        while next.load(Ordering::SeqCst) < at.min(end) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        moms.kill();
        kills.push(Instant::now());
        stop.store(true, Ordering::SeqCst);
        for task in tasks {
            task.await.unwrap();
        }
        // Bytes already on their way still reach the SMSC; count after them.
        tokio::time::sleep(Duration::from_millis(200)).await;
        marks.push(smsc.submits().len());
    }

    // The last start: everything accepted must end.
    let moms = Moms::start(dir.path(), &config).await;
    let tally = std::mem::take(&mut *tally.lock().unwrap());
    let view = store_view(dir.path()).await;
    // Held messages come back when their lease (a minute) ends.
    let deadline = Instant::now() + Duration::from_secs(300);
    let statuses = loop {
        let rows: Vec<(i64, String, String)> = moms::with_db!(view, |pool, writer| {
            sqlx::query_as("SELECT id, recipient, status FROM transactions")
                .fetch_all(pool)
                .await
                .unwrap()
        });
        let statuses: HashMap<i64, (String, String)> =
            rows.into_iter().map(|(id, r, s)| (id, (r, s))).collect();
        let open = statuses
            .values()
            .filter(|(_, s)| s != "COMPLETE" && s != "FAILED")
            .count();
        let missing = tally
            .accepted
            .iter()
            .filter(|(id, _)| !statuses.contains_key(id))
            .count();
        assert_eq!(missing, 0, "accepted messages missing from the store");
        if open == 0 || Instant::now() >= deadline {
            break statuses;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let exit = moms.terminate().await;
    let settled = started.elapsed();

    let ended = |s: &str| s == "COMPLETE" || s == "FAILED";
    let lost: Vec<&(i64, String)> = tally
        .accepted
        .iter()
        .filter(|(id, _)| !statuses.get(id).is_some_and(|(_, s)| ended(s)))
        .collect();
    let delivered = tally
        .accepted
        .iter()
        .filter(|(id, _)| statuses[id].1 == "COMPLETE")
        .count();
    let failed = tally.accepted.len() - delivered - lost.len();
    let cut_stored = tally
        .cut
        .iter()
        .filter(|to| statuses.values().any(|(r, _)| r == *to))
        .count();
    // Submits per number, in order, with whether the SMSC acknowledged each.
    let submits = smsc.submits();
    let mut by_number: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, s) in submits.iter().enumerate() {
        by_number.entry(&s.destination).or_default().push(i);
    }
    let mut duplicates = 0;
    let mut duplicates_acknowledged = 0;
    let mut without_a_kill = Vec::new();
    // How long before the kill the SMSC had acknowledged what it got again.
    let mut ack_ages: Vec<Duration> = Vec::new();
    for (to, seen) in &by_number {
        for pair in seen.windows(2) {
            duplicates += 1;
            if submits[pair[0]].id.is_some() {
                duplicates_acknowledged += 1;
            }
            // A resend is only right when a kill came between the two.
            match marks.iter().position(|m| pair[0] < *m && *m <= pair[1]) {
                Some(k) => {
                    let age = kills[k].saturating_duration_since(submits[pair[0]].at);
                    ack_ages.push(age);
                }
                None => without_a_kill.push(to.to_string()),
            }
        }
    }
    let known: std::collections::HashSet<&str> = tally
        .accepted
        .iter()
        .map(|(_, to)| to.as_str())
        .chain(tally.cut.iter().map(String::as_str))
        .collect();
    let phantoms = by_number.keys().filter(|to| !known.contains(*to)).count();
    ack_ages.sort();
    let within = |ms: u64| {
        ack_ages
            .iter()
            .filter(|a| **a <= Duration::from_millis(ms))
            .count()
    };
    println!(
        "crash test: resent after a kill, acknowledged at most 50 ms before it: {}, 250 ms: {}, 1 s: {}, longest {:?}",
        within(50),
        within(250),
        within(1000),
        ack_ages.last().copied().unwrap_or_default()
    );
    println!(
        "crash test: {rounds} kills, {senders} senders; accepted {}, refused {}, cut by a kill {} ({} of them stored and sent), delivered {delivered}, failed {failed}, lost {}; SMSC submits {}, numbers submitted twice or more {}, extra submits {duplicates} ({duplicates_acknowledged} after an acknowledgement the killed process never recorded); binds {}; {:.1} s in all",
        tally.accepted.len(),
        tally.refused.len(),
        tally.cut.len(),
        cut_stored,
        lost.len(),
        submits.len(),
        by_number.values().filter(|v| v.len() > 1).count(),
        smsc.binds().len(),
        settled.as_secs_f64(),
    );
    assert!(exit.success(), "moms exited with {exit}");
    assert!(
        tally.accepted.len() >= rounds,
        "the load was too light to test anything"
    );
    assert!(lost.is_empty(), "accepted and never ended: {lost:?}");
    assert!(
        tally.refused.is_empty(),
        "sends refused: {:?}",
        tally.refused
    );
    assert_eq!(phantoms, 0, "the SMSC got numbers nobody sent to");
    assert!(
        without_a_kill.is_empty(),
        "sent twice with no kill between: {without_a_kill:?}"
    );
    assert_eq!(
        smsc.unanswered_receipts(),
        0,
        "every receipt was stored and answered"
    );
}

/// Writes the head and half of the body of a `transaction.send` request.
async fn half_a_request(
    port: u16,
    creds: &Creds,
    campaign: &str,
) -> (tokio::net::TcpStream, String) {
    let body = format!(
        "client_id={}&token={}&campaign_id={campaign}&to=13104440001&message=in+flight",
        creds.client_id, creds.token
    );
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let head = format!(
        "POST /moms/transaction.send HTTP/1.1\r\nhost: x\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let (first, rest) = body.split_at(body.len() / 2);
    socket.write_all(first.as_bytes()).await.unwrap();
    (socket, rest.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_requests_in_progress_cuts_stalled_ones_and_unbinds() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let smsc = Smsc::start().await;
    let dir = data_dir();
    let config = write_config(dir.path(), &smsc, "[shutdown]\ngrace_secs = 3\n");
    let (creds, campaign) = seed(dir.path()).await;
    let moms = Moms::start(dir.path(), &config).await;
    smsc.wait_bound().await;

    // Messages accepted before the signal.
    let http = reqwest::Client::new();
    let mut accepted = Vec::new();
    for n in 0..20 {
        let to = number(900 + n);
        let form = [
            ("client_id", creds.client_id.as_str()),
            ("token", creds.token.as_str()),
            ("campaign_id", campaign.as_str()),
            ("to", to.as_str()),
            ("message", "before the signal"),
        ];
        match send_one(&http, &moms.base, &form).await {
            Sent::Accepted(id) => accepted.push(id),
            _ => panic!("a send before the signal failed"),
        }
    }
    // One request half sent, to be finished after the signal, and one that
    // never will be.
    let (mut finishing, rest) = half_a_request(moms.port, &creds, &campaign).await;
    let (_stalled, _) = half_a_request(moms.port, &creds, &campaign).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let port = moms.port;
    let terminating = tokio::spawn(moms.terminate());
    tokio::time::sleep(Duration::from_millis(300)).await;
    // New connections are refused at once.
    assert!(
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err(),
        "the listener closed on SIGTERM"
    );
    finishing.write_all(rest.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = finishing.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("code=\"1\""), "{answer}");

    // The stalled request does not hold the process past the grace time.
    let exit = terminating.await.unwrap();
    assert!(exit.success(), "moms exited with {exit}");
    assert_eq!(smsc.unbinds(), 1, "the bind unbound cleanly");
    let log = std::fs::read_to_string(dir.path().join("moms.log")).unwrap();
    assert!(log.contains("shutting down"), "{log}");
    assert!(log.contains("shutdown grace ended"), "{log}");

    // Nothing accepted is lost across the stop.
    let moms = Moms::start(dir.path(), &config).await;
    let view = store_view(dir.path()).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (open, total): (i64, i64) = moms::with_db!(view, |pool, writer| {
            let open = sqlx::query_scalar(
                "SELECT COUNT(*) FROM transactions WHERE status NOT IN ('COMPLETE', 'FAILED')",
            )
            .fetch_one(pool)
            .await
            .unwrap();
            let total = sqlx::query_scalar("SELECT COUNT(*) FROM transactions")
                .fetch_one(pool)
                .await
                .unwrap();
            (open, total)
        });
        if open == 0 {
            assert_eq!(
                total,
                accepted.len() as i64 + 1,
                "every accepted send, and the one finished during the stop"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{open} messages never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(moms.terminate().await.success());
}

/// (state, queued) of the one blast in the store.
async fn blast_progress(view: &moms::store::Db) -> (String, i64) {
    moms::with_db!(view, |pool, writer| {
        sqlx::query_as("SELECT state, queued FROM blasts")
            .fetch_one(pool)
            .await
            .unwrap()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_a_blast_is_queued_sends_each_member_once() {
    const MEMBERS: usize = 40_000;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let smsc = Smsc::start().await;
    let dir = data_dir();
    let config = write_config(dir.path(), &smsc, "");
    let (creds, campaign) = seed(dir.path()).await;
    let numbers: Vec<String> = (0..MEMBERS).map(number).collect();
    let list_id = {
        let store = moms::store::Store::open(&test_config(dir.path()))
            .await
            .unwrap();
        let id = store
            .create_list(creds.client_id.parse().unwrap(), "everyone")
            .await
            .unwrap()
            .unwrap();
        store.add_list_members(id, &numbers).await.unwrap();
        close_store(store).await;
        id.to_string()
    };

    let moms = Moms::start(dir.path(), &config).await;
    let form = [
        ("client_id", creds.client_id.as_str()),
        ("token", creds.token.as_str()),
        ("list_id", list_id.as_str()),
        ("campaign_id", campaign.as_str()),
        ("message", "blast"),
    ];
    let resp = post(&reqwest::Client::new(), &moms.base, "list.send", &form)
        .await
        .expect("an answer");
    assert_code(&resp, 1);
    // Killed once some pages are queued, while the next is being written.
    let view = store_view(dir.path()).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (state, queued) = blast_progress(&view).await;
        assert_eq!(
            state, "queueing",
            "the blast was queued whole before the kill"
        );
        if queued > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no page was queued");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    moms.kill();
    let (_, queued_at_kill) = blast_progress(&view).await;
    assert!(queued_at_kill < MEMBERS as i64);

    let _moms = Moms::start(dir.path(), &config).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while blast_progress(&view).await.0 == "queueing" {
        assert!(
            Instant::now() < deadline,
            "the blast was not queued after the restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut recipients: Vec<String> = moms::with_db!(view, |pool, writer| {
        sqlx::query_scalar("SELECT recipient FROM transactions WHERE blast_id IS NOT NULL")
            .fetch_all(pool)
            .await
            .unwrap()
    });
    recipients.sort();
    println!(
        "blast of {MEMBERS}: {queued_at_kill} queued at the kill, {} after the restart",
        recipients.len()
    );
    assert_eq!(recipients, numbers, "every member once, none twice");
    assert_eq!(blast_progress(&view).await.1, MEMBERS as i64);
}
