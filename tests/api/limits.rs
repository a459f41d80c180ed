//! Per-client send limits (spec section 1): HTTP 429, `Retry-After`, and an
//! envelope with code 400 naming the limit.

use crate::cli::moms;
use crate::common::*;

async fn send(server: &Server, creds: &Creds, campaign: &str, n: usize) -> Resp {
    let to = format!("310867{:04}", 1000 + n);
    server
        .call(
            creds,
            "transaction.send",
            &[
                ("campaign_id", campaign),
                ("to", &to),
                ("message", "limited"),
            ],
        )
        .await
}

async fn campaign(server: &Server, creds: &Creds) -> String {
    server
        .app
        .store
        .create_campaign(&campaign_settings(creds, "Limited"), None)
        .await
        .unwrap()
        .to_string()
}

/// Sets limits with the operator's command, as a user would.
async fn limits(server: &Server, creds: &Creds, per_second: &str, daily: &str) {
    let dir = server.dir().to_path_buf();
    let client = creds.client_id.clone();
    let (per_second, daily) = (per_second.to_string(), daily.to_string());
    let (ok, json, stderr) = tokio::task::spawn_blocking(move || {
        moms(
            &dir,
            &[
                "admin",
                "client",
                "limits",
                "--client",
                &client,
                "--per-second",
                &per_second,
                "--daily",
                &daily,
                "--json",
            ],
        )
    })
    .await
    .unwrap();
    assert!(ok, "{stderr}");
    assert_eq!(json["client_id"].to_string(), creds.client_id);
    server.app.clients.clear();
}

#[tokio::test]
async fn sends_over_the_client_rate_get_429_with_retry_after() {
    let server = Server::start().await;
    let creds = server.client().await;
    let campaign = campaign(&server, &creds).await;
    limits(&server, &creds, "2", "0").await;
    assert_code(&send(&server, &creds, &campaign, 1).await, 1);
    assert_code(&send(&server, &creds, &campaign, 2).await, 1);
    let over = send(&server, &creds, &campaign, 3).await;
    assert_eq!(over.status, 429);
    assert_eq!(over.code(), 400);
    assert!(
        over.message().contains("send rate of 2 a second"),
        "{}",
        over.body
    );
    assert_eq!(over.header("retry-after"), Some("1"));
    // Another client is not limited.
    let other = server.client().await;
    let other_campaign = self::campaign(&server, &other).await;
    assert_code(&send(&server, &other, &other_campaign, 4).await, 1);
}

#[tokio::test]
async fn the_daily_quota_counts_messages_and_then_refuses() {
    let server = Server::start_with(|c| c.compat.legacy_http_status = true).await;
    let creds = server.client().await;
    let campaign = campaign(&server, &creds).await;
    limits(&server, &creds, "0", "3").await;
    for n in 0..3 {
        assert_code(&send(&server, &creds, &campaign, n).await, 1);
    }
    let over = send(&server, &creds, &campaign, 9).await;
    // With the legacy switch the 429 comes as HTTP 200, the envelope unchanged.
    assert_eq!(over.status, 200);
    assert_eq!(over.code(), 400);
    assert!(
        over.message().contains("daily quota of 3 messages"),
        "{}",
        over.body
    );
    // Lifting the quota lets sends through again.
    limits(&server, &creds, "0", "0").await;
    assert_code(&send(&server, &creds, &campaign, 10).await, 1);
}
