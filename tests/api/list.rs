//! Lists and blasts (spec section 5.5, 6.3): every `list.*` method in XML
//! and JSON, their error codes, the CSV export, and list.send end to end
//! through the sandbox carrier.

use serde_json::json;

use crate::common::*;

/// Creates a list and returns its id.
async fn create_list(server: &Server, creds: &Creds, name: &str) -> String {
    let resp = server.call(creds, "list.create", &[("name", name)]).await;
    assert_code(&resp, 1);
    resp.xml().child("list").attr("id").to_string()
}

async fn append(server: &Server, creds: &Creds, list_id: &str, numbers: &str) -> Resp {
    server
        .call(
            creds,
            "list.append",
            &[("list_id", list_id), ("numbers", numbers)],
        )
        .await
}

/// `<statistics>` children as (name, plain text) in document order.
fn statistics(resp: &Resp) -> Vec<(String, String)> {
    let xml = resp.xml();
    let stats = xml.child("statistics");
    stats
        .children
        .iter()
        .map(|c| {
            assert!(!c.cdata, "{} should be plain text", c.name);
            (c.name.clone(), c.text.clone())
        })
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// An RFC 3339 UTC timestamp such as `2012-02-27T05:21:50Z`.
fn is_rfc3339_utc(value: &str) -> bool {
    let b = value.as_bytes();
    b.len() == 20
        && value.ends_with('Z')
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && value
            .chars()
            .enumerate()
            .all(|(i, c)| [4, 7, 10, 13, 16, 19].contains(&i) || c.is_ascii_digit())
}

#[tokio::test]
async fn create_answers_the_list_id_in_xml_and_as_a_json_number() {
    let server = Server::start().await;
    let creds = server.client().await;
    let resp = server
        .call(&creds, "list.create", &[("name", "spring")])
        .await;
    assert_code(&resp, 1);
    let id = resp.xml().child("list").attr("id").to_string();
    assert_eq!(
        resp.body,
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><response status="success" code="1"><message><![CDATA[list created]]></message><list id="{id}"/></response>"#
        )
    );
    let body = server
        .call_json(&creds, "list.create", &[("name", "summer")])
        .await;
    let list_id = body["response"]["list_id"].as_i64().expect("a JSON number");
    assert!(list_id > id.parse::<i64>().unwrap());
    assert_eq!(
        body,
        json!({"response": {"code": "1", "status": "success", "message": "list created", "list_id": list_id}})
    );
}

#[tokio::test]
async fn create_refuses_missing_bad_and_taken_names_with_445() {
    let server = Server::start().await;
    let creds = server.client().await;
    for name in ["", "   ", &"x".repeat(65), "tab\there"] {
        let resp = server.call(&creds, "list.create", &[("name", name)]).await;
        assert_code(&resp, 445);
    }
    let json = server.call_json(&creds, "list.create", &[]).await;
    assert_eq!(json["response"]["code"], "445");
    assert_eq!(json["response"]["status"], "error");

    let id = create_list(&server, &creds, "vip").await;
    let resp = server
        .call(&creds, "list.create", &[("name", " vip ")])
        .await;
    assert_code(&resp, 445);
    // Another client may use the name; so may this one once the list is destroyed.
    let other = server.client().await;
    create_list(&server, &other, "vip").await;
    let resp = server
        .call(&creds, "list.destroy", &[("list_id", &id), ("name", "vip")])
        .await;
    assert_code(&resp, 1);
    let again = create_list(&server, &creds, "vip").await;
    assert_ne!(again, id);
}

#[tokio::test]
async fn list_shows_the_newest_lists_in_both_formats() {
    let server = Server::start().await;
    let creds = server.client().await;
    let first = create_list(&server, &creds, "first").await;
    let second = create_list(&server, &creds, "second <&>").await;
    let other = server.client().await;
    create_list(&server, &other, "not mine").await;

    let resp = server.call(&creds, "list.list", &[]).await;
    assert_code(&resp, 1);
    let xml = resp.xml();
    assert_eq!(xml.child_names(), ["message", "lists"]);
    assert_eq!(xml.cdata_of("message"), "lists retrieved");
    let lists = xml.child("lists").all("list");
    assert_eq!(lists.len(), 2);
    assert_eq!(lists[0].attr("id"), second);
    assert_eq!(lists[0].attr_names(), ["id"]);
    assert_eq!(lists[0].child_names(), ["name", "type"]);
    assert_eq!(lists[0].cdata_of("name"), "second <&>");
    assert_eq!(lists[0].cdata_of("type"), "uploaded");
    assert_eq!(lists[1].attr("id"), first);

    let json = server.call_json(&creds, "list.list", &[]).await;
    assert_eq!(
        json,
        json!({"response": {"code": "1", "status": "success", "message": "lists retrieved", "lists": [
            {"id": second, "name": "second <&>", "type": "uploaded"},
            {"id": first, "name": "first", "type": "uploaded"},
        ]}})
    );

    let json = server
        .call_json(&creds, "list.list", &[("limit", "1")])
        .await;
    assert_eq!(json["response"]["lists"].as_array().unwrap().len(), 1);
    let resp = server.call(&creds, "list.list", &[("limit", "0")]).await;
    assert_code(&resp, 400);
}

#[tokio::test]
async fn info_reports_name_type_total_and_times() {
    let server = Server::start().await;
    let creds = server.client().await;
    let id = create_list(&server, &creds, "info").await;
    assert_code(
        &append(&server, &creds, &id, "3108675309,3108675310").await,
        1,
    );

    let resp = server.call(&creds, "list.info", &[("list_id", &id)]).await;
    assert_code(&resp, 1);
    let xml = resp.xml();
    assert_eq!(xml.child_names(), ["message", "list"]);
    assert_eq!(xml.cdata_of("message"), "list retrieved");
    let list = xml.child("list");
    assert_eq!(list.attr("id"), id);
    assert_eq!(
        list.child_names(),
        ["name", "type", "total", "created", "updated", "last_used"]
    );
    assert_eq!(list.cdata_of("name"), "info");
    assert_eq!(list.cdata_of("type"), "uploaded");
    assert_eq!(list.text_of("total"), "2");
    assert!(is_rfc3339_utc(list.text_of("created")), "{}", resp.body);
    assert!(is_rfc3339_utc(list.text_of("updated")), "{}", resp.body);
    assert_eq!(list.text_of("last_used"), "");

    let json = server
        .call_json(&creds, "list.info", &[("list_id", &id)])
        .await;
    let list = &json["response"]["list"];
    assert_eq!(json["response"]["message"], "list retrieved");
    let keys: Vec<&str> = list
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys,
        [
            "id",
            "name",
            "type",
            "total",
            "created",
            "updated",
            "last_used"
        ]
    );
    assert_eq!(list["id"], json!(id));
    assert_eq!(list["total"], "2");
    assert_eq!(list["last_used"], "");
    assert!(is_rfc3339_utc(list["created"].as_str().unwrap()));
}

#[tokio::test]
async fn append_counts_duplicates_and_rejects() {
    let server = Server::start().await;
    let creds = server.client().await;
    let id = create_list(&server, &creds, "append").await;
    // Three numbers, one written twice in two forms, two that are not numbers.
    let resp = append(
        &server,
        &creds,
        &id,
        "3108675309, (310) 867-5310,+13108675309,abc\n12,\n2125550100,",
    )
    .await;
    assert_code(&resp, 1);
    assert_eq!(resp.xml().cdata_of("message"), "request processed");
    assert_eq!(
        statistics(&resp),
        pairs(&[("created", "3"), ("duplicate", "1"), ("rejected", "2")])
    );

    // Already members count as duplicates too; JSON carries the same figures.
    let json = server
        .call_json(
            &creds,
            "list.append",
            &[("list_id", &id), ("numbers", "13108675310,4155550100")],
        )
        .await;
    assert_eq!(
        json,
        json!({"response": {"code": "1", "status": "success", "message": "request processed",
            "statistics": {"created": "1", "duplicate": "1", "rejected": "0"}}})
    );
    let json = server
        .call_json(&creds, "list.info", &[("list_id", &id)])
        .await;
    assert_eq!(json["response"]["list"]["total"], "4");
}

#[tokio::test]
async fn append_takes_ten_thousand_numbers_in_one_call() {
    let server = Server::start().await;
    let creds = server.client().await;
    let id = create_list(&server, &creds, "big").await;
    let numbers: Vec<String> = (0..10_000)
        .map(|i| format!("1310{:07}", 2_000_000 + i))
        .collect();
    let resp = append(&server, &creds, &id, &numbers.join(",")).await;
    assert_code(&resp, 1);
    assert_eq!(
        statistics(&resp),
        pairs(&[("created", "10000"), ("duplicate", "0"), ("rejected", "0")])
    );
    // Half again, half new: the overlap is counted, not stored twice.
    let mixed: Vec<String> = (5_000..15_000)
        .map(|i| format!("1310{:07}", 2_000_000 + i))
        .collect();
    let resp = append(&server, &creds, &id, &mixed.join(",")).await;
    assert_eq!(
        statistics(&resp),
        pairs(&[
            ("created", "5000"),
            ("duplicate", "5000"),
            ("rejected", "0")
        ])
    );
    let json = server
        .call_json(&creds, "list.info", &[("list_id", &id)])
        .await;
    assert_eq!(json["response"]["list"]["total"], "15000");
}

#[tokio::test]
async fn more_than_ten_thousand_numbers_is_400() {
    let server = Server::start().await;
    let creds = server.client().await;
    let id = create_list(&server, &creds, "too big").await;
    let numbers: Vec<String> = (0..10_001)
        .map(|i| format!("1310{:07}", 2_000_000 + i))
        .collect();
    let resp = append(&server, &creds, &id, &numbers.join(",")).await;
    assert_code(&resp, 400);
    let resp = server
        .call(
            &creds,
            "list.prune",
            &[("list_id", &id), ("numbers", &numbers.join(","))],
        )
        .await;
    assert_code(&resp, 400);
    // Space-separated numbers count one by one as well.
    let resp = append(&server, &creds, &id, &numbers.join(" ")).await;
    assert_code(&resp, 400);
    let json = server
        .call_json(&creds, "list.info", &[("list_id", &id)])
        .await;
    assert_eq!(json["response"]["list"]["total"], "0");
}

#[tokio::test]
async fn prune_counts_deleted_not_found_and_rejected() {
    let server = Server::start().await;
    let creds = server.client().await;
    let id = create_list(&server, &creds, "prune").await;
    append(&server, &creds, &id, "3108675309,3108675310,3108675311").await;
    let resp = server
        .call(
            &creds,
            "list.prune",
            &[
                ("list_id", &id),
                ("numbers", "+1 310 867 5309\n4155550100, nope, 3108675309"),
            ],
        )
        .await;
    assert_code(&resp, 1);
    assert_eq!(resp.xml().cdata_of("message"), "request processed");
    assert_eq!(
        statistics(&resp),
        pairs(&[("deleted", "1"), ("not_found", "2"), ("rejected", "1")])
    );
    let json = server
        .call_json(
            &creds,
            "list.prune",
            &[("list_id", &id), ("numbers", "3108675310")],
        )
        .await;
    assert_eq!(
        json,
        json!({"response": {"code": "1", "status": "success", "message": "request processed",
            "statistics": {"deleted": "1", "not_found": "0", "rejected": "0"}}})
    );
    let json = server
        .call_json(&creds, "list.info", &[("list_id", &id)])
        .await;
    assert_eq!(json["response"]["list"]["total"], "1");
}

#[tokio::test]
async fn empty_and_destroy_require_the_lists_name() {
    let server = Server::start().await;
    let creds = server.client().await;
    let id = create_list(&server, &creds, "Keep").await;
    append(&server, &creds, &id, "3108675309,3108675310").await;

    for method in ["list.empty", "list.destroy"] {
        let resp = server
            .call(&creds, method, &[("list_id", &id), ("name", "keep")])
            .await;
        assert_code(&resp, 445);
        let resp = server.call(&creds, method, &[("list_id", &id)]).await;
        assert_code(&resp, 445);
    }

    let resp = server
        .call(&creds, "list.empty", &[("list_id", &id), ("name", "Keep")])
        .await;
    assert_code(&resp, 1);
    assert_eq!(
        resp.body,
        r#"<?xml version="1.0" encoding="UTF-8"?><response status="success" code="1"><message><![CDATA[list reset]]></message></response>"#
    );
    let json = server
        .call_json(&creds, "list.info", &[("list_id", &id)])
        .await;
    assert_eq!(json["response"]["list"]["total"], "0");

    let json = server
        .call_json(
            &creds,
            "list.destroy",
            &[("list_id", &id), ("name", "Keep")],
        )
        .await;
    assert_eq!(
        json,
        json!({"response": {"code": "1", "status": "success", "message": "list destroyed"}})
    );
    // Destroyed: every method answers 444 now, empty included.
    let resp = server.call(&creds, "list.info", &[("list_id", &id)]).await;
    assert_code(&resp, 444);
    let resp = server
        .call(&creds, "list.empty", &[("list_id", &id), ("name", "Keep")])
        .await;
    assert_code(&resp, 444);
    let json = server.call_json(&creds, "list.list", &[]).await;
    assert_eq!(json["response"]["lists"], json!([]));
}

#[tokio::test]
async fn list_ids_that_are_not_the_clients_live_lists_get_444() {
    let server = Server::start().await;
    let creds = server.client().await;
    let other = server.client().await;
    let theirs = create_list(&server, &other, "theirs").await;
    let calls: [(&str, Vec<(&str, &str)>); 7] = [
        ("list.info", vec![]),
        ("list.append", vec![("numbers", "3108675309")]),
        ("list.prune", vec![("numbers", "3108675309")]),
        ("list.empty", vec![("name", "theirs")]),
        ("list.destroy", vec![("name", "theirs")]),
        ("list.download", vec![]),
        ("list.download", vec![("format", "json")]),
    ];
    for (method, extra) in &calls {
        for list_id in ["abc", "0", "-1", "1.5", "99999", theirs.as_str()] {
            let mut params = vec![("list_id", list_id)];
            params.extend(extra.iter().cloned());
            let resp = server.call(&creds, method, &params).await;
            assert_code(&resp, 444);
        }
        // Absent list_id: a missing required parameter.
        let resp = server.call(&creds, method, extra).await;
        assert_code(&resp, 443);
    }
    // The other client's list is untouched.
    let json = server
        .call_json(&other, "list.info", &[("list_id", &theirs)])
        .await;
    assert_eq!(json["response"]["code"], "1");
}

#[tokio::test]
async fn append_and_prune_without_numbers_get_443() {
    let server = Server::start().await;
    let creds = server.client().await;
    let id = create_list(&server, &creds, "n").await;
    for method in ["list.append", "list.prune"] {
        let resp = server.call(&creds, method, &[("list_id", &id)]).await;
        assert_code(&resp, 443);
        let json = server
            .call_json(&creds, method, &[("list_id", &id), ("numbers", "")])
            .await;
        assert_eq!(json["response"]["code"], "443");
    }
}

#[tokio::test]
async fn download_lists_members_with_their_time_zones() {
    let server = Server::start().await;
    let creds = server.client().await;
    let id = create_list(&server, &creds, "export").await;
    append(&server, &creds, &id, "3108675309,2125550100,+447911123456").await;

    let resp = server
        .call(&creds, "list.download", &[("list_id", &id)])
        .await;
    assert_code(&resp, 1);
    assert_eq!(
        resp.header("content-type"),
        Some("application/xml; charset=utf-8")
    );
    let xml = resp.xml();
    assert_eq!(xml.child_names(), ["message", "recipients"]);
    assert_eq!(xml.cdata_of("message"), "data exported");
    let rows: Vec<(String, String)> = xml
        .child("recipients")
        .all("recipient")
        .iter()
        .map(|r| {
            assert_eq!(r.child_names(), ["number", "time_zone"]);
            (
                r.cdata_of("number").to_string(),
                r.cdata_of("time_zone").to_string(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        pairs(&[
            ("12125550100", "America/New_York"),
            ("13108675309", "America/Los_Angeles"),
            ("447911123456", ""),
        ])
    );

    let resp = server
        .call(
            &creds,
            "list.download",
            &[("list_id", &id), ("format", "json")],
        )
        .await;
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(
        resp.json(),
        json!({"response": {"code": "1", "status": "success", "message": "data exported", "recipients": [
            {"number": "12125550100", "time_zone": "America/New_York"},
            {"number": "13108675309", "time_zone": "America/Los_Angeles"},
            {"number": "447911123456", "time_zone": ""},
        ]}})
    );
}

#[tokio::test]
async fn download_as_csv_streams_every_member() {
    let server = Server::start().await;
    let creds = server.client().await;
    let id = create_list(&server, &creds, "csv").await;
    // More than one page of the export.
    let numbers: Vec<String> = (0..2_500)
        .map(|i| format!("1415{:07}", 2_000_000 + i))
        .collect();
    assert_code(&append(&server, &creds, &id, &numbers.join(",")).await, 1);

    let resp = server
        .call(
            &creds,
            "list.download",
            &[("list_id", &id), ("format", "CSV")],
        )
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("text/csv; charset=utf-8"));
    let mut lines = resp.body.lines();
    assert_eq!(lines.next(), Some("number,time_zone"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2_500);
    assert_eq!(rows[0], "14152000000,America/Los_Angeles");
    assert_eq!(rows[2_499], "14152002499,America/Los_Angeles");

    // An empty list is the header alone; a failure is an XML envelope.
    let empty = create_list(&server, &creds, "empty").await;
    let resp = server
        .call(
            &creds,
            "list.download",
            &[("list_id", &empty), ("format", "csv")],
        )
        .await;
    assert_eq!(resp.body, "number,time_zone\n");
    let resp = server
        .call(
            &creds,
            "list.download",
            &[("list_id", "424242"), ("format", "csv")],
        )
        .await;
    assert_eq!(
        resp.header("content-type"),
        Some("application/xml; charset=utf-8")
    );
    assert_code(&resp, 444);
}

// ---------------------------------------------------------------------------
// list.send: blasts.

/// A campaign of this client sending from short code 21534.
async fn campaign(server: &Server, creds: &Creds) -> String {
    let campaign = campaign_settings(creds, "Blasts");
    let id = server
        .app
        .store
        .create_campaign(&campaign, None)
        .await
        .unwrap();
    id.to_string()
}

async fn opt_out(server: &Server, number: &str, campaign_id: &str) {
    moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query(
            "INSERT INTO opt_status (number, campaign_id, status, source, updated_at) VALUES ($1, $2, -2, 'api', 0)",
        )
        .bind(number)
        .bind(campaign_id.parse::<i64>().unwrap())
        .execute(writer)
        .await
        .unwrap();
    });
}

/// (message_id, hash, recipient) of a blast's transactions, by recipient.
async fn blast_transactions(server: &Server, list_id: &str) -> Vec<(String, String, String)> {
    let rows: Vec<(i64, String, String)> = moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query_as(
            "SELECT t.id, t.hash, t.recipient FROM transactions t JOIN blasts b ON b.id = t.blast_id
             WHERE b.list_id = $1 ORDER BY t.recipient",
        )
        .bind(list_id.parse::<i64>().unwrap())
        .fetch_all(pool)
        .await
        .unwrap()
    });
    rows.into_iter()
        .map(|(id, hash, to)| (id.to_string(), hash, to))
        .collect()
}

/// Polls transaction.lookup until the transaction ends; returns its status.
async fn final_status(server: &Server, creds: &Creds, message_id: &str, hash: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let resp = server
            .call(
                creds,
                "transaction.lookup",
                &[("message_id", message_id), ("hash", hash)],
            )
            .await;
        assert_code(&resp, 1);
        let status = resp.xml().cdata_of("status").to_string();
        if status == "COMPLETE" || status == "FAILED" {
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{message_id} still {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn send_makes_one_transaction_per_member_and_skips_opted_out_ones() {
    let server = Server::start().await;
    let creds = server.client().await;
    let campaign_id = campaign(&server, &creds).await;
    let list_id = create_list(&server, &creds, "blast").await;
    append(
        &server,
        &creds,
        &list_id,
        "3108675309,3108675310,3108675311,3108675312",
    )
    .await;
    opt_out(&server, "13108675312", &campaign_id).await;
    let receiver = Receiver::start().await;

    let resp = server
        .call(
            &creds,
            "list.send",
            &[
                ("list_id", &list_id),
                ("campaign_id", &campaign_id),
                ("message", "Spring sale today"),
                ("callback", &format!("{}/blast", receiver.base)),
            ],
        )
        .await;
    assert_code(&resp, 1);
    assert_eq!(
        resp.body,
        r#"<?xml version="1.0" encoding="UTF-8"?><response status="success" code="1"><message><![CDATA[queued]]></message></response>"#
    );

    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].path, "/blast");
    assert_eq!(got[0].headers["content-type"], "application/xml");
    assert_eq!(
        got[0].body,
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><response status="success" code="1"><message><![CDATA[list send complete]]></message><list_id>{list_id}</list_id><total>4</total><sent>3</sent><skipped>1</skipped><failed>0</failed></response>"#
        )
    );

    // Three transactions, all delivered; none for the opted-out member.
    let sent = blast_transactions(&server, &list_id).await;
    let recipients: Vec<&str> = sent.iter().map(|(_, _, to)| to.as_str()).collect();
    assert_eq!(recipients, ["13108675309", "13108675310", "13108675311"]);
    for (message_id, hash, _) in &sent {
        assert_eq!(
            final_status(&server, &creds, message_id, hash).await,
            "COMPLETE"
        );
    }

    let json = server
        .call_json(&creds, "list.info", &[("list_id", &list_id)])
        .await;
    assert!(is_rfc3339_utc(
        json["response"]["list"]["last_used"].as_str().unwrap()
    ));
}

#[tokio::test]
async fn send_counts_failed_members_and_keeps_an_email_callback() {
    let server = Server::start().await;
    let creds = server.client().await;
    let campaign_id = campaign(&server, &creds).await;
    let list_id = create_list(&server, &creds, "mixed").await;
    // Delivered; failed by the carrier (600); refused at once, no carrier (603).
    append(
        &server,
        &creds,
        &list_id,
        "3108675309,3105550600,3105550603",
    )
    .await;

    let json = server
        .call_json(
            &creds,
            "list.send",
            &[
                ("list_id", &list_id),
                ("campaign_id", &campaign_id),
                ("message", "Hello"),
                ("callback", "ops@example.com"),
            ],
        )
        .await;
    assert_eq!(
        json,
        json!({"response": {"code": "1", "status": "success", "message": "queued"}})
    );

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let blast = loop {
        let row: (String, String, i64, i64, i64, i64) = moms::with_db!(
            server.app.store,
            |pool, writer| {
                sqlx::query_as(
                    "SELECT state, callback, total, sent, skipped, failed FROM blasts WHERE list_id = $1",
                )
                .bind(list_id.parse::<i64>().unwrap())
                .fetch_one(pool)
                .await
                .unwrap()
            }
        );
        if row.0 == "done" {
            break row;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "blast still {}",
            row.0
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(
        blast,
        (
            "done".to_string(),
            "ops@example.com".to_string(),
            3,
            1,
            1,
            1
        )
    );
    // An e-mail summary is no callback POST: it waits as a mail (no relay here).
    let hooks: i64 = moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query_scalar("SELECT COUNT(*) FROM webhooks WHERE url NOT LIKE 'mailto:%'")
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert_eq!(hooks, 0);
    let sent = blast_transactions(&server, &list_id).await;
    assert_eq!(sent.len(), 2);
    assert_eq!(
        final_status(&server, &creds, &sent[0].0, &sent[0].1).await,
        "FAILED"
    );
}

#[tokio::test]
async fn send_to_an_empty_list_ends_at_once() {
    let server = Server::start().await;
    let creds = server.client().await;
    let campaign_id = campaign(&server, &creds).await;
    let list_id = create_list(&server, &creds, "nobody").await;
    let receiver = Receiver::start().await;
    let resp = server
        .call(
            &creds,
            "list.send",
            &[
                ("list_id", &list_id),
                ("campaign_id", &campaign_id),
                ("message", "Anyone?"),
                ("callback", &format!("{}/empty", receiver.base)),
            ],
        )
        .await;
    assert_code(&resp, 1);
    let got = receiver.wait_for(1).await;
    assert!(
        got[0].body.ends_with(&format!(
            "<list_id>{list_id}</list_id><total>0</total><sent>0</sent><skipped>0</skipped><failed>0</failed></response>"
        )),
        "{}",
        got[0].body
    );
}

#[tokio::test]
async fn send_checks_campaign_then_list_then_the_message() {
    let server = Server::start().await;
    let creds = server.client().await;
    let campaign_id = campaign(&server, &creds).await;
    let list_id = create_list(&server, &creds, "checks").await;
    let other = server.client().await;
    let theirs = create_list(&server, &other, "theirs").await;
    let cases: Vec<(u16, Vec<(&str, &str)>)> = vec![
        (430, vec![("list_id", "x")]),
        (431, vec![("campaign_id", "x")]),
        (443, vec![("campaign_id", &campaign_id)]),
        (444, vec![("campaign_id", &campaign_id), ("list_id", "0")]),
        (
            444,
            vec![("campaign_id", &campaign_id), ("list_id", &theirs)],
        ),
        (439, vec![("campaign_id", "99999"), ("list_id", &list_id)]),
        (
            432,
            vec![
                ("campaign_id", "99999"),
                ("list_id", &list_id),
                ("message", "hi"),
            ],
        ),
        (
            400,
            vec![
                ("campaign_id", &campaign_id),
                ("list_id", &list_id),
                ("message", "hi"),
                ("callback", "not a url"),
            ],
        ),
    ];
    for (code, params) in &cases {
        let resp = server.call(&creds, "list.send", params).await;
        assert_code(&resp, *code);
        let mut params = params.clone();
        params.push(("format", "json"));
        let json = server.call(&creds, "list.send", &params).await.json();
        assert_eq!(json["response"]["code"], code.to_string(), "{params:?}");
    }
    // Nothing was queued, and the list was never used.
    let blasts: i64 = moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query_scalar("SELECT COUNT(*) FROM blasts")
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert_eq!(blasts, 0);
    let json = server
        .call_json(&creds, "list.info", &[("list_id", &list_id)])
        .await;
    assert_eq!(json["response"]["list"]["last_used"], "");
}

/// Waits until the list's blast is done; returns (total, queued, sent, skipped, failed).
async fn blast_done(server: &Server, list_id: &str) -> (i64, i64, i64, i64, i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (state, total, queued, sent, skipped, failed): (String, i64, i64, i64, i64, i64) = moms::with_db!(
            server.app.store,
            |pool, writer| {
                sqlx::query_as(
                    "SELECT state, total, queued, sent, skipped, failed FROM blasts WHERE list_id = $1",
                )
                .bind(list_id.parse::<i64>().unwrap())
                .fetch_one(pool)
                .await
                .unwrap()
            }
        );
        if state == "done" {
            return (total, queued, sent, skipped, failed);
        }
        assert!(std::time::Instant::now() < deadline, "blast still {state}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn send_pages_through_a_large_list_sending_every_member_once() {
    let server = Server::start().await;
    let creds = server.client().await;
    let campaign_id = campaign(&server, &creds).await;
    let list_id = create_list(&server, &creds, "large").await;
    // More than one page of members (pages are 5,000).
    let numbers: Vec<String> = (0..6_200)
        .map(|i| format!("1212{:07}", 2_000_000 + i))
        .collect();
    assert_code(
        &append(&server, &creds, &list_id, &numbers.join(",")).await,
        1,
    );
    let resp = server
        .call(
            &creds,
            "list.send",
            &[
                ("list_id", &list_id),
                ("campaign_id", &campaign_id),
                ("message", "Big news"),
            ],
        )
        .await;
    assert_code(&resp, 1);
    assert_eq!(
        blast_done(&server, &list_id).await,
        (6200, 6200, 6200, 0, 0)
    );
    let sent = blast_transactions(&server, &list_id).await;
    let recipients: Vec<&str> = sent.iter().map(|(_, _, to)| to.as_str()).collect();
    assert_eq!(recipients, numbers, "every member once, none twice");
}

#[tokio::test]
async fn a_blast_page_whose_cursor_moved_meanwhile_is_not_written() {
    // A store with no workers, so nothing but this test moves the cursor.
    let dir = data_dir();
    let store = moms::store::Store::open(&test_config(dir.path()))
        .await
        .unwrap();
    let creds = new_client(&store, "Pages", &["21534"]).await;
    let client_id: i64 = creds.client_id.parse().unwrap();
    let campaign_id = store
        .create_campaign(&campaign_settings(&creds, "Pages"), None)
        .await
        .unwrap();
    let list_id = store
        .create_list(client_id, "pages")
        .await
        .unwrap()
        .unwrap();
    let blast_id = store
        .create_blast(&moms::store::blast::NewBlast {
            client_id,
            list_id,
            campaign_id,
            request: "{}".into(),
            callback: String::new(),
        })
        .await
        .unwrap();
    let send = |to: &str| moms::store::sends::NewTransaction {
        client_id,
        campaign_id,
        recipient: to.to_string(),
        kind: "sms",
        blast_id: Some(blast_id),
        ..Default::default()
    };
    let first = moms::store::blast::BlastPage {
        blast_id,
        from: String::new(),
        to: "12125550102".into(),
        sends: vec![send("12125550101"), send("12125550102")],
        skipped: 1,
        ..Default::default()
    };
    assert_eq!(
        store.queue_blast_page(first.clone()).await.unwrap(),
        Some(0)
    );
    // The same page again, as a second worker that read the old cursor.
    assert_eq!(store.queue_blast_page(first).await.unwrap(), None);
    let next = moms::store::blast::BlastPage {
        blast_id,
        from: "12125550102".into(),
        to: "12125550103".into(),
        sends: vec![send("12125550103")],
        ..Default::default()
    };
    assert_eq!(store.queue_blast_page(next).await.unwrap(), Some(0));
    let blast = store.blast(blast_id).await.unwrap().unwrap();
    assert_eq!(
        (blast.cursor.as_str(), blast.queued, blast.skipped),
        ("12125550103", 3, 1)
    );
    let recipients: Vec<String> = moms::with_db!(store, |pool, writer| {
        sqlx::query_scalar("SELECT recipient FROM transactions ORDER BY recipient")
            .fetch_all(pool)
            .await
            .unwrap()
    });
    assert_eq!(recipients, ["12125550101", "12125550102", "12125550103"]);
}
