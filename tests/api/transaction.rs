//! transaction.send and transaction.lookup (spec section 5.2), the codes of
//! section 3 they give, and the sandbox delivery model of section 7.

use std::time::{Duration, Instant};

use moms::store::campaign::Campaign;
use moms::store::sends::NewTransaction;
use serde_json::json;

use crate::common::*;

/// A campaign of this client, stored directly (campaign.create is tested elsewhere).
async fn campaign_with(
    server: &Server,
    creds: &Creds,
    change: impl FnOnce(&mut Campaign),
) -> String {
    let mut campaign = Campaign {
        kind: "mms".into(),
        ..campaign_settings(creds, "Spring sale")
    };
    change(&mut campaign);
    let id = server
        .app
        .store
        .create_campaign(&campaign, None)
        .await
        .unwrap();
    id.to_string()
}

async fn campaign(server: &Server, creds: &Creds) -> String {
    campaign_with(server, creds, |_| {}).await
}

/// Sends `message` to `to` on `campaign` plus `extra` parameters.
async fn send(
    server: &Server,
    creds: &Creds,
    campaign: &str,
    to: &str,
    extra: &[(&str, &str)],
) -> Resp {
    let mut params = vec![("campaign_id", campaign), ("to", to), ("message", "Hello")];
    params.extend_from_slice(extra);
    server.call(creds, "transaction.send", &params).await
}

/// Sends and returns (message_id, hash), asserting success.
async fn sent(
    server: &Server,
    creds: &Creds,
    campaign: &str,
    to: &str,
    extra: &[(&str, &str)],
) -> (String, String) {
    let resp = send(server, creds, campaign, to, extra).await;
    assert_code(&resp, 1);
    let xml = resp.xml();
    (
        xml.text_of("message_id").to_string(),
        xml.text_of("hash").to_string(),
    )
}

async fn lookup(server: &Server, creds: &Creds, id: &str, hash: &str) -> Resp {
    server
        .call(
            creds,
            "transaction.lookup",
            &[("message_id", id), ("hash", hash)],
        )
        .await
}

/// The events of a lookup, in order.
fn events(xml: &Element) -> Vec<String> {
    xml.child("history")
        .all("event")
        .iter()
        .map(|e| e.text.clone())
        .collect()
}

/// Polls transaction.lookup until the status is `status` (5 s deadline).
async fn until_status(
    server: &Server,
    creds: &Creds,
    id: &str,
    hash: &str,
    status: &str,
) -> Element {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let xml = lookup(server, creds, id, hash).await.xml();
        if xml.cdata_of("status") == status {
            return xml;
        }
        assert!(
            Instant::now() < deadline,
            "status never became {status}: {xml:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn count(server: &Server, sql: &str) -> i64 {
    moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(pool)
            .await
            .unwrap()
    })
}

/// A stored image of this client, for content_id.
async fn media(server: &Server, client_id: &str) -> String {
    let token = format!("{:016x}", rand::random::<u64>());
    let id: i64 = moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query_scalar(
            "INSERT INTO media (client_id, name, type, mime, filename, size, token, base_url, sha256, created_at)
             VALUES ($1, 'logo', 'image', 'image/png', 'logo.png', 10, $2, 'http://localhost', '', 0)
             RETURNING id",
        )
        .bind(client_id.parse::<i64>().unwrap())
        .bind(token)
        .fetch_one(writer)
        .await
        .unwrap()
    });
    id.to_string()
}

async fn opt_out(server: &Server, number: &str, campaign: &str) {
    moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query("INSERT INTO opt_status (number, campaign_id, status, source, updated_at) VALUES ($1, $2, -2, 'api', 0)")
        .bind(number)
        .bind(campaign.parse::<i64>().unwrap())
        .execute(writer)
        .await
        .unwrap();
    });
}

async fn promo(
    server: &Server,
    campaign: &str,
    code: &str,
    status: &str,
    (uses, max_uses): (i64, Option<i64>),
    (starts, ends): (&str, &str),
) {
    moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query(
            "INSERT INTO promos (campaign_id, code, code_key, status, uses, max_uses, starts, ends, created_at)
             VALUES ($1, $2, upper($2), $3, $4, $5, $6, $7, 0)",
        )
        .bind(campaign.parse::<i64>().unwrap())
        .bind(code)
        .bind(status)
        .bind(uses)
        .bind(max_uses)
        .bind(starts)
        .bind(ends)
        .execute(writer)
        .await
        .unwrap();
    });
}

/// Adds a carrier row and reloads the carrier table.
async fn carrier(server: &Server, id: i64, name: &str, prefixes: &str, mms: bool, connector: &str) {
    moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query("INSERT INTO carriers (id, name, prefixes, served, mms, connector) VALUES ($1, $2, $3, 1, $4, $5)")
        .bind(id)
        .bind(name)
        .bind(prefixes)
        .bind(mms as i64)
        .bind(connector)
        .execute(writer)
        .await
        .unwrap();
    });
    server.app.reload().await.unwrap();
}

#[tokio::test]
async fn send_answers_message_id_and_hash_in_xml_and_json() {
    let server = Server::start().await;
    let creds = server.client().await;
    let campaign = campaign(&server, &creds).await;

    let resp = send(&server, &creds, &campaign, "3108675309", &[]).await;
    assert_code(&resp, 1);
    let xml = resp.xml();
    assert_eq!(xml.attr_names(), ["status", "code"]);
    assert_eq!(xml.attr("status"), "success");
    assert_eq!(xml.child_names(), ["message", "message_id", "hash"]);
    assert_eq!(xml.cdata_of("message"), "API Request Accepted");
    let id: i64 = xml.text_of("message_id").parse().unwrap();
    assert!(id > 0 && id < 1 << 31);
    let hash = xml.text_of("hash");
    assert_eq!(hash.len(), 8);
    assert!(
        hash.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    );

    let body = server
        .call_json(
            &creds,
            "transaction.send",
            &[
                ("campaign_id", &campaign),
                ("to", "3108675309"),
                ("message", "Hi"),
            ],
        )
        .await;
    let response = &body["response"];
    assert_eq!(response["code"], "1");
    assert_eq!(response["status"], "success");
    assert_eq!(response["message"], "API Request Accepted");
    let keys: Vec<&str> = response
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["code", "status", "message", "message_id", "hash"]);
    let second: i64 = response["message_id"].as_str().unwrap().parse().unwrap();
    assert_ne!(second, id);
}

#[tokio::test]
async fn lookup_shows_queued_sent_complete_in_the_configured_time_zone() {
    let server = Server::start_with(|c| c.time_zone = "America/Los_Angeles".into()).await;
    let creds = server.client().await;
    let campaign = campaign(&server, &creds).await;
    let (id, hash) = sent(&server, &creds, &campaign, "(310) 867-5309", &[]).await;

    let xml = until_status(&server, &creds, &id, &hash, "COMPLETE").await;
    assert_eq!(
        xml.child_names(),
        [
            "message",
            "campaign_id",
            "from",
            "from_name",
            "to",
            "to_name",
            "content_id",
            "status",
            "history"
        ]
    );
    assert_eq!(xml.cdata_of("message"), "transaction found");
    assert_eq!(xml.cdata_of("campaign_id"), campaign);
    assert_eq!(xml.cdata_of("from"), "21534");
    assert_eq!(xml.cdata_of("from_name"), "21534");
    assert_eq!(xml.cdata_of("to"), "(310) 867-5309");
    assert_eq!(xml.cdata_of("to_name"), "(310) 867-5309");
    assert_eq!(xml.cdata_of("content_id"), "");
    assert_eq!(
        events(&xml),
        [
            "Transaction Created",
            "Transaction Queued",
            "SMS Sent",
            "Delivery Confirmed",
            "Transaction Complete"
        ]
    );
    for event in xml.child("history").all("event") {
        assert!(event.cdata, "{event:?}");
        assert_eq!(event.attr_names(), ["timestamp"]);
        let at = event.attr("timestamp");
        // YYYY-MM-DD HH:MM:SS -0700 (or -0800 in winter)
        assert_eq!(at.len(), 25, "{at}");
        assert!(at.ends_with(" -0700") || at.ends_with(" -0800"), "{at}");
        assert!(
            chrono::DateTime::parse_from_str(at, "%Y-%m-%d %H:%M:%S %z").is_ok(),
            "{at}"
        );
    }

    let body = server
        .call_json(
            &creds,
            "transaction.lookup",
            &[("message_id", &id), ("hash", &hash)],
        )
        .await;
    let response = &body["response"];
    assert_eq!(response["code"], "1");
    assert_eq!(response["message"], "transaction found");
    let transaction = &response["transaction"];
    let keys: Vec<&str> = transaction
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "campaign_id",
            "from",
            "from_name",
            "to",
            "to_name",
            "content_id",
            "status",
            "history"
        ]
    );
    assert_eq!(transaction["campaign_id"], json!(campaign));
    assert_eq!(transaction["status"], "COMPLETE");
    assert_eq!(transaction["content_id"], "");
    let history = transaction["history"].as_array().unwrap();
    assert_eq!(history.len(), 5);
    assert_eq!(history[0]["event"], "Transaction Created");
    assert_eq!(history[4]["event"], "Transaction Complete");
    assert!(
        history
            .iter()
            .all(|h| h["timestamp"].as_str().is_some_and(|t| t.len() == 25))
    );
}

#[tokio::test]
async fn lookup_echoes_names_and_content_of_an_mms() {
    let server = Server::start().await;
    let creds = server.client().await;
    let campaign = campaign(&server, &creds).await;
    let content_id = media(&server, &creds.client_id).await;
    let (id, hash) = sent(
        &server,
        &creds,
        &campaign,
        "+1 310 867 5309",
        &[
            ("from", "13105550100"),
            ("from_name", "Ann"),
            ("to_name", "Bob"),
            ("content_id", &content_id),
            ("subject", "Hi"),
        ],
    )
    .await;
    let xml = until_status(&server, &creds, &id, &hash, "COMPLETE").await;
    assert_eq!(xml.cdata_of("from"), "13105550100");
    assert_eq!(xml.cdata_of("from_name"), "Ann");
    assert_eq!(xml.cdata_of("to"), "+1 310 867 5309");
    assert_eq!(xml.cdata_of("to_name"), "Bob");
    assert_eq!(xml.cdata_of("content_id"), content_id);
    assert!(events(&xml).contains(&"MMS Sent".to_string()));
}

#[tokio::test]
async fn lookup_of_unknown_wrong_hash_or_foreign_transaction_is_403_with_http_200() {
    let server = Server::start().await;
    let creds = server.client().await;
    let other = server.client().await;
    let campaign = campaign(&server, &creds).await;
    let (id, hash) = sent(&server, &creds, &campaign, "3108675309", &[]).await;

    assert_code(&lookup(&server, &creds, &id, "zzzzzzzz").await, 403);
    assert_code(&lookup(&server, &other, &id, &hash).await, 403);
    assert_code(&lookup(&server, &creds, "2000000000", &hash).await, 403);
    assert_code(&lookup(&server, &creds, "abc", &hash).await, 403);
    let resp = server
        .call(
            &creds,
            "transaction.lookup",
            &[
                ("message_id", &id),
                ("hash", "zzzzzzzz"),
                ("format", "json"),
            ],
        )
        .await;
    assert_code(&resp, 403);
    assert_eq!(resp.json()["response"]["status"], "error");
    assert_code(
        &server
            .call(&creds, "transaction.lookup", &[("hash", &hash)])
            .await,
        443,
    );
    assert_code(
        &server
            .call(&creds, "transaction.lookup", &[("message_id", &id)])
            .await,
        443,
    );
    assert_code(&lookup(&server, &creds, &id, &hash).await, 1);
}

#[tokio::test]
async fn send_rejects_missing_and_invalid_parameters() {
    let server = Server::start().await;
    let creds = server.client().await;
    let other = server.client_with(&["99999"]).await;
    let campaign = campaign(&server, &creds).await;
    let foreign = campaign_with(&server, &other, |c| c.sender = "99999".into()).await;
    let call = |params: Vec<(&'static str, String)>| {
        let server = &server;
        let creds = &creds;
        async move {
            let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
            server.call(creds, "transaction.send", &params).await
        }
    };
    let c = || ("campaign_id", campaign.clone());
    let to = || ("to", "3108675309".to_string());
    let msg = || ("message", "Hello".to_string());

    assert_code(&call(vec![to(), msg()]).await, 430);
    assert_code(
        &call(vec![("campaign_id", "abc".into()), to(), msg()]).await,
        431,
    );
    assert_code(
        &call(vec![("campaign_id", "0".into()), to(), msg()]).await,
        431,
    );
    assert_code(&call(vec![c(), msg()]).await, 435);
    assert_code(&call(vec![c(), ("to", "12".into()), msg()]).await, 436);
    assert_code(&call(vec![c(), ("to", "21534".into()), msg()]).await, 436);
    assert_code(&call(vec![c(), to()]).await, 439);
    assert_code(
        &call(vec![c(), to(), ("subject", "only a subject".into())]).await,
        439,
    );
    assert_code(
        &call(vec![("campaign_id", "999999".into()), to(), msg()]).await,
        432,
    );
    assert_code(
        &call(vec![("campaign_id", foreign.clone()), to(), msg()]).await,
        432,
    );
    assert_code(
        &call(vec![c(), to(), msg(), ("from", "abc".into())]).await,
        434,
    );
    assert_code(
        &call(vec![c(), to(), msg(), ("from", "99999".into())]).await,
        434,
    );
    assert_code(
        &call(vec![c(), to(), msg(), ("request_id", "r".repeat(65))]).await,
        400,
    );
    assert_code(
        &call(vec![c(), to(), msg(), ("callback", "not a url".into())]).await,
        400,
    );
    assert_code(
        &call(vec![
            c(),
            to(),
            msg(),
            ("callback", "ftp://example.com/x".into()),
        ])
        .await,
        400,
    );
    assert_code(
        &call(vec![
            c(),
            to(),
            msg(),
            ("request_id", "r".repeat(64)),
            ("callback", "https://example.com/cb".into()),
        ])
        .await,
        1,
    );

    let resp = server
        .call(
            &creds,
            "transaction.send",
            &[
                ("campaign_id", &campaign),
                ("to", "12"),
                ("message", "x"),
                ("format", "json"),
            ],
        )
        .await;
    assert_code(&resp, 436);
    assert!(
        resp.message().starts_with("Invalid \"to\" parameter."),
        "{}",
        resp.body
    );
}

#[tokio::test]
async fn send_without_from_needs_a_campaign_sender() {
    let server = Server::start().await;
    let creds = server.client().await;
    let bare = campaign_with(&server, &creds, |c| c.sender = String::new()).await;
    assert_code(&send(&server, &creds, &bare, "3108675309", &[]).await, 433);
    assert_code(
        &send(&server, &creds, &bare, "3108675309", &[("from", "21534")]).await,
        1,
    );
    // A default sender the client may no longer use is refused too.
    let stale = campaign_with(&server, &creds, |c| c.sender = "77777".into()).await;
    assert_code(&send(&server, &creds, &stale, "3108675309", &[]).await, 434);
}

#[tokio::test]
async fn campaigns_that_require_names_give_437_and_438() {
    let server = Server::start().await;
    let creds = server.client().await;
    let campaign = campaign_with(&server, &creds, |c| c.require_names = true).await;
    assert_code(
        &send(&server, &creds, &campaign, "3108675309", &[]).await,
        437,
    );
    assert_code(
        &send(
            &server,
            &creds,
            &campaign,
            "3108675309",
            &[("to_name", "Bob")],
        )
        .await,
        437,
    );
    assert_code(
        &send(
            &server,
            &creds,
            &campaign,
            "3108675309",
            &[("from_name", "Ann")],
        )
        .await,
        438,
    );
    assert_code(
        &send(
            &server,
            &creds,
            &campaign,
            "3108675309",
            &[("from_name", "Ann"), ("to_name", "Bob")],
        )
        .await,
        1,
    );
}

#[tokio::test]
async fn media_must_be_the_clients_own_live_content() {
    let server = Server::start().await;
    let creds = server.client().await;
    let other = server.client().await;
    let campaign = campaign(&server, &creds).await;
    let mine = media(&server, &creds.client_id).await;
    let theirs = media(&server, &other.client_id).await;
    let gone = media(&server, &creds.client_id).await;
    moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query("UPDATE media SET destroyed_at = 1 WHERE id = $1")
            .bind(gone.parse::<i64>().unwrap())
            .execute(writer)
            .await
            .unwrap();
    });

    for bad in ["abc", "999999", theirs.as_str(), gone.as_str()] {
        let resp = send(
            &server,
            &creds,
            &campaign,
            "3108675309",
            &[("content_id", bad)],
        )
        .await;
        assert_code(&resp, 460);
    }
    let both = send(
        &server,
        &creds,
        &campaign,
        "3108675309",
        &[
            ("content_id", &mine),
            ("content_url", "http://127.0.0.1:9/x.png"),
        ],
    )
    .await;
    assert_code(&both, 460);
    // An MMS without text is fine.
    let resp = server
        .call(
            &creds,
            "transaction.send",
            &[
                ("campaign_id", &campaign),
                ("to", "3108675309"),
                ("content_id", &mine),
            ],
        )
        .await;
    assert_code(&resp, 1);
}

#[tokio::test]
async fn promo_codes_must_be_approved_current_and_unexhausted() {
    let server = Server::start().await;
    let creds = server.client().await;
    let campaign = campaign(&server, &creds).await;
    promo(
        &server,
        &campaign,
        "Spring25",
        "approved",
        (0, Some(1)),
        ("", ""),
    )
    .await;
    promo(
        &server,
        &campaign,
        "PENDING",
        "pending",
        (0, None),
        ("", ""),
    )
    .await;
    promo(
        &server,
        &campaign,
        "OLD",
        "approved",
        (0, None),
        ("2000-01-01", "2000-12-31"),
    )
    .await;
    promo(
        &server,
        &campaign,
        "LATER",
        "approved",
        (0, None),
        ("2999-01-01", ""),
    )
    .await;
    promo(
        &server,
        &campaign,
        "USED",
        "approved",
        (3, Some(3)),
        ("", ""),
    )
    .await;

    for code in ["NOPE", "PENDING", "OLD", "LATER", "USED"] {
        let resp = send(
            &server,
            &creds,
            &campaign,
            "3108675309",
            &[("promo_code", code)],
        )
        .await;
        assert_code(&resp, 440);
    }
    // Case-insensitive, and used once per accepted send.
    assert_code(
        &send(
            &server,
            &creds,
            &campaign,
            "3108675309",
            &[("promo_code", "spring25")],
        )
        .await,
        1,
    );
    assert_eq!(
        count(
            &server,
            "SELECT uses FROM promos WHERE code_key = 'SPRING25'"
        )
        .await,
        1
    );
    assert_code(
        &send(
            &server,
            &creds,
            &campaign,
            "3108675309",
            &[("promo_code", "SPRING25")],
        )
        .await,
        440,
    );
}

#[tokio::test]
async fn content_the_campaign_or_carrier_cannot_carry_is_607() {
    let server = Server::start().await;
    let creds = server.client().await;
    let sms = campaign_with(&server, &creds, |c| c.kind = "sms".into()).await;
    let mms = campaign(&server, &creds).await;
    let image = media(&server, &creds.client_id).await;

    assert_code(
        &send(
            &server,
            &creds,
            &sms,
            "3108675309",
            &[("message", &"a".repeat(1530))],
        )
        .await,
        1,
    );
    assert_code(
        &send(
            &server,
            &creds,
            &sms,
            "3108675309",
            &[("message", &"a".repeat(1531))],
        )
        .await,
        607,
    );
    assert_code(
        &send(
            &server,
            &creds,
            &sms,
            "3108675309",
            &[("message", &"ж".repeat(671))],
        )
        .await,
        607,
    );
    assert_code(
        &send(
            &server,
            &creds,
            &sms,
            "3108675309",
            &[("content_id", &image)],
        )
        .await,
        607,
    );

    carrier(&server, 7, "Text Only Mobile", "1212", false, "sandbox").await;
    let resp = send(
        &server,
        &creds,
        &mms,
        "2125551234",
        &[("content_id", &image)],
    )
    .await;
    assert_code(&resp, 607);
    assert!(resp.message().contains("Text Only Mobile"), "{}", resp.body);
    assert_code(&send(&server, &creds, &mms, "2125551234", &[]).await, 1);
}

#[tokio::test]
async fn recipients_that_cannot_be_reached_give_602_to_606() {
    let server = Server::start().await;
    let creds = server.client().await;
    let campaign = campaign(&server, &creds).await;

    let resp = send(&server, &creds, &campaign, "800-555-1234", &[]).await;
    assert_code(&resp, 602);
    let xml = resp.xml();
    assert_eq!(xml.child_names(), ["message", "number", "input"]);
    assert_eq!(xml.cdata_of("number"), "18005551234");
    assert_eq!(xml.cdata_of("input"), "800-555-1234");
    assert_code(
        &send(&server, &creds, &campaign, "3105550602", &[]).await,
        602,
    );

    let resp = send(&server, &creds, &campaign, "3105550603", &[]).await;
    assert_code(&resp, 603);
    assert_eq!(resp.xml().child_names(), ["message", "number"]);
    assert_eq!(resp.xml().cdata_of("number"), "13105550603");

    let resp = send(&server, &creds, &campaign, "3105550605", &[]).await;
    assert_code(&resp, 605);
    let xml = resp.xml();
    assert_eq!(xml.child_names(), ["message", "number", "carrier"]);
    assert_eq!(xml.child("carrier").attr("id"), "2");
    assert!(xml.child("carrier").cdata);

    opt_out(&server, "13108675309", &campaign).await;
    let resp = send(
        &server,
        &creds,
        &campaign,
        "3108675309",
        &[("format", "json")],
    )
    .await;
    assert_code(&resp, 606);
    assert_eq!(resp.json()["response"]["number"], "13108675309");
    // The opt-out is of this campaign only.
    let other = campaign_with(&server, &creds, |c| c.name = "Other".into()).await;
    assert_code(&send(&server, &creds, &other, "3108675309", &[]).await, 1);

    moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query(
            "INSERT INTO blacklist (number, carrier_id, created_at) VALUES ('13107770000', 1, 0)",
        )
        .execute(writer)
        .await
        .unwrap();
    });
    server.app.reload().await.unwrap();
    let resp = send(
        &server,
        &creds,
        &campaign,
        "3107770000",
        &[("format", "json")],
    )
    .await;
    assert_code(&resp, 604);
    let response = &resp.json()["response"];
    assert_eq!(response["number"], "13107770000");
    assert_eq!(response["carrier_id"], "1");
    assert_eq!(response["carrier_name"], "Sandbox Wireless");
}

#[tokio::test]
async fn several_problems_are_reported_in_the_documented_order() {
    let server = Server::start().await;
    let creds = server.client().await;
    let campaign = campaign_with(&server, &creds, |c| {
        c.kind = "sms".into();
        c.require_names = true;
    })
    .await;
    opt_out(&server, "13105550602", &campaign).await;
    let long = "a".repeat(2000);
    // Every problem at once; each step fixes the one reported.
    let mut params: Params = vec![
        ("campaign_id", "x".into()),
        ("to", "12".into()),
        ("from", "99999".into()),
        ("promo_code", "NOPE".into()),
    ];
    let steps: Vec<(u16, Fix)> = vec![
        (431, Box::new(|p| set(p, "campaign_id", "999999"))),
        (436, Box::new(|p| set(p, "to", "3105550602"))),
        // Content would make it an MMS without text, so it comes with the text.
        (
            439,
            Box::new(|p| {
                set(p, "message", &long);
                set(p, "content_id", "424242");
            }),
        ),
        (432, Box::new(|p| set(p, "campaign_id", &campaign))),
        (434, Box::new(|p| set(p, "from", "21534"))),
        (437, Box::new(|p| set(p, "from_name", "Ann"))),
        (438, Box::new(|p| set(p, "to_name", "Bob"))),
        (460, Box::new(|p| p.retain(|(k, _)| *k != "content_id"))),
        (440, Box::new(|p| p.retain(|(k, _)| *k != "promo_code"))),
        (607, Box::new(|p| set(p, "message", "short"))),
        (602, Box::new(|p| set(p, "to", "3105550606"))),
    ];
    for (code, fix) in steps {
        let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_code(&server.call(&creds, "transaction.send", &pairs).await, code);
        fix(&mut params);
    }
    // Still missing "to" comes before a bad campaign.
    let resp = server
        .call(
            &creds,
            "transaction.send",
            &[("campaign_id", "999999"), ("message", "x")],
        )
        .await;
    assert_code(&resp, 435);
    // An opted-out number with no carrier: 606 before 603.
    opt_out(&server, "13105550603", &campaign).await;
    let resp = send(
        &server,
        &creds,
        &campaign,
        "3105550603",
        &[("from_name", "A"), ("to_name", "B")],
    )
    .await;
    assert_code(&resp, 606);
    let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_code(&server.call(&creds, "transaction.send", &pairs).await, 1);
}

/// Parameters of a call under construction, and a change to them.
type Params = Vec<(&'static str, String)>;
type Fix<'a> = Box<dyn Fn(&mut Params) + 'a>;

fn set(params: &mut Params, key: &'static str, value: &str) {
    params.retain(|(k, _)| *k != key);
    params.push((key, value.to_string()));
}

#[tokio::test]
async fn sandbox_600_fails_after_sent_with_a_callback() {
    let server = Server::start().await;
    let creds = server.client().await;
    let campaign = campaign(&server, &creds).await;
    let (id, hash) = sent(
        &server,
        &creds,
        &campaign,
        "4155550600",
        &[
            ("callback", "http://127.0.0.1:9/end"),
            ("udp_order", "A-1"),
            ("udp_x", "]]>"),
        ],
    )
    .await;
    let xml = until_status(&server, &creds, &id, &hash, "FAILED").await;
    assert_eq!(
        events(&xml),
        [
            "Transaction Created",
            "Transaction Queued",
            "SMS Sent",
            "Transaction Terminated (600): carrier reported UNDELIV"
        ]
    );
    let (url, content_type, body): (String, String, String) =
        moms::with_db!(server.app.store, |pool, writer| {
            sqlx::query_as("SELECT url, content_type, body FROM webhooks")
                .fetch_one(pool)
                .await
                .unwrap()
        });
    assert_eq!(url, "http://127.0.0.1:9/end");
    assert_eq!(content_type, "application/xml");
    let callback = Resp {
        status: 200,
        headers: Default::default(),
        body,
    }
    .xml();
    assert_eq!(callback.attr("status"), "error");
    assert_eq!(callback.attr("code"), "600");
    assert_eq!(
        callback.child_names(),
        [
            "message",
            "message_id",
            "hash",
            "campaign_id",
            "to",
            "udp",
            "udp"
        ]
    );
    assert_eq!(
        callback.cdata_of("message"),
        "Transaction terminated: carrier reported UNDELIV"
    );
    assert_eq!(callback.text_of("message_id"), id);
    assert_eq!(callback.text_of("hash"), hash);
    assert_eq!(callback.text_of("campaign_id"), campaign);
    assert_eq!(callback.cdata_of("to"), "14155550600");
    let udp = callback.all("udp");
    assert_eq!(udp[0].attr("name"), "udp_order");
    assert_eq!(udp[0].text, "A-1");
    assert!(udp[0].cdata);
    assert_eq!(udp[1].text, "]]>");
}

#[tokio::test]
async fn a_completed_send_with_a_callback_reports_success() {
    let server = Server::start().await;
    let creds = server.client().await;
    let campaign = campaign(&server, &creds).await;
    let (id, hash) = sent(
        &server,
        &creds,
        &campaign,
        "3108675309",
        &[("callback", "http://127.0.0.1:9/end")],
    )
    .await;
    until_status(&server, &creds, &id, &hash, "COMPLETE").await;
    let body: String = moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query_scalar("SELECT body FROM webhooks")
            .fetch_one(pool)
            .await
            .unwrap()
    });
    let callback = Resp {
        status: 200,
        headers: Default::default(),
        body,
    }
    .xml();
    assert_eq!(callback.attr("status"), "success");
    assert_eq!(callback.attr("code"), "1");
    assert_eq!(callback.cdata_of("message"), "Transaction Complete");
    assert_eq!(
        callback.child_names(),
        ["message", "message_id", "hash", "campaign_id", "to"]
    );
    // No callback asked: none queued.
    let (id, hash) = sent(&server, &creds, &campaign, "3108675300", &[]).await;
    until_status(&server, &creds, &id, &hash, "COMPLETE").await;
    assert_eq!(count(&server, "SELECT COUNT(*) FROM webhooks").await, 1);
}

#[tokio::test]
async fn sandbox_604_fails_then_bars_the_number() {
    let server = Server::start().await;
    let creds = server.client().await;
    let campaign = campaign(&server, &creds).await;
    let (id, hash) = sent(&server, &creds, &campaign, "2125550604", &[]).await;
    let xml = until_status(&server, &creds, &id, &hash, "FAILED").await;
    let last = events(&xml).pop().unwrap();
    assert!(last.starts_with("Transaction Terminated (604): "), "{last}");
    let resp = send(&server, &creds, &campaign, "2125550604", &[]).await;
    assert_code(&resp, 604);
    assert_eq!(resp.xml().child_names(), ["message", "number", "carrier"]);
    assert_eq!(
        count(
            &server,
            "SELECT COUNT(*) FROM blacklist WHERE number = '12125550604'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn sandbox_601_when_the_validity_period_ends_without_a_receipt() {
    let server = Server::start_with(|c| c.delivery.validity_secs = 1).await;
    let creds = server.client().await;
    let campaign = campaign(&server, &creds).await;
    let (id, hash) = sent(&server, &creds, &campaign, "3105550601", &[]).await;
    until_status(&server, &creds, &id, &hash, "SENT").await;
    let xml = until_status(&server, &creds, &id, &hash, "FAILED").await;
    assert_eq!(
        events(&xml),
        [
            "Transaction Created",
            "Transaction Queued",
            "SMS Sent",
            "Transaction Terminated (601): no delivery receipt before the validity period ended"
        ]
    );
}

#[tokio::test]
async fn expired_or_unroutable_deliveries_fail_601_without_being_sent() {
    let server = Server::start().await;
    let creds = server.client().await;
    let campaign = campaign(&server, &creds).await;
    // Accepted with a validity period that has already ended.
    let accepted = server
        .app
        .sends
        .accept(NewTransaction {
            client_id: creds.client_id.parse().unwrap(),
            campaign_id: campaign.parse().unwrap(),
            sender: "21534".into(),
            from_name: "21534".into(),
            recipient: "13108675309".into(),
            to_input: "3108675309".into(),
            to_name: "3108675309".into(),
            kind: "sms",
            body: "late".into(),
            carrier_id: Some(1),
            expires_ms: 1,
            ..NewTransaction::default()
        })
        .await
        .unwrap();
    let xml = until_status(
        &server,
        &creds,
        &accepted.message_id.to_string(),
        &accepted.hash,
        "FAILED",
    )
    .await;
    assert_eq!(
        events(&xml).last().unwrap(),
        "Transaction Terminated (601): the validity period ended before submission"
    );

    carrier(&server, 9, "Bay Mobile", "1415", true, "smpp").await;
    let (id, hash) = sent(&server, &creds, &campaign, "4158675309", &[]).await;
    let xml = until_status(&server, &creds, &id, &hash, "FAILED").await;
    let last = events(&xml).pop().unwrap();
    assert!(
        last.starts_with(
            "Transaction Terminated (601): carrier Bay Mobile uses connector \"smpp\""
        ),
        "{last}"
    );
    assert!(!events(&xml).contains(&"SMS Sent".to_string()));
}

#[tokio::test]
async fn request_id_makes_a_retry_return_the_first_answer() {
    let server = Server::start().await;
    let creds = server.client().await;
    let other = server.client().await;
    let campaign = campaign(&server, &creds).await;
    let other_campaign = campaign_with(&server, &other, |_| {}).await;
    let first = sent(
        &server,
        &creds,
        &campaign,
        "3108675309",
        &[("request_id", "order-17")],
    )
    .await;
    let again = sent(
        &server,
        &creds,
        &campaign,
        "3108675309",
        &[("request_id", "order-17")],
    )
    .await;
    assert_eq!(first, again);
    // Even when the retry would now be refused.
    opt_out(&server, "13108675309", &campaign).await;
    let late = sent(
        &server,
        &creds,
        &campaign,
        "3108675309",
        &[("request_id", "order-17")],
    )
    .await;
    assert_eq!(first, late);
    assert_eq!(count(&server, "SELECT COUNT(*) FROM transactions").await, 1);
    // Concurrent retries land in the same batch: still one transaction.
    let (a, b) = tokio::join!(
        sent(
            &server,
            &creds,
            &campaign,
            "3108675300",
            &[("request_id", "order-18")]
        ),
        sent(
            &server,
            &creds,
            &campaign,
            "3108675300",
            &[("request_id", "order-18")]
        ),
    );
    assert_eq!(a, b);
    // Another client's request_id is its own.
    let theirs = sent(
        &server,
        &other,
        &other_campaign,
        "3108675309",
        &[("from", "21534"), ("request_id", "order-17")],
    )
    .await;
    assert_ne!(first, theirs);
    assert_eq!(count(&server, "SELECT COUNT(*) FROM transactions").await, 3);
}

#[tokio::test]
async fn opt_in_policies_shape_the_first_message() {
    let server = Server::start().await;
    let creds = server.client().await;
    let single = campaign_with(&server, &creds, |c| c.opt_in = "single".into()).await;
    let double = campaign_with(&server, &creds, |c| {
        c.opt_in = "double".into();
        c.name = "Club".into();
    })
    .await;

    let (id, hash) = sent(&server, &creds, &single, "3108675309", &[]).await;
    until_status(&server, &creds, &id, &hash, "COMPLETE").await;
    let status = format!(
        "SELECT status FROM opt_status WHERE number = '13108675309' AND campaign_id = {single}"
    );
    assert_eq!(count(&server, &status).await, 1);

    let (id, hash) = sent(
        &server,
        &creds,
        &double,
        "3108675309",
        &[("request_id", "club-1")],
    )
    .await;
    let xml = lookup(&server, &creds, &id, &hash).await.xml();
    assert_eq!(xml.cdata_of("status"), "HELD");
    assert_eq!(events(&xml), ["Transaction Created", "Opt-in Requested"]);
    let status = format!(
        "SELECT status FROM opt_status WHERE number = '13108675309' AND campaign_id = {double}"
    );
    assert_eq!(count(&server, &status).await, 0);
    let prompt: String = moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query_scalar(
            "SELECT body FROM transactions WHERE id > $1 AND recipient = '13108675309'",
        )
        .bind(id.parse::<i64>().unwrap())
        .fetch_one(pool)
        .await
        .unwrap()
    });
    assert_eq!(prompt, "Reply Y to receive messages from Club");
    // A retry neither sends another prompt nor another message; a second
    // message to a GREY number is held without a new prompt.
    sent(
        &server,
        &creds,
        &double,
        "3108675309",
        &[("request_id", "club-1")],
    )
    .await;
    let (id2, hash2) = sent(&server, &creds, &double, "3108675309", &[]).await;
    assert_eq!(
        lookup(&server, &creds, &id2, &hash2)
            .await
            .xml()
            .cdata_of("status"),
        "HELD"
    );
    assert_eq!(
        count(
            &server,
            "SELECT COUNT(*) FROM transactions WHERE body LIKE 'Reply Y%'"
        )
        .await,
        1
    );
    let conversation = "SELECT campaign_id FROM conversations WHERE shortcode = '21534' AND number = '13108675309'";
    assert_eq!(count(&server, conversation).await.to_string(), double);
}

#[tokio::test]
async fn held_message_expires_601_when_the_prompt_is_not_answered() {
    let server = Server::start_with(|c| c.delivery.validity_secs = 1).await;
    let creds = server.client().await;
    let double = campaign_with(&server, &creds, |c| c.opt_in = "double".into()).await;
    let (id, hash) = sent(&server, &creds, &double, "3108675309", &[]).await;
    let xml = until_status(&server, &creds, &id, &hash, "FAILED").await;
    let last = events(&xml).pop().unwrap();
    assert!(
        last.starts_with("Transaction Terminated (601): opt-in"),
        "{last}"
    );
}

#[tokio::test]
async fn accepted_messages_survive_a_restart_and_are_then_delivered() {
    let server = Server::start().await;
    let creds = server.client().await;
    let double = campaign_with(&server, &creds, |c| c.opt_in = "double".into()).await;
    let plain = campaign(&server, &creds).await;
    let (held_id, held_hash) = sent(&server, &creds, &double, "3108675309", &[]).await;
    let (id, hash) = sent(&server, &creds, &plain, "3108675300", &[]).await;
    let dir = server.stop().await;

    let config = test_config(dir.path());
    let server = Server::start_in(dir, config).await;
    until_status(&server, &creds, &id, &hash, "COMPLETE").await;
    assert_eq!(
        lookup(&server, &creds, &held_id, &held_hash)
            .await
            .xml()
            .cdata_of("status"),
        "HELD"
    );
    // The number answers Y (as the inbound handler does): the held message goes out.
    let released = server
        .app
        .store
        .release_held("13108675309", double.parse().unwrap())
        .await
        .unwrap();
    assert_eq!(released, 1);
    server.app.delivery_wake.notify_one();
    let xml = until_status(&server, &creds, &held_id, &held_hash, "COMPLETE").await;
    assert_eq!(
        events(&xml),
        [
            "Transaction Created",
            "Opt-in Requested",
            "Transaction Queued",
            "SMS Sent",
            "Delivery Confirmed",
            "Transaction Complete"
        ]
    );
}

#[tokio::test]
async fn blast_messages_count_as_sent_or_failed() {
    let server = Server::start().await;
    let creds = server.client().await;
    let campaign = campaign(&server, &creds).await;
    let blast: i64 = moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query_scalar(
            "INSERT INTO blasts (client_id, list_id, campaign_id, request, created_at) VALUES ($1, 1, $2, '{}', 0) RETURNING id",
        )
        .bind(creds.client_id.parse::<i64>().unwrap())
        .bind(campaign.parse::<i64>().unwrap())
        .fetch_one(writer)
        .await
        .unwrap()
    });
    for recipient in ["13108675309", "13105550600"] {
        server
            .app
            .sends
            .accept(NewTransaction {
                client_id: creds.client_id.parse().unwrap(),
                campaign_id: campaign.parse().unwrap(),
                sender: "21534".into(),
                recipient: recipient.into(),
                kind: "sms",
                body: "hi".into(),
                carrier_id: Some(1),
                blast_id: Some(blast),
                expires_ms: i64::MAX / 2,
                ..NewTransaction::default()
            })
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let counts = format!("SELECT sent * 10 + failed FROM blasts WHERE id = {blast}");
    while count(&server, &counts).await != 11 {
        assert!(
            Instant::now() < deadline,
            "blast counts never reached 1 sent, 1 failed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn store_failure_is_500() {
    let server = Server::start().await;
    let creds = server.client().await;
    let campaign = campaign(&server, &creds).await;
    // Warm the campaign cache so the failure is the send's own.
    assert_code(
        &send(&server, &creds, &campaign, "3108675309", &[]).await,
        1,
    );
    server
        .app
        .store
        .faults
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let resp = send(&server, &creds, &campaign, "3108675309", &[]).await;
    server
        .app
        .store
        .faults
        .store(false, std::sync::atomic::Ordering::Relaxed);
    assert_code(&resp, 500);
    assert_eq!(resp.status, 500);
}

#[tokio::test]
async fn run_once_steps_the_worker_without_a_server() {
    let dir = data_dir();
    let mut config = test_config(dir.path());
    config.sandbox.receipt_millis = 0;
    let app = moms::app::App::open(config).await.unwrap();
    let client = app
        .store
        .create_client("Stepper", &["21534".to_string()], &[])
        .await
        .unwrap();
    let campaign = app
        .store
        .create_campaign(
            &Campaign {
                id: 0,
                client_id: client.client_id,
                name: "Steps".into(),
                kind: "sms".into(),
                sender: "21534".into(),
                keyword: String::new(),
                callback_url: String::new(),
                callback_format: "xml".into(),
                opt_in: "none".into(),
                require_names: false,
                help_message: String::new(),
                stop_message: String::new(),
                mms_fallback: "fail".into(),
                destroyed: false,
            },
            None,
        )
        .await
        .unwrap();
    let accepted = app
        .sends
        .accept(NewTransaction {
            client_id: client.client_id,
            campaign_id: campaign,
            sender: "21534".into(),
            recipient: "13108675309".into(),
            kind: "sms",
            body: "step".into(),
            carrier_id: Some(1),
            expires_ms: i64::MAX / 2,
            ..NewTransaction::default()
        })
        .await
        .unwrap();
    let status = || async {
        app.store
            .transaction(accepted.message_id)
            .await
            .unwrap()
            .unwrap()
            .status
    };
    assert_eq!(status().await, "QUEUED");
    assert_eq!(moms::delivery::run_once(&app).await.unwrap(), 1);
    assert_eq!(status().await, "SENT");
    assert_eq!(moms::delivery::run_once(&app).await.unwrap(), 1);
    assert_eq!(status().await, "COMPLETE");
    assert_eq!(moms::delivery::run_once(&app).await.unwrap(), 0);
    assert_eq!(
        count_in(&app, "SELECT COUNT(*) FROM deliveries").await,
        0,
        "a finished transaction leaves no delivery work"
    );
}

async fn count_in(app: &moms::app::App, sql: &'static str) -> i64 {
    moms::with_db!(app.store, |pool, writer| {
        sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
    })
}
