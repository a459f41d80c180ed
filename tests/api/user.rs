//! user.* (spec section 5.3): opt status, carrier and handset, transactions.

use moms::store::campaign::Campaign;
use moms::store::sends::NewTransaction;
use serde_json::json;

use crate::common::*;

const XML_HEAD: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

/// A live campaign of `creds` on short code 21534.
pub async fn campaign(server: &Server, creds: &Creds, name: &str, keyword: &str) -> i64 {
    let campaign = Campaign {
        keyword: keyword.into(),
        ..campaign_settings(creds, name)
    };
    server
        .app
        .store
        .create_campaign(&campaign, Some("21534"))
        .await
        .unwrap()
}

/// Stores a sent message straight through the store (transaction.send is
/// not what is tested here).
async fn sent(server: &Server, creds: &Creds, campaign_id: i64, to: &str, to_name: &str) -> i64 {
    let accepted = server
        .app
        .store
        .accept_now(NewTransaction {
            client_id: creds.client_id.parse().unwrap(),
            campaign_id,
            sender: "21534".into(),
            from_name: "Acme".into(),
            recipient: to.into(),
            to_input: to.into(),
            to_name: to_name.into(),
            kind: "sms",
            body: "hello".into(),
            expires_ms: i64::MAX / 2,
            ..NewTransaction::default()
        })
        .await
        .unwrap();
    accepted.message_id
}

#[tokio::test]
async fn setopt_then_getopt_shows_the_status_in_xml_and_json() {
    let server = Server::start().await;
    let creds = server.client().await;
    let first = campaign(&server, &creds, "first", "").await;
    let second = campaign(&server, &creds, "second", "").await;

    let resp = server
        .call(
            &creds,
            "user.setopt",
            &[
                ("number", "(310) 867-5309"),
                ("campaign_id", &first.to_string()),
                ("status_code", "-2"),
            ],
        )
        .await;
    assert_code(&resp, 1);
    assert_eq!(
        resp.body,
        format!(
            r#"{XML_HEAD}<response status="success" code="1"><message><![CDATA[opt status updated]]></message><number><![CDATA[13108675309]]></number><campaign id="{first}"><status code="-2"><![CDATA[OPTEDOUT]]></status></campaign></response>"#
        )
    );
    let json = server
        .call_json(
            &creds,
            "user.setopt",
            &[
                ("number", "3108675309"),
                ("campaign_id", &second.to_string()),
                ("status_code", "1"),
            ],
        )
        .await;
    assert_eq!(
        json,
        json!({"response": {"code": "1", "status": "success", "message": "opt status updated",
            "number": "13108675309",
            "campaign": {"id": second.to_string(), "status_code": "1", "status": "OPTEDIN"}}})
    );

    // One campaign named.
    let resp = server
        .call(
            &creds,
            "user.getopt",
            &[
                ("number", "+13108675309"),
                ("campaign_id", &first.to_string()),
            ],
        )
        .await;
    assert_code(&resp, 1);
    let xml = resp.xml();
    assert_eq!(xml.child_names(), vec!["message", "number", "campaign"]);
    assert_eq!(xml.cdata_of("message"), "opt status retrieved");
    assert_eq!(xml.cdata_of("number"), "13108675309");
    let status = xml.child("campaign").child("status");
    assert_eq!(status.attr("code"), "-2");
    assert!(status.cdata);
    assert_eq!(status.text, "OPTEDOUT");

    // Every campaign that has seen the number.
    let resp = server
        .call(&creds, "user.getopt", &[("number", "3108675309")])
        .await;
    assert_eq!(
        resp.body,
        format!(
            r#"{XML_HEAD}<response status="success" code="1"><message><![CDATA[opt status retrieved]]></message><number><![CDATA[13108675309]]></number><campaign id="{first}"><status code="-2"><![CDATA[OPTEDOUT]]></status></campaign><campaign id="{second}"><status code="1"><![CDATA[OPTEDIN]]></status></campaign></response>"#
        )
    );
    let json = server
        .call_json(&creds, "user.getopt", &[("number", "3108675309")])
        .await;
    assert_eq!(
        json,
        json!({"response": {"code": "1", "status": "success", "message": "opt status retrieved",
            "number": "13108675309",
            "campaigns": [
                {"campaign_id": first.to_string(), "status_code": "-2", "status": "OPTEDOUT"},
                {"campaign_id": second.to_string(), "status_code": "1", "status": "OPTEDIN"}]}})
    );

    // The change is proven by the store: source and audit trail.
    let source: String = moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query_scalar(
            "SELECT source FROM opt_status WHERE number = '13108675309' AND campaign_id = $1",
        )
        .bind(first)
        .fetch_one(pool)
        .await
        .unwrap()
    });
    assert_eq!(source, "api");
    let audited: i64 = moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM audit WHERE action = 'opt.api' AND detail LIKE '13108675309 %'",
        )
        .fetch_one(pool)
        .await
        .unwrap()
    });
    assert_eq!(audited, 2);
}

#[tokio::test]
async fn getopt_of_an_unseen_number_is_unseen_for_a_named_campaign_only() {
    let server = Server::start().await;
    let creds = server.client().await;
    let id = campaign(&server, &creds, "c", "").await;
    let resp = server
        .call(
            &creds,
            "user.getopt",
            &[("number", "4155550123"), ("campaign_id", &id.to_string())],
        )
        .await;
    assert_eq!(
        resp.body,
        format!(
            r#"{XML_HEAD}<response status="success" code="1"><message><![CDATA[opt status retrieved]]></message><number><![CDATA[14155550123]]></number><campaign id="{id}"><status code="-1"><![CDATA[UNSEEN]]></status></campaign></response>"#
        )
    );
    let json = server
        .call_json(&creds, "user.getopt", &[("number", "4155550123")])
        .await;
    assert_eq!(
        json,
        json!({"response": {"code": "1", "status": "success", "message": "opt status retrieved",
            "number": "14155550123", "campaigns": []}})
    );
}

#[tokio::test]
async fn setopt_grey_then_unseen_forgets_the_number() {
    let server = Server::start().await;
    let creds = server.client().await;
    let id = campaign(&server, &creds, "c", "").await;
    let cid = id.to_string();
    for (code, label) in [("0", "GREY"), ("-1", "UNSEEN")] {
        let json = server
            .call_json(
                &creds,
                "user.setopt",
                &[
                    ("number", "4155550123"),
                    ("campaign_id", &cid),
                    ("status_code", code),
                ],
            )
            .await;
        assert_eq!(json["response"]["campaign"]["status"], label);
    }
    let json = server
        .call_json(&creds, "user.getopt", &[("number", "4155550123")])
        .await;
    assert_eq!(json["response"]["campaigns"], json!([]));
}

#[tokio::test]
async fn setopt_and_getopt_reject_missing_and_invalid_parameters() {
    let server = Server::start().await;
    let creds = server.client().await;
    let other = server.client().await;
    let id = campaign(&server, &creds, "mine", "").await.to_string();
    let theirs = campaign(&server, &other, "theirs", "").await.to_string();
    let n = ("number", "3108675309");
    let c = ("campaign_id", id.as_str());
    let s = ("status_code", "1");

    let resp = server.call(&creds, "user.setopt", &[c, s]).await;
    assert_code(&resp, 443);

    let resp = server
        .call(&creds, "user.setopt", &[("number", "abc"), c, s])
        .await;
    assert_code(&resp, 602);
    assert_eq!(
        resp.body,
        r#"<?xml version="1.0" encoding="UTF-8"?><response status="error" code="602"><message><![CDATA[User type unknown. Returns which user and user input.]]></message><number><![CDATA[]]></number><input><![CDATA[abc]]></input></response>"#
    );
    let json = server
        .call_json(&creds, "user.setopt", &[("number", "abc"), c, s])
        .await;
    assert_eq!(json["response"]["code"], "602");
    assert_eq!(json["response"]["number"], "");
    assert_eq!(json["response"]["input"], "abc");

    assert_code(&server.call(&creds, "user.setopt", &[n, s]).await, 430);
    assert_code(
        &server
            .call(&creds, "user.setopt", &[n, ("campaign_id", "x1"), s])
            .await,
        431,
    );
    assert_code(&server.call(&creds, "user.setopt", &[n, c]).await, 443);
    for bad in ["2", "-3", "yes", "1.0"] {
        let resp = server
            .call(&creds, "user.setopt", &[n, c, ("status_code", bad)])
            .await;
        assert_code(&resp, 400);
        assert!(resp.message().contains("status_code"), "{}", resp.body);
    }
    // A campaign that does not exist and another client's are the same 432.
    for missing in ["999999", theirs.as_str()] {
        let resp = server
            .call(&creds, "user.setopt", &[n, ("campaign_id", missing), s])
            .await;
        assert_code(&resp, 432);
        let resp = server
            .call(&creds, "user.getopt", &[n, ("campaign_id", missing)])
            .await;
        assert_code(&resp, 432);
    }
    // Parameters are checked in the spec's order: number before campaign_id.
    let resp = server
        .call(
            &creds,
            "user.setopt",
            &[("number", "12"), ("campaign_id", "x")],
        )
        .await;
    assert_code(&resp, 602);

    assert_code(&server.call(&creds, "user.getopt", &[c]).await, 443);
    assert_code(
        &server
            .call(&creds, "user.getopt", &[n, ("campaign_id", "0")])
            .await,
        431,
    );
    // Nothing of the failed calls was written.
    let json = server.call_json(&creds, "user.getopt", &[n, c]).await;
    assert_eq!(json["response"]["campaigns"][0]["status_code"], "-1");
}

#[tokio::test]
async fn info_shows_unknown_until_lookup_resolves_and_uncache_forgets() {
    let server = Server::start().await;
    let creds = server.client().await;
    let n = ("number", "310-867-5309");

    let resp = server.call(&creds, "user.info", &[n]).await;
    assert_eq!(
        resp.body,
        r#"<?xml version="1.0" encoding="UTF-8"?><response status="success" code="1"><message><![CDATA[user info]]></message><number><![CDATA[13108675309]]></number><carrier id="0"><![CDATA[Unknown]]></carrier><handset id="0"><![CDATA[Unknown]]></handset></response>"#
    );

    let resp = server.call(&creds, "user.lookup", &[n]).await;
    assert_code(&resp, 1);
    let xml = resp.xml();
    assert_eq!(
        xml.child_names(),
        vec!["message", "number", "carrier", "handset"]
    );
    assert_eq!(xml.cdata_of("message"), "user info");
    assert_eq!(xml.child("carrier").attr("id"), "1");
    assert_eq!(xml.cdata_of("carrier"), "Sandbox Wireless");

    // The phone fetched a smart URL: its handset is known now.
    server
        .app
        .store
        .record_handset(
            "13108675309",
            "Mozilla/5.0 (Linux; U; Android 4.0.2; en-us; Galaxy Nexus Build/ICL53F) AppleWebKit/534.30",
        )
        .await
        .unwrap();
    let json = server.call_json(&creds, "user.info", &[n]).await;
    let handset_id = json["response"]["handset_id"].as_str().unwrap().to_string();
    assert_ne!(handset_id, "0");
    assert_eq!(
        json,
        json!({"response": {"code": "1", "status": "success", "message": "user info",
            "number": "13108675309", "carrier_id": "1", "carrier_name": "Sandbox Wireless",
            "handset_id": handset_id, "handset_name": "Galaxy Nexus"}})
    );

    let resp = server.call(&creds, "user.uncache", &[n]).await;
    assert_eq!(
        resp.body,
        r#"<?xml version="1.0" encoding="UTF-8"?><response status="success" code="1"><message><![CDATA[user uncached]]></message><number><![CDATA[13108675309]]></number></response>"#
    );
    let json = server.call_json(&creds, "user.uncache", &[n]).await;
    assert_eq!(
        json,
        json!({"response": {"code": "1", "status": "success", "message": "user uncached", "number": "13108675309"}})
    );
    let json = server.call_json(&creds, "user.info", &[n]).await;
    assert_eq!(json["response"]["carrier_id"], "0");
    assert_eq!(json["response"]["carrier_name"], "Unknown");
    assert_eq!(json["response"]["handset_id"], "0");
    assert_eq!(json["response"]["handset_name"], "Unknown");

    for method in [
        "user.info",
        "user.lookup",
        "user.uncache",
        "user.transactions",
    ] {
        assert_code(&server.call(&creds, method, &[]).await, 443);
    }
}

#[tokio::test]
async fn lookup_answers_603_and_605_for_the_sandbox_test_numbers() {
    let server = Server::start().await;
    let creds = server.client().await;

    let resp = server
        .call(&creds, "user.lookup", &[("number", "212-555-0603")])
        .await;
    assert_code(&resp, 603);
    assert_eq!(
        resp.body,
        r#"<?xml version="1.0" encoding="UTF-8"?><response status="error" code="603"><message><![CDATA[User carrier unknown. Returns unsupported user phone.]]></message><number><![CDATA[12125550603]]></number></response>"#
    );

    let resp = server
        .call(&creds, "user.lookup", &[("number", "212-555-0605")])
        .await;
    assert_code(&resp, 605);
    let xml = resp.xml();
    assert_eq!(xml.child_names(), vec!["message", "number", "carrier"]);
    assert_eq!(xml.cdata_of("number"), "12125550605");
    assert_eq!(xml.child("carrier").attr("id"), "2");
    assert_eq!(xml.cdata_of("carrier"), "Sandbox Unserved");
    let json = server
        .call_json(&creds, "user.lookup", &[("number", "212-555-0605")])
        .await;
    assert_eq!(json["response"]["code"], "605");
    assert_eq!(json["response"]["number"], "12125550605");
    assert_eq!(json["response"]["carrier_id"], "2");
    assert_eq!(json["response"]["carrier_name"], "Sandbox Unserved");

    // Only user.lookup answers 603/605; user.info shows what lookup stored.
    let json = server
        .call_json(&creds, "user.info", &[("number", "212-555-0605")])
        .await;
    assert_eq!(json["response"]["code"], "1");
    assert_eq!(json["response"]["carrier_id"], "2");
    assert_eq!(json["response"]["carrier_name"], "Sandbox Unserved");
    let json = server
        .call_json(&creds, "user.info", &[("number", "212-555-0603")])
        .await;
    assert_eq!(json["response"]["code"], "1");
    assert_eq!(json["response"]["carrier_id"], "0");
}

#[tokio::test]
async fn info_and_lookup_answer_602_for_unparseable_and_toll_free_numbers() {
    let server = Server::start().await;
    let creds = server.client().await;
    for method in ["user.info", "user.lookup"] {
        let resp = server
            .call(&creds, method, &[("number", "1-800-FLOWERS")])
            .await;
        assert_code(&resp, 602);
        let xml = resp.xml();
        assert_eq!(xml.child_names(), vec!["message", "number", "input"]);
        assert_eq!(xml.cdata_of("number"), "");
        assert_eq!(xml.cdata_of("input"), "1-800-FLOWERS");

        let resp = server
            .call(&creds, method, &[("number", "800-555-1234")])
            .await;
        assert_code(&resp, 602);
        let xml = resp.xml();
        assert_eq!(xml.cdata_of("number"), "18005551234");
        assert_eq!(xml.cdata_of("input"), "800-555-1234");

        let json = server
            .call_json(&creds, method, &[("number", "212-555-0602")])
            .await;
        assert_eq!(json["response"]["code"], "602", "{json}");
        assert_eq!(json["response"]["number"], "12125550602");
        assert_eq!(json["response"]["input"], "212-555-0602");
    }
    // uncache and transactions name the number only to find stored data.
    let resp = server
        .call(&creds, "user.uncache", &[("number", "x")])
        .await;
    assert_code(&resp, 602);
    let resp = server
        .call(&creds, "user.transactions", &[("number", "12")])
        .await;
    assert_code(&resp, 602);
}

#[tokio::test]
async fn transactions_lists_newest_first_one_campaign_per_transaction() {
    let server = Server::start_with(|config| config.time_zone = "America/Los_Angeles".into()).await;
    let creds = server.client().await;
    let other = server.client().await;
    let first = campaign(&server, &creds, "awesome response", "").await;
    let second = campaign(&server, &creds, "second <&>", "").await;
    let theirs = campaign(&server, &other, "theirs", "").await;
    let a = sent(&server, &creds, first, "13108675309", "Bob").await;
    let b = sent(&server, &creds, second, "13108675309", "13108675309").await;
    let c = sent(&server, &creds, first, "13108675309", "Robert").await;
    sent(&server, &other, theirs, "13108675309", "not yours").await;
    sent(&server, &creds, first, "14155550123", "someone else").await;

    let created: Vec<(i64, String, i64)> = moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query_as(
            "SELECT id, hash, created_at FROM transactions WHERE id IN ($1, $2, $3) ORDER BY id DESC",
        )
        .bind(a)
        .bind(b)
        .bind(c)
        .fetch_all(pool)
        .await
        .unwrap()
    });
    let tz: chrono_tz::Tz = "America/Los_Angeles".parse().unwrap();
    let stamp = |unix: i64| {
        chrono::DateTime::from_timestamp(unix, 0)
            .unwrap()
            .with_timezone(&tz)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    };

    let resp = server
        .call(&creds, "user.transactions", &[("number", "3108675309")])
        .await;
    assert_code(&resp, 1);
    let xml = resp.xml();
    assert_eq!(xml.cdata_of("message"), "user transactions");
    let campaigns = xml.all("campaign");
    assert_eq!(campaigns.len(), 3, "{}", resp.body);
    let expected = [
        (c, first, "awesome response", "Robert"),
        (b, second, "second <&>", "13108675309"),
        (a, first, "awesome response", "Bob"),
    ];
    for ((el, (id, campaign_id, name, to_name)), (row_id, hash, at)) in
        campaigns.iter().zip(expected).zip(&created)
    {
        assert_eq!(id, *row_id);
        assert_eq!(el.attr_names(), vec!["id", "name"]);
        assert_eq!(el.attr("id"), campaign_id.to_string());
        assert_eq!(el.attr("name"), name);
        let t = el.child("transaction");
        assert_eq!(t.attr_names(), vec!["datestamp", "hash", "message_id"]);
        assert_eq!(t.attr("datestamp"), stamp(*at));
        assert_eq!(t.attr("hash"), hash);
        assert_eq!(t.attr("message_id"), id.to_string());
        assert_eq!(t.child_names(), vec!["from", "to"]);
        assert_eq!(t.child("from").attr("number"), "21534");
        assert_eq!(t.cdata_of("from"), "Acme");
        assert_eq!(t.child("to").attr("number"), "13108675309");
        assert_eq!(t.cdata_of("to"), to_name);
    }

    let json = server
        .call_json(&creds, "user.transactions", &[("number", "3108675309")])
        .await;
    let (id, hash, at) = &created[0];
    assert_eq!(
        json["response"]["transactions"][0],
        json!({"campaign_id": first.to_string(), "campaign_name": "awesome response",
            "datestamp": stamp(*at), "hash": hash, "message_id": id.to_string(),
            "from": "21534", "to": "13108675309"})
    );
    assert_eq!(
        json["response"]["transactions"].as_array().unwrap().len(),
        3
    );

    // Narrowed by campaign and limit.
    let json = server
        .call_json(
            &creds,
            "user.transactions",
            &[
                ("number", "3108675309"),
                ("campaign_id", &second.to_string()),
            ],
        )
        .await;
    assert_eq!(
        json["response"]["transactions"].as_array().unwrap().len(),
        1
    );
    assert_eq!(
        json["response"]["transactions"][0]["message_id"],
        b.to_string()
    );
    let json = server
        .call_json(
            &creds,
            "user.transactions",
            &[("number", "3108675309"), ("limit", "2")],
        )
        .await;
    assert_eq!(
        json["response"]["transactions"].as_array().unwrap().len(),
        2
    );

    // Dates are days in the configured time zone.
    let today = stamp(created[0].2)[..10].to_string();
    let json = server
        .call_json(
            &creds,
            "user.transactions",
            &[
                ("number", "3108675309"),
                ("start_date", &today),
                ("end_date", &today),
            ],
        )
        .await;
    assert_eq!(
        json["response"]["transactions"].as_array().unwrap().len(),
        3
    );
    let json = server
        .call_json(
            &creds,
            "user.transactions",
            &[("number", "3108675309"), ("start_date", "2999-01-01")],
        )
        .await;
    assert_eq!(
        json,
        json!({"response": {"code": "1", "status": "success", "message": "no user transactions found", "transactions": []}})
    );
    let resp = server
        .call(
            &creds,
            "user.transactions",
            &[("number", "3108675309"), ("end_date", "2000-01-01")],
        )
        .await;
    assert_eq!(
        resp.body,
        r#"<?xml version="1.0" encoding="UTF-8"?><response status="success" code="1"><message><![CDATA[no user transactions found]]></message></response>"#
    );
}

#[tokio::test]
async fn transactions_rejects_bad_dates_limits_and_foreign_campaigns() {
    let server = Server::start().await;
    let creds = server.client().await;
    let other = server.client().await;
    let theirs = campaign(&server, &other, "theirs", "").await.to_string();
    let n = ("number", "3108675309");
    for (key, value) in [
        ("start_date", "2013-3-9"),
        ("end_date", "2013-02-30"),
        ("start_date", "yesterday"),
        ("limit", "0"),
        ("limit", "10001"),
    ] {
        let resp = server
            .call(&creds, "user.transactions", &[n, (key, value)])
            .await;
        assert_code(&resp, 400);
        assert!(resp.message().contains(key), "{}", resp.body);
    }
    let resp = server
        .call(
            &creds,
            "user.transactions",
            &[n, ("start_date", "2013-03-10"), ("end_date", "2013-03-09")],
        )
        .await;
    assert_code(&resp, 400);
    assert_code(
        &server
            .call(&creds, "user.transactions", &[n, ("campaign_id", "-1")])
            .await,
        431,
    );
    assert_code(
        &server
            .call(&creds, "user.transactions", &[n, ("campaign_id", &theirs)])
            .await,
        432,
    );
}

#[tokio::test]
async fn info_knows_the_carrier_a_send_resolved() {
    let server = Server::start().await;
    let creds = server.client().await;
    let campaign_id = campaign(&server, &creds, "Carriers", "").await.to_string();
    let resp = server
        .call(
            &creds,
            "transaction.send",
            &[
                ("campaign_id", &campaign_id),
                ("to", "3108675309"),
                ("message", "hi"),
            ],
        )
        .await;
    assert_code(&resp, 1);
    let info = server
        .call(&creds, "user.info", &[("number", "3108675309")])
        .await
        .xml();
    let carrier = info.child("carrier");
    assert_eq!(carrier.attr("id"), "1");
    assert_eq!(carrier.text, "Sandbox Wireless");
    let resp = server
        .call(&creds, "user.uncache", &[("number", "3108675309")])
        .await;
    assert_code(&resp, 1);
    let info = server
        .call(&creds, "user.info", &[("number", "3108675309")])
        .await
        .xml();
    assert_eq!(info.child("carrier").attr("id"), "0");
}
