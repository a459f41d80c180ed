//! Inbound messages (spec section 7 "Inbound keywords", 6.1 MO callbacks),
//! injected through the sandbox carrier.

use moms::inbound::{Received, receive_sandbox};
use moms::store::campaign::Campaign;
use moms::store::sends::NewTransaction;
use serde_json::json;

use crate::common::*;

/// A callback URL nothing listens on: queued callbacks stay in the table.
const HOOK: &str = "http://127.0.0.1:9/mo";

fn settings(creds: &Creds, name: &str, keyword: &str) -> Campaign {
    Campaign {
        keyword: keyword.into(),
        callback_url: HOOK.into(),
        help_message: format!("{name}: reply STOP to end"),
        stop_message: format!("{name}: you are unsubscribed"),
        ..campaign_settings(creds, name)
    }
}

async fn create(server: &Server, campaign: Campaign) -> i64 {
    server
        .app
        .store
        .create_campaign(&campaign, Some("21534"))
        .await
        .unwrap()
}

async fn mo(server: &Server, from: &str, text: &str) -> Received {
    receive_sandbox(&server.app.store, &server.app.config, from, "21534", text)
        .await
        .unwrap()
}

/// A message the campaign sent to the number from 21534, which opens the
/// conversation replies are routed by.
async fn message_from(
    server: &Server,
    campaign: &Campaign,
    campaign_id: i64,
    to: &str,
    held: bool,
) -> i64 {
    server
        .app
        .store
        .accept_now(NewTransaction {
            client_id: campaign.client_id,
            campaign_id,
            sender: "21534".into(),
            from_name: "21534".into(),
            recipient: to.into(),
            to_input: to.into(),
            to_name: to.into(),
            kind: "sms",
            body: "Reply YES to join".into(),
            held,
            opt_in: Some(if held { 0 } else { 1 }),
            conversation: Some("21534".into()),
            expires_ms: i64::MAX / 2,
            ..NewTransaction::default()
        })
        .await
        .unwrap()
        .message_id
}

/// Callbacks queued for a client, oldest first: (content type, body).
async fn webhooks(server: &Server, creds: &Creds) -> Vec<(String, String, String)> {
    moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query_as(
            "SELECT url, content_type, body FROM webhooks WHERE client_id = $1 ORDER BY id",
        )
        .bind(creds.client_id.parse::<i64>().unwrap())
        .fetch_all(pool)
        .await
        .unwrap()
    })
}

async fn opt(server: &Server, creds: &Creds, campaign_id: i64) -> (String, String) {
    let json = server
        .call_json(
            creds,
            "user.getopt",
            &[
                ("number", "3105550123"),
                ("campaign_id", &campaign_id.to_string()),
            ],
        )
        .await;
    let c = &json["response"]["campaigns"][0];
    (
        c["status_code"].as_str().unwrap().to_string(),
        c["status"].as_str().unwrap().to_string(),
    )
}

/// (recipient, body) of a transaction.
async fn transaction(server: &Server, id: i64) -> (String, String, String) {
    moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query_as("SELECT sender, recipient, body FROM transactions WHERE id = $1")
            .bind(id)
            .fetch_one(pool)
            .await
            .unwrap()
    })
}

#[tokio::test]
async fn stop_opts_out_of_the_conversation_and_queues_the_stop_message() {
    let server = Server::start().await;
    let creds = server.client().await;
    let talking = settings(&creds, "talking", "TALK");
    let talking_id = create(&server, talking.clone()).await;
    let quiet_id = create(&server, settings(&creds, "quiet", "QUIET")).await;
    message_from(&server, &talking, talking_id, "13105550123", false).await;

    let received = mo(&server, "310-555-0123", "Stop").await;
    assert_eq!(received.event, "stop");
    assert_eq!(received.campaign_id, Some(talking_id));

    let resp = server
        .call(
            &creds,
            "user.getopt",
            &[
                ("number", "3105550123"),
                ("campaign_id", &talking_id.to_string()),
            ],
        )
        .await;
    let status = resp.xml().child("campaign").child("status").clone();
    assert_eq!(
        (status.attr("code"), status.text.as_str()),
        ("-2", "OPTEDOUT")
    );
    // The other campaign on the short code is untouched.
    assert_eq!(
        opt(&server, &creds, quiet_id).await,
        ("-1".into(), "UNSEEN".into())
    );

    let reply = received.reply_message_id.expect("stop message queued");
    assert_eq!(
        transaction(&server, reply).await,
        (
            "21534".into(),
            "13105550123".into(),
            "talking: you are unsubscribed".into()
        )
    );
    let source: String = moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query_scalar(
            "SELECT source FROM opt_status WHERE number = '13105550123' AND campaign_id = $1",
        )
        .bind(talking_id)
        .fetch_one(pool)
        .await
        .unwrap()
    });
    assert_eq!(source, "keyword");
    let audited: i64 = moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query_scalar("SELECT COUNT(*) FROM audit WHERE action = 'opt.keyword'")
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert_eq!(audited, 1);

    let hooks = webhooks(&server, &creds).await;
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0].0, HOOK);
    assert!(hooks[0].2.contains("<event>stop</event>"), "{}", hooks[0].2);
    let stored: (String, String, Option<i64>) = moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query_as("SELECT sender, body, campaign_id FROM inbound WHERE id = $1")
            .bind(received.inbound_id)
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert_eq!(
        stored,
        ("13105550123".into(), "Stop".into(), Some(talking_id))
    );
}

#[tokio::test]
async fn stop_with_a_keyword_names_the_campaign_and_empty_stop_message_sends_nothing() {
    let server = Server::start().await;
    let creds = server.client().await;
    let talking = settings(&creds, "talking", "TALK");
    let talking_id = create(&server, talking.clone()).await;
    let silent = Campaign {
        stop_message: String::new(),
        ..settings(&creds, "silent", "SILENT")
    };
    let silent_id = create(&server, silent).await;
    message_from(&server, &talking, talking_id, "13105550123", false).await;

    let received = mo(&server, "3105550123", "quit silent").await;
    assert_eq!(received.event, "stop");
    assert_eq!(received.campaign_id, Some(silent_id));
    assert_eq!(received.reply_message_id, None);
    assert_eq!(opt(&server, &creds, silent_id).await.1, "OPTEDOUT");
    assert_eq!(opt(&server, &creds, talking_id).await.1, "OPTEDIN");
}

#[tokio::test]
async fn stopall_opts_out_of_every_campaign_on_the_short_code_and_confirms_once() {
    let server = Server::start().await;
    let creds = server.client().await;
    let a = create(&server, settings(&creds, "a", "ALPHA")).await;
    let b = create(&server, settings(&creds, "b", "BETA")).await;
    let received = mo(&server, "3105550123", "STOPALL").await;
    assert_eq!(received.event, "stop");
    assert_eq!(received.campaign_ids, vec![a, b]);
    assert_eq!(opt(&server, &creds, a).await.1, "OPTEDOUT");
    assert_eq!(opt(&server, &creds, b).await.1, "OPTEDOUT");
    let reply = received.reply_message_id.expect("one confirmation");
    assert_eq!(
        transaction(&server, reply).await.2,
        "a: you are unsubscribed"
    );
    let replies: i64 = moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query_scalar("SELECT COUNT(*) FROM transactions")
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert_eq!(replies, 1);
    assert_eq!(webhooks(&server, &creds).await.len(), 2);
}

#[tokio::test]
async fn start_after_stop_opts_back_in() {
    let server = Server::start().await;
    let creds = server.client().await;
    let id = create(&server, settings(&creds, "only", "ONLY")).await;
    assert_eq!(mo(&server, "3105550123", "STOP").await.event, "stop");
    assert_eq!(opt(&server, &creds, id).await.1, "OPTEDOUT");
    let received = mo(&server, "3105550123", "unstop").await;
    assert_eq!(received.event, "opt-in");
    assert_eq!(received.reply_message_id, None);
    assert_eq!(
        opt(&server, &creds, id).await,
        ("1".into(), "OPTEDIN".into())
    );
    let hooks = webhooks(&server, &creds).await;
    assert!(
        hooks[1].2.contains("<event>message-in</event>"),
        "{}",
        hooks[1].2
    );
}

#[tokio::test]
async fn yes_confirms_a_double_opt_in_and_releases_held_messages() {
    let server = Server::start().await;
    let creds = server.client().await;
    let double = Campaign {
        opt_in: "double".into(),
        ..settings(&creds, "double", "DOUBLE")
    };
    let id = create(&server, double.clone()).await;
    let held = message_from(&server, &double, id, "13105550123", true).await;
    assert_eq!(opt(&server, &creds, id).await.1, "GREY");

    let received = mo(&server, "3105550123", "Y").await;
    assert_eq!(received.event, "reply-y");
    assert_eq!(opt(&server, &creds, id).await.1, "OPTEDIN");
    let status: String = moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query_scalar("SELECT status FROM transactions WHERE id = $1")
            .bind(held)
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert_ne!(status, "HELD");
    let history = server.app.store.history(held).await.unwrap();
    let events: Vec<&str> = history.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        events[..3],
        [
            "Transaction Created",
            "Opt-in Requested",
            "Transaction Queued"
        ]
    );
    let stage: Option<String> = moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query_scalar("SELECT stage FROM deliveries WHERE transaction_id = $1")
            .bind(held)
            .fetch_optional(pool)
            .await
            .unwrap()
    });
    assert_ne!(stage.as_deref(), Some("held"));
    let hooks = webhooks(&server, &creds).await;
    assert!(
        hooks[0].2.contains("<event>reply-y</event>"),
        "{}",
        hooks[0].2
    );
}

#[tokio::test]
async fn help_replies_with_the_help_message() {
    let server = Server::start().await;
    let creds = server.client().await;
    let id = create(&server, settings(&creds, "helpful", "HELPFUL")).await;
    let received = mo(&server, "3105550123", "help").await;
    assert_eq!(received.event, "help");
    assert_eq!(received.campaign_id, Some(id));
    let reply = received.reply_message_id.expect("help message queued");
    assert_eq!(
        transaction(&server, reply).await,
        (
            "21534".into(),
            "13105550123".into(),
            "helpful: reply STOP to end".into()
        )
    );
    // Help changes no opt status.
    assert_eq!(opt(&server, &creds, id).await.1, "UNSEEN");
    let hooks = webhooks(&server, &creds).await;
    assert!(hooks[0].2.contains("<event>help</event>"), "{}", hooks[0].2);
}

#[tokio::test]
async fn keyword_routes_to_its_campaign_with_a_json_callback() {
    let server = Server::start().await;
    let creds = server.client().await;
    create(&server, settings(&creds, "first", "FIRST")).await;
    let second = Campaign {
        callback_format: "json".into(),
        ..settings(&creds, "second", "DEALS")
    };
    let id = create(&server, second).await;

    let received = mo(&server, "(310) 555-0123", "deals please").await;
    assert_eq!(received.event, "message-in");
    assert_eq!(received.campaign_id, Some(id));
    assert_eq!(received.reply_message_id, None);
    let hooks = webhooks(&server, &creds).await;
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0].1, "application/json");
    let body: serde_json::Value = serde_json::from_str(&hooks[0].2).unwrap();
    assert_eq!(
        body,
        json!({"event": "message-in", "campaign_id": id.to_string(), "msisdn": "13105550123",
            "carrier": "Sandbox Wireless", "carrier_id": "1", "shortcode": "21534",
            "message": "deals please", "subject": ""})
    );
    // Keys in the order of spec section 6.1.
    assert!(
        hooks[0]
            .2
            .starts_with(r#"{"event":"message-in","campaign_id":"#),
        "{}",
        hooks[0].2
    );
}

#[tokio::test]
async fn conversation_routes_a_message_without_keyword_with_an_xml_callback() {
    let server = Server::start().await;
    let creds = server.client().await;
    create(&server, settings(&creds, "other", "OTHER")).await;
    let talking = settings(&creds, "talking", "TALK");
    let id = create(&server, talking.clone()).await;
    message_from(&server, &talking, id, "13105550123", false).await;

    let received = mo(&server, "3105550123", "sure, <see> you ]]> there").await;
    assert_eq!(received.event, "message-in");
    assert_eq!(received.campaign_id, Some(id));
    let hooks = webhooks(&server, &creds).await;
    assert_eq!(hooks[0].1, "application/xml");
    assert_eq!(
        hooks[0].2,
        format!(
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?><mogreet><event>message-in</event>"#,
                r#"<campaign_id>{}</campaign_id><msisdn>13105550123</msisdn>"#,
                r#"<carrier><![CDATA[Sandbox Wireless]]></carrier><carrier_id>1</carrier_id>"#,
                r#"<shortcode>21534</shortcode><message><![CDATA[sure, <see> you ]]]]><![CDATA[> there]]></message>"#,
                r#"<subject><![CDATA[]]></subject></mogreet>"#
            ),
            id
        )
    );
    let root = moms_xml(&hooks[0].2);
    assert_eq!(root.cdata_of("message"), "sure, <see> you ]]> there");
}

#[tokio::test]
async fn message_without_keyword_or_conversation_is_stored_unrouted() {
    let server = Server::start().await;
    let creds = server.client().await;
    create(&server, settings(&creds, "a", "ALPHA")).await;
    create(&server, settings(&creds, "b", "BETA")).await;
    let received = mo(&server, "3105550123", "hello?").await;
    assert_eq!(received.event, "unrouted");
    assert_eq!(received.campaign_id, None);

    // A short code no campaign uses: STOP too is stored and unrouted.
    let received = receive_sandbox(
        &server.app.store,
        &server.app.config,
        "3105550123",
        "99999",
        "STOP",
    )
    .await
    .unwrap();
    assert_eq!(received.event, "unrouted");
    let stored: Vec<(String, Option<i64>)> = moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query_as("SELECT shortcode, campaign_id FROM inbound ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap()
    });
    assert_eq!(
        stored,
        vec![("21534".to_string(), None), ("99999".to_string(), None)]
    );
    assert!(webhooks(&server, &creds).await.is_empty());

    let error = receive_sandbox(&server.app.store, &server.app.config, "12", "21534", "hi")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("not a phone number"), "{error}");
}

fn moms_xml(body: &str) -> Element {
    crate::common::xml::parse(body).unwrap()
}
