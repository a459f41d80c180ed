//! E-mail callbacks (spec sections 5.5, 6.3, 8): a blast whose `callback` is
//! an e-mail address ends with one summary mail through the SMTP relay.

use std::time::{Duration, Instant};

use moms::config::{Config, SmtpTls};
use serde_json::json;

use crate::common::smtp::SmtpServer;
use crate::common::{Creds, Server, assert_code, campaign_settings, test_config};

/// Points the server at the fake relay, in plain text as a local relay is.
fn relay_to(config: &mut Config, relay: &SmtpServer) {
    config.smtp.relay = relay.address.clone();
    config.smtp.tls = SmtpTls::None;
    config.smtp.from = "Moms <moms@example.com>".into();
}

/// A campaign and a list of two members; returns (campaign_id, list_id).
async fn two_member_list(server: &Server, creds: &Creds) -> (String, String) {
    let campaign_id = server
        .app
        .store
        .create_campaign(&campaign_settings(creds, "Mailed"), None)
        .await
        .unwrap()
        .to_string();
    let resp = server.call(creds, "list.create", &[("name", "pair")]).await;
    assert_code(&resp, 1);
    let list_id = resp.xml().child("list").attr("id").to_string();
    let resp = server
        .call(
            creds,
            "list.append",
            &[("list_id", &list_id), ("numbers", "3108675309,3108675310")],
        )
        .await;
    assert_code(&resp, 1);
    (campaign_id, list_id)
}

fn send_params<'a>(campaign_id: &'a str, list_id: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("list_id", list_id),
        ("campaign_id", campaign_id),
        ("message", "Spring sale today"),
        ("callback", "ops@example.com"),
    ]
}

/// The queued mail rows as (url, content_type, body, attempts, last_error).
async fn queued_mails(server: &Server) -> Vec<(String, String, String, i64, String)> {
    moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query_as(
            "SELECT url, content_type, body, attempts, last_error FROM webhooks WHERE url LIKE 'mailto:%' ORDER BY id",
        )
        .fetch_all(pool)
        .await
        .unwrap()
    })
}

/// Polls until `done` holds of the queued mails (panics after 10 s).
async fn wait_for_queue(
    server: &Server,
    done: impl Fn(&[(String, String, String, i64, String)]) -> bool,
) -> Vec<(String, String, String, i64, String)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = queued_mails(server).await;
        if done(&rows) {
            return rows;
        }
        assert!(Instant::now() < deadline, "mail queue still {rows:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls until the list's blast is done.
async fn wait_for_blast_done(server: &Server, list_id: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state: String = moms::with_db!(server.app.store, |pool, writer| {
            sqlx::query_scalar("SELECT state FROM blasts WHERE list_id = $1")
                .bind(list_id.parse::<i64>().unwrap())
                .fetch_one(pool)
                .await
                .unwrap()
        });
        if state == "done" {
            return;
        }
        assert!(Instant::now() < deadline, "blast still {state}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn blast_end_mails_the_figures_to_the_callback_address() {
    let relay = SmtpServer::start().await;
    let server = Server::start_with(|c| {
        relay_to(c, &relay);
        c.smtp.username = "moms".into();
        c.smtp.password = "relay secret".into();
    })
    .await;
    let creds = server.client().await;
    let (campaign_id, list_id) = two_member_list(&server, &creds).await;

    let resp = server
        .call(&creds, "list.send", &send_params(&campaign_id, &list_id))
        .await;
    assert_code(&resp, 1);
    assert_eq!(
        resp.body,
        r#"<?xml version="1.0" encoding="UTF-8"?><response status="success" code="1"><message><![CDATA[queued]]></message></response>"#
    );

    let mails = relay.wait_for(1).await;
    let mail = &mails[0];
    assert_eq!(mail.from, "moms@example.com");
    assert_eq!(mail.to, ["ops@example.com"]);
    assert_eq!(
        mail.auth,
        Some(("moms".to_string(), "relay secret".to_string()))
    );
    assert_eq!(
        mail.header("subject"),
        Some(format!("list send complete: list {list_id}").as_str())
    );
    assert_eq!(mail.header("to"), Some("ops@example.com"));
    assert!(
        mail.header("content-type")
            .is_some_and(|v| v.starts_with("text/plain")),
        "{mail:?}"
    );
    assert_eq!(
        mail.body(),
        format!(
            "list send complete\r\n\r\nlist_id: {list_id}\r\ntotal: 2\r\nsent: 2\r\nskipped: 0\r\nfailed: 0\r\n"
        )
    );

    // Sent once: the queued row is gone and no second mail follows.
    wait_for_queue(&server, |rows| rows.is_empty()).await;
    server.settle().await;
    assert_eq!(relay.messages().len(), 1);
    assert_eq!(relay.attempts(), 1);
}

#[tokio::test]
async fn refused_mail_is_retried_and_delivered_once() {
    let relay = SmtpServer::start().await;
    relay.refuse_next(1);
    let server = Server::start_with(|c| {
        relay_to(c, &relay);
        c.callbacks.first_retry_secs = 0;
    })
    .await;
    let creds = server.client().await;
    let (campaign_id, list_id) = two_member_list(&server, &creds).await;

    let json = server
        .call_json(&creds, "list.send", &send_params(&campaign_id, &list_id))
        .await;
    assert_eq!(
        json,
        json!({"response": {"code": "1", "status": "success", "message": "queued"}})
    );

    let mails = relay.wait_for(1).await;
    assert_eq!(mails[0].to, ["ops@example.com"]);
    assert!(mails[0].body().contains("sent: 2\r\n"), "{mails:?}");
    wait_for_queue(&server, |rows| rows.is_empty()).await;
    server.settle().await;
    // The refused try, then the one that went through; one mail in all.
    assert_eq!(relay.attempts(), 2);
    assert_eq!(relay.messages().len(), 1);
}

#[tokio::test]
async fn unreachable_relay_keeps_the_mail_for_a_later_try() {
    // A port nobody listens on any more.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = closed.local_addr().unwrap().to_string();
    drop(closed);
    let server = Server::start_with(|c| {
        c.smtp.relay = address;
        c.smtp.tls = SmtpTls::None;
    })
    .await;
    let creds = server.client().await;
    let (campaign_id, list_id) = two_member_list(&server, &creds).await;
    let resp = server
        .call(&creds, "list.send", &send_params(&campaign_id, &list_id))
        .await;
    assert_code(&resp, 1);

    let rows = wait_for_queue(&server, |rows| rows.first().is_some_and(|r| r.3 == 1)).await;
    assert_eq!(rows.len(), 1);
    assert!(rows[0].4.starts_with("relay"), "{rows:?}");
    // The next try waits for the back-off (30 s by default).
    let due_ms: i64 = moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query_scalar("SELECT due_ms FROM webhooks")
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert!(due_ms > moms::store::now_ms() + 10_000, "{due_ms}");
}

#[tokio::test]
async fn without_a_relay_the_mail_stays_queued_until_one_is_set() {
    let relay = SmtpServer::start().await;
    let server = Server::start().await;
    assert_eq!(server.app.config.smtp.relay, "");
    let creds = server.client().await;
    let (campaign_id, list_id) = two_member_list(&server, &creds).await;
    let json = server
        .call_json(&creds, "list.send", &send_params(&campaign_id, &list_id))
        .await;
    assert_eq!(json["response"]["code"], "1");
    wait_for_blast_done(&server, &list_id).await;

    // Queued with the blast's end, and not tried: no try is used up.
    let rows = queued_mails(&server).await;
    assert_eq!(
        rows,
        [(
            "mailto:ops@example.com?subject=list%20send%20complete%3A%20list%20".to_string()
                + &list_id,
            "text/plain; charset=utf-8".to_string(),
            format!(
                "list send complete\n\nlist_id: {list_id}\ntotal: 2\nsent: 2\nskipped: 0\nfailed: 0"
            ),
            0,
            String::new()
        )]
    );
    server.settle().await;
    assert_eq!(queued_mails(&server).await[0].3, 0);
    assert_eq!(relay.attempts(), 0);

    // Kept across a restart, and sent once a relay is configured.
    let dir = server.stop().await;
    let mut config = test_config(dir.path());
    relay_to(&mut config, &relay);
    let server = Server::start_in(dir, config).await;
    let mails = relay.wait_for(1).await;
    assert_eq!(mails[0].to, ["ops@example.com"]);
    assert!(
        mails[0].body().contains(&format!("list_id: {list_id}\r\n")),
        "{mails:?}"
    );
    wait_for_queue(&server, |rows| rows.is_empty()).await;
}
