//! The `moms` binary's operator commands (spec section 9): run as a user
//! would, with `--data-dir`, `--json` before or after the subcommand.

use std::process::Command;

use serde_json::Value;

use crate::common::*;

pub fn moms(dir: &std::path::Path, args: &[&str]) -> (bool, Value, String) {
    let output = moms_command(dir)
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env_remove("MOMS_CONFIG")
        .env("MOMS_LOG", "warn")
        .output()
        .expect("moms runs");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    let json = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    (output.status.success(), json, stderr)
}

#[test]
fn client_create_prints_credentials_once_and_stores_only_a_hash() {
    let dir = data_dir();
    let (ok, created, _) = moms(
        dir.path(),
        &[
            "admin",
            "client",
            "create",
            "--name",
            "Acme",
            "--senders",
            "21534,310-555-0100",
            "--json",
        ],
    );
    assert!(ok);
    let token = created["token"].as_str().unwrap();
    assert_eq!(token.len(), 32);
    assert!(created["client_id"].as_i64().unwrap() >= 1001);
    assert_eq!(created["callback_secret"].as_str().unwrap().len(), 64);
    let (ok, listed, _) = moms(dir.path(), &["--json", "admin", "client", "list"]);
    assert!(ok);
    let client = &listed["clients"][0];
    assert_eq!(
        client["senders"],
        serde_json::json!(["21534", "13105550100"])
    );
    assert!(
        !listed.to_string().contains(token),
        "the token is never shown again"
    );
    if skip_on_postgres("the search for the token reads the SQLite file's bytes") {
        return;
    }
    let db = std::fs::read(dir.path().join("moms.db")).unwrap();
    assert!(
        !db.windows(32).any(|w| w == token.as_bytes()),
        "the token is not stored"
    );
}

#[test]
fn bad_arguments_fail_with_a_message_that_names_the_fix() {
    let dir = data_dir();
    let (ok, json, stderr) = moms(
        dir.path(),
        &[
            "admin",
            "client",
            "create",
            "--name",
            "X",
            "--senders",
            "12",
            "--json",
        ],
    );
    assert!(!ok);
    assert!(
        json["error"].as_str().unwrap().contains("short code"),
        "{json}"
    );
    assert!(
        stderr.contains("neither a 5–6 digit short code nor a phone number"),
        "{stderr}"
    );
    let (ok, _, stderr) = moms(
        dir.path(),
        &[
            "admin",
            "client",
            "whitelist",
            "--client",
            "1001",
            "--cidrs",
            "10.0.0.0/8,bogus",
        ],
    );
    assert!(!ok);
    assert!(
        stderr.contains("\"bogus\" is not an IP address or CIDR"),
        "{stderr}"
    );
    let (ok, _, stderr) = moms(
        dir.path(),
        &["admin", "client", "rotate-token", "--client", "4242"],
    );
    assert!(!ok);
    assert!(stderr.contains("no client 4242"), "{stderr}");
}

#[tokio::test]
async fn operator_changes_reach_a_running_server_without_restart() {
    let server = Server::start().await;
    let dir = server.dir().to_path_buf();
    let (ok, created, _) = moms(
        &dir,
        &["admin", "client", "create", "--name", "Live", "--json"],
    );
    assert!(ok);
    let creds = Creds {
        client_id: created["client_id"].to_string(),
        token: created["token"].as_str().unwrap().to_string(),
        callback_secret: String::new(),
    };
    assert_code(&server.call(&creds, "system.ping", &[]).await, 1);
    let (ok, rotated, _) = moms(
        &dir,
        &[
            "admin",
            "client",
            "rotate-token",
            "--client",
            &creds.client_id,
            "--json",
        ],
    );
    assert!(ok);
    let fresh = Creds {
        token: rotated["token"].as_str().unwrap().to_string(),
        ..creds.clone()
    };
    assert_code(&server.call(&fresh, "system.ping", &[]).await, 1);
    let (ok, _, _) = moms(
        &dir,
        &[
            "admin",
            "client",
            "whitelist",
            "--client",
            &creds.client_id,
            "--cidrs",
            "192.0.2.0/24",
        ],
    );
    assert!(ok);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while server.call(&fresh, "system.ping", &[]).await.status != 403 {
        assert!(
            std::time::Instant::now() < deadline,
            "whitelist not applied"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[test]
fn config_prints_the_effective_configuration_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("moms.toml");
    std::fs::write(
        &file,
        "time_zone = \"America/Los_Angeles\"\n[smtp]\npassword = \"hunter2\"\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_moms"))
        .args(["config", "--config"])
        .arg(&file)
        .env("MOMS_FETCH__ALLOW_PRIVATE_NETWORKS", "true")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(
        text.contains("time_zone = \"America/Los_Angeles\""),
        "{text}"
    );
    assert!(text.contains("allow_private_networks = true"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    let output = Command::new(env!("CARGO_BIN_EXE_moms"))
        .args(["config", "--config", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("does not exist"));
}

#[test]
fn migrate_creates_the_schema_and_is_idempotent() {
    let dir = data_dir();
    let (ok, json, _) = moms(dir.path(), &["migrate", "--json"]);
    assert!(ok, "{json}");
    assert_eq!(json["migrated"], true);
    let (ok, _, _) = moms(dir.path(), &["migrate"]);
    assert!(ok);
}

#[test]
fn serve_prints_the_demo_credentials_on_first_start() {
    use std::io::{BufRead, BufReader};
    let dir = data_dir();
    let mut child = moms_command(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("MOMS_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.contains("curl");
        seen.push(line);
        if done {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = seen.join("\n");
    assert!(text.contains("client_id:   1001"), "{text}");
    assert!(text.contains("campaign_id:"), "{text}");
    assert!(text.contains("/moms/transaction.send"), "{text}");
    let token = seen
        .iter()
        .find_map(|l| l.strip_prefix("token:"))
        .unwrap()
        .trim();
    assert_eq!(token.len(), 32);
}
