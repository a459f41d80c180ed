//! media.upload, media.list, media.info, media.destroy and the smart URL
//! (spec section 5.6), over real HTTP with multipart uploads and a local
//! file server for `url=` uploads.

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

use crate::common::*;

// ---------------------------------------------------------------- samples

fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &x in bytes {
        a = (a + u32::from(x)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let mut typed = kind.to_vec();
    typed.extend_from_slice(data);
    out.extend_from_slice(&typed);
    out.extend_from_slice(&crc32(&typed).to_be_bytes());
}

/// A valid grey PNG of `side`×`side` pixels (zlib "stored" blocks, so no
/// compressor is needed; `side` up to 180 keeps it in one block).
fn png(side: u32) -> Vec<u8> {
    let mut raw = Vec::new();
    for y in 0..side {
        raw.push(0); // filter: none
        raw.extend((0..side).map(|x| ((x + y) * 7) as u8));
    }
    let mut zlib = vec![0x78, 0x01, 0x01];
    zlib.extend_from_slice(&(raw.len() as u16).to_le_bytes());
    zlib.extend_from_slice(&(!(raw.len() as u16)).to_le_bytes());
    zlib.extend_from_slice(&raw);
    zlib.extend_from_slice(&adler32(&raw).to_be_bytes());
    let mut ihdr = side.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit greyscale
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    png_chunk(&mut out, b"IHDR", &ihdr);
    png_chunk(&mut out, b"IDAT", &zlib);
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// The classic 1×1 transparent GIF.
pub(crate) fn gif() -> Vec<u8> {
    let mut out = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00".to_vec();
    out.extend_from_slice(
        b"!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;",
    );
    out
}

/// A JPEG's start: SOI, a JFIF APP0 segment, EOI.
fn jpeg() -> Vec<u8> {
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10];
    out.extend_from_slice(b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00");
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

/// A 16-bit mono 8 kHz WAV of `samples` samples of silence.
fn wav(samples: u32) -> Vec<u8> {
    let data_len = samples * 2;
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&8000u32.to_le_bytes());
    out.extend_from_slice(&16000u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    out.resize(out.len() + data_len as usize, 0);
    out
}

/// An MP4's `ftyp` box followed by an empty `mdat`.
fn mp4() -> Vec<u8> {
    let mut out = 24u32.to_be_bytes().to_vec();
    out.extend_from_slice(b"ftypisom\x00\x00\x02\x00isommp41");
    out.extend_from_slice(&8u32.to_be_bytes());
    out.extend_from_slice(b"mdat");
    out
}

// ---------------------------------------------------------------- helpers

/// POSTs a multipart `media.upload` with the given fields and file part.
async fn upload(
    server: &Server,
    creds: &Creds,
    fields: &[(&str, &str)],
    file: Option<(&str, Vec<u8>)>,
) -> Resp {
    let mut form = Form::new()
        .text("client_id", creds.client_id.clone())
        .text("token", creds.token.clone());
    for (k, v) in fields {
        form = form.text(k.to_string(), v.to_string());
    }
    if let Some((name, bytes)) = file {
        // A misleading declared content type: only the bytes count.
        let part = Part::bytes(bytes)
            .file_name(name.to_string())
            .mime_str("application/octet-stream")
            .unwrap();
        form = form.part("file", part);
    }
    let response = server
        .http
        .post(format!("{}/cm/media.upload", server.base))
        .multipart(form)
        .send()
        .await
        .expect("request");
    Resp::read(response).await
}

/// Uploads `bytes` as `kind` and returns the content_id.
pub(crate) async fn uploaded(
    server: &Server,
    creds: &Creds,
    kind: &str,
    file: &str,
    bytes: Vec<u8>,
) -> String {
    let resp = upload(
        server,
        creds,
        &[("type", kind), ("name", file), ("format", "json")],
        Some((file, bytes)),
    )
    .await;
    assert_code(&resp, 1);
    resp.json()["response"]["media"]["content_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// GETs a URL and returns the status, the headers and the raw bytes.
async fn fetch(
    server: &Server,
    url: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut request = server.http.get(url);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body").to_vec();
    (status, headers, bytes)
}

fn header_of<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header: {headers:?}"))
}

/// A file server on port 0 for `url=` uploads: `/pics/cat.png` (served
/// as text/plain, to show only the bytes count), `/big.png`, a redirect
/// loop at `/loop`, and 404 elsewhere.
async fn file_server() -> String {
    let app = Router::new()
        .route(
            "/pics/cat.png",
            get(|| async { ([(header::CONTENT_TYPE, "text/plain")], png(8)) }),
        )
        .route("/big.png", get(|| async { png(100) }))
        .route("/sounds/tone.wav", get(|| async { wav(50) }))
        .route("/notes.txt", get(|| async { "just text\n" }))
        .route(
            "/hop",
            get(|| async { Redirect::temporary("/pics/cat.png") }),
        )
        .route("/loop", get(|| async { Redirect::temporary("/loop") }))
        .fallback(|| async { (StatusCode::NOT_FOUND, "nope").into_response() });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    base
}

// ---------------------------------------------------------------- upload

#[tokio::test]
async fn upload_answers_media_in_xml_and_the_smart_url_serves_the_bytes() {
    let server = Server::start().await;
    let creds = server.client().await;
    let image = png(8);
    let resp = upload(
        &server,
        &creds,
        &[("type", "image"), ("name", "Logo ]]> & <b>")],
        Some(("logo.png", image.clone())),
    )
    .await;
    assert_code(&resp, 1);
    let xml = resp.xml();
    assert_eq!(xml.cdata_of("message"), "media correctly uploaded");
    let media = xml.child("media");
    assert_eq!(media.child_names(), ["name", "content_id", "smart_url"]);
    assert_eq!(media.cdata_of("name"), "Logo ]]> & <b>");
    let content_id: i64 = media.text_of("content_id").parse().unwrap();
    let smart_url = media.cdata_of("smart_url");
    let token = smart_url
        .strip_prefix(&format!("{}/oc/", server.base))
        .unwrap_or_else(|| panic!("smart URL on the request's host: {smart_url}"));
    assert_eq!(token.len(), 10);
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    );

    let (status, headers, bytes) = fetch(&server, smart_url, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(bytes, image);
    assert_eq!(header_of(&headers, "content-type"), "image/png");
    assert_eq!(
        header_of(&headers, "content-length"),
        image.len().to_string()
    );
    assert_eq!(header_of(&headers, "x-content-type-options"), "nosniff");
    assert_eq!(header_of(&headers, "accept-ranges"), "bytes");
    assert!(header_of(&headers, "cache-control").contains("max-age="));

    // Stored under its content_id, never under the uploaded name.
    let stored = server.app.config.media_dir().join(content_id.to_string());
    assert_eq!(std::fs::read(stored).unwrap(), image);
    let tmp_left = std::fs::read_dir(server.app.config.tmp_dir())
        .unwrap()
        .count();
    assert_eq!(tmp_left, 0, "temp files are moved or removed");
}

#[tokio::test]
async fn upload_in_json_takes_images_audio_and_video_by_their_bytes() {
    let server = Server::start().await;
    let creds = server.client().await;
    for (kind, file, bytes, mime) in [
        ("image", "dot.gif", gif(), "image/gif"),
        ("image", "photo.jpg", jpeg(), "image/jpeg"),
        ("audio", "beep.wav", wav(400), "audio/wav"),
        ("video", "clip.mp4", mp4(), "video/mp4"),
    ] {
        let resp = upload(
            &server,
            &creds,
            &[("type", kind), ("name", file), ("format", "json")],
            Some((file, bytes.clone())),
        )
        .await;
        assert_code(&resp, 1);
        let body = resp.json();
        let answer = &body["response"];
        assert_eq!(answer["message"], "media correctly uploaded");
        let media = answer["media"].as_object().unwrap();
        let keys: Vec<&str> = media.keys().map(String::as_str).collect();
        assert_eq!(keys, ["name", "content_id", "smart_url"]);
        assert_eq!(media["name"], file);
        let content_id = media["content_id"].as_str().expect("a JSON string");
        let smart_url = media["smart_url"].as_str().unwrap();

        let (status, headers, served) = fetch(&server, smart_url, &[]).await;
        assert_eq!(status, 200);
        assert_eq!(served, bytes);
        assert_eq!(header_of(&headers, "content-type"), mime);

        let info = server
            .call_json(&creds, "media.info", &[("content_id", content_id)])
            .await;
        let info = &info["response"];
        assert_eq!(info["code"], "1");
        assert_eq!(info["message"], "media retrieved");
        let keys: Vec<&str> = info["media"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "name",
                "type",
                "content_id",
                "smart_url",
                "filename",
                "size"
            ]
        );
        assert_eq!(info["media"]["type"], kind);
        assert_eq!(info["media"]["filename"], format!("{content_id}-{file}"));
        assert_eq!(info["media"]["size"], bytes.len().to_string());
    }
}

#[tokio::test]
async fn upload_rejects_bad_type_name_and_source() {
    let server = Server::start().await;
    let creds = server.client().await;
    let file = || Some(("a.png", png(4)));
    // (parameters, whether a file is attached, expected code)
    type Case<'a> = (Vec<(&'a str, &'a str)>, bool, u16);
    let cases: Vec<Case> = vec![
        (vec![("name", "x")], true, 443),
        (vec![("type", "picture"), ("name", "x")], true, 460),
        (vec![("type", "image")], true, 463),
        (vec![("type", "image"), ("name", "../x")], true, 463),
        (vec![("type", "image"), ("name", "a\\b")], true, 463),
        (vec![("type", "image"), ("name", "tab\there")], true, 463),
        (vec![("type", "image"), ("name", "   ")], true, 463),
        (vec![("type", "image"), ("name", "x")], false, 460),
        (
            vec![
                ("type", "image"),
                ("name", "x"),
                ("url", "http://127.0.0.1:9/a.png"),
            ],
            true,
            460,
        ),
        (
            vec![
                ("type", "image"),
                ("name", "x"),
                ("callback", "ftp://example.com/"),
            ],
            true,
            400,
        ),
    ];
    let long = "n".repeat(101);
    let hundred = "é".repeat(100);
    for format in ["xml", "json"] {
        for (fields, with_file, code) in &cases {
            let mut fields = fields.clone();
            fields.push(("format", format));
            let resp = upload(
                &server,
                &creds,
                &fields,
                if *with_file { file() } else { None },
            )
            .await;
            assert_code(&resp, *code);
            if format == "json" {
                assert_eq!(resp.json()["response"]["status"], "error");
            } else {
                assert_eq!(resp.xml().attr("status"), "error");
            }
        }
        let fields = [
            ("type", "image"),
            ("name", long.as_str()),
            ("format", format),
        ];
        assert_code(&upload(&server, &creds, &fields, file()).await, 463);
        let fields = [
            ("type", "image"),
            ("name", hundred.as_str()),
            ("format", format),
        ];
        assert_code(&upload(&server, &creds, &fields, file()).await, 1);
    }
}

#[tokio::test]
async fn upload_checks_the_bytes_against_the_declared_type() {
    let server = Server::start().await;
    let creds = server.client().await;
    for format in ["xml", "json"] {
        let fields = [("type", "image"), ("name", "notes"), ("format", format)];
        let resp = upload(
            &server,
            &creds,
            &fields,
            Some(("notes.png", b"hello, world\n".to_vec())),
        )
        .await;
        assert_code(&resp, 462);
        let fields = [("type", "audio"), ("name", "song"), ("format", format)];
        let resp = upload(&server, &creds, &fields, Some(("song.mp3", png(4)))).await;
        assert_code(&resp, 462);
        assert!(resp.message().contains("image/png"), "{}", resp.message());
        let fields = [("type", "video"), ("name", "empty"), ("format", format)];
        assert_code(
            &upload(&server, &creds, &fields, Some(("e.mp4", Vec::new()))).await,
            462,
        );
    }
    let listed = server.call_json(&creds, "media.list", &[]).await;
    assert_eq!(listed["response"]["media_list"], Value::Array(vec![]));
    let tmp_left = std::fs::read_dir(server.app.config.tmp_dir())
        .unwrap()
        .count();
    assert_eq!(tmp_left, 0, "refused uploads leave no temp file");
}

#[tokio::test]
async fn upload_over_the_size_limit_is_461() {
    let server = Server::start_with(|c| c.limits.media_bytes = 200).await;
    let creds = server.client().await;
    let files = file_server().await;
    let big = png(20);
    assert!(big.len() > 200);
    for format in ["xml", "json"] {
        let fields = [("type", "image"), ("name", "big"), ("format", format)];
        assert_code(
            &upload(&server, &creds, &fields, Some(("big.png", big.clone()))).await,
            461,
        );
        let url = format!("{files}/big.png");
        let fields = [
            ("type", "image"),
            ("name", "big"),
            ("url", &url),
            ("format", format),
        ];
        assert_code(&upload(&server, &creds, &fields, None).await, 461);
    }
    // Within the limit still works.
    let fields = [("type", "image"), ("name", "small")];
    assert_code(
        &upload(&server, &creds, &fields, Some(("s.gif", gif()))).await,
        1,
    );
}

// ---------------------------------------------------------------- url=

#[tokio::test]
async fn upload_from_a_url_stores_the_fetched_bytes() {
    let server = Server::start().await;
    let creds = server.client().await;
    let files = file_server().await;
    for (path, format) in [("/pics/cat.png", "xml"), ("/hop", "json")] {
        let url = format!("{files}{path}");
        let resp = upload(
            &server,
            &creds,
            &[
                ("type", "image"),
                ("name", "Cat"),
                ("url", &url),
                ("format", format),
            ],
            None,
        )
        .await;
        assert_code(&resp, 1);
        let (content_id, smart_url) = if format == "xml" {
            let media = resp.xml().child("media").clone();
            (
                media.text_of("content_id").to_string(),
                media.cdata_of("smart_url").to_string(),
            )
        } else {
            let media = &resp.json()["response"]["media"];
            (
                media["content_id"].as_str().unwrap().to_string(),
                media["smart_url"].as_str().unwrap().to_string(),
            )
        };
        let (status, headers, bytes) = fetch(&server, &smart_url, &[]).await;
        assert_eq!(status, 200);
        assert_eq!(bytes, png(8));
        // The file server said text/plain; the stored type comes from the bytes.
        assert_eq!(header_of(&headers, "content-type"), "image/png");
        let info = server
            .call(&creds, "media.info", &[("content_id", &content_id)])
            .await
            .xml();
        // The URL as given names the file, not where it redirected.
        let segment = path.rsplit('/').next().unwrap();
        assert_eq!(
            info.child("media").cdata_of("filename"),
            format!("{content_id}-{segment}")
        );
    }
}

#[tokio::test]
async fn upload_from_a_url_that_fails_is_460() {
    let server = Server::start_with(|c| c.fetch.max_redirects = 3).await;
    let creds = server.client().await;
    let files = file_server().await;
    for format in ["xml", "json"] {
        for (path, expected) in [("/missing.png", "404"), ("/loop", "redirects")] {
            let url = format!("{files}{path}");
            let fields = [
                ("type", "image"),
                ("name", "x"),
                ("url", url.as_str()),
                ("format", format),
            ];
            let resp = upload(&server, &creds, &fields, None).await;
            assert_code(&resp, 460);
            assert!(resp.message().contains(expected), "{}", resp.message());
        }
        let fields = [
            ("type", "image"),
            ("name", "x"),
            ("url", "gopher://example.com/a"),
            ("format", format),
        ];
        assert_code(&upload(&server, &creds, &fields, None).await, 460);
    }
}

#[tokio::test]
async fn content_urls_are_stored_with_the_type_their_bytes_show() {
    let server = Server::start().await;
    let creds = server.client().await;
    let client_id: i64 = creds.client_id.parse().unwrap();
    let files = file_server().await;
    let app = &server.app;
    let url = format!("{files}/sounds/tone.wav");
    let media = moms::media::store_from_url(app, client_id, &url, "http://public.example")
        .await
        .expect("stored");
    assert_eq!(
        (media.kind.as_str(), media.mime.as_str()),
        ("audio", "audio/wav")
    );
    assert_eq!(media.name, "tone.wav");
    assert_eq!(media.filename, format!("{}-tone.wav", media.id));
    assert_eq!(media.client_id, Some(client_id));
    assert!(media.smart_url().starts_with("http://public.example/oc/"));
    let info = server
        .call(
            &creds,
            "media.info",
            &[("content_id", &media.id.to_string())],
        )
        .await;
    assert_code(&info, 1);

    let code = |url: String| async move {
        let result = moms::media::store_from_url(app, client_id, &url, "http://x").await;
        result.expect_err("refused").code.number()
    };
    assert_eq!(code(format!("{files}/notes.txt")).await, 462);
    assert_eq!(code(format!("{files}/missing.wav")).await, 460);
}

#[tokio::test]
async fn private_addresses_are_refused_unless_allowed() {
    let server = Server::start_with(|c| c.fetch.allow_private_networks = false).await;
    let creds = server.client().await;
    let files = file_server().await;
    let port = files.rsplit(':').next().unwrap();
    for url in [
        format!("{files}/pics/cat.png"),
        format!("http://localhost:{port}/pics/cat.png"),
        format!("http://[::ffff:127.0.0.1]:{port}/pics/cat.png"),
        "http://10.0.0.1/a.png".to_string(),
        "http://169.254.169.254/latest/meta-data".to_string(),
    ] {
        for format in ["xml", "json"] {
            let fields = [
                ("type", "image"),
                ("name", "x"),
                ("url", url.as_str()),
                ("format", format),
            ];
            let resp = upload(&server, &creds, &fields, None).await;
            assert_code(&resp, 460);
            assert!(
                resp.message().contains("private"),
                "{url}: {}",
                resp.message()
            );
        }
    }
    let resp = server
        .call(&creds, "media.list", &[("format", "json")])
        .await
        .json();
    assert_eq!(resp["response"]["media_list"], Value::Array(vec![]));
}

#[tokio::test]
async fn upload_callback_is_queued_with_the_answer() {
    let server = Server::start().await;
    let creds = server.client().await;
    let hook = "http://127.0.0.1:9/media-hook";
    let fields = [
        ("type", "image"),
        ("name", "Hooked"),
        ("callback", hook),
        ("format", "json"),
    ];
    let resp = upload(&server, &creds, &fields, Some(("h.gif", gif()))).await;
    assert_code(&resp, 1);
    let content_id = resp.json()["response"]["media"]["content_id"]
        .as_str()
        .unwrap()
        .to_string();
    let fields = [("type", "audio"), ("name", "Wrong"), ("callback", hook)];
    assert_code(
        &upload(&server, &creds, &fields, Some(("h.gif", gif()))).await,
        462,
    );

    let rows: Vec<(String, String, String)> = moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query_as("SELECT url, content_type, body FROM webhooks ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap()
    });
    assert_eq!(rows.len(), 2, "{rows:?}");
    let (url, content_type, body) = &rows[0];
    assert_eq!(url, hook);
    assert_eq!(content_type, "application/xml");
    let posted = Resp {
        status: 200,
        headers: Default::default(),
        body: body.clone(),
    }
    .xml();
    assert_eq!(posted.attr("status"), "success");
    assert_eq!(posted.child("media").text_of("content_id"), content_id);
    let posted = Resp {
        status: 200,
        headers: Default::default(),
        body: rows[1].2.clone(),
    }
    .xml();
    assert_eq!(posted.attr("code"), "462");
}

// ---------------------------------------------------------------- list, info, destroy

#[tokio::test]
async fn list_shows_own_live_media_newest_first_within_limit() {
    let server = Server::start().await;
    let creds = server.client().await;
    let other = server.client().await;
    let first = uploaded(&server, &creds, "image", "one.gif", gif()).await;
    let second = uploaded(&server, &creds, "audio", "two.wav", wav(10)).await;
    let third = uploaded(&server, &creds, "video", "three.mp4", mp4()).await;
    uploaded(&server, &other, "image", "theirs.gif", gif()).await;
    let resp = server
        .call(&creds, "media.destroy", &[("content_id", &second)])
        .await;
    assert_code(&resp, 1);

    let resp = server.call(&creds, "media.list", &[]).await;
    assert_code(&resp, 1);
    let xml = resp.xml();
    assert_eq!(xml.cdata_of("message"), "media list retrieved");
    let items = xml.child("media_list").all("media");
    let ids: Vec<&str> = items.iter().map(|m| m.text_of("content_id")).collect();
    assert_eq!(ids, [third.as_str(), first.as_str()]);
    assert_eq!(
        items[0].child_names(),
        ["name", "type", "content_id", "smart_url", "filename"]
    );
    assert_eq!(items[0].cdata_of("name"), "three.mp4");
    assert_eq!(items[0].cdata_of("type"), "video");
    assert_eq!(items[0].cdata_of("filename"), format!("{third}-three.mp4"));
    assert!(items[0].cdata_of("smart_url").contains("/oc/"));

    let json = server
        .call_json(&creds, "media.list", &[("limit", "1")])
        .await;
    let list = json["response"]["media_list"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["content_id"], third.as_str());
    let keys: Vec<&str> = list[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        ["name", "type", "content_id", "smart_url", "filename"]
    );

    let empty = server.client().await;
    let resp = server.call(&empty, "media.list", &[]).await;
    assert_eq!(resp.xml().child("media_list").children.len(), 0);
}

#[tokio::test]
async fn info_answers_in_xml_with_plain_numbers() {
    let server = Server::start().await;
    let creds = server.client().await;
    let image = png(6);
    let id = uploaded(&server, &creds, "image", "six.png", image.clone()).await;
    let resp = server
        .call(&creds, "media.info", &[("content_id", &id)])
        .await;
    assert_code(&resp, 1);
    let media = resp.xml().child("media").clone();
    assert_eq!(
        media.child_names(),
        [
            "name",
            "type",
            "content_id",
            "smart_url",
            "filename",
            "size"
        ]
    );
    assert_eq!(media.cdata_of("name"), "six.png");
    assert_eq!(media.cdata_of("type"), "image");
    assert_eq!(media.text_of("content_id"), id);
    assert_eq!(media.cdata_of("filename"), format!("{id}-six.png"));
    assert_eq!(media.text_of("size"), image.len().to_string());
}

#[tokio::test]
async fn destroy_answers_the_media_and_the_smart_url_goes_away() {
    let server = Server::start().await;
    let creds = server.client().await;
    for (method, format) in [("media.destroy", "xml"), ("media.remove", "json")] {
        let id = uploaded(&server, &creds, "image", "gone.gif", gif()).await;
        let info = server
            .call_json(&creds, "media.info", &[("content_id", &id)])
            .await;
        let smart_url = info["response"]["media"]["smart_url"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(fetch(&server, &smart_url, &[]).await.0, 200);

        let resp = server
            .call(&creds, method, &[("content_id", &id), ("format", format)])
            .await;
        assert_code(&resp, 1);
        if format == "xml" {
            let xml = resp.xml();
            assert_eq!(xml.cdata_of("message"), "media correctly deleted");
            let media = xml.child("media");
            assert_eq!(
                media.child_names(),
                [
                    "name",
                    "type",
                    "content_id",
                    "smart_url",
                    "filename",
                    "size"
                ]
            );
            assert_eq!(media.text_of("content_id"), id);
        } else {
            let json = resp.json();
            assert_eq!(json["response"]["message"], "media correctly deleted");
            assert_eq!(json["response"]["media"]["content_id"], id.as_str());
            assert_eq!(json["response"]["media"]["name"], "gone.gif");
        }

        assert_eq!(fetch(&server, &smart_url, &[]).await.0, 404);
        let stored = server.app.config.media_dir().join(&id);
        assert!(!stored.exists(), "the file is removed");
        for again in ["media.info", "media.destroy"] {
            let resp = server
                .call(&creds, again, &[("content_id", &id), ("format", format)])
                .await;
            assert_code(&resp, 460);
        }
    }
}

#[tokio::test]
async fn content_id_is_checked_and_other_clients_media_is_460() {
    let server = Server::start().await;
    let creds = server.client().await;
    let other = server.client().await;
    let theirs = uploaded(&server, &other, "image", "theirs.gif", gif()).await;
    for format in ["xml", "json"] {
        for method in ["media.info", "media.destroy"] {
            let resp = server.call(&creds, method, &[("format", format)]).await;
            assert_code(&resp, 443);
            for (id, code) in [
                ("abc", 460),
                ("0", 460),
                ("999999", 460),
                (theirs.as_str(), 460),
            ] {
                let resp = server
                    .call(&creds, method, &[("content_id", id), ("format", format)])
                    .await;
                assert_code(&resp, code);
            }
        }
    }
    // Answered exactly like a missing one, and still there for its owner.
    let missing = server
        .call(&creds, "media.info", &[("content_id", "999999")])
        .await;
    let foreign = server
        .call(&creds, "media.info", &[("content_id", &theirs)])
        .await;
    assert_eq!(
        missing.message().replace("999999", "N"),
        foreign.message().replace(&theirs, "N")
    );
    let resp = server
        .call(&other, "media.info", &[("content_id", &theirs)])
        .await;
    assert_code(&resp, 1);
}

// ---------------------------------------------------------------- smart URL

#[tokio::test]
async fn smart_url_answers_single_ranges_with_206_and_unsatisfiable_with_416() {
    let server = Server::start().await;
    let creds = server.client().await;
    let sound = wav(500);
    let id = uploaded(&server, &creds, "audio", "tone.wav", sound.clone()).await;
    let info = server
        .call_json(&creds, "media.info", &[("content_id", &id)])
        .await;
    let url = info["response"]["media"]["smart_url"]
        .as_str()
        .unwrap()
        .to_string();
    let size = sound.len();

    let (status, headers, bytes) = fetch(&server, &url, &[("range", "bytes=4-11")]).await;
    assert_eq!(status, 206);
    assert_eq!(bytes, &sound[4..12]);
    assert_eq!(
        header_of(&headers, "content-range"),
        format!("bytes 4-11/{size}")
    );
    assert_eq!(header_of(&headers, "content-length"), "8");
    assert_eq!(header_of(&headers, "content-type"), "audio/wav");

    let (status, headers, bytes) = fetch(&server, &url, &[("range", "bytes=-10")]).await;
    assert_eq!(status, 206);
    assert_eq!(bytes, &sound[size - 10..]);
    assert_eq!(
        header_of(&headers, "content-range"),
        format!("bytes {}-{}/{size}", size - 10, size - 1)
    );

    let (status, _, bytes) = fetch(&server, &url, &[("range", "bytes=100-")]).await;
    assert_eq!(status, 206);
    assert_eq!(bytes, &sound[100..]);

    let (status, headers, _) = fetch(&server, &url, &[("range", &format!("bytes={size}-"))]).await;
    assert_eq!(status, 416);
    assert_eq!(
        header_of(&headers, "content-range"),
        format!("bytes */{size}")
    );

    // Several ranges: the whole file.
    let (status, _, bytes) = fetch(&server, &url, &[("range", "bytes=0-1,5-6")]).await;
    assert_eq!(status, 200);
    assert_eq!(bytes, sound);
}

#[tokio::test]
async fn unknown_tokens_are_http_404() {
    let server = Server::start().await;
    for path in ["/oc/aaaaaaaaaa", "/oc/short", "/oc/UPPERCASE1", "/oc/"] {
        let resp = server.get(path).await;
        assert_eq!(resp.status, 404, "{path}");
    }
}

#[tokio::test]
async fn fetching_with_a_message_id_records_the_recipients_handset() {
    let server = Server::start().await;
    let creds = server.client().await;
    let id: i64 = uploaded(&server, &creds, "image", "card.gif", gif())
        .await
        .parse()
        .unwrap();
    for (message_id, content_id, recipient) in
        [(7001, id, "13105550111"), (7002, id + 1, "13105550122")]
    {
        moms::with_db!(server.app.store, |pool, writer| {
            sqlx::query(
                "INSERT INTO transactions (id, hash, client_id, campaign_id, sender, from_name, recipient, to_input, to_name, kind, status, content_id, created_at, updated_at) \
                 VALUES ($1, 'abcdefgh', $2, 1, '21534', '', $3, $3, '', 'mms', 'SENT', $4, 0, 0)",
            )
            .bind(message_id)
            .bind(creds.client_id.parse::<i64>().unwrap())
            .bind(recipient)
            .bind(content_id)
            .execute(writer)
            .await
            .unwrap();
        });
    }
    let info = server
        .call_json(&creds, "media.info", &[("content_id", &id.to_string())])
        .await;
    let url = info["response"]["media"]["smart_url"]
        .as_str()
        .unwrap()
        .to_string();
    let agent = "Nokia6230i/2.0 (03.25) Profile/MIDP-2.0";
    for message_id in ["7001", "7002", "junk"] {
        let (status, _, bytes) = fetch(
            &server,
            &format!("{url}?r={message_id}"),
            &[("user-agent", agent)],
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(bytes, gif());
    }
    let handsets: Vec<(String, Option<String>)> = moms::with_db!(
        server.app.store,
        |pool, writer| {
            sqlx::query_as(
                "SELECT u.number, h.user_agent FROM users u LEFT JOIN handsets h ON h.id = u.handset_id ORDER BY u.number",
            )
            .fetch_all(pool)
            .await
            .unwrap()
        }
    );
    // Only the transaction that carried this media names its recipient.
    assert_eq!(
        handsets,
        [("13105550111".to_string(), Some(agent.to_string()))]
    );
}

#[tokio::test]
async fn smart_url_is_built_on_the_configured_public_url() {
    let server = Server::start_with(|c| c.public_url = "https://media.example.com/".into()).await;
    let creds = server.client().await;
    let id = uploaded(&server, &creds, "image", "p.gif", gif()).await;
    let info = server
        .call_json(&creds, "media.info", &[("content_id", &id)])
        .await;
    let url = info["response"]["media"]["smart_url"].as_str().unwrap();
    assert!(url.starts_with("https://media.example.com/oc/"), "{url}");
    // Served here whatever the public host is.
    let token = url.rsplit('/').next().unwrap();
    let (status, _, bytes) = fetch(&server, &format!("{}/oc/{token}", server.base), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(bytes, gif());
}

#[tokio::test]
async fn a_failing_store_is_500() {
    let server = Server::start().await;
    let creds = server.client().await;
    let id = uploaded(&server, &creds, "image", "f.gif", gif()).await;
    server
        .app
        .store
        .faults
        .store(true, std::sync::atomic::Ordering::Relaxed);
    for format in ["xml", "json"] {
        let resp = server
            .call(
                &creds,
                "media.info",
                &[("content_id", &id), ("format", format)],
            )
            .await;
        assert_code(&resp, 500);
        assert_eq!(resp.status, 500);
        let fields = [("type", "image"), ("name", "x"), ("format", format)];
        let resp = upload(&server, &creds, &fields, Some(("x.gif", gif()))).await;
        assert_code(&resp, 500);
    }
    let tmp_left = std::fs::read_dir(server.app.config.tmp_dir())
        .unwrap()
        .count();
    assert_eq!(tmp_left, 0, "a failed store leaves no temp file");
}
