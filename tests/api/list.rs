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
