//! The integration harness: the real server on port 0 with a temp data
//! folder, called over HTTP.

#![allow(dead_code)]

pub mod database;
pub mod mmsc;
pub mod receiver;
pub mod smsc;
pub mod smtp;
pub mod xml;

use std::sync::Arc;
use std::time::Duration;

use moms::app::App;
use moms::config::Config;
use serde_json::Value;
use tokio::sync::oneshot;

// postgres_url: for tests that branch on the database themselves.
#[allow(unused_imports)]
pub use database::{
    DataDir, data_dir, database_url, moms_command, postgres_url, skip_on_postgres, store_section,
    store_view,
};
pub use receiver::Receiver;
pub use xml::Element;

pub struct Server {
    /// `http://127.0.0.1:<port>`
    pub base: String,
    pub app: Arc<App>,
    pub http: reqwest::Client,
    /// None once stopped (handed back by `stop`).
    dir: Option<DataDir>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// A client's credentials, plus its default campaign when one was made.
#[derive(Debug, Clone)]
pub struct Creds {
    pub client_id: String,
    pub token: String,
    pub callback_secret: String,
}

impl Creds {
    /// The credentials as a query string.
    pub fn query(&self) -> String {
        format!("client_id={}&token={}", self.client_id, self.token)
    }
}

/// One HTTP answer.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

/// The configuration tests start from: a data folder made by [`data_dir`]
/// (and its database), no demo, and loopback allowed for fetches and
/// callbacks.
pub fn test_config(dir: &std::path::Path) -> Config {
    let mut config = Config::load(None).expect("defaults");
    config.data_dir = dir.to_path_buf();
    if let Some(url) = database_url(dir) {
        config.store.url = url;
    }
    config.demo = false;
    config.fetch.allow_private_networks = true;
    config.sandbox.receipt_millis = 20;
    config.delivery.poll_millis = 20;
    config
}

/// With `MOMS_LOG` set (as for the binary, e.g. `MOMS_LOG=warn`), the test
/// servers' log goes to each test's output, shown when it fails: the cause
/// of a 500 is in the log, not in the answer.
fn log_to_test_output() {
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("MOMS_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
}

impl Server {
    pub async fn start() -> Server {
        Server::start_with(|_| {}).await
    }

    pub async fn start_with(change: impl FnOnce(&mut Config)) -> Server {
        let dir = data_dir();
        let mut config = test_config(dir.path());
        change(&mut config);
        Server::start_in(dir, config).await
    }

    /// Starts on an existing data folder (a restart).
    pub async fn start_in(dir: DataDir, config: Config) -> Server {
        log_to_test_output();
        let app = App::open(config).await.expect("app opens");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(moms::app::serve(app.clone(), listener, async move {
            let _ = stopped.await;
        }));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Server {
            base,
            app,
            http,
            dir: Some(dir),
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// The data folder.
    pub fn dir(&self) -> &std::path::Path {
        self.dir
            .as_ref()
            .expect("a running server has its folder")
            .path()
    }

    /// Stops the server and hands back its data folder (and database).
    pub async fn stop(mut self) -> DataDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.dir.take().expect("stopped once")
    }

    /// A new client with the given senders.
    pub async fn client_with(&self, senders: &[&str]) -> Creds {
        new_client(&self.app.store, "Test client", senders).await
    }

    /// A new client that may send from short code 21534 and +1 310 555 0100.
    pub async fn client(&self) -> Creds {
        self.client_with(&["21534", "13105550100"]).await
    }

    /// POSTs an urlencoded form to `/moms/<method>` with the client's credentials.
    pub async fn call(&self, creds: &Creds, method: &str, params: &[(&str, &str)]) -> Resp {
        let mut form: Vec<(&str, &str)> =
            vec![("client_id", &creds.client_id), ("token", &creds.token)];
        form.extend_from_slice(params);
        self.post_form(&format!("/moms/{method}"), &form).await
    }

    /// Like `call`, with `format=json`, parsed.
    pub async fn call_json(&self, creds: &Creds, method: &str, params: &[(&str, &str)]) -> Value {
        let mut form: Vec<(&str, &str)> = params.to_vec();
        form.push(("format", "json"));
        self.call(creds, method, &form).await.json()
    }

    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Resp {
        let body = serde_urlencoded_pairs(form);
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("request");
        Resp::read(response).await
    }

    pub async fn get(&self, path_and_query: &str) -> Resp {
        let response = self
            .http
            .get(format!("{}{path_and_query}", self.base))
            .send()
            .await
            .expect("request");
        Resp::read(response).await
    }

    /// GETs with one extra request header.
    pub async fn get_with(&self, path_and_query: &str, header: (&str, &str)) -> Resp {
        let url = format!("{}{path_and_query}", self.base);
        Resp::read(
            self.http
                .get(url)
                .header(header.0, header.1)
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    /// Sends raw bytes with a content type.
    pub async fn post_raw(&self, path: &str, content_type: &str, body: Vec<u8>) -> Resp {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request");
        Resp::read(response).await
    }

    /// Runs the delivery worker until nothing is due (or `limit` passes).
    pub async fn settle(&self) {
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Form-encodes pairs (every byte but unreserved ones escaped).
pub fn serde_urlencoded_pairs(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

pub fn encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

impl Resp {
    pub async fn read(response: reqwest::Response) -> Resp {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await.expect("body");
        Resp {
            status,
            headers,
            body,
        }
    }

    /// The parsed XML envelope; panics (with the body) when not well-formed.
    pub fn xml(&self) -> Element {
        assert!(
            self.body
                .starts_with(r#"<?xml version="1.0" encoding="UTF-8"?>"#),
            "no XML declaration: {}",
            self.body
        );
        let root =
            xml::parse(&self.body).unwrap_or_else(|e| panic!("malformed XML ({e}): {}", self.body));
        assert_eq!(root.name, "response", "{}", self.body);
        root
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("malformed JSON ({e}): {}", self.body))
    }

    /// The envelope's code, XML or JSON.
    pub fn code(&self) -> u16 {
        if self.body.starts_with('{') {
            self.json()["response"]["code"]
                .as_str()
                .expect("code is a string")
                .parse()
                .unwrap()
        } else {
            self.xml().attr("code").parse().unwrap()
        }
    }

    /// The envelope's message, XML or JSON.
    pub fn message(&self) -> String {
        if self.body.starts_with('{') {
            self.json()["response"]["message"]
                .as_str()
                .unwrap()
                .to_string()
        } else {
            self.xml().child("message").text.clone()
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Asserts an answer's code and, for error codes, the HTTP status rule of
/// spec section 1 (200 for processed requests).
#[track_caller]
pub fn assert_code(resp: &Resp, code: u16) {
    assert_eq!(resp.code(), code, "{}", resp.body);
    if code != 500 && !(code == 403 && resp.status == 403) {
        assert_eq!(resp.status, 200, "{}", resp.body);
    }
}

/// A new client with the given senders, made in `store` as an operator would.
pub async fn new_client(store: &moms::store::Store, name: &str, senders: &[&str]) -> Creds {
    let senders: Vec<String> = senders.iter().map(|s| s.to_string()).collect();
    let created = store.create_client(name, &senders, &[]).await.unwrap();
    Creds {
        client_id: created.client_id.to_string(),
        token: created.token,
        callback_secret: created.callback_secret,
    }
}

/// Closes a store a test opened to seed a data folder, before a `moms`
/// process opens it.
pub async fn close_store(store: moms::store::Store) {
    moms::with_db!(store, |pool, writer| {
        pool.close().await;
        writer.close().await;
    });
}

/// Settings of an SMS campaign of this client sending from short code 21534;
/// tests change what they need.
pub fn campaign_settings(creds: &Creds, name: &str) -> moms::store::campaign::Campaign {
    moms::store::campaign::Campaign {
        id: 0,
        client_id: creds.client_id.parse().unwrap(),
        name: name.into(),
        kind: "sms".into(),
        sender: "21534".into(),
        keyword: String::new(),
        callback_url: String::new(),
        callback_format: "xml".into(),
        opt_in: "none".into(),
        require_names: false,
        help_message: String::new(),
        stop_message: String::new(),
        mms_fallback: "fail".into(),
        destroyed: false,
    }
}

/// CRC-32 (ISO 3309), for PNG chunks that tests write by hand.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
