//! The `smpp` connector (spec section 7) over the real server and a fake
//! SMSC: submits, segments, receipts, command statuses, reconnection,
//! validity expiry, and messages from phones.

use std::time::{Duration, Instant};

use moms::config::{Config, SmppBind};
use moms::store::sends::NewTransaction;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::common::smsc::{Answer, Smsc};
use crate::common::*;

/// A callback URL nothing listens on: queued callbacks stay in the table.
const HOOK: &str = "http://127.0.0.1:9/mo";

/// The server with carrier 2 (every `+1` number) on the SMPP connector,
/// bound to `smsc`.
async fn server_with(smsc: &Smsc, change: impl FnOnce(&mut Config)) -> Server {
    let server = server_for(smsc.bind(2), change).await;
    smsc.wait_bound().await;
    server
}

/// The server with carrier 2 on the SMPP connector through `bind`.
async fn server_for(bind: SmppBind, change: impl FnOnce(&mut Config)) -> Server {
    let server = Server::start_with(|c| {
        c.smpp.push(bind);
        change(c);
    })
    .await;
    moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query(
            "INSERT INTO carriers (id, name, prefixes, served, mms, connector)
         VALUES (2, 'SMSC Wireless', '1', 1, 0, 'smpp')",
        )
        .execute(writer)
        .await
        .unwrap();
    });
    server.app.reload().await.unwrap();
    server
}

async fn campaign(server: &Server, creds: &Creds) -> String {
    let campaign = campaign_settings(creds, "Alerts");
    let id = server
        .app
        .store
        .create_campaign(&campaign, None)
        .await
        .unwrap();
    id.to_string()
}

/// Sends `message` to `to`; returns (message_id, hash).
async fn send(
    server: &Server,
    creds: &Creds,
    campaign: &str,
    to: &str,
    message: &str,
) -> (String, String) {
    let resp = server
        .call(
            creds,
            "transaction.send",
            &[("campaign_id", campaign), ("to", to), ("message", message)],
        )
        .await;
    assert_code(&resp, 1);
    let xml = resp.xml();
    (
        xml.text_of("message_id").to_string(),
        xml.text_of("hash").to_string(),
    )
}

/// Polls transaction.lookup (XML) until the status is `status`; returns
/// the history events.
async fn until_status(
    server: &Server,
    creds: &Creds,
    id: &str,
    hash: &str,
    status: &str,
) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let xml = server
            .call(
                creds,
                "transaction.lookup",
                &[("message_id", id), ("hash", hash)],
            )
            .await
            .xml();
        if xml.cdata_of("status") == status {
            return xml
                .child("history")
                .all("event")
                .iter()
                .map(|e| e.text.clone())
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "status never became {status}: {xml:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The final code of a transaction.
async fn code_of(server: &Server, id: &str) -> i64 {
    moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query_scalar("SELECT code FROM transactions WHERE id = $1")
            .bind(id.parse::<i64>().unwrap())
            .fetch_one(pool)
            .await
            .unwrap()
    })
}

#[tokio::test]
async fn a_message_is_delivered_complete_with_its_history_and_the_bind_unbinds_on_stop() {
    let smsc = Smsc::start().await;
    let server = server_with(&smsc, |_| {}).await;
    assert_eq!(smsc.binds(), vec![(0x34, "moms".to_string())]);
    let creds = server.client().await;
    let campaign = campaign(&server, &creds).await;

    let (id, hash) = send(&server, &creds, &campaign, "+1 310 867 5309", "Hello @ 5€").await;
    let events = until_status(&server, &creds, &id, &hash, "COMPLETE").await;
    assert_eq!(
        events,
        [
            "Transaction Created",
            "Transaction Queued",
            "SMS Sent",
            "Delivery Confirmed",
            "Transaction Complete"
        ]
    );
    assert_eq!(code_of(&server, &id).await, 1);
    let submits = smsc.submits();
    assert_eq!(submits.len(), 1);
    assert_eq!(submits[0].destination, "13108675309");
    assert_eq!(submits[0].data_coding, 0);
    assert_eq!(submits[0].esm_class, 0);
    assert_eq!(submits[0].short_message, b"Hello \x00 5\x1b\x65");

    let json: Value = server
        .call_json(
            &creds,
            "transaction.lookup",
            &[("message_id", &id), ("hash", &hash)],
        )
        .await;
    assert_eq!(json["response"]["transaction"]["status"], "COMPLETE");
    assert_eq!(
        json["response"]["transaction"]["history"][2]["event"],
        "SMS Sent"
    );

    server.stop().await;
    assert_eq!(smsc.unbinds(), 1, "a clean unbind on shutdown");
}

#[tokio::test]
async fn a_long_ucs2_message_goes_as_three_segments_and_completes_once() {
    let smsc = Smsc::start().await;
    // Hex ids in the responses, decimal ids in the receipts.
    smsc.set(|b| {
        b.hex_ids = true;
        b.receipt_id_decimal = true;
    });
    let server = server_with(&smsc, |_| {}).await;
    let creds = server.client().await;
    let campaign = campaign(&server, &creds).await;

    let text = "Привет ".repeat(25); // 175 UCS-2 units: 3 segments
    let (id, hash) = send(&server, &creds, &campaign, "13108675309", &text).await;
    let events = until_status(&server, &creds, &id, &hash, "COMPLETE").await;
    assert_eq!(events.iter().filter(|e| *e == "SMS Sent").count(), 1);
    assert_eq!(
        events
            .iter()
            .filter(|e| *e == "Transaction Complete")
            .count(),
        1
    );
    let submits = smsc.submits();
    assert_eq!(submits.len(), 3);
    let mut numbers: Vec<u8> = Vec::new();
    let mut joined = Vec::new();
    for s in &submits {
        assert_eq!(s.data_coding, 8);
        assert_eq!(s.esm_class, 0x40, "UDHI set, nothing else");
        let udh = &s.short_message[..6];
        assert_eq!(&udh[..3], &[5, 0, 3]);
        assert_eq!(udh[3], submits[0].short_message[3], "one reference");
        assert_eq!(udh[4], 3);
        numbers.push(udh[5]);
        joined.push((udh[5], s.short_message[6..].to_vec()));
    }
    numbers.sort();
    assert_eq!(numbers, [1, 2, 3]);
    joined.sort();
    let units: Vec<u16> = joined
        .iter()
        .flat_map(|(_, b)| b.chunks(2).map(|p| u16::from_be_bytes([p[0], p[1]])))
        .collect();
    assert_eq!(String::from_utf16(&units).unwrap(), text);
}

#[tokio::test]
async fn a_receipt_before_its_response_is_kept_and_applied() {
    let smsc = Smsc::start().await;
    smsc.set(|b| {
        b.receipt_first = true;
        b.receipt_tlvs = true;
    });
    let server = server_with(&smsc, |_| {}).await;
    let creds = server.client().await;
    let campaign = campaign(&server, &creds).await;

    let (id, hash) = send(&server, &creds, &campaign, "13108675309", "early receipt").await;
    let events = until_status(&server, &creds, &id, &hash, "COMPLETE").await;
    assert!(
        events.contains(&"Delivery Confirmed".to_string()),
        "{events:?}"
    );
    let pending = server.app.store.smpp_pending_receipts().await.unwrap();
    assert_eq!(
        pending, 0,
        "the early receipt was applied, not left waiting"
    );
    // Every receipt was answered, and only once it was stored. The answer
    // follows the commit that completes the message, so it may reach the
    // SMSC a moment after the status shows COMPLETE.
    let acks = smsc.wait_acks(1).await;
    assert_eq!(acks.len(), 1);
    assert_eq!(acks[0].1, 0);
}

#[tokio::test]
async fn a_failed_receipt_ends_600() {
    let smsc = Smsc::start().await;
    smsc.set(|b| b.receipt = Some("UNDELIV".into()));
    let server = server_with(&smsc, |_| {}).await;
    let creds = server.client().await;
    let campaign = campaign(&server, &creds).await;

    let (id, hash) = send(&server, &creds, &campaign, "13108675309", "nobody home").await;
    let events = until_status(&server, &creds, &id, &hash, "FAILED").await;
    assert_eq!(code_of(&server, &id).await, 600);
    assert_eq!(
        events.last().unwrap(),
        "Transaction Terminated (600): carrier reported UNDELIV"
    );
}

#[tokio::test]
async fn throttling_slows_the_bind_down_and_the_message_still_goes() {
    let smsc = Smsc::start().await;
    smsc.set(|b| b.answers = [Answer::Status(0x58), Answer::Status(0x14)].into());
    let server = server_with(&smsc, |_| {}).await;
    let creds = server.client().await;
    let campaign = campaign(&server, &creds).await;

    let (id, hash) = send(&server, &creds, &campaign, "13108675309", "slowly").await;
    let events = until_status(&server, &creds, &id, &hash, "COMPLETE").await;
    assert_eq!(
        events.iter().filter(|e| *e == "Retry Scheduled").count(),
        2,
        "{events:?}"
    );
    let submits = smsc.submits();
    assert_eq!(submits.len(), 3);
    assert_eq!(submits.iter().filter(|s| s.id.is_some()).count(), 1);
}

#[tokio::test]
async fn a_dropped_connection_loses_nothing_and_resends_only_what_was_not_acknowledged() {
    let smsc = Smsc::start().await;
    smsc.set(|b| {
        b.receipt = None;
        b.answers = [Answer::Accept, Answer::Accept, Answer::Drop].into();
    });
    let mut bind_change = |c: &mut Config| c.smpp[0].registered_delivery = false;
    let server = server_with(&smsc, &mut bind_change).await;
    let creds = server.client().await;
    let campaign = campaign(&server, &creds).await;

    let mut sent = Vec::new();
    for n in 0..6 {
        let to = format!("1310867530{n}");
        sent.push(send(&server, &creds, &campaign, &to, "window").await);
    }
    for (id, hash) in &sent {
        until_status(&server, &creds, id, hash, "COMPLETE").await;
    }
    let submits = smsc.submits();
    for n in 0..6 {
        let to = format!("1310867530{n}");
        let mine: Vec<_> = submits.iter().filter(|s| s.destination == to).collect();
        let accepted = mine.iter().filter(|s| s.id.is_some()).count();
        assert_eq!(accepted, 1, "{to} accepted exactly once: {mine:?}");
        // Once acknowledged, never submitted again.
        let first_accepted = mine.iter().position(|s| s.id.is_some()).unwrap();
        assert_eq!(
            first_accepted,
            mine.len() - 1,
            "{to} sent after it was acknowledged"
        );
    }
    assert!(
        submits.len() > 6,
        "the unacknowledged submit was sent again"
    );
    assert!(smsc.binds().len() >= 2, "the bind came back");
}

#[tokio::test]
async fn a_permanent_error_fails_600_at_once_with_the_status() {
    let smsc = Smsc::start().await;
    smsc.set(|b| b.answers = [Answer::Status(0x0A)].into());
    let server = server_with(&smsc, |_| {}).await;
    let creds = server.client().await;
    let campaign = campaign(&server, &creds).await;

    let (id, hash) = send(&server, &creds, &campaign, "13108675309", "refused").await;
    let events = until_status(&server, &creds, &id, &hash, "FAILED").await;
    assert_eq!(code_of(&server, &id).await, 600);
    assert_eq!(
        events.last().unwrap(),
        "Transaction Terminated (600): SMSC refused the message: command status 0x0000000A"
    );
    assert!(!events.contains(&"Retry Scheduled".to_string()));
    assert_eq!(smsc.submits().len(), 1);
}

#[tokio::test]
async fn an_invalid_destination_fails_604_and_bars_the_number() {
    let smsc = Smsc::start().await;
    smsc.set(|b| b.answers = [Answer::Status(0x0B)].into());
    let server = server_with(&smsc, |_| {}).await;
    let creds = server.client().await;
    let campaign = campaign(&server, &creds).await;

    let (id, hash) = send(&server, &creds, &campaign, "13108675309", "barred").await;
    until_status(&server, &creds, &id, &hash, "FAILED").await;
    assert_eq!(code_of(&server, &id).await, 604);
    // From then on the number is refused at once.
    let resp = server
        .call(
            &creds,
            "transaction.send",
            &[
                ("campaign_id", &campaign),
                ("to", "13108675309"),
                ("message", "again"),
            ],
        )
        .await;
    assert_code(&resp, 604);
    let barred: i64 = moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM blacklist WHERE number = '13108675309' AND carrier_id = 2",
        )
        .fetch_one(pool)
        .await
        .unwrap()
    });
    assert_eq!(barred, 1);
}

#[tokio::test]
async fn temporary_errors_are_retried_until_the_validity_period_ends_then_601() {
    let smsc = Smsc::start().await;
    smsc.set(|b| {
        b.answers = [Answer::Silent]
            .into_iter()
            .chain(std::iter::repeat_n(Answer::Status(0x08), 100))
            .collect()
    });
    let server = server_with(&smsc, |c| c.delivery.validity_secs = 3).await;
    let creds = server.client().await;
    let campaign = campaign(&server, &creds).await;

    let (id, hash) = send(&server, &creds, &campaign, "13108675309", "never").await;
    let events = until_status(&server, &creds, &id, &hash, "FAILED").await;
    assert_eq!(code_of(&server, &id).await, 601);
    assert!(
        events.contains(&"Retry Scheduled".to_string()),
        "{events:?}"
    );
    assert!(
        events
            .last()
            .unwrap()
            .starts_with("Transaction Terminated (601)"),
        "{events:?}"
    );
    assert!(smsc.submits().len() >= 2);
}

#[tokio::test]
async fn an_inbound_stop_opts_the_number_out_and_queues_the_mo_callback() {
    let smsc = Smsc::start().await;
    let server = server_with(&smsc, |_| {}).await;
    let creds = server.client().await;
    let campaign = moms::store::campaign::Campaign {
        callback_url: HOOK.into(),
        stop_message: "Alerts: you are unsubscribed".into(),
        ..campaign_settings(&creds, "Alerts")
    };
    let campaign_id = server
        .app
        .store
        .create_campaign(&campaign, Some("21534"))
        .await
        .unwrap();
    // A message the campaign sent opens the conversation the reply belongs to.
    server
        .app
        .store
        .accept_now(NewTransaction {
            client_id: campaign.client_id,
            campaign_id,
            sender: "21534".into(),
            from_name: "21534".into(),
            recipient: "13105550123".into(),
            to_input: "13105550123".into(),
            to_name: "13105550123".into(),
            kind: "sms",
            body: "Hi".into(),
            opt_in: Some(1),
            conversation: Some("21534".into()),
            expires_ms: i64::MAX / 2,
            ..NewTransaction::default()
        })
        .await
        .unwrap();

    let sequence = smsc.inject("13105550123", "21534", 0, 0, b"Stop");
    assert_eq!(smsc.wait_ack(sequence).await, 0);

    let json = server
        .call_json(
            &creds,
            "user.getopt",
            &[
                ("number", "3105550123"),
                ("campaign_id", &campaign_id.to_string()),
            ],
        )
        .await;
    assert_eq!(json["response"]["campaigns"][0]["status"], "OPTEDOUT");
    let hooks: Vec<(String, String)> = moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query_as("SELECT url, body FROM webhooks WHERE client_id = $1")
            .bind(campaign.client_id)
            .fetch_all(pool)
            .await
            .unwrap()
    });
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0].0, HOOK);
    assert!(hooks[0].1.contains("<event>stop</event>"), "{}", hooks[0].1);
}

#[tokio::test]
async fn a_concatenated_ucs2_message_from_a_phone_is_joined_before_it_is_answered() {
    let smsc = Smsc::start().await;
    let server = server_with(&smsc, |_| {}).await;
    let part = |n: u8, text: &str| {
        let mut sm = vec![5, 0, 3, 9, 2, n];
        sm.extend(text.encode_utf16().flat_map(u16::to_be_bytes));
        sm
    };
    let first = smsc.inject("13105550123", "21534", 8, 0x40, &part(1, "Привет, "));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        smsc.acks().is_empty(),
        "a part alone is not stored, so not answered"
    );
    let second = smsc.inject("13105550123", "21534", 8, 0x40, &part(2, "мир"));
    assert_eq!(smsc.wait_ack(first).await, 0);
    assert_eq!(smsc.wait_ack(second).await, 0);
    let body: String = moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query_scalar("SELECT body FROM inbound WHERE sender = '13105550123'")
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert_eq!(body, "Привет, мир");
}

#[tokio::test]
async fn a_refused_bind_is_retried_and_version_5_is_asked_for() {
    let smsc = Smsc::start().await;
    smsc.set(|b| b.refuse_binds = true);
    let bind = moms::config::SmppBind {
        version: "5.0".into(),
        ..smsc.bind(2)
    };
    let _server = Server::start_with(|c| c.smpp.push(bind)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(smsc.binds().is_empty());
    smsc.set(|b| b.refuse_binds = false);
    smsc.wait_bound().await;
    assert_eq!(smsc.binds()[0].0, 0x50);
}

/// The SMSC of tests/interop (the npm `smpp` package, an independent
/// implementation) on a free port: (process, port, its stdout lines).
/// `None` when node or the package is missing and the run does not
/// require interop peers.
async fn node_smsc() -> Option<(
    tokio::process::Child,
    u16,
    tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    let required = std::env::var_os("MOMS_REQUIRE_INTEROP").is_some();
    let spawned = tokio::process::Command::new("node")
        .arg(dir.join("smsc.js"))
        .arg("0")
        .current_dir(&dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(child) if dir.join("node_modules/smpp").exists() => child,
        _ if required => panic!("the interop SMSC (node tests/interop/smsc.js) cannot start"),
        _ => {
            eprintln!("skipped: node or tests/interop/node_modules missing");
            return None;
        }
    };
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("the interop SMSC starts")
        .unwrap()
        .unwrap_or_default();
    let port = first
        .strip_prefix("LISTENING ")
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"));
    Some((child, port, lines))
}

#[tokio::test]
async fn an_independent_smsc_takes_submits_returns_receipts_and_a_stop() {
    let Some((mut child, port, mut lines)) = node_smsc().await else {
        return;
    };
    let bind = SmppBind {
        carrier_id: 2,
        host: "127.0.0.1".into(),
        port,
        system_id: "moms".into(),
        password: "secret".into(),
        ..SmppBind::default()
    };
    let server = server_for(bind, |_| {}).await;
    let creds = server.client().await;
    let receiver = Receiver::start().await;
    let campaign = moms::store::campaign::Campaign {
        callback_url: format!("{}/mo", receiver.base),
        stop_message: "Alerts: you are unsubscribed".into(),
        ..campaign_settings(&creds, "Alerts")
    };
    let campaign_id = server
        .app
        .store
        .create_campaign(&campaign, Some("21534"))
        .await
        .unwrap()
        .to_string();

    // Sent, acknowledged and confirmed by the SMSC's receipt.
    let (id, hash) = send(
        &server,
        &creds,
        &campaign_id,
        "13105550123",
        "interop hello",
    )
    .await;
    let events = until_status(&server, &creds, &id, &hash, "COMPLETE").await;
    assert!(
        events.contains(&"Delivery Confirmed".to_string()),
        "{events:?}"
    );
    let mut submit = String::new();
    while !submit.starts_with("SUBMIT ") {
        submit = lines.next_line().await.unwrap().expect("a SUBMIT line");
    }
    assert!(submit.ends_with(" 13105550123 0 interop hello"), "{submit}");

    // The phone answers STOP: opted out, confirmed, and the campaign told.
    let stdin = child.stdin.as_mut().unwrap();
    stdin
        .write_all(b"MO 13105550123 21534 STOP\n")
        .await
        .unwrap();
    stdin.flush().await.unwrap();
    let got = receiver.wait_for(1).await;
    assert!(
        got[0].body.contains("<event>stop</event>"),
        "{}",
        got[0].body
    );
    assert!(
        got[0].body.contains("<msisdn>13105550123</msisdn>"),
        "{}",
        got[0].body
    );
    assert!(got[0].headers.contains_key("x-moms-signature"));
    let json = server
        .call_json(
            &creds,
            "user.getopt",
            &[("number", "3105550123"), ("campaign_id", &campaign_id)],
        )
        .await;
    assert_eq!(json["response"]["campaigns"][0]["status"], "OPTEDOUT");
    // The confirmation goes out through the same SMSC; the number is refused afterwards.
    let mut confirmation = String::new();
    while !confirmation.contains("you are unsubscribed") {
        confirmation = lines
            .next_line()
            .await
            .unwrap()
            .expect("the stop confirmation");
    }
    let resp = server
        .call(
            &creds,
            "transaction.send",
            &[
                ("campaign_id", &campaign_id),
                ("to", "3105550123"),
                ("message", "again"),
            ],
        )
        .await;
    assert_code(&resp, 606);
}

#[tokio::test]
async fn thousands_of_messages_through_throttling_and_dropped_links_end_once_each() {
    const MESSAGES: usize = 2000;
    let smsc = Smsc::start().await;
    // Throttling bursts, system errors, and the link dropped twice
    // mid-window; receipts for everything accepted.
    let answers = (1..=MESSAGES + 200)
        .map(|n| match n {
            500 | 1400 => Answer::Drop,
            300..=310 | 1100..=1104 => Answer::Status(0x58),
            n if n % 389 == 0 => Answer::Status(0x08),
            _ => Answer::Accept,
        })
        .collect();
    // Store-and-forward, as SMSCs are: a receipt not yet written when a
    // link drops goes out again after the next bind. Without it the test
    // SMSC loses it (its receipt is sent by a task of its own, which can
    // run after the drop), and the message waits out its validity.
    smsc.set(|b| {
        b.answers = answers;
        b.redeliver_receipts = true;
    });
    let server = server_with(&smsc, |c| c.smpp[0].throttle_secs = 1).await;
    let creds = server.client().await;
    let campaign = campaign(&server, &creds).await;

    let numbers: Vec<String> = (0..MESSAGES)
        .map(|n| format!("1310{:07}", 2_000_000 + n))
        .collect();
    for chunk in numbers.chunks(50) {
        let sends = chunk.iter().map(|to| async {
            let params = [
                ("campaign_id", campaign.as_str()),
                ("to", to.as_str()),
                ("message", "soak"),
            ];
            server.call(&creds, "transaction.send", &params).await
        });
        for resp in futures_util::future::join_all(sends).await {
            assert_code(&resp, 1);
        }
    }
    // Every accepted message ends, none is lost. A bound on liveness, not
    // on speed: throttled messages back off for seconds, doubling per
    // try, and a loaded machine (CI's two cores) throttles more of them.
    let deadline = Instant::now() + Duration::from_secs(120);
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
        if Instant::now() >= deadline {
            let stages: Vec<(String, String, i64)> = moms::with_db!(
                server.app.store,
                |pool, writer| {
                    sqlx::query_as(
                        "SELECT t.status, COALESCE(d.stage, '-'), COUNT(*) FROM transactions t LEFT JOIN deliveries d ON d.transaction_id = t.id GROUP BY 1, 2",
                    )
                    .fetch_all(pool)
                    .await
                    .unwrap()
                }
            );
            panic!(
                "{open} messages never ended: {stages:?}; submits seen {}, binds {}",
                smsc.submits().len(),
                smsc.binds().len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ended: Vec<(String, String)> = moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query_as("SELECT recipient, status FROM transactions")
            .fetch_all(pool)
            .await
            .unwrap()
    });
    assert_eq!(ended.len(), MESSAGES, "one transaction per send");
    assert!(
        ended.iter().all(|(_, status)| status == "COMPLETE"),
        "temporary errors were retried to success"
    );
    // None sent twice once the SMSC acknowledged it.
    let mut accepted: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for submit in smsc.submits().iter().filter(|s| s.id.is_some()) {
        *accepted.entry(submit.destination.clone()).or_default() += 1;
    }
    assert_eq!(accepted.len(), MESSAGES);
    assert!(
        accepted.values().all(|n| *n == 1),
        "a message acknowledged twice"
    );
    assert!(
        smsc.binds().len() >= 3,
        "the bind came back after each drop"
    );
}

#[tokio::test]
async fn a_receipt_for_an_id_not_recorded_yet_waits_for_it_in_the_store() {
    use moms::smpp::receipt::{candidates, normalise_id};
    use moms::store::smpp::{AcceptedSegment, ReceiptRow};
    let server = Server::start().await;
    let store = &server.app.store;
    // The SMSC's receipt names 41394 (decimal) before its submit_sm_resp
    // (0000A1B2, hex) was recorded.
    let early = ReceiptRow {
        key: "41394".into(),
        candidates: candidates("41394"),
        stat: "DELIVRD".into(),
        delivered: true,
        err: "000".into(),
    };
    let touched = store.smpp_record(&[], &[early]).await.unwrap();
    assert!(touched.is_empty());
    assert_eq!(store.smpp_pending_receipts().await.unwrap(), 1);

    let accepted = AcceptedSegment {
        transaction_id: 77,
        segment: 1,
        total: 1,
        message_id: normalise_id("0000A1B2"),
    };
    let touched = store.smpp_record(&[accepted], &[]).await.unwrap();
    assert_eq!(touched.into_iter().collect::<Vec<_>>(), [77]);
    assert_eq!(store.smpp_pending_receipts().await.unwrap(), 0);
    let progress = store.smpp_progress(&[77]).await.unwrap();
    let segment = &progress[0].2[0];
    assert_eq!((segment.accepted, segment.delivered), (true, Some(true)));
    assert_eq!(segment.receipt, "DELIVRD");
}

#[tokio::test]
async fn a_receipt_stored_just_before_a_crash_still_completes_its_message() {
    let smsc = Smsc::start().await;
    let server = server_with(&smsc, |_| {}).await;
    let creds = server.client().await;
    let campaign_id: i64 = campaign(&server, &creds).await.parse().unwrap();
    let accepted = server
        .app
        .store
        .accept_now(NewTransaction {
            client_id: creds.client_id.parse().unwrap(),
            campaign_id,
            sender: "21534".into(),
            from_name: "21534".into(),
            recipient: "13108675309".into(),
            to_input: "3108675309".into(),
            to_name: "3108675309".into(),
            kind: "sms",
            body: "crash".into(),
            carrier_id: Some(2),
            expires_ms: i64::MAX / 2,
            ..NewTransaction::default()
        })
        .await
        .unwrap();
    // The state a crash between the receipt's commit and the step's leaves:
    // the segment delivered, the transaction still waiting for it.
    let id = accepted.message_id;
    moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query("UPDATE deliveries SET stage = 'await', due_ms = $2 WHERE transaction_id = $1")
            .bind(id)
            .bind(i64::MAX / 4)
            .execute(writer)
            .await
            .unwrap();
        sqlx::query("UPDATE transactions SET status = 'SENT' WHERE id = $1")
            .bind(id)
            .execute(writer)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO smpp_segments (transaction_id, segment, total, message_id, receipt, delivered, accepted_ms)
             VALUES ($1, 1, 1, 'abc', 'DELIVRD', 1, 0)",
        )
        .bind(id)
        .execute(writer)
        .await
        .unwrap();
    });
    let config = server.app.config.clone();
    let dir = server.stop().await;
    let server = Server::start_in(dir, config).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status: String = moms::with_db!(server.app.store, |pool, writer| {
            sqlx::query_scalar("SELECT status FROM transactions WHERE id = $1")
                .bind(id)
                .fetch_one(pool)
                .await
                .unwrap()
        });
        if status == "COMPLETE" {
            break;
        }
        assert!(Instant::now() < deadline, "still {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
