//! Callbacks (spec section 6): signed, retried on failure, kept across restarts.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::common::*;

/// Queues a callback as the server does: due now, never tried.
async fn queue(server: &Server, client_id: &str, url: &str, body: &str) {
    let now = moms::store::now_ms();
    moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query(
            "INSERT INTO webhooks (client_id, url, content_type, body, due_ms, created_at)
             VALUES ($1, $2, 'application/xml', $3, $4, $5)",
        )
        .bind(client_id.parse::<i64>().unwrap())
        .bind(url)
        .bind(body)
        .bind(now)
        .bind(now / 1000)
        .execute(writer)
        .await
        .unwrap();
    });
    server.app.webhook_wake.notify_one();
}

fn verify(secret: &str, header: &str, body: &str) -> bool {
    let (t, sig) = header.split_once(",sha256=").expect("t=…,sha256=…");
    let t = t.strip_prefix("t=").expect("t=");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    mac.verify_slice(&hex::decode(sig).unwrap()).is_ok()
}

#[tokio::test]
async fn callback_is_signed_with_the_client_secret() {
    let server = Server::start().await;
    let creds = server.client().await;
    let receiver = Receiver::start().await;
    let body =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><response status=\"success\" code=\"1\"/>";
    queue(
        &server,
        &creds.client_id,
        &format!("{}/hook", receiver.base),
        body,
    )
    .await;
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].path, "/hook");
    assert_eq!(got[0].body, body);
    assert_eq!(got[0].headers["content-type"], "application/xml");
    let signature = got[0].headers["x-moms-signature"].to_str().unwrap();
    assert!(
        verify(&creds.callback_secret, signature, body),
        "{signature}"
    );
    assert!(!verify("another secret", signature, body));
}

#[tokio::test]
async fn failed_callbacks_are_retried_until_the_receiver_accepts() {
    let server = Server::start_with(|c| c.callbacks.first_retry_secs = 0).await;
    let creds = server.client().await;
    let receiver = Receiver::start().await;
    receiver.fail_next(2);
    queue(
        &server,
        &creds.client_id,
        &format!("{}/retry", receiver.base),
        "payload",
    )
    .await;
    let got = receiver.wait_for(3).await;
    assert!(got.iter().all(|r| r.body == "payload"));
    // Delivered: the row is gone, nothing further is posted.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let left: i64 = moms::with_db!(server.app.store, |pool, writer| {
            sqlx::query_scalar("SELECT COUNT(*) FROM webhooks")
                .fetch_one(pool)
                .await
                .unwrap()
        });
        if left == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "webhook row still queued"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(receiver.received().len(), 3);
}

#[tokio::test]
async fn callbacks_give_up_after_the_configured_tries() {
    let server = Server::start_with(|c| {
        c.callbacks.first_retry_secs = 0;
        c.callbacks.max_attempts = 3;
    })
    .await;
    let creds = server.client().await;
    let receiver = Receiver::start().await;
    receiver.fail_next(100);
    queue(
        &server,
        &creds.client_id,
        &format!("{}/dead", receiver.base),
        "x",
    )
    .await;
    receiver.wait_for(3).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (attempts, error): (i64, String) = moms::with_db!(server.app.store, |pool, writer| {
            sqlx::query_as("SELECT attempts, last_error FROM webhooks")
                .fetch_one(pool)
                .await
                .unwrap()
        });
        if attempts == 3 {
            assert!(error.contains("500"), "{error}");
            break;
        }
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 3, "no fourth try");
}

#[tokio::test]
async fn private_destinations_are_refused_unless_allowed() {
    let server = Server::start_with(|c| {
        c.fetch.allow_private_networks = false;
        c.callbacks.max_attempts = 1;
    })
    .await;
    let creds = server.client().await;
    let receiver = Receiver::start().await;
    queue(
        &server,
        &creds.client_id,
        &format!("{}/private", receiver.base),
        "x",
    )
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let row: Option<(i64, String)> = moms::with_db!(server.app.store, |pool, writer| {
            sqlx::query_as("SELECT attempts, last_error FROM webhooks")
                .fetch_optional(pool)
                .await
                .unwrap()
        });
        if let Some((1, error)) = row {
            assert!(error.contains("private"), "{error}");
            break;
        }
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(receiver.received().is_empty());
}

#[tokio::test]
async fn callbacks_to_one_url_arrive_in_order_even_across_retries() {
    let server = Server::start_with(|c| c.callbacks.first_retry_secs = 1).await;
    let creds = server.client().await;
    let receiver = Receiver::start().await;
    let other = Receiver::start().await;
    receiver.fail_next(1);
    for n in 1..=3 {
        queue(
            &server,
            &creds.client_id,
            &format!("{}/ordered", receiver.base),
            &format!("event {n}"),
        )
        .await;
    }
    queue(
        &server,
        &creds.client_id,
        &format!("{}/other", other.base),
        "elsewhere",
    )
    .await;
    // A failing receiver holds back only its own callbacks.
    other.wait_for(1).await;
    let got = receiver.wait_for(4).await;
    let bodies: Vec<&str> = got.iter().map(|r| r.body.as_str()).collect();
    assert_eq!(bodies, ["event 1", "event 1", "event 2", "event 3"]);
}
