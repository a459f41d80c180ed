//! Transport and envelope rules of spec sections 1 and 2: prefixes, formats,
//! credentials, HTTP statuses, merged parameters, limits and hostile input.

use crate::common::*;

#[tokio::test]
async fn both_prefixes_reach_the_same_methods() {
    let server = Server::start().await;
    let creds = server.client().await;
    for prefix in ["moms", "cm"] {
        let resp = server
            .post_form(
                &format!("/{prefix}/system.ping"),
                &[("client_id", &creds.client_id), ("token", &creds.token)],
            )
            .await;
        assert_code(&resp, 1);
    }
}

#[tokio::test]
async fn unknown_method_is_404_in_an_envelope() {
    let server = Server::start().await;
    let creds = server.client().await;
    let resp = server.call(&creds, "system.pong", &[]).await;
    assert_code(&resp, 404);
    assert_eq!(resp.xml().attr("status"), "error");
    let resp = server
        .call(&creds, "transaction.sendall", &[("format", "json")])
        .await;
    assert_eq!(resp.json()["response"]["code"], "404");
}

#[tokio::test]
async fn paths_outside_the_api_are_plain_http_404() {
    let server = Server::start().await;
    let resp = server.get("/api/system.ping").await;
    assert_eq!(resp.status, 404);
    assert!(!resp.body.starts_with("<?xml"));
    assert_eq!(server.get("/healthz").await.status, 200);
}

#[tokio::test]
async fn unknown_format_is_400_in_xml() {
    let server = Server::start().await;
    let creds = server.client().await;
    let resp = server
        .call(&creds, "system.ping", &[("format", "yaml")])
        .await;
    assert_code(&resp, 400);
    assert!(resp.message().contains("format"), "{}", resp.body);
    let resp = server
        .call(&creds, "system.ping", &[("format", "csv")])
        .await;
    assert_code(&resp, 400);
    assert_eq!(
        resp.header("content-type"),
        Some("application/xml; charset=utf-8")
    );
}

#[tokio::test]
async fn format_is_case_insensitive_and_accept_is_ignored() {
    let server = Server::start().await;
    let creds = server.client().await;
    let path = format!("/moms/system.ping?{}&format=Json", creds.query());
    let resp = server.get_with(&path, ("accept", "application/xml")).await;
    assert_eq!(resp.json()["response"]["message"], "pong");
    let path = format!("/moms/system.ping?{}", creds.query());
    let resp = server.get_with(&path, ("accept", "application/json")).await;
    assert_eq!(resp.xml().child("message").text, "pong");
}

#[tokio::test]
async fn bad_credentials_are_403_with_http_403() {
    let server = Server::start().await;
    let creds = server.client().await;
    let cases: Vec<Vec<(&str, &str)>> = vec![
        vec![],
        vec![("client_id", &creds.client_id)],
        vec![("client_id", "abc"), ("token", &creds.token)],
        vec![("client_id", "-1"), ("token", &creds.token)],
        vec![
            ("client_id", &creds.client_id),
            ("token", "ABCDEF0123456789ABCDEF0123456789"),
        ],
        vec![("client_id", &creds.client_id), ("token", "0123")],
        vec![
            ("client_id", &creds.client_id),
            ("token", "00000000000000000000000000000000"),
        ],
        vec![("client_id", "999999"), ("token", &creds.token)],
        vec![("client_id", ""), ("token", &creds.token)],
    ];
    for form in cases {
        let resp = server.post_form("/moms/system.ping", &form).await;
        assert_eq!(resp.status, 403, "{form:?}: {}", resp.body);
        assert_eq!(resp.code(), 403, "{form:?}");
        assert_eq!(resp.xml().attr("status"), "error");
    }
}

#[tokio::test]
async fn legacy_switches_give_http_200_and_json_code_zero() {
    let server = Server::start_with(|c| {
        c.compat.legacy_http_status = true;
        c.compat.legacy_json_error_code = true;
    })
    .await;
    let resp = server
        .post_form(
            "/moms/system.ping",
            &[("client_id", "1"), ("token", "x"), ("format", "json")],
        )
        .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.json()["response"]["code"], "0");
    assert_eq!(resp.json()["response"]["status"], "error");
}

#[tokio::test]
async fn ip_whitelist_admits_listed_networks_only() {
    let server = Server::start().await;
    let creds = server.client().await;
    let id: i64 = creds.client_id.parse().unwrap();
    let store = &server.app.store;
    store
        .set_whitelist(
            id,
            &moms::store::client::parse_whitelist("203.0.113.0/24").unwrap(),
        )
        .await
        .unwrap();
    server.app.clients.clear();
    let resp = server.call(&creds, "system.ping", &[]).await;
    assert_eq!(resp.status, 403);
    assert!(resp.message().contains("whitelist"), "{}", resp.body);
    store
        .set_whitelist(
            id,
            &moms::store::client::parse_whitelist("203.0.113.0/24, 127.0.0.0/8").unwrap(),
        )
        .await
        .unwrap();
    server.app.clients.clear();
    assert_code(&server.call(&creds, "system.ping", &[]).await, 1);
}

#[tokio::test]
async fn repeated_failed_authentication_is_throttled_with_429() {
    let server = Server::start_with(|c| c.limits.failed_auth_per_ip = 5).await;
    let creds = server.client().await;
    let wrong = Creds {
        token: "0".repeat(32),
        ..creds.clone()
    };
    for _ in 0..5 {
        assert_eq!(server.call(&wrong, "system.ping", &[]).await.status, 403);
    }
    let resp = server.call(&wrong, "system.ping", &[]).await;
    assert_eq!(resp.status, 429);
    assert_eq!(resp.code(), 403);
    let retry_after: u64 = resp
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!(retry_after > 0);
    // Only failing attempts are throttled: the right token still works.
    assert_code(&server.call(&creds, "system.ping", &[]).await, 1);
}

#[tokio::test]
async fn rotated_token_takes_effect_without_restart() {
    let server = Server::start().await;
    let creds = server.client().await;
    assert_code(&server.call(&creds, "system.ping", &[]).await, 1);
    let rotated = server
        .app
        .store
        .rotate_token(creds.client_id.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    // Operator changes reach the running server through the change counter,
    // which it reads four times a second.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while server.call(&creds, "system.ping", &[]).await.status != 403 {
        assert!(
            std::time::Instant::now() < deadline,
            "old token still accepted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let fresh = Creds {
        token: rotated.token,
        ..creds
    };
    assert_code(&server.call(&fresh, "system.ping", &[]).await, 1);
}

#[tokio::test]
async fn query_and_body_merge_and_the_body_wins() {
    let server = Server::start().await;
    let creds = server.client().await;
    // Credentials in the query, format in the body.
    let path = format!("/moms/system.ping?{}&format=xml", creds.query());
    let resp = server.post_form(&path, &[("format", "json")]).await;
    assert_eq!(resp.json()["response"]["message"], "pong");
    // Wrong token in the query, right one in the body.
    let path = format!(
        "/moms/system.ping?client_id={}&token={}",
        creds.client_id,
        "f".repeat(32)
    );
    let resp = server.post_form(&path, &[("token", &creds.token)]).await;
    assert_code(&resp, 1);
}

#[tokio::test]
async fn multipart_fields_are_parameters() {
    let server = Server::start().await;
    let creds = server.client().await;
    let form = reqwest::multipart::Form::new()
        .text("client_id", creds.client_id.clone())
        .text("token", creds.token.clone())
        .text("format", "json");
    let resp = Resp::read(
        server
            .http
            .post(format!("{}/moms/system.ping", server.base))
            .multipart(form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(resp.json()["response"]["message"], "pong");
}

#[tokio::test]
async fn broken_multipart_is_400_in_an_envelope() {
    let server = Server::start().await;
    let creds = server.client().await;
    let body =
        b"--XYZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nvalue-without-end".to_vec();
    let path = format!("/moms/system.ping?{}", creds.query());
    let resp = server
        .post_raw(&path, "multipart/form-data; boundary=XYZ", body)
        .await;
    assert_code(&resp, 400);
    let resp = server
        .post_raw(&path, "multipart/form-data", b"whatever".to_vec())
        .await;
    assert_code(&resp, 400);
}

#[tokio::test]
async fn bodies_over_one_mebibyte_are_400() {
    let server = Server::start().await;
    let creds = server.client().await;
    let path = format!("/moms/system.ping?{}", creds.query());
    let body = format!("message={}", "a".repeat(1_100_000)).into_bytes();
    let resp = server
        .post_raw(&path, "application/x-www-form-urlencoded", body)
        .await;
    assert_code(&resp, 400);
    assert!(resp.message().contains("body"), "{}", resp.body);
}

#[tokio::test]
async fn thousands_of_parameters_are_400() {
    let server = Server::start().await;
    let creds = server.client().await;
    let path = format!("/moms/system.ping?{}", creds.query());
    let body: Vec<String> = (0..10_000).map(|i| format!("p{i}=v")).collect();
    let resp = server
        .post_raw(
            &path,
            "application/x-www-form-urlencoded",
            body.join("&").into_bytes(),
        )
        .await;
    assert_code(&resp, 400);
    assert!(resp.message().contains("parameters"), "{}", resp.body);
}

#[tokio::test]
async fn bad_percent_encoding_and_invalid_utf8_are_not_errors() {
    let server = Server::start().await;
    let creds = server.client().await;
    let path = format!("/moms/system.ping?{}&junk=%zz%&x=%FF%FE", creds.query());
    let resp = server
        .post_raw(
            &path,
            "application/x-www-form-urlencoded",
            b"more=%C3%28&%%%=1".to_vec(),
        )
        .await;
    assert_code(&resp, 1);
}

#[tokio::test]
async fn unknown_parameters_are_ignored() {
    let server = Server::start().await;
    let creds = server.client().await;
    assert_code(
        &server
            .call(
                &creds,
                "system.ping",
                &[("campaign_id", "x"), ("frobnicate", "1")],
            )
            .await,
        1,
    );
}

#[tokio::test]
async fn store_failure_is_500_in_an_envelope() {
    let server = Server::start().await;
    let creds = server.client().await;
    server
        .app
        .store
        .faults
        .store(true, std::sync::atomic::Ordering::Relaxed);
    server.app.clients.clear();
    let resp = server.call(&creds, "system.ping", &[]).await;
    assert_eq!(resp.status, 500);
    assert_eq!(resp.code(), 500);
    assert_eq!(resp.message(), "Internal fatal error uncaught.");
    let resp = server
        .call(&creds, "system.ping", &[("format", "json")])
        .await;
    assert_eq!(resp.json()["response"]["code"], "500");
    server
        .app
        .store
        .faults
        .store(false, std::sync::atomic::Ordering::Relaxed);
    assert_code(&server.call(&creds, "system.ping", &[]).await, 1);
}

#[tokio::test]
async fn metrics_count_requests_by_method_and_code() {
    let server = Server::start().await;
    let creds = server.client().await;
    server.call(&creds, "system.ping", &[]).await;
    let metrics = server.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .body
            .contains("moms_requests_total{method=\"system.ping\",code=\"1\"}"),
        "{}",
        metrics.body
    );
    assert!(
        metrics
            .body
            .contains("moms_request_duration_seconds_bucket"),
        "{}",
        metrics.body
    );
}

#[tokio::test]
async fn cdata_terminator_in_a_value_stays_well_formed() {
    let server = Server::start().await;
    let creds = server.client().await;
    // 602 echoes the caller's input inside CDATA.
    let input = "a]]>b<c>&\u{1}";
    let resp = server.call(&creds, "user.info", &[("number", input)]).await;
    assert_code(&resp, 602);
    let xml = resp.xml();
    assert_eq!(xml.child("input").text, "a]]>b<c>&\u{fffd}");
    assert_eq!(xml.child_names(), ["message", "number", "input"]);
    let json = server
        .call_json(&creds, "user.info", &[("number", input)])
        .await;
    assert_eq!(json["response"]["input"], "a]]>b<c>&\u{1}");
}

#[tokio::test]
async fn forwarded_for_counts_only_behind_a_trusted_proxy() {
    let server = Server::start_with(|c| c.trusted_proxies = vec!["127.0.0.0/8".into()]).await;
    let creds = server.client().await;
    let id: i64 = creds.client_id.parse().unwrap();
    let whitelist = moms::store::client::parse_whitelist("203.0.113.0/24").unwrap();
    server
        .app
        .store
        .set_whitelist(id, &whitelist)
        .await
        .unwrap();
    server.app.clients.clear();
    let path = format!("/moms/system.ping?{}", creds.query());
    let ping = |forwarded: &'static str| server.get_with(&path, ("x-forwarded-for", forwarded));
    // The proxy (127.0.0.1 here) says the caller is on the whitelist.
    assert_code(&ping("203.0.113.5").await, 1);
    // A client-written address left of an untrusted hop is not believed.
    let resp = ping("203.0.113.5, 198.51.100.1").await;
    assert_eq!(resp.status, 403);
    assert!(resp.message().contains("198.51.100.1"), "{}", resp.body);
    assert_eq!(server.get(&path).await.status, 403);
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let server = Server::start().await;
    let creds = server.client().await;
    let id: i64 = creds.client_id.parse().unwrap();
    let whitelist = moms::store::client::parse_whitelist("203.0.113.0/24").unwrap();
    server
        .app
        .store
        .set_whitelist(id, &whitelist)
        .await
        .unwrap();
    server.app.clients.clear();
    let path = format!("/moms/system.ping?{}", creds.query());
    let resp = server
        .get_with(&path, ("x-forwarded-for", "203.0.113.5"))
        .await;
    assert_eq!(resp.status, 403);
    assert!(resp.message().contains("127.0.0.1"), "{}", resp.body);
}

/// Sends a request whose body stops after `sent` of its announced bytes,
/// then waits for the answer.
async fn stalled_body(server: &Server, path: &str, content_type: &str, sent: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = server.base.trim_start_matches("http://");
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: {content_type}\r\nContent-Length: 1000\r\n\r\n{sent}"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), socket.read(&mut answer))
        .await
        .expect("the server answers a stalled body")
        .unwrap();
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

#[tokio::test]
async fn a_stalled_body_is_answered_400_not_held_open() {
    let server = Server::start_with(|c| c.limits.body_idle_secs = 1).await;
    let creds = server.client().await;
    let path = format!("/moms/system.ping?{}", creds.query());
    let answer = stalled_body(
        &server,
        &path,
        "application/x-www-form-urlencoded",
        "format=xml&a=",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains("code=\"400\"") && answer.contains("stalled"),
        "{answer}"
    );
    // Others are served meanwhile and after.
    assert_code(&server.call(&creds, "system.ping", &[]).await, 1);
}

#[tokio::test]
async fn a_trickling_body_is_cut_off_at_the_body_time_limit() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start_with(|c| {
        c.limits.body_idle_secs = 5;
        c.limits.body_secs = 1;
    })
    .await;
    let creds = server.client().await;
    let address = server.base.trim_start_matches("http://").to_string();
    let mut socket = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /moms/system.ping?{} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\n",
        creds.query()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let started = std::time::Instant::now();
    let mut answer = vec![0u8; 4096];
    // One byte every 200 ms: never idle, always too slow.
    let n = loop {
        tokio::select! {
            read = socket.read(&mut answer) => break read.unwrap(),
            _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {
                let _ = socket.write_all(b"a").await;
            }
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "never cut off"
        );
    };
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.contains("code=\"400\""), "{answer}");
}

#[tokio::test]
async fn a_stalled_upload_is_460() {
    let server = Server::start_with(|c| c.limits.body_idle_secs = 1).await;
    let creds = server.client().await;
    let path = format!("/cm/media.upload?{}&type=image&name=x", creds.query());
    let part = "--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\r\n\u{89}PNG";
    let answer = stalled_body(&server, &path, "multipart/form-data; boundary=XYZ", part).await;
    assert!(answer.contains("code=\"460\""), "{answer}");
}
