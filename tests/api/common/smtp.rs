//! A real local SMTP server for e-mail callbacks: speaks enough of RFC 5321
//! (EHLO/HELO, AUTH PLAIN and LOGIN, MAIL, RCPT, DATA, RSET, NOOP, QUIT),
//! records every accepted message and refuses on command.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// One accepted message.
#[derive(Debug, Clone, Default)]
pub struct MailMessage {
    /// MAIL FROM's address.
    pub from: String,
    /// Every RCPT TO address.
    pub to: Vec<String>,
    /// The message as sent after DATA (dot-unstuffed, CRLF line ends).
    pub data: String,
    /// `(user, password)` when the client authenticated.
    pub auth: Option<(String, String)>,
}

impl MailMessage {
    /// A header's value (first occurrence, name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or("");
        head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    /// The text after the headers.
    pub fn body(&self) -> &str {
        self.data
            .split_once("\r\n\r\n")
            .map_or("", |(_, body)| body)
    }
}

#[derive(Default)]
struct Inner {
    messages: Vec<MailMessage>,
    /// MAIL FROM commands seen, refused or not.
    attempts: usize,
    /// How many of the next MAIL FROM commands to answer with 451.
    refuse_next: usize,
}

#[derive(Clone)]
pub struct SmtpServer {
    /// `127.0.0.1:<port>`, as `smtp.relay` takes it.
    pub address: String,
    inner: Arc<Mutex<Inner>>,
}

impl SmtpServer {
    pub async fn start() -> SmtpServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let inner = Arc::new(Mutex::new(Inner::default()));
        let shared = inner.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(session(stream, shared.clone()));
            }
        });
        SmtpServer { address, inner }
    }

    /// Refuses the next `n` messages with a transient 451 at MAIL FROM.
    pub fn refuse_next(&self, n: usize) {
        self.inner.lock().unwrap().refuse_next = n;
    }

    pub fn messages(&self) -> Vec<MailMessage> {
        self.inner.lock().unwrap().messages.clone()
    }

    /// How many messages were begun (MAIL FROM), refused ones included.
    pub fn attempts(&self) -> usize {
        self.inner.lock().unwrap().attempts
    }

    /// Waits until `n` messages were accepted (panics after 10 s).
    pub async fn wait_for(&self, n: usize) -> Vec<MailMessage> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} mails, got {}: {messages:?}",
                messages.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

struct Conn {
    lines: BufReader<OwnedReadHalf>,
    out: OwnedWriteHalf,
}

impl Conn {
    async fn reply(&mut self, text: &str) -> std::io::Result<()> {
        self.out.write_all(text.as_bytes()).await?;
        self.out.write_all(b"\r\n").await
    }

    /// The next line without its CRLF; `None` at the end of the stream.
    async fn line(&mut self) -> std::io::Result<Option<String>> {
        let mut line = String::new();
        if self.lines.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        Ok(Some(line.trim_end_matches(['\r', '\n']).to_string()))
    }
}

async fn session(stream: TcpStream, inner: Arc<Mutex<Inner>>) {
    let (read, out) = stream.into_split();
    let mut conn = Conn {
        lines: BufReader::new(read),
        out,
    };
    let _ = converse(&mut conn, &inner).await;
}

async fn converse(conn: &mut Conn, inner: &Mutex<Inner>) -> std::io::Result<()> {
    conn.reply("220 fake.test ESMTP").await?;
    let mut auth = None;
    let mut message = MailMessage::default();
    while let Some(line) = conn.line().await? {
        let (verb, rest) = line.split_once(' ').unwrap_or((&line, ""));
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" => {
                conn.reply("250-fake.test\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME")
                    .await?
            }
            "HELO" => conn.reply("250 fake.test").await?,
            "AUTH" => {
                auth = authenticate(conn, rest).await?;
                let answer = if auth.is_some() {
                    "235 2.7.0 authenticated"
                } else {
                    "535 5.7.8 bad credentials"
                };
                conn.reply(answer).await?;
            }
            "MAIL" => {
                let refuse = {
                    let mut inner = inner.lock().unwrap();
                    inner.attempts += 1;
                    let refuse = inner.refuse_next > 0;
                    inner.refuse_next = inner.refuse_next.saturating_sub(1);
                    refuse
                };
                if refuse {
                    conn.reply("451 4.3.0 try again later").await?;
                } else {
                    message = MailMessage {
                        from: address_of(rest),
                        auth: auth.clone(),
                        ..MailMessage::default()
                    };
                    conn.reply("250 2.1.0 ok").await?;
                }
            }
            "RCPT" => {
                message.to.push(address_of(rest));
                conn.reply("250 2.1.5 ok").await?;
            }
            "DATA" => {
                conn.reply("354 end with <CRLF>.<CRLF>").await?;
                message.data = data(conn).await?;
                inner
                    .lock()
                    .unwrap()
                    .messages
                    .push(std::mem::take(&mut message));
                conn.reply("250 2.0.0 queued").await?;
            }
            "RSET" => {
                message = MailMessage::default();
                conn.reply("250 2.0.0 ok").await?;
            }
            "NOOP" => conn.reply("250 2.0.0 ok").await?,
            "QUIT" => {
                conn.reply("221 2.0.0 bye").await?;
                return Ok(());
            }
            _ => conn.reply("502 5.5.2 not implemented").await?,
        }
    }
    Ok(())
}

/// `FROM:<a@b> SIZE=1` → `a@b`.
fn address_of(argument: &str) -> String {
    let start = argument.find('<').map_or(0, |i| i + 1);
    let end = argument.find('>').unwrap_or(argument.len());
    argument[start..end.max(start)].to_string()
}

/// AUTH PLAIN (with or without an initial response) or AUTH LOGIN.
async fn authenticate(conn: &mut Conn, rest: &str) -> std::io::Result<Option<(String, String)>> {
    let decode = |s: &str| {
        STANDARD
            .decode(s.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
    };
    let (mechanism, initial) = rest.split_once(' ').unwrap_or((rest, ""));
    match mechanism.to_ascii_uppercase().as_str() {
        "PLAIN" => {
            let response = if initial.is_empty() {
                conn.reply("334 ").await?;
                conn.line().await?.unwrap_or_default()
            } else {
                initial.to_string()
            };
            // authzid NUL authcid NUL password
            Ok(decode(&response).and_then(|plain| {
                let mut parts = plain.split('\0').skip(1);
                Some((parts.next()?.to_string(), parts.next()?.to_string()))
            }))
        }
        "LOGIN" => {
            conn.reply("334 VXNlcm5hbWU6").await?;
            let user = conn.line().await?.unwrap_or_default();
            conn.reply("334 UGFzc3dvcmQ6").await?;
            let password = conn.line().await?.unwrap_or_default();
            Ok(decode(&user).zip(decode(&password)))
        }
        _ => Ok(None),
    }
}

/// The DATA lines up to the lone dot, dot-unstuffed.
async fn data(conn: &mut Conn) -> std::io::Result<String> {
    let mut text = String::new();
    while let Some(line) = conn.line().await? {
        if line == "." {
            break;
        }
        text.push_str(line.strip_prefix('.').unwrap_or(&line));
        text.push_str("\r\n");
    }
    Ok(text)
}
