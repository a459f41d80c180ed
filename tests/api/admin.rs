//! admin tests.

use std::process::Command;

use moms::store::Store;
use moms::store::campaign::Campaign;

/// Runs the built binary on a data folder; returns its one JSON object.
fn moms_json(dir: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_moms"))
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .arg("--json")
        .output()
        .expect("moms runs");
    assert!(
        output.status.success(),
        "moms {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

#[tokio::test]
async fn admin_mo_injects_a_stop_through_the_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let created = moms_json(
        dir.path(),
        &[
            "admin",
            "client",
            "create",
            "--name",
            "Acme",
            "--senders",
            "21534",
        ],
    );
    let client_id = created["client_id"].as_i64().expect("client_id");

    // Nothing uses the short code yet: stored, unrouted.
    let received = moms_json(
        dir.path(),
        &[
            "admin",
            "mo",
            "--from",
            "3105550123",
            "--to",
            "21534",
            "--text",
            "STOP",
        ],
    );
    assert_eq!(received["event"], "unrouted", "{received}");
    assert!(received["inbound_id"].as_i64().is_some(), "{received}");

    let config = crate::common::test_config(dir.path());
    let store = Store::open(&config).await.unwrap();
    let campaign_id = store
        .create_campaign(
            &Campaign {
                id: 0,
                client_id,
                name: "Acme alerts".into(),
                kind: "sms".into(),
                sender: "21534".into(),
                keyword: "ACME".into(),
                callback_url: String::new(),
                callback_format: "xml".into(),
                opt_in: "none".into(),
                require_names: false,
                help_message: String::new(),
                stop_message: "Acme: unsubscribed".into(),
                destroyed: false,
            },
            Some("21534"),
        )
        .await
        .unwrap();

    let received = moms_json(
        dir.path(),
        &[
            "admin",
            "mo",
            "--from",
            "3105550123",
            "--to",
            "21534",
            "--text",
            "STOP",
        ],
    );
    assert_eq!(received["event"], "stop", "{received}");
    assert_eq!(received["campaign_id"], campaign_id, "{received}");
    assert!(
        received["reply_message_id"].as_i64().is_some(),
        "{received}"
    );
    let status: i64 = sqlx::query_scalar(
        "SELECT status FROM opt_status WHERE number = '13105550123' AND campaign_id = $1",
    )
    .bind(campaign_id)
    .fetch_one(&store.pool)
    .await
    .unwrap();
    assert_eq!(status, -2);
}
