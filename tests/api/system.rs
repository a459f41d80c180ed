//! system.ping (spec section 5.1) and the credentials every call carries.

use crate::common::*;

#[tokio::test]
async fn ping_answers_pong_in_xml_and_json() {
    let server = Server::start().await;
    let creds = server.client().await;
    let resp = server.call(&creds, "system.ping", &[]).await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("content-type"),
        Some("application/xml; charset=utf-8")
    );
    assert_eq!(
        resp.body,
        r#"<?xml version="1.0" encoding="UTF-8"?><response status="success" code="1"><message><![CDATA[pong]]></message></response>"#
    );
    let resp = server
        .call(&creds, "system.ping", &[("format", "JSON")])
        .await;
    assert_eq!(resp.header("content-type"), Some("application/json"));
    assert_eq!(
        resp.json(),
        serde_json::json!({"response": {"code": "1", "status": "success", "message": "pong"}})
    );
}
