//! HTTPS served by moms itself (spec section 1): `tls.cert` and `tls.key`
//! name PEM files, and the old clients call over HTTPS.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use moms::app::App;
use moms::config::Config;
use moms::store::client::parse_whitelist;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::common::*;

/// The server started the way `moms serve` starts it, on 127.0.0.1:0.
struct TlsServer {
    /// `https://localhost:<port>`
    base: String,
    address: SocketAddr,
    app: Arc<App>,
    cert_pem: String,
    /// Trusts the server's certificate only.
    http: reqwest::Client,
    _dir: DataDir,
    _stop: oneshot::Sender<()>,
}

impl TlsServer {
    async fn start() -> TlsServer {
        let dir = data_dir();
        let mut config = test_config(dir.path());
        let cert_pem = write_certificate(dir.path(), &mut config);
        let tls = moms::tls::server_config(&config.tls).expect("certificate loads");
        let app = App::open(config).await.expect("app opens");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(moms::app::serve_tcp(app.clone(), listener, tls, async {
            let _ = stopped.await;
        }));
        let http = trusting(&cert_pem)
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        TlsServer {
            base: format!("https://localhost:{}", address.port()),
            address,
            app,
            cert_pem,
            http,
            _dir: dir,
            _stop: stop,
        }
    }

    async fn ping(&self, http: &reqwest::Client, creds: &Creds, format: &str) -> Resp {
        let form = [
            ("client_id", creds.client_id.as_str()),
            ("token", creds.token.as_str()),
            ("format", format),
        ];
        let response = http
            .post(format!("{}/moms/system.ping", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded_pairs(&form))
            .send()
            .await
            .expect("HTTPS request");
        Resp::read(response).await
    }

    async fn client(&self) -> Creds {
        let created = self
            .app
            .store
            .create_client("TLS client", &["21534".to_string()], &[])
            .await
            .unwrap();
        Creds {
            client_id: created.client_id.to_string(),
            token: created.token,
            callback_secret: created.callback_secret,
        }
    }

    async fn set_whitelist(&self, creds: &Creds, networks: &str) {
        let id: i64 = creds.client_id.parse().unwrap();
        let networks = parse_whitelist(networks).unwrap();
        self.app.store.set_whitelist(id, &networks).await.unwrap();
        self.app.clients.clear();
    }
}

/// A self-signed certificate for localhost and 127.0.0.1, written to the
/// data folder and named in `config`; returns the certificate's PEM.
fn write_certificate(dir: &Path, config: &mut Config) -> String {
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("certificate");
    let cert_pem = generated.cert.pem();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    config.tls.cert = cert.display().to_string();
    config.tls.key = key.display().to_string();
    cert_pem
}

/// An HTTPS client that trusts `cert_pem` and nothing else.
fn trusting(cert_pem: &str) -> reqwest::ClientBuilder {
    // reqwest is built without a crypto provider of its own.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cert = reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([cert])
        .https_only(true)
}

#[tokio::test]
async fn ping_over_https_answers_pong_and_sees_the_peer_address() {
    let server = TlsServer::start().await;
    let creds = server.client().await;

    let resp = server.ping(&server.http, &creds, "xml").await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.body,
        r#"<?xml version="1.0" encoding="UTF-8"?><response status="success" code="1"><message><![CDATA[pong]]></message></response>"#
    );
    let resp = server.ping(&server.http, &creds, "json").await;
    assert_eq!(
        resp.json(),
        serde_json::json!({"response": {"code": "1", "status": "success", "message": "pong"}})
    );

    // The whitelist is checked against the TLS peer's address.
    server.set_whitelist(&creds, "127.0.0.1/32").await;
    assert_code(&server.ping(&server.http, &creds, "xml").await, 1);
    server.set_whitelist(&creds, "203.0.113.0/24").await;
    let resp = server.ping(&server.http, &creds, "json").await;
    assert_eq!(resp.status, 403);
    assert!(
        resp.message()
            .contains("127.0.0.1 is not on this client's whitelist"),
        "{}",
        resp.body
    );
}

#[tokio::test]
async fn both_http_versions_are_offered_over_tls() {
    let server = TlsServer::start().await;
    let creds = server.client().await;
    let healthz = format!("{}/healthz", server.base);
    let h2 = server.http.get(&healthz).send().await.unwrap();
    assert_eq!(h2.version(), reqwest::Version::HTTP_2, "ALPN offers h2");

    let http1 = trusting(&server.cert_pem).http1_only().build().unwrap();
    let h1 = http1.get(&healthz).send().await.unwrap();
    assert_eq!(h1.version(), reqwest::Version::HTTP_11);
    assert_code(&server.ping(&http1, &creds, "xml").await, 1);
}

#[tokio::test]
async fn silent_and_failed_handshakes_do_not_hold_up_other_clients() {
    let server = TlsServer::start().await;
    let creds = server.client().await;
    // Connects and never says anything.
    let silent = TcpStream::connect(server.address).await.unwrap();
    // Speaks plain HTTP to the TLS port: its handshake fails and it is dropped.
    let mut plain = TcpStream::connect(server.address).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer)).await;
    assert!(closed.is_ok(), "a failed handshake is closed");
    assert!(!String::from_utf8_lossy(&answer).contains("ok"));

    // Well inside the 10 s handshake deadline, so a server that handshook
    // one connection at a time would still be waiting on `silent`.
    let http = trusting(&server.cert_pem)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    assert_code(&server.ping(&http, &creds, "xml").await, 1);
    drop(silent);
}

/// Runs `moms serve` with `config`, which must fail before it listens.
async fn serve_error(config: Config) -> String {
    let outcome = tokio::time::timeout(Duration::from_secs(30), moms::admin::serve(config)).await;
    match outcome {
        Ok(Err(error)) => format!("{error:#}"),
        Ok(Ok(())) => panic!("serve returned without an error"),
        Err(_) => panic!("serve started despite the bad TLS settings"),
    }
}

#[tokio::test]
async fn bad_tls_settings_stop_serve_naming_the_key_and_file() {
    let dir = data_dir();
    let mut good = test_config(dir.path());
    good.listen = "127.0.0.1:0".into();
    write_certificate(dir.path(), &mut good);
    let missing = dir.path().join("missing.pem").display().to_string();

    let mut config = good.clone();
    config.tls.cert = missing.clone();
    let error = serve_error(config).await;
    assert!(
        error.starts_with(&format!("tls.cert {missing}: cannot read: ")),
        "{error}"
    );
    assert!(
        error
            .ends_with("set tls.cert and tls.key to PEM files, or leave both empty for plain HTTP"),
        "{error}"
    );

    let mut config = good.clone();
    config.tls.key = missing.clone();
    let error = serve_error(config).await;
    assert!(
        error.starts_with(&format!("tls.key {missing}: cannot read: ")),
        "{error}"
    );

    let mut config = good.clone();
    config.tls.key = String::new();
    let error = serve_error(config).await;
    assert!(
        error.starts_with("tls.cert is set but tls.key is empty"),
        "{error}"
    );

    // The key file where the certificate belongs.
    let mut config = good.clone();
    config.tls.cert = good.tls.key.clone();
    let error = serve_error(config).await;
    assert!(
        error.starts_with(&format!(
            "tls.cert {}: holds no \"BEGIN CERTIFICATE\"",
            good.tls.key
        )),
        "{error}"
    );

    // A key of another certificate.
    let other = tempfile::tempdir().unwrap();
    let mut config = good.clone();
    write_certificate(other.path(), &mut config);
    config.tls.cert = good.tls.cert.clone();
    let error = serve_error(config.clone()).await;
    assert!(
        error.starts_with(&format!(
            "tls.key {} does not fit the certificate in tls.cert {}",
            config.tls.key, config.tls.cert
        )),
        "{error}"
    );
}
