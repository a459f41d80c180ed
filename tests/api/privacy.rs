//! Privacy (spec section 9): `moms admin forget` and retention.

use std::time::{Duration, Instant};

use crate::cli::moms;
use crate::common::*;

async fn campaign(server: &Server, creds: &Creds) -> String {
    server
        .app
        .store
        .create_campaign(&campaign_settings(creds, "Private"), Some("21534"))
        .await
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_forgotten_number_leaves_only_its_opt_out_and_is_never_messaged() {
    let server = Server::start().await;
    let creds = server.client().await;
    let campaign = campaign(&server, &creds).await;
    let sent = server
        .call(
            &creds,
            "transaction.send",
            &[
                ("campaign_id", &campaign),
                ("to", "3105550123"),
                ("message", "secret text"),
            ],
        )
        .await;
    assert_code(&sent, 1);
    let list = server
        .call_json(&creds, "list.create", &[("name", "Everyone")])
        .await["response"]["list_id"]
        .to_string();
    assert_code(
        &server
            .call(
                &creds,
                "list.append",
                &[("list_id", &list), ("numbers", "3105550123,3105550124")],
            )
            .await,
        1,
    );
    let optout = [
        ("number", "3105550123"),
        ("campaign_id", campaign.as_str()),
        ("status_code", "-2"),
    ];
    assert_code(&server.call(&creds, "user.setopt", &optout).await, 1);

    let dir = server.dir().to_path_buf();
    let (ok, json, stderr) = tokio::task::spawn_blocking(move || {
        moms(&dir, &["admin", "forget", "(310) 555-0123", "--json"])
    })
    .await
    .unwrap();
    assert!(ok, "{stderr}");
    assert_eq!(json["transactions"], 1);
    assert_eq!(json["list_memberships"], 1);

    // Nothing about the number is left to read…
    let found = server
        .call_json(&creds, "user.transactions", &[("number", "3105550123")])
        .await;
    assert_eq!(found["response"]["transactions"], serde_json::json!([]));
    let members = server
        .call_json(&creds, "list.download", &[("list_id", &list)])
        .await;
    assert_eq!(
        members["response"]["recipients"].as_array().unwrap().len(),
        1
    );
    let bodies: i64 = moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query_scalar("SELECT COUNT(*) FROM transactions WHERE body LIKE '%secret%'")
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert_eq!(bodies, 0);
    // The erasure is on record without the number; the opt-out's own
    // record (the proof regulators ask for) is what stays.
    let erasure: String = moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query_scalar("SELECT detail FROM audit WHERE action = 'forget'")
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert!(
        erasure.starts_with("number sha256:") && !erasure.contains("3105550123"),
        "{erasure}"
    );
    // …but the opt-out stays, and the number is still refused.
    let opt = server
        .call_json(
            &creds,
            "user.getopt",
            &[("number", "3105550123"), ("campaign_id", &campaign)],
        )
        .await;
    assert_eq!(opt["response"]["campaigns"][0]["status"], "OPTEDOUT");
    let again = server
        .call(
            &creds,
            "transaction.send",
            &[
                ("campaign_id", &campaign),
                ("to", "3105550123"),
                ("message", "hello again"),
            ],
        )
        .await;
    assert_code(&again, 606);
}

#[tokio::test]
async fn retention_removes_old_bodies_but_keeps_ids_and_statuses() {
    let server = Server::start().await;
    let creds = server.client().await;
    let campaign = campaign(&server, &creds).await;
    let sent = server
        .call(
            &creds,
            "transaction.send",
            &[
                ("campaign_id", &campaign),
                ("to", "3105550123"),
                ("message", "old news"),
            ],
        )
        .await
        .xml();
    let (id, hash) = (
        sent.text_of("message_id").to_string(),
        sent.text_of("hash").to_string(),
    );
    server.settle().await;
    let config = server.app.config.clone();
    let dir = server.stop().await;
    // Three days later, with two days of retention.
    let store = moms::store::Store::open(&config).await.unwrap();
    moms::with_db!(store, |pool, writer| {
        sqlx::query("UPDATE transactions SET created_at = created_at - 3 * 86400")
            .execute(writer)
            .await
            .unwrap();
    });
    drop(store);
    let mut config = config;
    config.retention.days = 2;
    let server = Server::start_in(dir, config).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let body: Option<String> = moms::with_db!(server.app.store, |pool, writer| {
            sqlx::query_scalar("SELECT body FROM transactions WHERE id = $1")
                .bind(id.parse::<i64>().unwrap())
                .fetch_one(pool)
                .await
                .unwrap()
        });
        if body.is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "the body outlived its retention");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lookup = server
        .call(
            &creds,
            "transaction.lookup",
            &[("message_id", &id), ("hash", &hash)],
        )
        .await;
    assert_code(&lookup, 1);
    assert_eq!(lookup.xml().cdata_of("status"), "COMPLETE");
}

#[tokio::test]
async fn the_audit_log_answers_who_changed_a_numbers_opt_status() {
    let server = Server::start().await;
    let creds = server.client().await;
    let campaign = campaign(&server, &creds).await;
    let optout = [
        ("number", "3105550123"),
        ("campaign_id", campaign.as_str()),
        ("status_code", "-2"),
    ];
    assert_code(&server.call(&creds, "user.setopt", &optout).await, 1);
    let dir = server.dir().to_path_buf();
    let (ok, json, stderr) = tokio::task::spawn_blocking(move || {
        moms(
            &dir,
            &["admin", "audit", "--number", "+1 310 555 0123", "--json"],
        )
    })
    .await
    .unwrap();
    assert!(ok, "{stderr}");
    let entries = json["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{json}");
    assert_eq!(entries[0]["action"], "opt.api");
    assert!(
        entries[0]["detail"]
            .as_str()
            .unwrap()
            .contains("-2 OPTEDOUT"),
        "{json}"
    );
    assert!(entries[0]["at"].as_i64().unwrap() > 0);
}
