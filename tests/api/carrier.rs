//! Carriers (spec section 7) as the operator configures them with
//! `moms admin carrier …` and `[[carriers]]` in the configuration file, seen
//! through user.lookup and transaction.send of a running server.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use moms::app::App;
use moms::config::CarrierConfig;
use serde_json::{Value, json};

use crate::cli::moms;
use crate::common::*;

/// Runs `moms <args> --json` on the server's data folder, off the test's
/// runtime so the server keeps running meanwhile; asserts success.
async fn admin(dir: &Path, args: &[&str]) -> Value {
    let (ok, json, stderr) = admin_outcome(dir, args).await;
    assert!(ok, "moms {args:?} failed: {json} {stderr}");
    json
}

/// Like [`admin`], for commands expected to fail: (succeeded, JSON, stderr).
async fn admin_outcome(dir: &Path, args: &[&str]) -> (bool, Value, String) {
    let dir = dir.to_path_buf();
    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    args.push("--json".into());
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        moms(&dir, &args)
    })
    .await
    .unwrap()
}

/// Calls `method` until it answers `code` (the server reloads its carrier
/// table a moment after the command), then returns that answer.
async fn until_code(
    server: &Server,
    creds: &Creds,
    method: &str,
    params: &[(&str, &str)],
    code: u16,
) -> Resp {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let resp = server.call(creds, method, params).await;
        if resp.code() == code {
            return resp;
        }
        assert!(
            Instant::now() < deadline,
            "{method} still answers {} instead of {code}: {}",
            resp.code(),
            resp.body
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Calls user.lookup until it names `carrier_id`; returns the XML answer.
async fn until_carrier(server: &Server, creds: &Creds, number: &str, carrier_id: &str) -> Resp {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let resp = server
            .call(creds, "user.lookup", &[("number", number)])
            .await;
        if resp.code() == 1 && resp.xml().child("carrier").attr("id") == carrier_id {
            return resp;
        }
        assert!(
            Instant::now() < deadline,
            "user.lookup of {number} does not name carrier {carrier_id}: {}",
            resp.body
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn campaign(server: &Server, creds: &Creds) -> String {
    let settings = campaign_settings(creds, "Carrier test");
    let id = server
        .app
        .store
        .create_campaign(&settings, None)
        .await
        .unwrap();
    id.to_string()
}

fn send_params<'a>(campaign: &'a str, to: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![("campaign_id", campaign), ("to", to), ("message", "Hello")]
}

/// Writes a CSV file into the data folder.
fn csv_file(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let path = dir.join(name);
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    for line in lines {
        writeln!(file, "{line}").unwrap();
    }
    file.flush().unwrap();
    path
}

/// Keeps the sandbox carrier (id 1, prefix 1) next to the operator's own.
async fn keep_sandbox(dir: &Path) {
    admin(
        dir,
        &[
            "admin",
            "carrier",
            "add",
            "--id",
            "1",
            "--name",
            "Sandbox Wireless",
            "--prefixes",
            "1",
        ],
    )
    .await;
}

#[tokio::test]
async fn added_carrier_answers_user_lookup_once_the_server_reloads() {
    let server = Server::start().await;
    let dir = server.dir().to_path_buf();
    let creds = server.client().await;
    let added = admin(
        &dir,
        &[
            "admin",
            "carrier",
            "add",
            "--id",
            "7",
            "--name",
            "West Wireless",
            "--prefixes",
            "1310, 1424",
            "--connector",
            "sandbox",
        ],
    )
    .await;
    assert_eq!(
        added,
        json!({"carrier_id": 7, "name": "West Wireless", "prefixes": ["1310", "1424"],
               "served": true, "mms": true, "connector": "sandbox", "mms_max_bytes": 1048576})
    );

    let resp = until_carrier(&server, &creds, "310-867-5309", "7").await;
    let xml = resp.xml();
    assert_eq!(
        xml.child_names(),
        vec!["message", "number", "carrier", "handset"]
    );
    assert_eq!(xml.cdata_of("carrier"), "West Wireless");
    let json = server
        .call_json(&creds, "user.lookup", &[("number", "424-555-0100")])
        .await;
    assert_eq!(json["response"]["carrier_id"], "7");
    assert_eq!(json["response"]["carrier_name"], "West Wireless");

    // Operator carriers replace the built-in sandbox: other numbers have none.
    let resp = server
        .call(&creds, "user.lookup", &[("number", "212-867-5309")])
        .await;
    assert_code(&resp, 603);
    let json = server
        .call_json(&creds, "user.lookup", &[("number", "212-867-5309")])
        .await;
    assert_eq!(json["response"]["code"], "603");

    // The list shows it; the audit log has the change.
    let listed = admin(&dir, &["admin", "carrier", "list"]).await;
    assert_eq!(listed["carriers"][0]["carrier_id"], 7);
    assert_eq!(listed["carriers"][0]["built_in"], false);
    let audited: i64 = moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM audit WHERE actor = 'operator' AND action = 'carrier.add'",
        )
        .fetch_one(pool)
        .await
        .unwrap()
    });
    assert_eq!(audited, 1);
}

#[tokio::test]
async fn unserved_carrier_answers_605_to_lookup_and_send() {
    let server = Server::start().await;
    let dir = server.dir().to_path_buf();
    let creds = server.client().await;
    let campaign = campaign(&server, &creds).await;
    keep_sandbox(&dir).await;
    admin(
        &dir,
        &[
            "admin",
            "carrier",
            "add",
            "--id",
            "7",
            "--name",
            "West",
            "--prefixes",
            "1310",
        ],
    )
    .await;
    until_carrier(&server, &creds, "3108675309", "7").await;
    assert_code(
        &server
            .call(
                &creds,
                "transaction.send",
                &send_params(&campaign, "3108675309"),
            )
            .await,
        1,
    );

    let updated = admin(
        &dir,
        &[
            "admin", "carrier", "update", "--id", "7", "--served", "false",
        ],
    )
    .await;
    assert_eq!(updated["served"], false);
    assert_eq!(updated["prefixes"], json!(["1310"]), "other settings stay");

    let resp = until_code(
        &server,
        &creds,
        "user.lookup",
        &[("number", "3108675309")],
        605,
    )
    .await;
    let xml = resp.xml();
    assert_eq!(xml.child_names(), vec!["message", "number", "carrier"]);
    assert_eq!(xml.child("carrier").attr("id"), "7");
    assert_eq!(xml.cdata_of("carrier"), "West");

    let resp = server
        .call(
            &creds,
            "transaction.send",
            &send_params(&campaign, "3108675309"),
        )
        .await;
    assert_code(&resp, 605);
    let mut params = send_params(&campaign, "3108675309");
    params.push(("format", "json"));
    let json = server
        .call(&creds, "transaction.send", &params)
        .await
        .json();
    assert_eq!(json["response"]["code"], "605");
    assert_eq!(json["response"]["number"], "13108675309");
    assert_eq!(json["response"]["carrier_id"], "7");
    assert_eq!(json["response"]["carrier_name"], "West");

    // Removing it hands its numbers back to the sandbox's prefix 1.
    let removed = admin(&dir, &["admin", "carrier", "remove", "--id", "7"]).await;
    assert_eq!(removed["removed"], true);
    until_carrier(&server, &creds, "3108675309", "1").await;
}

#[tokio::test]
async fn ported_import_moves_numbers_and_counts_bad_lines() {
    let server = Server::start().await;
    let dir = server.dir().to_path_buf();
    let creds = server.client().await;
    keep_sandbox(&dir).await;
    admin(
        &dir,
        &[
            "admin",
            "carrier",
            "add",
            "--id",
            "7",
            "--name",
            "West",
            "--prefixes",
            "1310",
        ],
    )
    .await;
    until_carrier(&server, &creds, "2125551000", "1").await;

    // 3,000 New York numbers move to carrier 7, written in several forms.
    let mut lines = vec!["number,carrier_id".to_string()];
    for i in 0..3000 {
        lines.push(match i % 3 {
            0 => format!("212555{i:04},7"),
            1 => format!("+1 212 555 {i:04},7"),
            _ => format!("\"(212) 555-{i:04}\",7"),
        });
    }
    lines.push("not a number,7".into()); // line 3002
    lines.push("2125559999,99".into()); // line 3003: no such carrier
    lines.push("2125559998".into()); // line 3004: one field
    let file = csv_file(&dir, "ported.csv", &lines);
    let summary = admin(
        &dir,
        &["admin", "carrier", "import-ported", file.to_str().unwrap()],
    )
    .await;
    assert_eq!(summary["imported"], 3000, "{summary}");
    assert_eq!(summary["rejected"], 3, "{summary}");
    assert!(summary["seconds"].is_number());
    let lines: Vec<i64> = summary["rejections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["line"].as_i64().unwrap())
        .collect();
    assert_eq!(lines, [3002, 3003, 3004]);
    assert!(
        summary["rejections"][1]["reason"]
            .as_str()
            .unwrap()
            .contains("no carrier 99"),
        "{summary}"
    );

    let resp = until_carrier(&server, &creds, "212-555-1000", "7").await;
    assert_eq!(resp.xml().cdata_of("carrier"), "West");
    let json = server
        .call_json(&creds, "user.lookup", &[("number", "2125552999")])
        .await;
    assert_eq!(json["response"]["carrier_id"], "7");
    // Not in the file: the prefix decides.
    let json = server
        .call_json(&creds, "user.lookup", &[("number", "2125553000")])
        .await;
    assert_eq!(json["response"]["carrier_id"], "1");

    // Importing again moves a number on; forgetting it restores the prefix.
    let file = csv_file(&dir, "back.csv", &["2125551000,1".to_string()]);
    let summary = admin(
        &dir,
        &["admin", "carrier", "import-ported", file.to_str().unwrap()],
    )
    .await;
    assert_eq!(summary["imported"], 1);
    until_carrier(&server, &creds, "2125551000", "1").await;
    let removed = admin(&dir, &["admin", "carrier", "remove-ported", "2125551001"]).await;
    assert_eq!(removed, json!({"number": "12125551001", "removed": true}));
    until_carrier(&server, &creds, "2125551001", "1").await;

    let listed = admin(&dir, &["admin", "carrier", "list"]).await;
    assert_eq!(listed["carriers"][1]["ported"], 2998);
}

#[tokio::test]
async fn blacklist_import_answers_604_to_send() {
    let server = Server::start().await;
    let dir = server.dir().to_path_buf();
    let creds = server.client().await;
    let campaign = campaign(&server, &creds).await;
    assert_code(
        &server
            .call(
                &creds,
                "transaction.send",
                &send_params(&campaign, "3107770000"),
            )
            .await,
        1,
    );

    // The built-in sandbox carrier (id 1) is the only one: bars name it.
    let lines = vec![
        "3107770000,1".to_string(),
        "+44 7911 123456,1".to_string(),
        "3107770001,2".to_string(),
    ];
    let file = csv_file(&dir, "barred.csv", &lines);
    let summary = admin(
        &dir,
        &[
            "admin",
            "carrier",
            "import-blacklist",
            file.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(summary["imported"], 2, "{summary}");
    assert_eq!(summary["rejected"], 1, "{summary}");
    assert_eq!(summary["rejections"][0]["line"], 3);

    let resp = until_code(
        &server,
        &creds,
        "transaction.send",
        &send_params(&campaign, "3107770000"),
        604,
    )
    .await;
    let xml = resp.xml();
    assert_eq!(xml.child_names(), ["message", "number", "carrier"]);
    assert_eq!(xml.cdata_of("number"), "13107770000");
    assert_eq!(xml.child("carrier").attr("id"), "1");
    let mut params = send_params(&campaign, "3107770000");
    params.push(("format", "json"));
    let json = server
        .call(&creds, "transaction.send", &params)
        .await
        .json();
    assert_eq!(json["response"]["code"], "604");
    assert_eq!(json["response"]["carrier_id"], "1");

    let lifted = admin(&dir, &["admin", "carrier", "unbar", "3107770000"]).await;
    assert_eq!(lifted["unbarred"], 1);
    until_code(
        &server,
        &creds,
        "transaction.send",
        &send_params(&campaign, "3107770000"),
        1,
    )
    .await;
}

#[tokio::test]
async fn configured_carriers_apply_at_start_and_operator_ones_stay() {
    let declared = CarrierConfig {
        id: 9,
        name: "Declared Mobile".into(),
        prefixes: vec!["1424".into()],
        served: false,
        mms: true,
        connector: "smpp".into(),
        mms_max_bytes: 1_048_576,
    };
    let sandbox = CarrierConfig {
        id: 1,
        name: "Sandbox Wireless".into(),
        prefixes: vec!["1".into()],
        served: true,
        mms: true,
        connector: "sandbox".into(),
        mms_max_bytes: 1_048_576,
    };
    let carriers = vec![sandbox, declared];
    let server = Server::start_with(|c| c.carriers = carriers.clone()).await;
    let dir = server.dir().to_path_buf();
    let creds = server.client().await;
    let resp = server
        .call(&creds, "user.lookup", &[("number", "424-555-0100")])
        .await;
    assert_code(&resp, 605);
    assert_eq!(resp.xml().cdata_of("carrier"), "Declared Mobile");

    // An operator's carrier of another id, and a change to a declared one.
    admin(
        &dir,
        &[
            "admin",
            "carrier",
            "add",
            "--id",
            "7",
            "--name",
            "West",
            "--prefixes",
            "1310",
        ],
    )
    .await;
    let (ok, _, stderr) = admin_outcome(
        &dir,
        &[
            "admin", "carrier", "update", "--id", "9", "--name", "Renamed",
        ],
    )
    .await;
    // The command runs without the server's configuration: no note.
    assert!(ok, "{stderr}");

    // A restart writes the declared carrier back and keeps carrier 7.
    let config = server.app.config.clone();
    let dir = server.stop().await;
    let server = Server::start_in(dir, config).await;
    let creds = server.client().await;
    let json = server
        .call_json(&creds, "user.lookup", &[("number", "424-555-0100")])
        .await;
    assert_eq!(json["response"]["code"], "605");
    assert_eq!(json["response"]["carrier_name"], "Declared Mobile");
    let json = server
        .call_json(&creds, "user.lookup", &[("number", "310-555-0100")])
        .await;
    assert_eq!(json["response"]["carrier_id"], "7");
}

#[tokio::test]
async fn a_bad_configured_carrier_stops_the_start_with_the_fix() {
    let dir = data_dir();
    let mut config = test_config(dir.path());
    config.carriers.push(CarrierConfig {
        id: 3,
        name: "Typo".into(),
        prefixes: vec!["+1310".into()],
        served: true,
        mms: true,
        connector: "sandbox".into(),
        mms_max_bytes: 1_048_576,
    });
    let error = App::open(config.clone()).await.err().unwrap().to_string();
    assert!(error.contains("[[carriers]]"), "{error}");
    assert!(error.contains("1–15 digits"), "{error}");
    config.carriers[0].prefixes = vec!["1310".into()];
    config.carriers[0].connector = "http".into();
    let error = App::open(config).await.err().unwrap().to_string();
    assert!(error.contains("sandbox, smpp, mm7"), "{error}");
}

#[tokio::test]
async fn migrate_applies_the_configuration_file_carriers() {
    let dir = data_dir();
    let file = dir.path().join("moms.toml");
    std::fs::write(
        &file,
        "[[carriers]]\nid = 4\nname = \"File Mobile\"\nprefixes = [\"44\"]\nconnector = \"mm7\"\n",
    )
    .unwrap();
    let config = file.to_str().unwrap().to_string();
    admin(dir.path(), &["migrate", "--config", &config]).await;
    let listed = admin(dir.path(), &["admin", "carrier", "list"]).await;
    assert_eq!(
        listed["carriers"],
        json!([{"carrier_id": 4, "name": "File Mobile", "prefixes": ["44"], "served": true,
                "mms": true, "connector": "mm7", "mms_max_bytes": 1048576, "ported": 0, "barred": 0,
                "built_in": false}])
    );
    // A change to a declared carrier is noted: the next start puts it back.
    let (ok, _, stderr) = admin_outcome(
        dir.path(),
        &[
            "admin", "carrier", "update", "--id", "4", "--mms", "false", "--config", &config,
        ],
    )
    .await;
    assert!(ok);
    assert!(
        stderr.contains("declared in the configuration file"),
        "{stderr}"
    );
}

#[tokio::test]
async fn carrier_commands_reject_bad_input_with_the_fix() {
    let dir = data_dir();
    let dir = dir.path();
    let listed = admin(dir, &["admin", "carrier", "list"]).await;
    assert_eq!(listed["carriers"][0]["built_in"], true);
    assert_eq!(listed["carriers"][0]["name"], "Sandbox Wireless");
    let cases: &[(&[&str], &str)] = &[
        (
            &["add", "--id", "5", "--name", "X", "--prefixes", "+1310"],
            "1–15 digits",
        ),
        (
            &[
                "add",
                "--id",
                "5",
                "--name",
                "X",
                "--prefixes",
                "1234567890123456",
            ],
            "1–15 digits",
        ),
        (
            &["add", "--id", "5", "--name", "X", "--prefixes", "044"],
            "country code",
        ),
        (
            &["add", "--id", "5", "--name", "X", "--connector", "http"],
            "not one of sandbox, smpp, mm7",
        ),
        (&["add", "--id", "0", "--name", "X"], "positive"),
        (&["add", "--id", "5", "--name", " "], "1–64 characters"),
        (&["update", "--id", "8", "--name", "X"], "no carrier 8"),
        (&["remove", "--id", "8"], "no carrier 8"),
        (&["import-ported", "/nonexistent.csv"], "cannot read"),
        (&["remove-ported", "hello"], "is not a phone number"),
    ];
    for (args, expected) in cases {
        let mut full = vec!["admin", "carrier"];
        full.extend_from_slice(args);
        let (ok, json, stderr) = admin_outcome(dir, &full).await;
        assert!(!ok, "{args:?} succeeded");
        let error = json["error"].as_str().unwrap_or_default();
        assert!(error.contains(expected), "{args:?}: {error}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    admin(
        dir,
        &[
            "admin",
            "carrier",
            "add",
            "--id",
            "5",
            "--name",
            "A",
            "--prefixes",
            "44",
        ],
    )
    .await;
    let (ok, json, _) = admin_outcome(
        dir,
        &["admin", "carrier", "add", "--id", "5", "--name", "B"],
    )
    .await;
    assert!(!ok);
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("carrier update --id 5"),
        "{json}"
    );
    let (ok, json, _) = admin_outcome(
        dir,
        &[
            "admin",
            "carrier",
            "add",
            "--id",
            "6",
            "--name",
            "B",
            "--prefixes",
            "44",
        ],
    )
    .await;
    assert!(!ok);
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("prefix 44 belongs to carrier 5"),
        "{json}"
    );
}
