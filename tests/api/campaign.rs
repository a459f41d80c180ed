//! campaign.create/info/list/update/destroy (spec section 5.7).

use serde_json::json;

use crate::common::*;

/// Creates a campaign through the API and returns its id.
pub async fn create(server: &Server, creds: &Creds, params: &[(&str, &str)]) -> String {
    let resp = server.call(creds, "campaign.create", params).await;
    assert_code(&resp, 1);
    resp.xml().child("campaign").attr("id").to_string()
}

/// keyword.check's answer on the client's default short code.
pub async fn available(server: &Server, creds: &Creds, keyword: &str) -> String {
    let body = server
        .call_json(creds, "keyword.check", &[("keyword", keyword)])
        .await;
    body["response"]["available"].as_str().unwrap().to_string()
}

const FULL: &[(&str, &str)] = &[
    ("name", "Spring <sale> & more"),
    ("type", "MMS"),
    ("from", "21534"),
    ("keyword", "paulf"),
    ("callback_url", "https://example.com/mo?a=1&b=2"),
    ("callback_format", "json"),
    ("opt_in", "double"),
    ("require_names", "true"),
    ("help_message", "Reply STOP to end]]>"),
    ("stop_message", "Bye"),
];

#[tokio::test]
async fn create_answers_the_new_id_in_xml_and_json() {
    let server = Server::start().await;
    let creds = server.client().await;
    let resp = server
        .call(&creds, "campaign.create", &[("name", "first")])
        .await;
    assert_code(&resp, 1);
    let id = resp.xml().child("campaign").attr("id").to_string();
    assert!(id.parse::<i64>().unwrap() > 0);
    assert_eq!(
        resp.body,
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><response status="success" code="1"><message><![CDATA[campaign created]]></message><campaign id="{id}"/></response>"#
        )
    );
    let body = server
        .call_json(&creds, "campaign.create", &[("name", "second")])
        .await;
    let second = body["response"]["campaign_id"].as_str().unwrap();
    assert_ne!(second, id);
    assert_eq!(
        body,
        json!({"response": {"code": "1", "status": "success", "message": "campaign created", "campaign_id": second}})
    );
}

#[tokio::test]
async fn info_gives_every_setting_in_create_order() {
    let server = Server::start().await;
    let creds = server.client().await;
    let id = create(&server, &creds, FULL).await;
    let resp = server
        .call(&creds, "campaign.info", &[("campaign_id", &id)])
        .await;
    assert_code(&resp, 1);
    let xml = resp.xml();
    assert_eq!(xml.child_names(), ["message", "campaign"]);
    assert_eq!(xml.child("message").text, "campaign retrieved");
    let campaign = xml.child("campaign");
    assert_eq!(campaign.attrs, [("id".to_string(), id.clone())]);
    assert_eq!(
        campaign.child_names(),
        [
            "name",
            "type",
            "from",
            "keyword",
            "callback_url",
            "callback_format",
            "opt_in",
            "require_names",
            "help_message",
            "stop_message",
            // Settings added after the documented ones follow them.
            "mms_fallback"
        ]
    );
    assert_eq!(campaign.cdata_of("name"), "Spring <sale> & more");
    assert_eq!(campaign.cdata_of("type"), "mms");
    assert_eq!(campaign.cdata_of("from"), "21534");
    assert_eq!(campaign.cdata_of("keyword"), "PAULF");
    assert_eq!(
        campaign.cdata_of("callback_url"),
        "https://example.com/mo?a=1&b=2"
    );
    assert_eq!(campaign.cdata_of("callback_format"), "json");
    assert_eq!(campaign.cdata_of("opt_in"), "double");
    assert_eq!(campaign.text_of("require_names"), "true");
    assert_eq!(campaign.cdata_of("help_message"), "Reply STOP to end]]>");
    assert_eq!(campaign.cdata_of("stop_message"), "Bye");

    let body = server
        .call_json(&creds, "campaign.info", &[("campaign_id", &id)])
        .await;
    assert_eq!(
        body,
        json!({"response": {"code": "1", "status": "success", "message": "campaign retrieved",
            "campaign": {"id": id, "name": "Spring <sale> & more", "type": "mms", "from": "21534",
                "keyword": "PAULF", "callback_url": "https://example.com/mo?a=1&b=2",
                "callback_format": "json", "opt_in": "double", "require_names": "true",
                "help_message": "Reply STOP to end]]>", "stop_message": "Bye",
                "mms_fallback": "fail"}}})
    );
    let keys: Vec<&String> = body["response"]["campaign"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(
        keys,
        [
            "id",
            "name",
            "type",
            "from",
            "keyword",
            "callback_url",
            "callback_format",
            "opt_in",
            "require_names",
            "help_message",
            "stop_message",
            "mms_fallback"
        ]
    );
}

#[tokio::test]
async fn info_shows_defaults_and_a_normalised_number_sender() {
    let server = Server::start().await;
    let creds = server.client().await;
    let id = create(
        &server,
        &creds,
        &[("name", "  plain  "), ("from", "(310) 555-0100")],
    )
    .await;
    let body = server
        .call_json(&creds, "campaign.info", &[("campaign_id", &id)])
        .await;
    assert_eq!(
        body["response"]["campaign"],
        json!({"id": id, "name": "plain", "type": "sms", "from": "13105550100", "keyword": "",
            "callback_url": "", "callback_format": "xml", "opt_in": "none", "require_names": "false",
            "help_message": "", "stop_message": "", "mms_fallback": "fail"})
    );
}

#[tokio::test]
async fn list_shows_the_clients_live_campaigns_newest_first() {
    let server = Server::start().await;
    let creds = server.client().await;
    let other = server.client().await;
    let first = create(&server, &creds, &[("name", "first")]).await;
    let second = create(&server, &creds, &[("name", "second"), ("type", "mms")]).await;
    let gone = create(&server, &creds, &[("name", "gone")]).await;
    create(&server, &other, &[("name", "not mine")]).await;
    let resp = server
        .call(
            &creds,
            "campaign.destroy",
            &[("campaign_id", &gone), ("name", "gone")],
        )
        .await;
    assert_code(&resp, 1);

    let resp = server.call(&creds, "campaign.list", &[]).await;
    assert_code(&resp, 1);
    assert_eq!(
        resp.body,
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><response status="success" code="1"><message><![CDATA[campaigns retrieved]]></message><campaigns><campaign id="{second}" type="mms"><![CDATA[second]]></campaign><campaign id="{first}" type="sms"><![CDATA[first]]></campaign></campaigns></response>"#
        )
    );
    let body = server.call_json(&creds, "campaign.list", &[]).await;
    assert_eq!(
        body,
        json!({"response": {"code": "1", "status": "success", "message": "campaigns retrieved",
            "campaigns": [{"id": second, "name": "second", "type": "mms"},
                          {"id": first, "name": "first", "type": "sms"}]}})
    );
    let body = server
        .call_json(&creds, "campaign.list", &[("limit", "1")])
        .await;
    assert_eq!(body["response"]["campaigns"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn list_of_a_client_without_campaigns_is_empty() {
    let server = Server::start().await;
    let creds = server.client().await;
    let resp = server.call(&creds, "campaign.list", &[]).await;
    assert_code(&resp, 1);
    assert_eq!(resp.xml().child("campaigns").children.len(), 0);
    let body = server.call_json(&creds, "campaign.list", &[]).await;
    assert_eq!(body["response"]["campaigns"], json!([]));
}

#[tokio::test]
async fn update_changes_only_the_given_settings_and_shows_at_once() {
    let server = Server::start().await;
    let creds = server.client().await;
    let id = create(&server, &creds, FULL).await;
    // Read it once so a cached copy exists.
    let before = server
        .call_json(&creds, "campaign.info", &[("campaign_id", &id)])
        .await;
    let resp = server
        .call(
            &creds,
            "campaign.update",
            &[
                ("campaign_id", &id),
                ("name", "Renamed"),
                ("opt_in", "single"),
                ("require_names", "FALSE"),
            ],
        )
        .await;
    assert_code(&resp, 1);
    assert_eq!(
        resp.body,
        r#"<?xml version="1.0" encoding="UTF-8"?><response status="success" code="1"><message><![CDATA[campaign updated]]></message></response>"#
    );
    let after = server
        .call_json(&creds, "campaign.info", &[("campaign_id", &id)])
        .await;
    let mut expected = before["response"]["campaign"].clone();
    expected["name"] = json!("Renamed");
    expected["opt_in"] = json!("single");
    expected["require_names"] = json!("false");
    assert_eq!(after["response"]["campaign"], expected);

    let body = server
        .call_json(
            &creds,
            "campaign.update",
            &[("campaign_id", &id), ("type", "sms")],
        )
        .await;
    assert_eq!(
        body,
        json!({"response": {"code": "1", "status": "success", "message": "campaign updated"}})
    );
    let resp = server
        .call(&creds, "campaign.info", &[("campaign_id", &id)])
        .await;
    assert_eq!(resp.xml().child("campaign").cdata_of("type"), "sms");
}

#[tokio::test]
async fn update_moves_the_master_keyword() {
    let server = Server::start().await;
    let creds = server.client().await;
    let id = create(&server, &creds, &[("name", "kw"), ("keyword", "PAULF")]).await;
    let resp = server
        .call(
            &creds,
            "campaign.update",
            &[("campaign_id", &id), ("keyword", "newer")],
        )
        .await;
    assert_code(&resp, 1);
    assert_eq!(available(&server, &creds, "PAULF").await, "true");
    assert_eq!(available(&server, &creds, "NEWER").await, "false");
    let body = server
        .call_json(&creds, "keyword.list", &[("campaign_id", &id)])
        .await;
    assert_eq!(
        body["response"]["keywords"],
        json!([{"name": "NEWER", "master": "true"}])
    );
}

#[tokio::test]
async fn update_validates_like_create() {
    let server = Server::start().await;
    let creds = server.client().await;
    let id = create(&server, &creds, &[("name", "one")]).await;
    create(&server, &creds, &[("name", "two"), ("keyword", "TAKEN")]).await;
    let cases: &[(&[(&str, &str)], u16)] = &[
        (&[("name", "two")], 445),
        (&[("name", "\u{7}bell")], 445),
        (&[("type", "fax")], 400),
        (&[("from", "21599")], 434),
        (&[("keyword", "taken")], 400),
        (&[("keyword", "HELP")], 400),
        (&[("callback_url", "not a url")], 400),
        (&[("callback_format", "csv")], 400),
        (&[("opt_in", "maybe")], 400),
        (&[("require_names", "yes")], 400),
    ];
    for (params, code) in cases {
        let mut form = vec![("campaign_id", id.as_str())];
        form.extend_from_slice(params);
        let resp = server.call(&creds, "campaign.update", &form).await;
        assert_code(&resp, *code);
    }
    // Nothing of the refused updates stuck.
    let body = server
        .call_json(&creds, "campaign.info", &[("campaign_id", &id)])
        .await;
    assert_eq!(body["response"]["campaign"]["name"], "one");
    assert_eq!(body["response"]["campaign"]["keyword"], "");
    // Its own name is not a clash.
    let resp = server
        .call(
            &creds,
            "campaign.update",
            &[("campaign_id", &id), ("name", "one")],
        )
        .await;
    assert_code(&resp, 1);
}

#[tokio::test]
async fn create_rejects_each_invalid_setting_with_its_code() {
    let server = Server::start().await;
    let creds = server.client().await;
    create(&server, &creds, &[("name", "taken"), ("keyword", "MINE")]).await;
    let long_name = "n".repeat(65);
    let long_text = "x".repeat(1531);
    let cases: &[(&[(&str, &str)], u16)] = &[
        (&[], 445),
        (&[("type", "fax")], 445),
        (&[("name", long_name.as_str())], 445),
        (&[("name", "taken")], 445),
        (&[("name", "n"), ("type", "fax")], 400),
        (&[("name", "n"), ("from", "abc")], 434),
        (&[("name", "n"), ("from", "21599")], 434),
        (&[("name", "n"), ("from", "+442071838750")], 434),
        (&[("name", "n"), ("keyword", "a-b")], 400),
        (&[("name", "n"), ("keyword", "stop")], 400),
        (&[("name", "n"), ("keyword", "mine")], 400),
        (
            &[("name", "n"), ("callback_url", "ftp://example.com/x")],
            400,
        ),
        (&[("name", "n"), ("callback_url", "http://")], 400),
        (&[("name", "n"), ("callback_format", "yaml")], 400),
        (&[("name", "n"), ("opt_in", "triple")], 400),
        (&[("name", "n"), ("require_names", "1")], 400),
        (&[("name", "n"), ("help_message", long_text.as_str())], 400),
        // Parameters are checked in create's order: `from` before `keyword`.
        (&[("name", "n"), ("from", "abc"), ("keyword", "stop")], 434),
    ];
    for (params, code) in cases {
        let resp = server.call(&creds, "campaign.create", params).await;
        assert_code(&resp, *code);
        let mut json = params.to_vec();
        json.push(("format", "json"));
        let resp = server.call(&creds, "campaign.create", &json).await;
        assert_code(&resp, *code);
    }
    // None of them was created.
    let body = server.call_json(&creds, "campaign.list", &[]).await;
    assert_eq!(body["response"]["campaigns"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn invalid_name_message_names_the_problem() {
    let server = Server::start().await;
    let creds = server.client().await;
    let resp = server.call(&creds, "campaign.create", &[]).await;
    assert_code(&resp, 445);
    assert!(
        resp.message()
            .starts_with("The request was rejected. The entered \"name\" parameter is invalid.: "),
        "{}",
        resp.body
    );
}

#[tokio::test]
async fn a_keyword_needs_a_short_code() {
    let server = Server::start().await;
    let creds = server.client_with(&["13105550100"]).await;
    let resp = server
        .call(
            &creds,
            "campaign.create",
            &[("name", "n"), ("keyword", "WORD")],
        )
        .await;
    assert_code(&resp, 400);
    assert!(resp.message().contains("short code"), "{}", resp.body);
    let id = create(&server, &creds, &[("name", "n"), ("from", "3105550100")]).await;
    assert!(!id.is_empty());
}

#[tokio::test]
async fn the_same_keyword_is_free_on_another_short_code() {
    let server = Server::start().await;
    let creds = server.client_with(&["21534", "21535"]).await;
    create(&server, &creds, &[("name", "a"), ("keyword", "SAME")]).await;
    create(
        &server,
        &creds,
        &[("name", "b"), ("from", "21535"), ("keyword", "SAME")],
    )
    .await;
    let resp = server
        .call(
            &creds,
            "campaign.create",
            &[("name", "c"), ("from", "21535"), ("keyword", "same")],
        )
        .await;
    assert_code(&resp, 400);
}

#[tokio::test]
async fn destroy_needs_the_matching_name_then_the_campaign_is_gone() {
    let server = Server::start().await;
    let creds = server.client().await;
    let id = create(&server, &creds, &[("name", "doomed"), ("keyword", "BYE")]).await;
    let resp = server
        .call(&creds, "campaign.destroy", &[("campaign_id", &id)])
        .await;
    assert_code(&resp, 445);
    let resp = server
        .call(
            &creds,
            "campaign.destroy",
            &[("campaign_id", &id), ("name", "Doomed")],
        )
        .await;
    assert_code(&resp, 445);
    // Cache it, then destroy it.
    assert_code(
        &server
            .call(&creds, "campaign.info", &[("campaign_id", &id)])
            .await,
        1,
    );
    let resp = server
        .call(
            &creds,
            "campaign.destroy",
            &[("campaign_id", &id), ("name", "doomed"), ("format", "json")],
        )
        .await;
    assert_eq!(
        resp.json(),
        json!({"response": {"code": "1", "status": "success", "message": "campaign destroyed"}})
    );
    for (method, extra) in [
        ("campaign.info", None),
        ("campaign.update", Some(("opt_in", "single"))),
        ("campaign.destroy", Some(("name", "doomed"))),
        ("keyword.list", None),
        ("promo.list", None),
    ] {
        let mut form = vec![("campaign_id", id.as_str())];
        form.extend(extra);
        let resp = server.call(&creds, method, &form).await;
        assert_code(&resp, 432);
    }
    // Its keyword and its name are free again.
    let body = server
        .call_json(&creds, "keyword.check", &[("keyword", "BYE")])
        .await;
    assert_eq!(body["response"]["available"], "true");
    create(&server, &creds, &[("name", "doomed"), ("keyword", "BYE")]).await;
}

#[tokio::test]
async fn campaign_id_is_checked_before_anything_else() {
    let server = Server::start().await;
    let creds = server.client().await;
    let other = server.client().await;
    let theirs = create(&server, &other, &[("name", "theirs")]).await;
    for method in [
        "campaign.info",
        "campaign.update",
        "campaign.destroy",
        "keyword.add",
        "keyword.remove",
        "promo.create",
        "promo.list",
        "promo.destroy",
    ] {
        let resp = server.call(&creds, method, &[("name", "x")]).await;
        assert_code(&resp, 430);
        for bad in ["abc", "0", "-4", "2147483648"] {
            let resp = server
                .call(&creds, method, &[("campaign_id", bad), ("name", "x")])
                .await;
            assert_code(&resp, 431);
        }
    }
    for method in [
        "campaign.info",
        "campaign.update",
        "keyword.list",
        "promo.list",
    ] {
        for id in ["999999", theirs.as_str()] {
            let resp = server.call(&creds, method, &[("campaign_id", id)]).await;
            assert_code(&resp, 432);
            let body = server
                .call_json(&creds, method, &[("campaign_id", id)])
                .await;
            assert_eq!(body["response"]["code"], "432");
        }
    }
    // Another client's campaign cannot be destroyed, even with its name.
    let resp = server
        .call(
            &creds,
            "campaign.destroy",
            &[("campaign_id", &theirs), ("name", "theirs")],
        )
        .await;
    assert_code(&resp, 432);
}

#[tokio::test]
async fn changing_the_sender_moves_the_master_keyword_to_its_short_code() {
    let server = Server::start().await;
    let creds = server.client_with(&["21534", "21535"]).await;
    let id = create(&server, &creds, &[("name", "mover"), ("keyword", "MOVE")]).await;
    let on = |shortcode: &'static str| {
        [
            ("keyword", "MOVE"),
            ("shortcode", shortcode),
            ("format", "json"),
        ]
    };
    let resp = server.call(&creds, "keyword.check", &on("21534")).await;
    assert_eq!(resp.json()["response"]["available"], "false");
    let resp = server
        .call(
            &creds,
            "campaign.update",
            &[("campaign_id", &id), ("from", "21535")],
        )
        .await;
    assert_code(&resp, 1);
    let resp = server.call(&creds, "keyword.check", &on("21534")).await;
    assert_eq!(resp.json()["response"]["available"], "true");
    let resp = server.call(&creds, "keyword.check", &on("21535")).await;
    assert_eq!(resp.json()["response"]["available"], "false");
}
