//! Hostile clients and hostile peers (spec section 1 limits): headers that
//! trickle or never come, oversized headers, ten thousand parameters in
//! every encoding, deeply nested multipart, one client_id guessed from
//! many addresses, and a `url=` that streams without end or trickles. Each
//! gets a clear answer or a closed connection in bounded time, and other
//! clients are served meanwhile.

use std::time::Duration;

use reqwest::multipart::{Form, Part};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

/// Everything the server writes until it closes the connection; a minute
/// at most (a guard against a hang, not a measurement).
async fn read_until_closed(socket: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), socket.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server held the connection open");
    String::from_utf8_lossy(&answer).into_owned()
}

fn port_of(server: &Server) -> u16 {
    server.base.rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn headers_that_trickle_are_cut_off_and_other_clients_are_served() {
    let server = Server::start_with(|c| c.limits.header_secs = 1).await;
    let creds = server.client().await;
    let mut socket = TcpStream::connect(("127.0.0.1", port_of(&server)))
        .await
        .unwrap();
    socket
        .write_all(b"GET /moms/system.ping HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let (mut reader, mut writer) = socket.into_split();
    // One header line every 300 ms, for a minute if the server lets it.
    let trickle = tokio::spawn(async move {
        for n in 0..200 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if writer
                .write_all(format!("x-slow-{n}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                return n;
            }
        }
        200
    });
    // Meanwhile another client is answered.
    assert_code(&server.call(&creds, "system.ping", &[]).await, 1);
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), reader.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the trickling client held its connection");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    trickle.abort();
}

#[tokio::test]
async fn connections_left_idle_are_closed() {
    let server = Server::start_with(|c| c.limits.idle_secs = 1).await;
    let creds = server.client().await;
    let mut socket = TcpStream::connect(("127.0.0.1", port_of(&server)))
        .await
        .unwrap();
    let answer = read_until_closed(&mut socket).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    // Nor one kept alive after its request and left silent.
    let mut socket = TcpStream::connect(("127.0.0.1", port_of(&server)))
        .await
        .unwrap();
    let request = format!(
        "GET /moms/system.ping?{} HTTP/1.1\r\nhost: x\r\n\r\n",
        creds.query()
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let answer = read_until_closed(&mut socket).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn oversized_headers_are_refused_and_the_server_goes_on() {
    let server = Server::start().await;
    let creds = server.client().await;
    let mut socket = TcpStream::connect(("127.0.0.1", port_of(&server)))
        .await
        .unwrap();
    let mut request = b"GET /moms/system.ping HTTP/1.1\r\nhost: x\r\n".to_vec();
    // 2 MB of headers: far over what hyper buffers.
    for n in 0..256 {
        request.extend_from_slice(format!("x-big-{n}: {}\r\n", "a".repeat(8192)).as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    // The server may close before all of it is written.
    let _ = socket.write_all(&request).await;
    let answer = read_until_closed(&mut socket).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    assert_code(&server.call(&creds, "system.ping", &[]).await, 1);
}

#[tokio::test]
async fn ten_thousand_parameters_in_the_query_or_in_multipart_are_400() {
    let server = Server::start().await;
    let creds = server.client().await;
    // Short names: the whole URI stays under the 64 KiB a URI may have.
    let many: Vec<String> = (0..10_000).map(|i| format!("{i:x}=")).collect();
    let resp = server
        .get(&format!(
            "/moms/system.ping?{}&{}",
            creds.query(),
            many.join("&")
        ))
        .await;
    assert_code(&resp, 400);
    assert!(resp.message().contains("parameters"), "{}", resp.body);

    // Written out by hand: a client library's form of 10,000 parts nests
    // 10,000 streams.
    let mut body = String::new();
    for (name, value) in [
        ("client_id", creds.client_id.as_str()),
        ("token", &creds.token),
    ] {
        body.push_str(&format!(
            "--XyZ\r\ncontent-disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    for i in 0..10_000 {
        body.push_str(&format!(
            "--XyZ\r\ncontent-disposition: form-data; name=\"p{i}\"\r\n\r\nv\r\n"
        ));
    }
    body.push_str("--XyZ--\r\n");
    let response = server
        .http
        .post(format!("{}/moms/system.ping", server.base))
        .header("content-type", "multipart/form-data; boundary=XyZ")
        .body(body)
        .send()
        .await
        .unwrap();
    let resp = Resp::read(response).await;
    assert_code(&resp, 400);
    assert!(resp.message().contains("multipart parts"), "{}", resp.body);
}

#[tokio::test]
async fn deeply_nested_multipart_is_one_opaque_value() {
    let server = Server::start().await;
    let creds = server.client().await;
    // Ten thousand levels of multipart inside one part: no parser recurses
    // into them; the part is a value like any other.
    let mut nested = String::from("core");
    for level in 0..10_000 {
        nested = format!(
            "--b{level}\r\ncontent-type: multipart/mixed; boundary=b{}\r\n\r\n{nested}\r\n--b{level}--",
            level + 1
        );
    }
    let form = Form::new()
        .text("client_id", creds.client_id.clone())
        .text("token", creds.token.clone())
        .part(
            "note",
            Part::text(nested)
                .mime_str("multipart/mixed; boundary=b0")
                .unwrap(),
        );
    let response = server
        .http
        .post(format!("{}/moms/system.ping", server.base))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let resp = Resp::read(response).await;
    // Over a mebibyte of nesting is refused by size; under it, a value.
    assert!(
        resp.code() == 1 || resp.code() == 400,
        "{}",
        &resp.body[..resp.body.len().min(300)]
    );
    assert_code(&server.call(&creds, "system.ping", &[]).await, 1);
}

#[tokio::test]
async fn one_client_id_failing_from_many_addresses_is_throttled_with_429() {
    let server = Server::start_with(|c| {
        c.trusted_proxies = vec!["127.0.0.0/8".into()];
        c.limits.failed_auth_per_ip = 1000;
        c.limits.failed_auth_per_client = 5;
    })
    .await;
    let creds = server.client().await;
    let wrong = format!("client_id={}&token={}", creds.client_id, "0".repeat(32));
    let from = |n: u8| format!("198.51.100.{n}");
    for n in 1..=5 {
        let resp = server
            .get_with(
                &format!("/moms/system.ping?{wrong}"),
                ("x-forwarded-for", &from(n)),
            )
            .await;
        assert_eq!(resp.status, 403);
    }
    let resp = server
        .get_with(
            &format!("/moms/system.ping?{wrong}"),
            ("x-forwarded-for", &from(6)),
        )
        .await;
    assert_eq!(resp.status, 429);
    assert_eq!(resp.code(), 403);
    assert!(resp.message().contains("client_id"), "{}", resp.body);
    let retry_after: u64 = resp.header("retry-after").unwrap().parse().unwrap();
    assert!(retry_after > 0);
    // Another client id from the same addresses is not affected.
    let other = server.client().await;
    let resp = server
        .get_with(
            &format!(
                "/moms/system.ping?client_id={}&token={}",
                other.client_id,
                "0".repeat(32)
            ),
            ("x-forwarded-for", &from(6)),
        )
        .await;
    assert_eq!(resp.status, 403);
}

/// A peer that answers every request with an image that never ends: as
/// fast as it can (`trickle` false) or a byte every half second.
async fn endless_server(trickle: bool) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ntransfer-encoding: chunked\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = if trickle {
                    b"1\r\nA\r\n".to_vec()
                } else {
                    let mut chunk = format!("{:x}\r\n", 65536).into_bytes();
                    chunk.extend(std::iter::repeat_n(b'A', 65536));
                    chunk.extend_from_slice(b"\r\n");
                    chunk
                };
                loop {
                    if socket.write_all(&chunk).await.is_err() {
                        return;
                    }
                    if trickle {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            });
        }
    });
    base
}

async fn upload_from(server: &Server, creds: &Creds, url: &str) -> Resp {
    let form = Form::new()
        .text("client_id", creds.client_id.clone())
        .text("token", creds.token.clone())
        .text("type", "image")
        .text("name", "endless")
        .text("url", url.to_string());
    let response = server
        .http
        .post(format!("{}/cm/media.upload", server.base))
        .multipart(form)
        .send()
        .await
        .unwrap();
    Resp::read(response).await
}

#[tokio::test]
async fn a_url_that_streams_without_end_stops_at_the_size_limit() {
    let server = Server::start_with(|c| c.limits.media_bytes = 2_000_000).await;
    let creds = server.client().await;
    let endless = endless_server(false).await;
    let resp = upload_from(&server, &creds, &format!("{endless}/forever.png")).await;
    assert_code(&resp, 461);
    assert!(resp.message().contains("2000000 bytes"), "{}", resp.body);
    let left: Vec<_> = std::fs::read_dir(server.app.config.tmp_dir())
        .unwrap()
        .collect();
    assert!(left.is_empty(), "the partial file was removed");
}

#[tokio::test]
async fn a_url_that_trickles_without_end_stops_at_the_fetch_timeout() {
    let server = Server::start_with(|c| c.fetch.timeout_secs = 2).await;
    let creds = server.client().await;
    let endless = endless_server(true).await;
    let url = format!("{endless}/slow.png");
    let (resp, ping) = tokio::join!(upload_from(&server, &creds, &url), async {
        // Other clients are served while the fetch hangs.
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.call(&creds, "system.ping", &[]).await
    });
    assert_code(&ping, 1);
    assert_code(&resp, 460);
    assert!(resp.message().contains("slow.png"), "{}", resp.body);
}

#[tokio::test]
async fn a_multipart_boundary_in_mixed_case_is_read_as_written() {
    let server = Server::start().await;
    let creds = server.client().await;
    let boundary = "----WebKitFormBoundaryQ3xLmZ9pAbC";
    let body = format!(
        "--{boundary}\r\ncontent-disposition: form-data; name=\"client_id\"\r\n\r\n{}\r\n--{boundary}\r\ncontent-disposition: form-data; name=\"token\"\r\n\r\n{}\r\n--{boundary}--\r\n",
        creds.client_id, creds.token
    );
    let resp = server
        .post_raw(
            "/moms/system.ping",
            &format!("multipart/form-data; boundary={boundary}"),
            body.into_bytes(),
        )
        .await;
    assert_code(&resp, 1);
}

#[tokio::test]
async fn ipv6_whitelists_admit_their_networks_and_mapped_ipv4_is_read_as_ipv4() {
    let server = Server::start_with(|c| c.trusted_proxies = vec!["127.0.0.0/8".into()]).await;
    let creds = server.client().await;
    let id: i64 = creds.client_id.parse().unwrap();
    let whitelist = moms::store::client::parse_whitelist("2001:db8::/32, 203.0.113.0/24").unwrap();
    server
        .app
        .store
        .set_whitelist(id, &whitelist)
        .await
        .unwrap();
    server.app.clients.clear();
    let ping = format!("/moms/system.ping?{}", creds.query());
    for (from, allowed) in [
        ("2001:db8::5", true),
        ("2001:db8:ffff::1", true),
        ("2001:db9::1", false),
        ("::ffff:203.0.113.7", true),
        ("::ffff:198.51.100.7", false),
        ("203.0.113.200", true),
    ] {
        let resp = server.get_with(&ping, ("x-forwarded-for", from)).await;
        if allowed {
            assert_code(&resp, 1);
        } else {
            assert_eq!(resp.status, 403, "{from}");
            assert!(resp.message().contains("whitelist"), "{}", resp.body);
        }
    }
}
