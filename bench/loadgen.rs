//! The benchmark's load generator and peers, in one small program:
//!
//! - `loadgen http`: an HTTP/1.1 keep-alive client that sends an exact number
//!   of requests (or for a duration) over C connections and prints the rate
//!   and latency percentiles as one JSON line. `{seq}` in the URL or body is
//!   replaced by a 6-digit counter, so every send can go to another number,
//!   and `{num}` by a number spread over BASE..BASE+SPAN (`--num`), for
//!   lookups of stored rows. With `-r RATE` it sends at that total rate
//!   (open loop: latency counts from when a request was due, not sent).
//! - `loadgen sink`: an HTTP server that answers 200 to everything and counts
//!   what it got (callbacks); `GET /count` answers `<count> <ms of the last>`.
//! - `loadgen smpp`: a bare SMPP client (bind, submit_sm with a window,
//!   answer receipts): the ceiling of an SMSC without any server in between.
//!
//! It is written by hand on raw sockets so its own cost per request stays far
//! below the server's: the figures should measure the server, not this.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use rusmpp::pdus::{BindTransceiver, DeliverSmResp, SubmitSm};
use rusmpp::tokio_codec::CommandCodec;
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{InterfaceVersion, Npi, RegisteredDelivery, Ton};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Framed;

fn usage() -> ! {
    eprintln!(
        "usage:
  loadgen http URL [--body FORM] [-c CONNECTIONS] [-n REQUESTS | -d SECONDS] [-r RATE]
               [--expect TEXT] [--num BASE:SPAN]
  loadgen sink PORT
  loadgen port
  loadgen smpp HOST:PORT [-n MESSAGES] [-w WINDOW] [--receipts]"
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match args.first().map(String::as_str) {
        Some("http") => runtime.block_on(http(&args[1..])),
        Some("sink") => runtime.block_on(sink(&args[1..])),
        Some("smpp") => runtime.block_on(smpp(&args[1..])),
        Some("port") => {
            // A free port for a server the benchmark starts next.
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            println!("{}", listener.local_addr().expect("bound").port());
        }
        _ => usage(),
    }
}

/// The CPU time (user and system) this process has used so far: what the
/// load itself cost the machine, beside the server's. 0 where `/proc` is
/// missing.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // The fields after the command name, which is in parentheses and may
    // hold spaces: utime and stime are the 12th and 13th, in ticks of
    // 1/100 s (USER_HZ, the same on every Linux).
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: f64 = after_name
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|field| field.parse::<f64>().ok())
        .sum();
    ticks / 100.0
}

/// The value after `flag`, if given.
fn option<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn number<T: FromStr>(args: &[String], flag: &str, default: T) -> T {
    match option(args, flag) {
        Some(value) => value.parse().unwrap_or_else(|_| usage()),
        None => default,
    }
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

struct Target {
    addr: SocketAddr,
    host: String,
    path: String,
    body: Option<String>,
    expect: Option<String>,
    num: (u64, u64),
}

impl Target {
    fn request(&self, seq: u64) -> Vec<u8> {
        // A large prime stride visits BASE..BASE+SPAN in a scattered order.
        let num = (self.num.0 + seq.wrapping_mul(2_654_435_761) % self.num.1.max(1)).to_string();
        let seq = format!("{:06}", seq % 1_000_000);
        let path = self.path.replace("{seq}", &seq).replace("{num}", &num);
        match &self.body {
            Some(body) => {
                let body = body.replace("{seq}", &seq).replace("{num}", &num);
                format!(
                    "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                    self.host,
                    body.len()
                )
                .into_bytes()
            }
            None => format!("GET {path} HTTP/1.1\r\nHost: {}\r\n\r\n", self.host).into_bytes(),
        }
    }
}

/// Splits `http://host:port/path?query`.
fn parse_url(url: &str) -> (SocketAddr, String, String) {
    let rest = url.strip_prefix("http://").unwrap_or_else(|| usage());
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr = std::net::ToSocketAddrs::to_socket_addrs(host)
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| usage());
    let path = if path.is_empty() { "/" } else { path };
    (addr, host.to_string(), path.to_string())
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    failed: u64,
    first_failure: Option<String>,
}

async fn http(args: &[String]) {
    let url = args.first().unwrap_or_else(|| usage());
    let (addr, host, path) = parse_url(url);
    let target = Arc::new(Target {
        addr,
        host,
        path,
        body: option(args, "--body").map(str::to_string),
        expect: option(args, "--expect").map(str::to_string),
        num: option(args, "--num")
            .and_then(|n| n.split_once(':'))
            .and_then(|(b, s)| Some((b.parse().ok()?, s.parse().ok()?)))
            .unwrap_or((0, 1)),
    });
    let connections: usize = number(args, "-c", 1);
    let requests: u64 = number(args, "-n", 0);
    let seconds: f64 = number(args, "-d", 0.0);
    let rate: f64 = number(args, "-r", 0.0);
    // Each connection sends every `interval`, offset so they do not bunch up.
    let interval = (rate > 0.0).then(|| Duration::from_secs_f64(connections as f64 / rate));
    if requests == 0 && seconds <= 0.0 {
        usage();
    }
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = (seconds > 0.0).then(|| started + Duration::from_secs_f64(seconds));
    let mut tasks = Vec::new();
    for index in 0..connections {
        let (target, issued) = (target.clone(), issued.clone());
        let pace = interval.map(|every| Pace {
            every,
            next: started + every.mul_f64(index as f64 / connections as f64),
        });
        tasks.push(tokio::spawn(async move {
            connection(&target, &issued, requests, deadline, pace).await
        }));
    }
    let mut tally = Tally::default();
    for task in tasks {
        let part = task.await.expect("a connection task");
        tally.latencies_us.extend(part.latencies_us);
        tally.failed += part.failed;
        tally.first_failure = tally.first_failure.or(part.first_failure);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let ok = tally.latencies_us.len();
    tally.latencies_us.sort_unstable();
    let percentile = |p: f64| -> f64 {
        if ok == 0 {
            return 0.0;
        }
        let index = ((ok as f64 * p).ceil() as usize).clamp(1, ok) - 1;
        tally.latencies_us[index] as f64 / 1000.0
    };
    println!(
        "{{\"ok\":{ok},\"failed\":{},\"seconds\":{elapsed:.3},\"rate\":{:.0},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"max_ms\":{:.3},\"cpu_s\":{:.3}}}",
        tally.failed,
        ok as f64 / elapsed,
        percentile(0.50),
        percentile(0.99),
        percentile(1.0),
        cpu_seconds(),
    );
    if let Some(failure) = tally.first_failure {
        eprintln!("first failure: {failure}");
    }
}

/// When a paced connection sends its next request.
struct Pace {
    every: Duration,
    next: Instant,
}

/// One keep-alive connection sending requests one after another.
async fn connection(
    target: &Target,
    issued: &AtomicU64,
    requests: u64,
    deadline: Option<Instant>,
    mut pace: Option<Pace>,
) -> Tally {
    let mut tally = Tally::default();
    let mut stream: Option<TcpStream> = None;
    let mut buffer = Vec::with_capacity(4096);
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let seq = issued.fetch_add(1, Ordering::Relaxed);
        if requests > 0 && seq >= requests {
            break;
        }
        let request = target.request(seq);
        let sent = match pace.as_mut() {
            Some(pace) => {
                let due = pace.next;
                pace.next += pace.every;
                tokio::time::sleep_until(due.into()).await;
                due
            }
            None => Instant::now(),
        };
        if stream.is_none() {
            match TcpStream::connect(target.addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    stream = Some(s);
                }
                Err(error) => {
                    fail(&mut tally, format!("connect: {error}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let socket = stream.as_mut().expect("connected above");
        match exchange(socket, &request, &mut buffer).await {
            Ok((status, body)) => {
                let good = (200..300).contains(&status)
                    && target
                        .expect
                        .as_deref()
                        .is_none_or(|e| contains(&body, e.as_bytes()));
                if good {
                    let micros = sent.elapsed().as_micros().min(u32::MAX as u128) as u32;
                    tally.latencies_us.push(micros);
                } else {
                    fail(
                        &mut tally,
                        format!("HTTP {status}: {}", String::from_utf8_lossy(&body)),
                    );
                }
            }
            Err(error) => {
                fail(&mut tally, error);
                stream = None;
            }
        }
    }
    tally
}

fn fail(tally: &mut Tally, why: String) {
    tally.failed += 1;
    tally.first_failure.get_or_insert(why);
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Writes one request and reads its response: (status, body).
async fn exchange(
    socket: &mut TcpStream,
    request: &[u8],
    buffer: &mut Vec<u8>,
) -> Result<(u16, Vec<u8>), String> {
    socket
        .write_all(request)
        .await
        .map_err(|e| format!("write: {e}"))?;
    buffer.clear();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = find(buffer, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
            let status: u16 = head
                .get(9..12)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("bad status line in {head:?}"))?;
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| format!("no content-length in {head:?}"))?;
            let total = end + 4 + length;
            while buffer.len() < total {
                let n = socket
                    .read(&mut chunk)
                    .await
                    .map_err(|e| format!("read: {e}"))?;
                if n == 0 {
                    return Err("closed mid-body".into());
                }
                buffer.extend_from_slice(&chunk[..n]);
            }
            return Ok((status, buffer[end + 4..total].to_vec()));
        }
        let n = socket
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("closed before an answer".into());
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Counts requests; `GET /count` answers "<count> <unix ms of the last>".
async fn sink(args: &[String]) {
    let port: u16 = args
        .first()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| usage());
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("the sink's port is free");
    println!("LISTENING {}", listener.local_addr().expect("bound").port());
    let count = Arc::new(AtomicU64::new(0));
    let last = Arc::new(AtomicU64::new(0));
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        let (count, last) = (count.clone(), last.clone());
        tokio::spawn(async move {
            let _ = serve_sink(socket, &count, &last).await;
        });
    }
}

async fn serve_sink(mut socket: TcpStream, count: &AtomicU64, last: &AtomicU64) -> Option<()> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let end = loop {
            if let Some(end) = find(&buffer, b"\r\n\r\n") {
                break end;
            }
            let n = socket.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buffer.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buffer.len() < end + 4 + length {
            let n = socket.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buffer.extend_from_slice(&chunk[..n]);
        }
        buffer.drain(..end + 4 + length);
        let body = if head.starts_with("get /count") {
            format!(
                "{} {}\n",
                count.load(Ordering::SeqCst),
                last.load(Ordering::SeqCst)
            )
        } else {
            count.fetch_add(1, Ordering::SeqCst);
            last.store(unix_ms() as u64, Ordering::SeqCst);
            String::new()
        };
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        socket.write_all(response.as_bytes()).await.ok()?;
    }
}

/// Binds as a transceiver and submits `-n` messages with `-w` outstanding;
/// prints the submit rate and, with `--receipts`, the receipt rate.
async fn smpp(args: &[String]) {
    let addr = args.first().unwrap_or_else(|| usage());
    let messages: u64 = number(args, "-n", 10_000);
    let window: u64 = number(args, "-w", 64);
    let receipts = args.iter().any(|a| a == "--receipts");
    let socket = TcpStream::connect(addr.as_str())
        .await
        .expect("the SMSC answers");
    let _ = socket.set_nodelay(true);
    let mut framed = Framed::new(socket, CommandCodec::new());
    let bind = BindTransceiver::new(
        COctetString::from_str("bench").expect("ascii"),
        COctetString::from_str("bench").expect("ascii"),
        COctetString::empty(),
        InterfaceVersion::Smpp3_4,
        Ton::Unknown,
        Npi::Unknown,
        COctetString::empty(),
    );
    framed
        .send(Command::new(CommandStatus::EsmeRok, 1, bind))
        .await
        .expect("bind sent");
    loop {
        let answer = framed
            .next()
            .await
            .expect("a bind answer")
            .expect("a command");
        if answer.id() == CommandId::BindTransceiverResp {
            assert_eq!(answer.status(), CommandStatus::EsmeRok, "bind refused");
            break;
        }
    }
    let started = Instant::now();
    let (mut sent, mut acked, mut delivered) = (0u64, 0u64, 0u64);
    let (mut acked_at, mut delivered_at) = (Duration::ZERO, Duration::ZERO);
    let (mut sink, mut stream) = framed.split();
    while acked < messages || (receipts && delivered < messages) {
        while sent < messages && sent - acked < window {
            sent += 1;
            let pdu = SubmitSm::builder()
                .source_addr(COctetString::from_str("21534").expect("ascii"))
                .destination_addr(
                    COctetString::from_str(&format!("13102{:06}", sent % 1_000_000))
                        .expect("ascii"),
                )
                .registered_delivery(RegisteredDelivery::from(u8::from(receipts)))
                .short_message(OctetString::from_slice(b"bench message").expect("short"))
                .build();
            sink.feed(Command::new(CommandStatus::EsmeRok, sent as u32 + 1, pdu))
                .await
                .expect("submit sent");
        }
        sink.flush().await.expect("flushed");
        let command = stream
            .next()
            .await
            .expect("the SMSC stays connected")
            .expect("a command");
        match command.id() {
            CommandId::SubmitSmResp => {
                acked += 1;
                acked_at = started.elapsed();
            }
            CommandId::DeliverSm => {
                delivered += 1;
                delivered_at = started.elapsed();
                let resp = DeliverSmResp::builder()
                    .message_id(COctetString::empty())
                    .build();
                sink.feed(Command::new(
                    CommandStatus::EsmeRok,
                    command.sequence_number(),
                    Pdu::DeliverSmResp(resp),
                ))
                .await
                .expect("answer sent");
            }
            CommandId::EnquireLink => {
                sink.feed(Command::new(
                    CommandStatus::EsmeRok,
                    command.sequence_number(),
                    Pdu::EnquireLinkResp,
                ))
                .await
                .expect("answer sent");
            }
            _ => {}
        }
    }
    let rate = |n: u64, at: Duration| n as f64 / at.as_secs_f64().max(1e-9);
    println!(
        "{{\"messages\":{messages},\"window\":{window},\"submit_rate\":{:.0},\"receipt_rate\":{:.0},\"cpu_s\":{:.3}}}",
        rate(acked, acked_at),
        if receipts {
            rate(delivered, delivered_at)
        } else {
            0.0
        },
        cpu_seconds(),
    );
}
