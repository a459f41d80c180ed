//! The delivery worker's rate limits and fairness over the real server.

use std::time::{Duration, Instant};

use crate::common::*;

async fn complete_count(server: &Server) -> i64 {
    moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query_scalar("SELECT COUNT(*) FROM transactions WHERE status = 'COMPLETE'")
            .fetch_one(pool)
            .await
            .unwrap()
    })
}

#[tokio::test]
async fn messages_over_a_client_rate_wait_and_are_all_delivered() {
    let server = Server::start_with(|c| c.delivery.client_per_second = 5.0).await;
    let creds = server.client().await;
    let campaign = server
        .app
        .store
        .create_campaign(&campaign_settings(&creds, "Paced"), None)
        .await
        .unwrap()
        .to_string();
    let started = Instant::now();
    for n in 0..15 {
        let to = format!("310867{:04}", 1000 + n);
        let resp = server
            .call(
                &creds,
                "transaction.send",
                &[
                    ("campaign_id", &campaign),
                    ("to", &to),
                    ("message", "paced"),
                ],
            )
            .await;
        assert_code(&resp, 1);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while complete_count(&server).await < 15 {
        assert!(
            Instant::now() < deadline,
            "paced messages never all completed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Five at once (one second of burst), then five a second: the last of
    // fifteen cannot go before two seconds have passed. (A lower bound the
    // limit guarantees, not a speed.)
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "the limit was not applied: {:?}",
        started.elapsed()
    );
    // Waiting for a slot leaves no trace in the history.
    let events: Vec<(String,)> = moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query_as("SELECT DISTINCT event FROM history ORDER BY event")
            .fetch_all(pool)
            .await
            .unwrap()
    });
    let events: Vec<&str> = events.iter().map(|(e,)| e.as_str()).collect();
    assert_eq!(
        events,
        [
            "Delivery Confirmed",
            "SMS Sent",
            "Transaction Complete",
            "Transaction Created",
            "Transaction Queued"
        ]
    );
}
