//! MMS end to end (spec sections 5.2, 5.6, 6.1 and 7): the `mm7` connector
//! against a fake MMSC over real HTTP, images fitted to a carrier's size
//! limit, the campaign's `mms_fallback`, and MMS from phones over MM7.

use std::io::Cursor;
use std::time::{Duration, Instant};

use image::{DynamicImage, ImageFormat, Rgb, RgbImage};
use moms::config::CarrierConfig;
use reqwest::multipart::{Form, Part};

use crate::common::mmsc::{Answer, IN_PASSWORD, IN_USER, Mmsc};
use crate::common::{Creds, Element, Receiver, Server, assert_code, crc32, data_dir};

/// The carrier behind the fake MMSC: numbers +1 310….
const MM7_CARRIER: i64 = 5;
const MM7_NUMBER: &str = "+1 310 867 5309";
/// A carrier without MMS: numbers +1 424….
const TEXT_NUMBER: &str = "+1 424 867 5309";

fn carrier(
    id: i64,
    name: &str,
    prefix: &str,
    mms: bool,
    connector: &str,
    max: i64,
) -> CarrierConfig {
    CarrierConfig {
        id,
        name: name.into(),
        prefixes: vec![prefix.into()],
        served: true,
        mms,
        connector: connector.into(),
        mms_max_bytes: max,
    }
}

/// A server whose +1 310 numbers go to `mmsc` over MM7 (MMS up to
/// `max_bytes`), +1 424 numbers to a sandbox carrier without MMS.
async fn server(mmsc: &Mmsc, max_bytes: i64) -> Server {
    let endpoint = mmsc.endpoint(MM7_CARRIER);
    Server::start_with(move |c| {
        c.carriers = vec![
            carrier(1, "Sandbox Wireless", "1", true, "sandbox", 0),
            carrier(
                MM7_CARRIER,
                "Picture Mobile",
                "1310",
                true,
                "mm7",
                max_bytes,
            ),
            carrier(6, "Text Only", "1424", false, "sandbox", 0),
        ];
        c.mm7 = vec![endpoint];
    })
    .await
}

/// A noisy photo-like image: compresses badly, as photos do.
fn photo(format: ImageFormat, width: u32, height: u32) -> Vec<u8> {
    let mut seed = 99u32;
    let pixels = RgbImage::from_fn(width, height, |x, y| {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let n = (seed >> 24) as u8;
        Rgb([(x as u8) ^ n, y as u8, n])
    });
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(pixels)
        .write_to(&mut out, format)
        .unwrap();
    out.into_inner()
}

/// A 16-bit mono 8 kHz WAV of `samples` samples of silence.
fn wav(samples: u32) -> Vec<u8> {
    let data_len = samples * 2;
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&8000u32.to_le_bytes());
    out.extend_from_slice(&16000u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    out.resize(out.len() + data_len as usize, 0);
    out
}

/// Creates a campaign through the API; returns its id.
async fn campaign(server: &Server, creds: &Creds, params: &[(&str, &str)]) -> String {
    let mut all = vec![("name", "Pictures"), ("type", "mms"), ("from", "21534")];
    all.extend_from_slice(params);
    let resp = server.call(creds, "campaign.create", &all).await;
    assert_code(&resp, 1);
    resp.xml().child("campaign").attr("id").to_string()
}

/// Uploads media; returns (content_id, smart_url).
async fn upload(server: &Server, creds: &Creds, kind: &str, bytes: Vec<u8>) -> (String, String) {
    let form = Form::new()
        .text("client_id", creds.client_id.clone())
        .text("token", creds.token.clone())
        .text("type", kind.to_string())
        .text("name", "picture")
        .text("format", "json")
        .part("file", Part::bytes(bytes).file_name("picture.bin"));
    let response = server
        .http
        .post(format!("{}/cm/media.upload", server.base))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
    assert_eq!(json["response"]["code"], "1", "{json}");
    let media = &json["response"]["media"];
    (
        media["content_id"].as_str().unwrap().to_string(),
        media["smart_url"].as_str().unwrap().to_string(),
    )
}

/// transaction.send, accepted; returns (message_id, hash).
async fn send(
    server: &Server,
    creds: &Creds,
    campaign: &str,
    to: &str,
    params: &[(&str, &str)],
) -> (String, String) {
    let mut all = vec![("campaign_id", campaign), ("to", to)];
    all.extend_from_slice(params);
    let resp = server.call(creds, "transaction.send", &all).await;
    assert_code(&resp, 1);
    let xml = resp.xml();
    (
        xml.text_of("message_id").to_string(),
        xml.text_of("hash").to_string(),
    )
}

fn events(xml: &Element) -> Vec<String> {
    xml.child("history")
        .all("event")
        .iter()
        .map(|e| e.text.clone())
        .collect()
}

/// Polls transaction.lookup until the status is `status` (10 s deadline).
async fn until_status(
    server: &Server,
    creds: &Creds,
    id: &str,
    hash: &str,
    status: &str,
) -> Element {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let xml = server
            .call(
                creds,
                "transaction.lookup",
                &[("message_id", id), ("hash", hash)],
            )
            .await
            .xml();
        if xml.cdata_of("status") == status {
            return xml;
        }
        assert!(
            Instant::now() < deadline,
            "status never became {status}: {xml:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn an_mms_goes_to_the_mmsc_over_mm7_and_its_delivery_report_completes_it() {
    let mmsc = Mmsc::start().await;
    let server = server(&mmsc, 1_048_576).await;
    let creds = server.client().await;
    let campaign = campaign(&server, &creds, &[]).await;
    let png = photo(ImageFormat::Png, 40, 30);
    let (content_id, _) = upload(&server, &creds, "image", png.clone()).await;
    let (id, hash) = send(
        &server,
        &creds,
        &campaign,
        MM7_NUMBER,
        &[
            ("content_id", &content_id),
            ("subject", "Our menu"),
            ("message", "Today's special"),
        ],
    )
    .await;

    let got = mmsc.wait_for(1).await;
    let submitted = &got[0];
    assert!(submitted.problems.is_empty(), "{:?}", submitted.problems);
    let submit = &submitted.submit;
    assert_eq!(submit.vasp_id, "moms-vasp");
    assert_eq!(submit.vas_id, "moms-vas");
    assert_eq!(submit.service_code, "svc-1");
    assert_eq!(submit.sender.value(), "21534");
    assert_eq!(submit.recipient.value(), "13108675309");
    assert_eq!(submit.subject, "Our menu");
    assert!(submit.delivery_report);
    assert_eq!(submitted.parts.len(), 2);
    assert_eq!(submitted.parts[0].media_type(), "text/plain");
    assert_eq!(submitted.parts[0].body, b"Today's special");
    assert_eq!(submitted.parts[1].media_type(), "image/png");
    // Under the limit: sent as stored.
    assert_eq!(submitted.parts[1].body, png);

    let xml = until_status(&server, &creds, &id, &hash, "SENT").await;
    assert_eq!(events(&xml).last().unwrap(), "MMS Sent");

    let (status, answer) = mmsc
        .report(
            &server.base,
            MM7_CARRIER,
            &submitted.message_id,
            "+13108675309",
            "Retrieved",
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("DeliveryReportRsp"), "{answer}");
    assert!(answer.contains("<StatusCode>1000</StatusCode>"), "{answer}");
    let xml = until_status(&server, &creds, &id, &hash, "COMPLETE").await;
    assert_eq!(
        events(&xml),
        vec![
            "Transaction Created",
            "Transaction Queued",
            "MMS Sent",
            "Delivery Confirmed",
            "Transaction Complete"
        ]
    );
    // A final report's id is forgotten: sent again, it is unknown (2005).
    let (_, again) = mmsc
        .report(
            &server.base,
            MM7_CARRIER,
            &submitted.message_id,
            "+13108675309",
            "Retrieved",
        )
        .await;
    assert!(again.contains("<StatusCode>2005</StatusCode>"), "{again}");
}

#[tokio::test]
async fn a_report_of_expiry_fails_the_mms_and_refusals_of_the_mmsc_are_600() {
    let mmsc = Mmsc::start().await;
    let server = server(&mmsc, 0).await;
    let creds = server.client().await;
    let campaign = campaign(&server, &creds, &[]).await;
    let (content_id, _) = upload(&server, &creds, "image", photo(ImageFormat::Gif, 8, 8)).await;
    let media = [("content_id", content_id.as_str())];

    let (id, hash) = send(&server, &creds, &campaign, MM7_NUMBER, &media).await;
    let message_id = mmsc.wait_for(1).await[0].message_id.clone();
    until_status(&server, &creds, &id, &hash, "SENT").await;
    let (status, _) = mmsc
        .report(
            &server.base,
            MM7_CARRIER,
            &message_id,
            "13108675309",
            "Expired",
        )
        .await;
    assert_eq!(status, 200);
    let xml = until_status(&server, &creds, &id, &hash, "FAILED").await;
    assert_eq!(
        events(&xml).last().unwrap(),
        "Transaction Terminated (600): carrier reported Expired"
    );

    // 2002 (address error) is permanent.
    mmsc.answer_next(&[Answer::Status(2002)]);
    let (id, hash) = send(&server, &creds, &campaign, MM7_NUMBER, &media).await;
    let xml = until_status(&server, &creds, &id, &hash, "FAILED").await;
    let last = events(&xml).last().unwrap().clone();
    assert!(last.starts_with("Transaction Terminated (600)"), "{last}");
    assert!(last.contains("status 2002"), "{last}");
}

#[tokio::test]
async fn an_unavailable_mmsc_is_retried_until_it_takes_the_message() {
    let mmsc = Mmsc::start().await;
    let server = server(&mmsc, 0).await;
    let creds = server.client().await;
    let campaign = campaign(&server, &creds, &[]).await;
    let (content_id, _) = upload(&server, &creds, "image", photo(ImageFormat::Png, 8, 8)).await;
    mmsc.answer_next(&[Answer::Http(503), Answer::Status(4006)]);
    let (id, hash) = send(
        &server,
        &creds,
        &campaign,
        MM7_NUMBER,
        &[("content_id", &content_id)],
    )
    .await;
    let got = mmsc.wait_for(3).await;
    assert!(got[2].problems.is_empty(), "{:?}", got[2].problems);
    let xml = until_status(&server, &creds, &id, &hash, "SENT").await;
    assert_eq!(
        events(&xml),
        vec![
            "Transaction Created",
            "Transaction Queued",
            "Retry Scheduled",
            "Retry Scheduled",
            "MMS Sent"
        ]
    );
}

#[tokio::test]
async fn an_image_over_the_carrier_limit_is_scaled_down_to_fit_and_the_original_kept() {
    let mmsc = Mmsc::start().await;
    let limit = 30_000;
    let server = server(&mmsc, limit).await;
    let creds = server.client().await;
    let campaign = campaign(&server, &creds, &[]).await;
    let jpeg = photo(ImageFormat::Jpeg, 640, 480);
    assert!(jpeg.len() > limit as usize * 2, "{}", jpeg.len());
    let (content_id, smart_url) = upload(&server, &creds, "image", jpeg.clone()).await;
    send(
        &server,
        &creds,
        &campaign,
        MM7_NUMBER,
        &[("content_id", &content_id)],
    )
    .await;
    let got = mmsc.wait_for(1).await;
    let sent = &got[0].parts[0];
    assert_eq!(sent.media_type(), "image/jpeg");
    assert!(sent.body.len() <= limit as usize, "{}", sent.body.len());
    let decoded = image::load_from_memory(&sent.body).unwrap();
    assert!(decoded.width() < 640 && decoded.height() < 480);
    let ratio = f64::from(decoded.width()) / f64::from(decoded.height());
    assert!((ratio - 4.0 / 3.0).abs() < 0.05, "{ratio}");
    // A second number gets the same fitted image (fitted once, kept).
    send(
        &server,
        &creds,
        &campaign,
        "+1 310 867 5310",
        &[("content_id", &content_id)],
    )
    .await;
    let got = mmsc.wait_for(2).await;
    assert_eq!(got[1].parts[0].body, sent.body);
    // The stored original is unchanged.
    let original = server
        .http
        .get(&smart_url)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(original.as_ref(), jpeg.as_slice());
}

#[tokio::test]
async fn media_the_carrier_cannot_take_is_607() {
    let mmsc = Mmsc::start().await;
    let server = server(&mmsc, 2_000).await;
    let creds = server.client().await;
    let campaign = campaign(&server, &creds, &[]).await;

    // Audio over the limit cannot be shrunk: 607 at once.
    let (audio, _) = upload(&server, &creds, "audio", wav(4_000)).await;
    let resp = server
        .call(
            &creds,
            "transaction.send",
            &[
                ("campaign_id", &campaign),
                ("to", MM7_NUMBER),
                ("content_id", &audio),
            ],
        )
        .await;
    assert_code(&resp, 607);
    assert!(
        resp.body.contains("not shortened or re-encoded"),
        "{}",
        resp.body
    );
    // Under the limit it goes.
    let (small, _) = upload(&server, &creds, "audio", wav(100)).await;
    send(
        &server,
        &creds,
        &campaign,
        MM7_NUMBER,
        &[("content_id", &small)],
    )
    .await;
    assert_eq!(mmsc.wait_for(1).await[0].parts[0].media_type(), "audio/wav");

    // A bomb: a tiny PNG declaring 100000×100000 pixels, over the limit
    // only because the limit is tiny. Refused without decoding: 607.
    let mut bomb = photo(ImageFormat::Png, 1, 1);
    bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = crc32(&bomb[12..29]);
    bomb[29..33].copy_from_slice(&crc.to_be_bytes());
    bomb.resize(bomb.len() + 3_000, 0);
    let (bomb_id, _) = upload(&server, &creds, "image", bomb).await;
    let (id, hash) = send(
        &server,
        &creds,
        &campaign,
        MM7_NUMBER,
        &[("content_id", &bomb_id)],
    )
    .await;
    let xml = until_status(&server, &creds, &id, &hash, "FAILED").await;
    let last = events(&xml).last().unwrap().clone();
    assert!(last.starts_with("Transaction Terminated (607)"), "{last}");
    assert!(last.contains("100000x100000"), "{last}");
    assert_eq!(mmsc.received().len(), 1);
}

#[tokio::test]
async fn mms_fallback_decides_between_607_and_an_sms_with_the_link() {
    let mmsc = Mmsc::start().await;
    let server = server(&mmsc, 0).await;
    let creds = server.client().await;
    let campaign = campaign(&server, &creds, &[]).await;
    let (content_id, smart_url) =
        upload(&server, &creds, "image", photo(ImageFormat::Png, 8, 8)).await;
    let params = [
        ("campaign_id", campaign.as_str()),
        ("to", TEXT_NUMBER),
        ("content_id", content_id.as_str()),
        ("message", "See our menu"),
    ];

    // The default: fail.
    let info = server
        .call(&creds, "campaign.info", &[("campaign_id", &campaign)])
        .await
        .xml();
    let settings = info.child("campaign");
    assert_eq!(settings.child_names().last(), Some(&"mms_fallback"));
    assert_eq!(settings.cdata_of("mms_fallback"), "fail");
    let resp = server.call(&creds, "transaction.send", &params).await;
    assert_code(&resp, 607);
    assert!(resp.body.contains("mms_fallback"), "{}", resp.body);

    let resp = server
        .call(
            &creds,
            "campaign.update",
            &[("campaign_id", &campaign), ("mms_fallback", "sideways")],
        )
        .await;
    assert_code(&resp, 400);
    let resp = server
        .call(
            &creds,
            "campaign.update",
            &[("campaign_id", &campaign), ("mms_fallback", "sms")],
        )
        .await;
    assert_code(&resp, 1);
    let json = server
        .call_json(&creds, "campaign.info", &[("campaign_id", &campaign)])
        .await;
    assert_eq!(json["response"]["campaign"]["mms_fallback"], "sms");

    let resp = server.call(&creds, "transaction.send", &params).await;
    assert_code(&resp, 1);
    let xml = resp.xml();
    let (id, hash) = (xml.text_of("message_id"), xml.text_of("hash"));
    let xml = until_status(&server, &creds, id, hash, "COMPLETE").await;
    assert_eq!(xml.cdata_of("content_id"), content_id);
    let history = events(&xml);
    assert_eq!(
        &history[..4],
        &[
            "Transaction Created",
            "Transaction Queued",
            "MMS Fallback to SMS",
            "SMS Sent"
        ]
    );
    let body: String = moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query_scalar("SELECT body FROM transactions WHERE id = $1")
            .bind(id.parse::<i64>().unwrap())
            .fetch_one(pool)
            .await
            .unwrap()
    });
    // The link names the message, so the phone that opens it is recorded
    // as its recipient's handset.
    let link = format!("{smart_url}?r={id}");
    assert_eq!(body, format!("See our menu\n{link}"));
    let agent = "SAMSUNG-SGH-A877/A877UCIB1";
    let fetched = reqwest::Client::new()
        .get(&link)
        .header("user-agent", agent)
        .send()
        .await
        .unwrap();
    assert_eq!(fetched.status(), 200);
    let handset: Option<String> = moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query_scalar(
            "SELECT h.user_agent FROM users u JOIN handsets h ON h.id = u.handset_id
         WHERE u.number = (SELECT recipient FROM transactions WHERE id = $1)",
        )
        .bind(id.parse::<i64>().unwrap())
        .fetch_optional(pool)
        .await
        .unwrap()
    });
    assert_eq!(handset.as_deref(), Some(agent));
    // Nothing went to the MMSC.
    assert!(mmsc.received().is_empty());
}

#[tokio::test]
async fn an_mms_from_a_phone_over_mm7_reaches_the_campaign_with_its_images() {
    let mmsc = Mmsc::start().await;
    let server = server(&mmsc, 0).await;
    let creds = server.client().await;
    let receiver = Receiver::start().await;
    let callback = format!("{}/mo", receiver.base);
    let campaign = campaign(
        &server,
        &creds,
        &[
            ("keyword", "PIZZA"),
            ("callback_url", &callback),
            ("callback_format", "json"),
        ],
    )
    .await;
    let jpeg = photo(ImageFormat::Jpeg, 32, 32);
    let (status, answer) = mmsc
        .deliver(
            &server.base,
            MM7_CARRIER,
            ("+13105550199", "21534"),
            "Look",
            "PIZZA with extra cheese",
            Some(("image/jpeg", jpeg.clone())),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("DeliverRsp"), "{answer}");
    assert!(answer.contains("<StatusCode>1000</StatusCode>"), "{answer}");

    let got = receiver.wait_for(1).await;
    let event: serde_json::Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(event["event"], "message-in");
    assert_eq!(event["campaign_id"], campaign.as_str());
    assert_eq!(event["msisdn"], "13105550199");
    assert_eq!(event["message"], "PIZZA with extra cheese");
    assert_eq!(event["subject"], "Look");
    let url = event["images"][0]["image"].as_str().unwrap();
    assert!(url.contains("/oc/"), "{url}");
    let served = server.http.get(url).send().await.unwrap();
    assert_eq!(served.headers()["content-type"], "image/jpeg");
    assert_eq!(served.bytes().await.unwrap().as_ref(), jpeg.as_slice());
}

#[tokio::test]
async fn the_mm7_endpoint_checks_credentials_and_answers_what_it_cannot_read() {
    let mmsc = Mmsc::start().await;
    let server = server(&mmsc, 0).await;
    let report = moms::mm7::envelope::delivery_report_envelope(
        &moms::mm7::envelope::Version::default(),
        "r",
        "never-given",
        &moms::mm7::envelope::Address::Number("13108675309".into()),
        "Retrieved",
    )
    .into_bytes();
    let post = |carrier: i64, body: Vec<u8>, creds: Option<(&'static str, &'static str)>| {
        let mmsc = mmsc.clone();
        let base = server.base.clone();
        async move { mmsc.post(&base, carrier, "text/xml", body, creds).await }
    };
    let (status, _) = post(MM7_CARRIER, report.clone(), None).await;
    assert_eq!(status, 401);
    let (status, _) = post(MM7_CARRIER, report.clone(), Some((IN_USER, "wrong"))).await;
    assert_eq!(status, 401);
    let (status, _) = post(99, report.clone(), Some((IN_USER, IN_PASSWORD))).await;
    assert_eq!(status, 404);
    // An id never given out: 2005, so the MMSC stops resending it.
    let (status, body) = post(MM7_CARRIER, report, Some((IN_USER, IN_PASSWORD))).await;
    assert_eq!(status, 200);
    assert!(body.contains("<StatusCode>2005</StatusCode>"), "{body}");
    // Unreadable: a SOAP fault with 2007 (message format corrupt).
    let (status, body) = post(
        MM7_CARRIER,
        b"<not-soap".to_vec(),
        Some((IN_USER, IN_PASSWORD)),
    )
    .await;
    assert_eq!(status, 500);
    assert!(body.contains("Fault") && body.contains("2007"), "{body}");
    // A request this endpoint does not take: 4003 (unsupported operation).
    let cancel = moms::mm7::envelope::delivery_report_envelope(
        &moms::mm7::envelope::Version::default(),
        "c",
        "m",
        &moms::mm7::envelope::Address::Number("1".into()),
        "x",
    )
    .replace("DeliveryReportReq", "CancelReq");
    let (status, body) = post(
        MM7_CARRIER,
        cancel.into_bytes(),
        Some((IN_USER, IN_PASSWORD)),
    )
    .await;
    assert_eq!(status, 500);
    assert!(body.contains("<StatusCode>4003</StatusCode>"), "{body}");
}

#[tokio::test]
async fn a_link_to_media_in_a_message_over_smpp_becomes_an_image_where_the_bind_says_so() {
    let smsc = crate::common::smsc::Smsc::start().await;
    let bind = moms::config::SmppBind {
        inbound_media_urls: true,
        ..smsc.bind(2)
    };
    let server = Server::start_with(move |c| {
        c.carriers = vec![carrier(2, "SMSC Wireless", "1", false, "smpp", 0)];
        c.smpp.push(bind);
    })
    .await;
    smsc.wait_bound().await;
    let creds = server.client().await;
    let receiver = Receiver::start().await;
    let callback = format!("{}/mo", receiver.base);
    campaign(
        &server,
        &creds,
        &[
            ("keyword", "PIZZA"),
            ("callback_url", &callback),
            ("callback_format", "json"),
        ],
    )
    .await;
    let png = photo(ImageFormat::Png, 12, 12);
    let served = png.clone();
    let files = axum::Router::new()
        .route(
            "/mms/pic",
            axum::routing::get(move || {
                let served = served.clone();
                async move { served }
            }),
        )
        .route("/page", axum::routing::get(|| async { "<html></html>" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, files).await });

    let text = format!("PIZZA look {base}/mms/pic and {base}/page");
    let sequence = smsc.inject("13105550123", "21534", 0, 0, text.as_bytes());
    assert_eq!(smsc.wait_ack(sequence).await, 0);
    let got = receiver.wait_for(1).await;
    let event: serde_json::Value = serde_json::from_str(&got[0].body).unwrap();
    // The media link left the text; the page, not media, stayed.
    assert_eq!(event["message"], format!("PIZZA look and {base}/page"));
    let url = event["images"][0]["image"].as_str().unwrap();
    assert_eq!(event["images"].as_array().unwrap().len(), 1);
    // Outside a request the link names `public_url` (here unset: the
    // configured listen address), not the test's port: fetch its path.
    let path = &url[url.find("/oc/").unwrap()..];
    let fetched = server
        .http
        .get(format!("{}{path}", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(fetched.headers()["content-type"], "image/png");
    assert_eq!(fetched.bytes().await.unwrap().as_ref(), png.as_slice());
}

#[tokio::test]
async fn the_smart_url_gives_phones_length_ranges_and_a_validator() {
    let server = Server::start().await;
    let creds = server.client().await;
    let audio = wav(1_000);
    let (_, smart_url) = upload(&server, &creds, "audio", audio.clone()).await;
    let whole = server.http.get(&smart_url).send().await.unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["content-type"], "audio/wav");
    assert_eq!(
        whole.headers()["content-length"],
        audio.len().to_string().as_str()
    );
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    assert!(
        whole.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    let etag = whole.headers()["etag"].to_str().unwrap().to_string();
    let token = &smart_url[smart_url.rfind('/').unwrap() + 1..];
    assert_eq!(etag, format!("\"{token}\""));

    let part = server
        .http
        .get(&smart_url)
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 10-19/{}", audio.len()).as_str()
    );
    assert_eq!(part.bytes().await.unwrap().as_ref(), &audio[10..20]);

    let again = server
        .http
        .get(&smart_url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"], etag.as_str());
    assert!(again.bytes().await.unwrap().is_empty());
    let other = server
        .http
        .get(&smart_url)
        .header("if-none-match", "\"someone-else\"")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
}

#[tokio::test]
async fn list_send_of_an_mms_takes_each_members_carrier_into_account() {
    let mmsc = Mmsc::start().await;
    let server = server(&mmsc, 0).await;
    let creds = server.client().await;
    let campaign = campaign(&server, &creds, &[("mms_fallback", "sms")]).await;
    let (content_id, _) = upload(&server, &creds, "image", photo(ImageFormat::Png, 8, 8)).await;
    let resp = server
        .call(&creds, "list.create", &[("name", "menu")])
        .await;
    let list_id = resp.xml().child("list").attr("id").to_string();
    let numbers = format!("{MM7_NUMBER},{TEXT_NUMBER}");
    let resp = server
        .call(
            &creds,
            "list.append",
            &[("list_id", &list_id), ("numbers", &numbers)],
        )
        .await;
    assert_code(&resp, 1);
    let receiver = Receiver::start().await;
    let resp = server
        .call(
            &creds,
            "list.send",
            &[
                ("list_id", &list_id),
                ("campaign_id", &campaign),
                ("content_id", &content_id),
                ("message", "Menu"),
                ("callback", &format!("{}/blast", receiver.base)),
            ],
        )
        .await;
    assert_code(&resp, 1);
    let got = mmsc.wait_for(1).await;
    assert_eq!(got[0].submit.recipient.value(), "13108675309");
    let (status, _) = mmsc
        .report(
            &server.base,
            MM7_CARRIER,
            &got[0].message_id,
            "13108675309",
            "Retrieved",
        )
        .await;
    assert_eq!(status, 200);
    let summary = receiver.wait_for(1).await;
    assert!(
        summary[0].body.contains("<total>2</total><sent>2</sent>"),
        "{}",
        summary[0].body
    );
    let kinds: Vec<(String, String)> = moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query_as(
            "SELECT recipient, kind FROM transactions WHERE blast_id IS NOT NULL ORDER BY recipient",
        )
        .fetch_all(pool)
        .await
        .unwrap()
    });
    assert_eq!(
        kinds,
        vec![
            ("13108675309".to_string(), "mms".to_string()),
            ("14248675309".to_string(), "sms".to_string())
        ]
    );
    assert_eq!(mmsc.received().len(), 1);
}

#[test]
fn the_admin_cli_sets_a_carriers_mms_size_limit() {
    let dir = data_dir();
    let (ok, added, stderr) = crate::cli::moms(
        dir.path(),
        &[
            "admin",
            "carrier",
            "add",
            "--id",
            "8",
            "--name",
            "Small Pictures",
            "--prefixes",
            "1212",
            "--connector",
            "mm7",
            "--mms-max-bytes",
            "300000",
            "--json",
        ],
    );
    assert!(ok, "{stderr}");
    assert_eq!(added["mms_max_bytes"], 300000);
    assert_eq!(added["connector"], "mm7");
    let (ok, updated, stderr) = crate::cli::moms(
        dir.path(),
        &[
            "admin",
            "carrier",
            "update",
            "--id",
            "8",
            "--mms-max-bytes",
            "0",
            "--json",
        ],
    );
    assert!(ok, "{stderr}");
    assert_eq!(updated["mms_max_bytes"], 0);
    let (ok, _, stderr) = crate::cli::moms(
        dir.path(),
        &[
            "admin",
            "carrier",
            "update",
            "--id",
            "8",
            "--mms-max-bytes=-1",
        ],
    );
    assert!(!ok);
    assert!(stderr.contains("0 for no limit"), "{stderr}");
}

#[test]
fn mm7_entries_are_checked_when_loaded_and_their_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("moms.toml");
    std::fs::write(
        &file,
        "[[mm7]]\ncarrier_id = 3\nurl = \"http://mmsc\"\nversion = \"REL-4-MM7\"\n",
    )
    .unwrap();
    let error = format!("{:#}", moms::config::Config::load(Some(&file)).unwrap_err());
    assert!(error.contains("[[mm7]] entry 1 (carrier 3)"), "{error}");
    assert!(error.contains("REL-5-MM7-1-2"), "{error}");

    std::fs::write(
        &file,
        "[[mm7]]\ncarrier_id = 3\nurl = \"http://mmsc\"\npassword = \"out-secret\"\ninbound_password = \"in-secret\"\n",
    )
    .unwrap();
    let config = moms::config::Config::load(Some(&file)).unwrap();
    assert_eq!(config.mm7[0].version, "REL-5-MM7-1-2");
    assert!(config.mm7[0].delivery_report);
    let shown = config.redacted_toml();
    assert!(
        !shown.contains("out-secret") && !shown.contains("in-secret"),
        "{shown}"
    );
}

#[tokio::test]
async fn an_mmsc_that_does_not_answer_in_time_is_tried_again() {
    let mmsc = Mmsc::start().await;
    let mut endpoint = mmsc.endpoint(MM7_CARRIER);
    endpoint.timeout_secs = 1;
    let server = Server::start_with(move |c| {
        c.carriers = vec![carrier(
            MM7_CARRIER,
            "Picture Mobile",
            "1310",
            true,
            "mm7",
            0,
        )];
        c.mm7 = vec![endpoint];
    })
    .await;
    let creds = server.client().await;
    let campaign = campaign(&server, &creds, &[]).await;
    let (content_id, _) = upload(&server, &creds, "image", photo(ImageFormat::Png, 8, 8)).await;
    mmsc.answer_next(&[Answer::Stall(3_000)]);
    let (id, hash) = send(
        &server,
        &creds,
        &campaign,
        MM7_NUMBER,
        &[("content_id", &content_id)],
    )
    .await;
    let xml = until_status(&server, &creds, &id, &hash, "SENT").await;
    assert_eq!(
        events(&xml)[2..],
        ["Retry Scheduled".to_string(), "MMS Sent".to_string()]
    );
    // The stalled request was dropped with its connection, unanswered; the
    // transaction follows the answer it got.
    let got = mmsc.wait_for(1).await;
    let recorded: String = moms::with_db!(server.app.store, |pool, writer| {
        sqlx::query_scalar("SELECT message_id FROM mm7_messages WHERE transaction_id = $1")
            .bind(id.parse::<i64>().unwrap())
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert_eq!(recorded, got[0].message_id);
}

#[tokio::test]
async fn reports_posted_right_after_the_answer_are_not_lost() {
    let mmsc = Mmsc::start().await;
    let server = server(&mmsc, 0).await;
    mmsc.auto_report(&server.base, MM7_CARRIER, "Retrieved");
    let creds = server.client().await;
    let campaign = campaign(&server, &creds, &[]).await;
    let (content_id, _) = upload(&server, &creds, "image", photo(ImageFormat::Png, 8, 8)).await;
    let mut sent = Vec::new();
    for n in 0..5 {
        let to = format!("+1 310 867 53{n:02}");
        sent.push(
            send(
                &server,
                &creds,
                &campaign,
                &to,
                &[("content_id", &content_id)],
            )
            .await,
        );
    }
    for (id, hash) in &sent {
        let xml = until_status(&server, &creds, id, hash, "COMPLETE").await;
        assert_eq!(
            events(&xml)[2..],
            ["MMS Sent", "Delivery Confirmed", "Transaction Complete"].map(String::from)
        );
    }
}
