//! keyword.list/check/add/remove (spec section 5.4).

use serde_json::json;

use crate::campaign::{available, create};
use crate::common::*;

#[tokio::test]
async fn list_gives_the_master_first_in_xml_and_json() {
    let server = Server::start().await;
    let creds = server.client().await;
    let id = create(&server, &creds, &[("name", "paul"), ("keyword", "paulf")]).await;
    for word in ["extra", "More2"] {
        let resp = server
            .call(
                &creds,
                "keyword.add",
                &[("campaign_id", &id), ("keyword", word)],
            )
            .await;
        assert_code(&resp, 1);
    }
    let resp = server
        .call(&creds, "keyword.list", &[("campaign_id", &id)])
        .await;
    assert_code(&resp, 1);
    assert_eq!(
        resp.body,
        r#"<?xml version="1.0" encoding="UTF-8"?><response status="success" code="1"><message><![CDATA[keywords retrieved]]></message><keywords><keyword master="true"><![CDATA[PAULF]]></keyword><keyword master="false"><![CDATA[EXTRA]]></keyword><keyword master="false"><![CDATA[MORE2]]></keyword></keywords></response>"#
    );
    let body = server
        .call_json(&creds, "keyword.list", &[("campaign_id", &id)])
        .await;
    assert_eq!(
        body,
        json!({"response": {"code": "1", "status": "success", "message": "keywords retrieved",
            "keywords": [{"name": "PAULF", "master": "true"},
                         {"name": "EXTRA", "master": "false"},
                         {"name": "MORE2", "master": "false"}]}})
    );
}

#[tokio::test]
async fn list_without_campaign_id_covers_every_live_campaign_of_the_client() {
    let server = Server::start().await;
    let creds = server.client().await;
    let other = server.client().await;
    let first = create(&server, &creds, &[("name", "a"), ("keyword", "ALPHA")]).await;
    create(&server, &creds, &[("name", "b"), ("keyword", "BETA")]).await;
    create(&server, &creds, &[("name", "no keyword")]).await;
    let gone = create(&server, &creds, &[("name", "gone"), ("keyword", "GONE")]).await;
    create(
        &server,
        &other,
        &[("name", "theirs"), ("keyword", "THEIRS")],
    )
    .await;
    let resp = server
        .call(
            &creds,
            "keyword.add",
            &[("campaign_id", &first), ("keyword", "alpha2")],
        )
        .await;
    assert_code(&resp, 1);
    let resp = server
        .call(
            &creds,
            "campaign.destroy",
            &[("campaign_id", &gone), ("name", "gone")],
        )
        .await;
    assert_code(&resp, 1);

    let body = server.call_json(&creds, "keyword.list", &[]).await;
    assert_eq!(
        body["response"]["keywords"],
        json!([{"name": "BETA", "master": "true"},
               {"name": "ALPHA", "master": "true"},
               {"name": "ALPHA2", "master": "false"}])
    );
    let resp = server.call(&creds, "keyword.list", &[("limit", "2")]).await;
    let keywords = resp.xml();
    let names: Vec<&str> = keywords
        .child("keywords")
        .all("keyword")
        .iter()
        .map(|k| {
            assert_eq!(k.attr_names(), ["master"]);
            assert!(k.cdata, "{k:?}");
            k.text.as_str()
        })
        .collect();
    assert_eq!(names, ["BETA", "ALPHA"]);

    let fresh = server.client().await;
    let body = server.call_json(&fresh, "keyword.list", &[]).await;
    assert_eq!(body["response"]["keywords"], json!([]));
}

#[tokio::test]
async fn list_checks_its_optional_campaign_id() {
    let server = Server::start().await;
    let creds = server.client().await;
    let other = server.client().await;
    let theirs = create(
        &server,
        &other,
        &[("name", "theirs"), ("keyword", "HIDDEN")],
    )
    .await;
    let resp = server
        .call(&creds, "keyword.list", &[("campaign_id", "x1")])
        .await;
    assert_code(&resp, 431);
    let resp = server
        .call(&creds, "keyword.list", &[("campaign_id", &theirs)])
        .await;
    assert_code(&resp, 432);
    let resp = server.call(&creds, "keyword.list", &[("limit", "0")]).await;
    assert_code(&resp, 400);
}

#[tokio::test]
async fn check_answers_available_in_xml_and_json() {
    let server = Server::start().await;
    let creds = server.client().await;
    create(&server, &creds, &[("name", "paul"), ("keyword", "PAULF")]).await;
    let resp = server
        .call(&creds, "keyword.check", &[("keyword", "free")])
        .await;
    assert_code(&resp, 1);
    assert_eq!(
        resp.body,
        r#"<?xml version="1.0" encoding="UTF-8"?><response status="success" code="1"><message><![CDATA[Keyword available]]></message><available>true</available></response>"#
    );
    let resp = server
        .call(&creds, "keyword.check", &[("keyword", "paulf")])
        .await;
    assert_eq!(
        resp.body,
        r#"<?xml version="1.0" encoding="UTF-8"?><response status="success" code="1"><message><![CDATA[Keyword not available]]></message><available>false</available></response>"#
    );
    let body = server
        .call_json(&creds, "keyword.check", &[("keyword", "Paulf")])
        .await;
    assert_eq!(
        body,
        json!({"response": {"code": "1", "status": "success", "message": "Keyword not available", "available": "false"}})
    );
    let body = server
        .call_json(&creds, "keyword.check", &[("keyword", "free")])
        .await;
    assert_eq!(
        body,
        json!({"response": {"code": "1", "status": "success", "message": "Keyword available", "available": "true"}})
    );
}

#[tokio::test]
async fn reserved_words_are_never_available() {
    let server = Server::start().await;
    let creds = server.client().await;
    for word in [
        "STOP",
        "end",
        "Cancel",
        "UNSUBSCRIBE",
        "quit",
        "STOPALL",
        "help",
        "INFO",
        "start",
        "UNSTOP",
        "yes",
        "y",
    ] {
        assert_eq!(available(&server, &creds, word).await, "false", "{word}");
    }
    assert_eq!(available(&server, &creds, "STOPS").await, "true");
}

#[tokio::test]
async fn check_rejects_missing_malformed_and_foreign_short_codes() {
    let server = Server::start().await;
    let creds = server.client().await;
    let resp = server.call(&creds, "keyword.check", &[]).await;
    assert_code(&resp, 443);
    for bad in ["two words", "dash-ed", &"k".repeat(21)] {
        let resp = server
            .call(&creds, "keyword.check", &[("keyword", bad)])
            .await;
        assert_code(&resp, 400);
    }
    for shortcode in ["21599", "abc", "13105550100"] {
        let resp = server
            .call(
                &creds,
                "keyword.check",
                &[("keyword", "fine"), ("shortcode", shortcode)],
            )
            .await;
        assert_code(&resp, 400);
    }
    // A client without any short code must name one.
    let numbers_only = server.client_with(&["13105550100"]).await;
    let resp = server
        .call(&numbers_only, "keyword.check", &[("keyword", "fine")])
        .await;
    assert_code(&resp, 400);
}

#[tokio::test]
async fn add_rejects_taken_and_reserved_keywords() {
    let server = Server::start().await;
    let creds = server.client().await;
    let other = server.client().await;
    let id = create(&server, &creds, &[("name", "mine"), ("keyword", "MASTER")]).await;
    let sibling = create(&server, &creds, &[("name", "sibling")]).await;
    create(
        &server,
        &other,
        &[("name", "theirs"), ("keyword", "THEIRS")],
    )
    .await;

    let resp = server
        .call(
            &creds,
            "keyword.add",
            &[
                ("campaign_id", &id),
                ("keyword", "extra"),
                ("format", "json"),
            ],
        )
        .await;
    assert_eq!(
        resp.json(),
        json!({"response": {"code": "1", "status": "success", "message": "keyword added"}})
    );
    assert_eq!(available(&server, &creds, "EXTRA").await, "false");

    for (campaign, word) in [
        (&id, "EXTRA"),
        (&id, "master"),
        (&sibling, "extra"),
        // Another client's keyword on the same short code.
        (&id, "theirs"),
        (&id, "STOP"),
        (&id, "y"),
        (&id, "not valid"),
    ] {
        let resp = server
            .call(
                &creds,
                "keyword.add",
                &[("campaign_id", campaign), ("keyword", word)],
            )
            .await;
        assert_code(&resp, 400);
    }
    let resp = server
        .call(&creds, "keyword.add", &[("campaign_id", &id)])
        .await;
    assert_code(&resp, 443);
    let resp = server
        .call(&creds, "keyword.add", &[("keyword", "x")])
        .await;
    assert_code(&resp, 430);
    let resp = server
        .call(
            &creds,
            "keyword.add",
            &[("campaign_id", "none"), ("keyword", "x")],
        )
        .await;
    assert_code(&resp, 431);
    let resp = server
        .call(
            &creds,
            "keyword.add",
            &[("campaign_id", "987654"), ("keyword", "x")],
        )
        .await;
    assert_code(&resp, 432);
    let resp = server
        .call(
            &creds,
            "keyword.add",
            &[
                ("campaign_id", &id),
                ("keyword", "x"),
                ("shortcode", "99999"),
            ],
        )
        .await;
    assert_code(&resp, 400);
}

#[tokio::test]
async fn shortcode_defaults_to_the_campaigns_sender_then_the_clients_first() {
    let server = Server::start().await;
    let creds = server.client_with(&["13105550100", "21534", "21535"]).await;
    let on_second = create(&server, &creds, &[("name", "second"), ("from", "21535")]).await;
    let on_number = create(
        &server,
        &creds,
        &[("name", "number"), ("from", "13105550100")],
    )
    .await;
    for (id, word) in [(&on_second, "SECOND"), (&on_number, "FIRST")] {
        let resp = server
            .call(
                &creds,
                "keyword.add",
                &[("campaign_id", id), ("keyword", word)],
            )
            .await;
        assert_code(&resp, 1);
    }
    let check = |word: &'static str, shortcode: &'static str| {
        [
            ("keyword", word),
            ("shortcode", shortcode),
            ("format", "json"),
        ]
    };
    for (word, shortcode, expected) in [
        ("SECOND", "21535", "false"),
        ("SECOND", "21534", "true"),
        ("FIRST", "21534", "false"),
        ("FIRST", "21535", "true"),
    ] {
        let resp = server
            .call(&creds, "keyword.check", &check(word, shortcode))
            .await;
        assert_eq!(
            resp.json()["response"]["available"],
            expected,
            "{word} on {shortcode}"
        );
    }
    // An explicit short code wins over the default.
    let resp = server
        .call(
            &creds,
            "keyword.add",
            &[
                ("campaign_id", &on_second),
                ("keyword", "second"),
                ("shortcode", "21534"),
            ],
        )
        .await;
    assert_code(&resp, 1);
    assert_eq!(available(&server, &creds, "SECOND").await, "false");
}

#[tokio::test]
async fn remove_refuses_the_master_foreign_and_unknown_keywords() {
    let server = Server::start().await;
    let creds = server.client().await;
    let id = create(&server, &creds, &[("name", "mine"), ("keyword", "MASTER")]).await;
    let sibling = create(&server, &creds, &[("name", "sibling"), ("keyword", "SIB")]).await;
    let resp = server
        .call(
            &creds,
            "keyword.add",
            &[("campaign_id", &id), ("keyword", "extra")],
        )
        .await;
    assert_code(&resp, 1);

    for word in ["master", "SIB", "unknown", "bad word", "STOP"] {
        let resp = server
            .call(
                &creds,
                "keyword.remove",
                &[("campaign_id", &id), ("keyword", word)],
            )
            .await;
        assert_code(&resp, 400);
    }
    let resp = server
        .call(
            &creds,
            "keyword.remove",
            &[("campaign_id", &sibling), ("keyword", "EXTRA")],
        )
        .await;
    assert_code(&resp, 400);
    let resp = server
        .call(&creds, "keyword.remove", &[("campaign_id", &id)])
        .await;
    assert_code(&resp, 443);

    let resp = server
        .call(
            &creds,
            "keyword.remove",
            &[("campaign_id", &id), ("keyword", "Extra")],
        )
        .await;
    assert_code(&resp, 1);
    assert_eq!(
        resp.body,
        r#"<?xml version="1.0" encoding="UTF-8"?><response status="success" code="1"><message><![CDATA[keyword removed]]></message></response>"#
    );
    assert_eq!(available(&server, &creds, "EXTRA").await, "true");
    assert_eq!(available(&server, &creds, "MASTER").await, "false");
    // Gone is gone: a second removal finds nothing.
    let body = server
        .call_json(
            &creds,
            "keyword.remove",
            &[("campaign_id", &id), ("keyword", "extra")],
        )
        .await;
    assert_eq!(body["response"]["code"], "400");
}
