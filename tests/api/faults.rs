//! Faults around the server: an SMSC that goes mute, writes bytes that are
//! no PDU, or sends receipts for ids it never gave; and a data folder that
//! is full or read-only. Nothing accepted is lost, the bind comes back,
//! and the API keeps answering (writes with a 500 naming the fix, reads as
//! usual) and recovers by itself.
//!
//! The full disk is SQLite's own: `PRAGMA max_page_count` pinned to the
//! database's size makes the pager fail the next write that needs a page
//! with SQLITE_FULL, exactly as a full file system does; `PRAGMA
//! query_only` makes writes fail with SQLITE_READONLY. Both run as any
//! user, in CI too, and are undone without a restart.

use std::time::{Duration, Instant};

use moms::config::Config;

use crate::common::smsc::Smsc;
use crate::common::*;

/// The server with every `+1` number on carrier 2, bound to `smsc`.
async fn server_on(smsc: &Smsc, change: impl FnOnce(&mut Config)) -> Server {
    let server = Server::start_with(|c| {
        carrier_on(smsc, c);
        change(c);
    })
    .await;
    smsc.wait_bound().await;
    server
}

/// Every `+1` number on carrier 2, whose bind goes to `smsc`.
fn carrier_on(smsc: &Smsc, c: &mut Config) {
    c.smpp.push(smsc.bind(2));
    c.carriers.push(moms::config::CarrierConfig {
        id: 2,
        name: "SMSC Wireless".into(),
        prefixes: vec!["1".into()],
        served: true,
        mms: false,
        connector: "smpp".into(),
        mms_max_bytes: 0,
    });
}

async fn campaign_of(server: &Server, creds: &Creds) -> String {
    server
        .app
        .store
        .create_campaign(&campaign_settings(creds, "Faults"), None)
        .await
        .unwrap()
        .to_string()
}

/// Sends to `to`; the answer.
async fn send(server: &Server, creds: &Creds, campaign: &str, to: &str) -> Resp {
    server
        .call(
            creds,
            "transaction.send",
            &[("campaign_id", campaign), ("to", to), ("message", "fault")],
        )
        .await
}

/// Every transaction's status.
async fn statuses(server: &Server) -> Vec<String> {
    moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query_scalar("SELECT status FROM transactions ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap()
    })
}

/// Waits (`secs` at most) until no transaction is open; their statuses.
async fn all_ended(server: &Server, secs: u64) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let statuses = statuses(server).await;
        if statuses.iter().all(|s| s == "COMPLETE" || s == "FAILED") {
            return statuses;
        }
        assert!(
            Instant::now() < deadline,
            "messages never ended: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_mute_smsc_is_left_and_rebound_and_every_message_completes() {
    let smsc = Smsc::start().await;
    let server = server_on(&smsc, |c| c.smpp[0].enquire_link_secs = 1).await;
    let creds = server.client().await;
    let campaign = campaign_of(&server, &creds).await;
    smsc.set(|b| b.mute = true);
    for n in 0..10 {
        let to = format!("1310555{:04}", 2000 + n);
        assert_code(&send(&server, &creds, &campaign, &to).await, 1);
    }
    // Unanswered submits and enquire_links: the link is given up and bound
    // again while the SMSC stays mute; the API answers throughout.
    let muted = Instant::now();
    smsc.wait_binds(2, 30).await;
    println!(
        "fault: mute SMSC, bound again after {:.1} s",
        muted.elapsed().as_secs_f64()
    );
    assert_code(&server.call(&creds, "system.ping", &[]).await, 1);
    smsc.set(|b| b.mute = false);
    let unmuted = Instant::now();
    let statuses = all_ended(&server, 60).await;
    println!(
        "fault: mute SMSC, every message complete {:.1} s after it spoke again",
        unmuted.elapsed().as_secs_f64()
    );
    assert_eq!(statuses.len(), 10);
    assert!(statuses.iter().all(|s| s == "COMPLETE"), "{statuses:?}");
    let acknowledged: std::collections::HashSet<String> = smsc
        .submits()
        .into_iter()
        .filter(|s| s.id.is_some())
        .map(|s| s.destination)
        .collect();
    assert_eq!(acknowledged.len(), 10, "each number acknowledged");
}

#[tokio::test]
async fn bytes_that_are_no_pdu_drop_the_link_which_comes_back() {
    let smsc = Smsc::start().await;
    let server = server_on(&smsc, |_| {}).await;
    let creds = server.client().await;
    let campaign = campaign_of(&server, &creds).await;
    // A header claiming a 4 GB PDU, then one claiming less than a header.
    let sent = Instant::now();
    smsc.send_raw(vec![
        0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 1,
    ]);
    smsc.wait_binds(2, 30).await;
    println!(
        "fault: malformed PDU, bound again after {:.1} s",
        sent.elapsed().as_secs_f64()
    );
    smsc.wait_bound().await;
    smsc.send_raw(vec![0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 1]);
    smsc.wait_binds(3, 30).await;
    smsc.wait_bound().await;
    for n in 0..5 {
        let to = format!("1310555{:04}", 3000 + n);
        assert_code(&send(&server, &creds, &campaign, &to).await, 1);
    }
    let statuses = all_ended(&server, 60).await;
    assert!(statuses.iter().all(|s| s == "COMPLETE"), "{statuses:?}");
}

#[tokio::test]
async fn a_pdu_of_an_unknown_command_leaves_the_link_up() {
    let smsc = Smsc::start().await;
    let server = server_on(&smsc, |_| {}).await;
    let creds = server.client().await;
    let campaign = campaign_of(&server, &creds).await;
    // A well-framed PDU with a command id no version of SMPP has.
    smsc.send_raw(vec![0, 0, 0, 16, 0, 0, 0x77, 0x77, 0, 0, 0, 0, 0, 0, 0, 9]);
    for n in 0..5 {
        let to = format!("1310555{:04}", 4000 + n);
        assert_code(&send(&server, &creds, &campaign, &to).await, 1);
    }
    let statuses = all_ended(&server, 60).await;
    assert!(statuses.iter().all(|s| s == "COMPLETE"), "{statuses:?}");
    assert_eq!(smsc.binds().len(), 1, "the link stayed up");
}

#[tokio::test]
async fn receipts_for_ids_never_given_are_answered_and_disturb_nothing() {
    let smsc = Smsc::start().await;
    let server = server_on(&smsc, |_| {}).await;
    let creds = server.client().await;
    let campaign = campaign_of(&server, &creds).await;
    let mut sequences = Vec::new();
    for n in 0..50 {
        sequences.push(smsc.receipt_for(&format!("DEAD{n:04}"), "DELIVRD"));
    }
    for sequence in sequences {
        // Kept in case the id shows up later (receipts can outrun their
        // submit_sm_resp), and answered: the SMSC need not send it again.
        assert_eq!(smsc.wait_ack(sequence).await, 0);
    }
    assert_eq!(server.app.store.smpp_pending_receipts().await.unwrap(), 50);
    for n in 0..5 {
        let to = format!("1310555{:04}", 5000 + n);
        assert_code(&send(&server, &creds, &campaign, &to).await, 1);
    }
    let statuses = all_ended(&server, 60).await;
    assert!(statuses.iter().all(|s| s == "COMPLETE"), "{statuses:?}");
    assert_eq!(smsc.binds().len(), 1, "the link never dropped");
}

#[tokio::test]
async fn a_receipt_the_store_cannot_take_is_answered_with_an_error_and_taken_when_it_comes_again() {
    if skip_on_postgres("the read-only store is simulated with SQLite's query_only") {
        return;
    }
    let smsc = Smsc::start().await;
    smsc.set(|b| b.receipt = None);
    let server = server_on(&smsc, |_| {}).await;
    let creds = server.client().await;
    let campaign = campaign_of(&server, &creds).await;
    assert_code(&send(&server, &creds, &campaign, "13105550007").await, 1);
    let id = smsc.wait_submits(1).await[0].id.clone().expect("accepted");
    let store = &server.app.store;
    let deadline = Instant::now() + Duration::from_secs(10);
    while statuses(&server).await != ["SENT"] {
        assert!(Instant::now() < deadline, "the submit was never recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Nothing can be written: the receipt is answered with an error once
    // the recorder gives up, and the SMSC keeps it to deliver again.
    store
        .pragma_on_writers("PRAGMA query_only = 1".into())
        .await
        .unwrap();
    let tasks = tokio::runtime::Handle::current().metrics();
    let before = tasks.num_alive_tasks();
    let first = smsc.receipt_for(&id, "DELIVRD");
    // A flood of receipts while the store is stuck waits as reports, not
    // as a task each (the SMSC in the benchmark sends tens of thousands
    // without a window; as tasks they took 60 MB).
    let flood: Vec<u32> = (0..500)
        .map(|n| smsc.receipt_for(&format!("F{n:05}"), "DELIVRD"))
        .collect();
    let mut most = before;
    while !smsc.acks().iter().any(|(sequence, _)| *sequence == first) {
        most = most.max(tasks.num_alive_tasks());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        most < before + 100,
        "tasks alive while 501 receipts waited: {before} before, {most} at most"
    );
    assert_eq!(smsc.wait_ack(first).await, 0x08, "ESME_RSYSERR");
    for sequence in flood {
        assert_eq!(smsc.wait_ack(sequence).await, 0x08);
    }
    store
        .pragma_on_writers("PRAGMA query_only = 0".into())
        .await
        .unwrap();
    assert_eq!(statuses(&server).await, ["SENT"], "nothing was lost");

    // Delivered again, it is stored, answered with success, and ends the message.
    let again = smsc.receipt_for(&id, "DELIVRD");
    assert_eq!(smsc.wait_ack(again).await, 0);
    assert_eq!(all_ended(&server, 10).await, ["COMPLETE"]);
}

#[tokio::test]
async fn a_carrier_whose_binds_are_down_holds_its_fill_in_memory_and_the_rest_waits_in_the_store() {
    let held_max = moms::smpp::HELD_MAX;
    let waiting = 100;
    let smsc = Smsc::start().await;
    smsc.set(|b| b.refuse_binds = true);
    // Binds refused: the server starts without waiting for one.
    let server = Server::start_with(|c| carrier_on(&smsc, c)).await;
    let creds = server.client().await;
    let campaign = campaign_of(&server, &creds).await;
    let numbers: Vec<String> = (0..held_max + waiting)
        .map(|n| format!("1310{:07}", 2_000_000 + n))
        .collect();
    for chunk in numbers.chunks(50) {
        let sends = chunk.iter().map(|to| send(&server, &creds, &campaign, to));
        for resp in futures_util::future::join_all(sends).await {
            assert_code(&resp, 1);
        }
    }

    // The connector takes its fill; the rest waits in the store, claimed
    // again now and then, instead of moving into memory.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let stages: Vec<(String, i64)> = moms::with_db!(server.app.store, |pool, writer| {
            sqlx::query_as("SELECT stage, COUNT(*) FROM deliveries GROUP BY stage ORDER BY stage")
                .fetch_all(pool)
                .await
                .unwrap()
        });
        if stages
            == [
                ("smpp".into(), held_max as i64),
                ("submit".into(), waiting as i64),
            ]
        {
            break;
        }
        assert!(Instant::now() < deadline, "stages: {stages:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(smsc.submits().len(), 0);

    // The binds come back: every message goes once and completes.
    smsc.set(|b| b.refuse_binds = false);
    let statuses = all_ended(&server, 180).await;
    assert_eq!(statuses.len(), held_max + waiting);
    assert!(statuses.iter().all(|s| s == "COMPLETE"), "{statuses:?}");
    assert_eq!(
        smsc.submits().len(),
        held_max + waiting,
        "each submitted once"
    );
}

/// Pins the database to its present size (`true`), or lets it grow again.
async fn disk_full(server: &Server, full: bool) {
    let moms::store::Db::Sqlite { writer, .. } = &server.app.store.db else {
        unreachable!("a full disk is simulated on SQLite only");
    };
    let pages: i64 = if full {
        sqlx::query_scalar("PRAGMA page_count")
            .fetch_one(writer)
            .await
            .unwrap()
    } else {
        4_294_967_294
    };
    server
        .app
        .store
        .pragma_on_writers(format!("PRAGMA max_page_count = {pages}"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_full_disk_answers_writes_500_naming_the_fix_keeps_reads_and_recovers() {
    if skip_on_postgres("the full disk is simulated with SQLite's max_page_count") {
        return;
    }
    let server = Server::start().await;
    let creds = server.client().await;
    let campaign = server
        .app
        .store
        .create_campaign(&campaign_settings(&creds, "Full"), None)
        .await
        .unwrap()
        .to_string();
    let first = server
        .call(
            &creds,
            "transaction.send",
            &[
                ("campaign_id", &campaign),
                ("to", "13105550001"),
                ("message", "before"),
            ],
        )
        .await;
    assert_code(&first, 1);
    let (id, hash) = (
        first.xml().text_of("message_id").to_string(),
        first.xml().text_of("hash").to_string(),
    );

    disk_full(&server, true).await;
    // Sends until one needs a page the database may not take.
    let mut refused = None;
    for n in 0..5000 {
        let to = format!("1310556{n:04}");
        let resp = server
            .call(
                &creds,
                "transaction.send",
                &[
                    ("campaign_id", &campaign),
                    ("to", &to),
                    ("message", &"x".repeat(150)),
                ],
            )
            .await;
        if resp.code() != 1 {
            refused = Some(resp);
            break;
        }
    }
    let resp = refused.expect("the pinned database filled up");
    assert_eq!(resp.status, 500);
    assert_eq!(resp.code(), 500);
    assert!(
        resp.message()
            .contains("the data folder is full: free space"),
        "{}",
        resp.body
    );
    let json = server
        .call_json(
            &creds,
            "transaction.send",
            &[
                ("campaign_id", &campaign),
                ("to", "13105559999"),
                ("message", &"y".repeat(150)),
            ],
        )
        .await;
    assert_eq!(json["response"]["code"], "500");

    // Reads go on.
    assert_code(&server.call(&creds, "system.ping", &[]).await, 1);
    let lookup = server
        .call(
            &creds,
            "transaction.lookup",
            &[("message_id", &id), ("hash", &hash)],
        )
        .await;
    assert_code(&lookup, 1);

    // Space returns: writes resume without a restart, and what was
    // accepted is delivered.
    disk_full(&server, false).await;
    let after = server
        .call(
            &creds,
            "transaction.send",
            &[
                ("campaign_id", &campaign),
                ("to", "13105550002"),
                ("message", "after"),
            ],
        )
        .await;
    assert_code(&after, 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let open: i64 = moms::with_db!(server.app.store, |pool, writer| {
            sqlx::query_scalar(
                "SELECT COUNT(*) FROM transactions WHERE status NOT IN ('COMPLETE', 'FAILED')",
            )
            .fetch_one(pool)
            .await
            .unwrap()
        });
        if open == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{open} messages never ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_read_only_store_answers_writes_500_naming_the_fix_and_recovers() {
    if skip_on_postgres("the read-only store is simulated with SQLite's query_only") {
        return;
    }
    let server = Server::start().await;
    let creds = server.client().await;
    let campaign = server
        .app
        .store
        .create_campaign(&campaign_settings(&creds, "RO"), None)
        .await
        .unwrap()
        .to_string();
    let store = &server.app.store;
    store
        .pragma_on_writers("PRAGMA query_only = 1".into())
        .await
        .unwrap();
    let resp = server
        .call(
            &creds,
            "transaction.send",
            &[
                ("campaign_id", &campaign),
                ("to", "13105550003"),
                ("message", "read-only"),
            ],
        )
        .await;
    assert_eq!(resp.status, 500);
    assert!(
        resp.message().contains("the data folder is read-only"),
        "{}",
        resp.body
    );
    assert_code(&server.call(&creds, "system.ping", &[]).await, 1);
    store
        .pragma_on_writers("PRAGMA query_only = 0".into())
        .await
        .unwrap();
    let resp = server
        .call(
            &creds,
            "transaction.send",
            &[
                ("campaign_id", &campaign),
                ("to", "13105550003"),
                ("message", "writable again"),
            ],
        )
        .await;
    assert_code(&resp, 1);
}
