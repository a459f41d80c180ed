//! promo.create/list/destroy (spec section 5.8).

use serde_json::json;

use crate::campaign::create;
use crate::common::*;

#[tokio::test]
async fn create_answers_the_code_and_status_in_xml_and_json() {
    let server = Server::start().await;
    let creds = server.client().await;
    let id = create(&server, &creds, &[("name", "sale")]).await;
    let resp = server
        .call(
            &creds,
            "promo.create",
            &[("campaign_id", &id), ("code", "Spring24")],
        )
        .await;
    assert_code(&resp, 1);
    assert_eq!(
        resp.body,
        r#"<?xml version="1.0" encoding="UTF-8"?><response status="success" code="1"><message><![CDATA[promotion created]]></message><promo code="Spring24" status="approved"/></response>"#
    );
    let body = server
        .call_json(
            &creds,
            "promo.create",
            &[
                ("campaign_id", &id),
                ("code", "SUMMER"),
                ("starts", "2024-06-01"),
                ("ends", "2024-08-31"),
                ("max_uses", "100"),
            ],
        )
        .await;
    assert_eq!(
        body,
        json!({"response": {"code": "1", "status": "success", "message": "promotion created",
            "promo": {"code": "SUMMER", "status": "approved"}}})
    );
}

#[tokio::test]
async fn list_gives_attributes_in_order_with_empty_strings_where_unset() {
    let server = Server::start().await;
    let creds = server.client().await;
    let id = create(&server, &creds, &[("name", "sale")]).await;
    for params in [
        &[("code", "plain")][..],
        &[
            ("code", "FULL1"),
            ("starts", "2024-06-01"),
            ("ends", "2024-06-01"),
            ("max_uses", "5"),
        ][..],
    ] {
        let mut form = vec![("campaign_id", id.as_str())];
        form.extend_from_slice(params);
        assert_code(&server.call(&creds, "promo.create", &form).await, 1);
    }
    let resp = server
        .call(&creds, "promo.list", &[("campaign_id", &id)])
        .await;
    assert_code(&resp, 1);
    assert_eq!(
        resp.body,
        r#"<?xml version="1.0" encoding="UTF-8"?><response status="success" code="1"><message><![CDATA[promotions retrieved]]></message><promos><promo code="FULL1" status="approved" uses="0" max_uses="5" starts="2024-06-01" ends="2024-06-01"/><promo code="plain" status="approved" uses="0" max_uses="" starts="" ends=""/></promos></response>"#
    );
    let body = server
        .call_json(&creds, "promo.list", &[("campaign_id", &id)])
        .await;
    assert_eq!(
        body,
        json!({"response": {"code": "1", "status": "success", "message": "promotions retrieved",
            "promos": [
                {"code": "FULL1", "status": "approved", "uses": "0", "max_uses": "5", "starts": "2024-06-01", "ends": "2024-06-01"},
                {"code": "plain", "status": "approved", "uses": "0", "max_uses": "", "starts": "", "ends": ""}]}})
    );
    let keys: Vec<&String> = body["response"]["promos"][0]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(
        keys,
        ["code", "status", "uses", "max_uses", "starts", "ends"]
    );
    // Promotions belong to their campaign.
    let other = create(&server, &creds, &[("name", "other")]).await;
    let body = server
        .call_json(&creds, "promo.list", &[("campaign_id", &other)])
        .await;
    assert_eq!(body["response"]["promos"], json!([]));
}

#[tokio::test]
async fn create_rejects_bad_codes_dates_and_max_uses() {
    let server = Server::start().await;
    let creds = server.client().await;
    let id = create(&server, &creds, &[("name", "sale")]).await;
    assert_code(
        &server
            .call(
                &creds,
                "promo.create",
                &[("campaign_id", &id), ("code", "TAKEN")],
            )
            .await,
        1,
    );
    let long = "c".repeat(33);
    let cases: &[(&[(&str, &str)], u16)] = &[
        (&[], 443),
        (&[("starts", "bad")], 443),
        (&[("code", long.as_str())], 400),
        (&[("code", "with space")], 400),
        (&[("code", "dash-ed")], 400),
        (&[("code", "taken")], 400),
        (&[("code", "ok"), ("starts", "2024-02-30")], 400),
        (&[("code", "ok"), ("starts", "2024/02/01")], 400),
        (&[("code", "ok"), ("ends", "tomorrow")], 400),
        (
            &[
                ("code", "ok"),
                ("starts", "2024-05-02"),
                ("ends", "2024-05-01"),
            ],
            400,
        ),
        (&[("code", "ok"), ("max_uses", "0")], 400),
        (&[("code", "ok"), ("max_uses", "-1")], 400),
        (&[("code", "ok"), ("max_uses", "2.5")], 400),
        (&[("code", "ok"), ("max_uses", "many")], 400),
    ];
    for (params, code) in cases {
        let mut form = vec![("campaign_id", id.as_str())];
        form.extend_from_slice(params);
        let resp = server.call(&creds, "promo.create", &form).await;
        assert_code(&resp, *code);
        form.push(("format", "json"));
        let resp = server.call(&creds, "promo.create", &form).await;
        assert_code(&resp, *code);
    }
    let resp = server.call(&creds, "promo.create", &[("code", "x")]).await;
    assert_code(&resp, 430);
    let resp = server
        .call(
            &creds,
            "promo.create",
            &[("campaign_id", "1.5"), ("code", "x")],
        )
        .await;
    assert_code(&resp, 431);
    let resp = server
        .call(
            &creds,
            "promo.create",
            &[("campaign_id", "777777"), ("code", "x")],
        )
        .await;
    assert_code(&resp, 432);
    // Nothing but the first one was created.
    let body = server
        .call_json(&creds, "promo.list", &[("campaign_id", &id)])
        .await;
    assert_eq!(body["response"]["promos"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn destroy_removes_a_code_and_answers_440_for_unknown_ones() {
    let server = Server::start().await;
    let creds = server.client().await;
    let id = create(&server, &creds, &[("name", "sale")]).await;
    let other = create(&server, &creds, &[("name", "other")]).await;
    assert_code(
        &server
            .call(
                &creds,
                "promo.create",
                &[("campaign_id", &id), ("code", "GoNow")],
            )
            .await,
        1,
    );
    // Another campaign does not have it.
    let resp = server
        .call(
            &creds,
            "promo.destroy",
            &[("campaign_id", &other), ("code", "GONOW")],
        )
        .await;
    assert_code(&resp, 440);
    let resp = server
        .call(&creds, "promo.destroy", &[("campaign_id", &id)])
        .await;
    assert_code(&resp, 443);

    let resp = server
        .call(
            &creds,
            "promo.destroy",
            &[("campaign_id", &id), ("code", "gonow")],
        )
        .await;
    assert_code(&resp, 1);
    assert_eq!(
        resp.body,
        r#"<?xml version="1.0" encoding="UTF-8"?><response status="success" code="1"><message><![CDATA[promotion removed]]></message></response>"#
    );
    let body = server
        .call_json(
            &creds,
            "promo.destroy",
            &[("campaign_id", &id), ("code", "GoNow")],
        )
        .await;
    assert_eq!(body["response"]["code"], "440");
    assert!(
        body["response"]["message"]
            .as_str()
            .unwrap()
            .starts_with("The entered promo code does not match any approved promotions."),
        "{body}"
    );
    let body = server
        .call_json(&creds, "promo.list", &[("campaign_id", &id)])
        .await;
    assert_eq!(body["response"]["promos"], json!([]));
}

#[tokio::test]
async fn promotions_wait_pending_where_approval_is_required() {
    let server = Server::start_with(|config| config.promo.require_approval = true).await;
    let creds = server.client().await;
    let id = create(&server, &creds, &[("name", "reviewed")]).await;
    let resp = server
        .call(
            &creds,
            "promo.create",
            &[("campaign_id", &id), ("code", "Review1")],
        )
        .await;
    assert_code(&resp, 1);
    let promo = resp.xml();
    let promo = promo.child("promo");
    assert_eq!(promo.attr_names(), ["code", "status"]);
    assert_eq!(promo.attr("status"), "pending");
    let body = server
        .call_json(&creds, "promo.list", &[("campaign_id", &id)])
        .await;
    assert_eq!(body["response"]["promos"][0]["status"], "pending");

    let campaign_id: i64 = id.parse().unwrap();
    assert!(
        server
            .app
            .store
            .approve_promo(campaign_id, "review1")
            .await
            .unwrap()
    );
    let resp = server
        .call(&creds, "promo.list", &[("campaign_id", &id)])
        .await;
    let list = resp.xml();
    let promo = list.child("promos").child("promo");
    assert_eq!(promo.attr("code"), "Review1");
    assert_eq!(promo.attr("status"), "approved");
}
