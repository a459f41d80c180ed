//! `moms admin …` (spec section 9), run as the built binary against a temp
//! data folder.

use std::path::Path;
use std::process::Output;

use serde_json::{Value, json};

use crate::common::*;

/// Runs `moms --data-dir DIR --json ARGS…`.
fn moms(dir: &Path, args: &[&str]) -> Output {
    moms_command(dir)
        .arg("--data-dir")
        .arg(dir)
        .arg("--json")
        .args(args)
        .env("MOMS_LOG", "warn")
        .output()
        .expect("moms runs")
}

/// Runs a command that must succeed and print one JSON object.
#[track_caller]
fn moms_json(dir: &Path, args: &[&str]) -> Value {
    let output = moms(dir, args);
    assert!(
        output.status.success(),
        "moms {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "moms {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// `client create` with short code 21534; its JSON.
fn create_client(dir: &Path) -> Value {
    let created = moms_json(
        dir,
        &[
            "admin",
            "client",
            "create",
            "--name",
            "X",
            "--senders",
            "21534",
        ],
    );
    assert!(created["client_id"].as_i64().unwrap() > 0, "{created}");
    assert_eq!(created["token"].as_str().unwrap().len(), 32, "{created}");
    created
}

#[tokio::test]
async fn campaign_create_prints_the_id_the_api_then_serves() {
    let dir = data_dir();
    let client = create_client(dir.path());
    let client_id = client["client_id"].to_string();
    let created = moms_json(
        dir.path(),
        &[
            "admin",
            "campaign",
            "create",
            "--client",
            &client_id,
            "--name",
            "From the CLI",
            "--keyword",
            "cli",
            "--type",
            "mms",
            "--opt-in",
            "single",
        ],
    );
    let campaign_id = created["campaign_id"].as_i64().expect("a number");
    assert_eq!(created, json!({"campaign_id": campaign_id}));

    // The server on the same data folder knows the client and the campaign.
    let config = test_config(dir.path());
    let server = Server::start_in(dir, config).await;
    let creds = Creds {
        client_id: client_id.clone(),
        token: client["token"].as_str().unwrap().to_string(),
        callback_secret: client["callback_secret"].as_str().unwrap().to_string(),
    };
    let body = server
        .call_json(
            &creds,
            "campaign.info",
            &[("campaign_id", &campaign_id.to_string())],
        )
        .await;
    let campaign = &body["response"]["campaign"];
    assert_eq!(campaign["name"], "From the CLI", "{body}");
    assert_eq!(campaign["type"], "mms");
    assert_eq!(campaign["keyword"], "CLI");
    assert_eq!(campaign["opt_in"], "single");
    let body = server
        .call_json(&creds, "keyword.check", &[("keyword", "cli")])
        .await;
    assert_eq!(body["response"]["available"], "false");
}

#[tokio::test]
async fn campaign_create_refuses_a_bad_name_with_a_clear_message() {
    let dir = data_dir();
    let client = create_client(dir.path());
    let client_id = client["client_id"].to_string();
    let long = "n".repeat(65);
    for name in ["", long.as_str(), "tab\there"] {
        let output = moms(
            dir.path(),
            &[
                "admin", "campaign", "create", "--client", &client_id, "--name", name,
            ],
        );
        assert!(!output.status.success(), "{name:?} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("\"name\" parameter is invalid") && stderr.contains("code 445"),
            "{stderr}"
        );
        // With --json the error is one JSON object on stdout too.
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("a JSON error");
        assert!(
            json["error"].as_str().unwrap().contains("code 445"),
            "{json}"
        );
    }
    // A duplicate name is refused the same way.
    moms_json(
        dir.path(),
        &[
            "admin", "campaign", "create", "--client", &client_id, "--name", "once",
        ],
    );
    let output = moms(
        dir.path(),
        &[
            "admin", "campaign", "create", "--client", &client_id, "--name", "once",
        ],
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("code 445"));
}

#[tokio::test]
async fn campaign_create_refuses_bad_settings_and_unknown_clients() {
    let dir = data_dir();
    let client = create_client(dir.path());
    let client_id = client["client_id"].to_string();
    for (args, expected) in [
        (&["--from", "21599"][..], "code 434"),
        (&["--keyword", "stop"][..], "reserved"),
        (&["--type", "fax"][..], "code 400"),
    ] {
        let mut all = vec![
            "admin", "campaign", "create", "--client", &client_id, "--name", "n",
        ];
        all.extend_from_slice(args);
        let output = moms(dir.path(), &all);
        assert!(!output.status.success(), "{args:?} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    let output = moms(
        dir.path(),
        &[
            "admin", "campaign", "create", "--client", "424242", "--name", "n",
        ],
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no client 424242"));
}

#[tokio::test]
async fn admin_mo_injects_a_stop_through_the_sandbox() {
    let dir = data_dir();
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

    let campaign = moms_json(
        dir.path(),
        &[
            "admin",
            "campaign",
            "create",
            "--client",
            &client_id.to_string(),
            "--name",
            "Acme alerts",
            "--from",
            "21534",
            "--keyword",
            "ACME",
            "--stop-message",
            "Acme: unsubscribed",
        ],
    );
    let campaign_id = campaign["campaign_id"].as_i64().unwrap();

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
    let store = moms::store::Store::open(&test_config(dir.path()))
        .await
        .unwrap();
    let status: i64 = moms::with_db!(store, |pool, writer| {
        sqlx::query_scalar(
            "SELECT status FROM opt_status WHERE number = '13105550123' AND campaign_id = $1",
        )
        .bind(campaign_id)
        .fetch_one(pool)
        .await
        .unwrap()
    });
    assert_eq!(status, -2);
}
