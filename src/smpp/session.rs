//! One SMPP connection of a bind: connect, bind, keep the link alive,
//! submit the jobs it takes from its carrier's queue, pass on what the
//! SMSC sends, and unbind cleanly on shutdown.
//!
//! The [`client`](super::client) owns the socket, the sequence numbers and
//! the enquire_link keep-alive. What is the session's: the window (a semaphore of `window`
//! outstanding `submit_sm`), the throughput limit ([`Pace`]: messages a
//! second, halved for a while after a throttling answer), and reconnection
//! with exponential back-off and jitter. No lock is held across I/O: the
//! pace and the reassembly buffer are behind std mutexes taken for a few
//! instructions; the shared job queue is taken by one connection at a time
//! only while it waits for the next job.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::join_all;
use rand::Rng;
use rusmpp::pdus::{DeliverSm, SubmitSm};
use rusmpp::tlvs::TlvValue;
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{
    DataCoding, EsmClass, InterfaceVersion, MCDeliveryReceipt, Npi, RegisteredDelivery, Ton,
};
use rusmpp::{CommandStatus, Pdu};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

use super::client::{BindKind, Client, Events, Login, Timers};
use super::pdu::encoding::{self, Concat};
use super::receipt;
use super::{Answer, Failure, Job, Report, SegmentResult};
use crate::app::App;
use crate::cluster::Lease;
use crate::config::SmppBind;
use crate::domain::phone::PhoneNumber;
use crate::inbound::InboundMessage;

/// The first reconnection delay; each failure doubles it up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The rate a connection without a limit falls to when first throttled.
const UNLIMITED_FALLBACK: f64 = 200.0;
/// The slowest a throttled connection goes.
const SLOWEST: f64 = 5.0;
/// Throttled answers within this long of a slow-down count as one: a full
/// window answered "throttled" at once must not halve the rate 64 times.
const DEBOUNCE: Duration = Duration::from_secs(1);

/// The jobs of one carrier, shared by its connections.
pub type Queue = Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Job>>>;

/// The throughput limit of one connection.
pub struct Pace {
    base: Option<f64>,
    slow_for: Duration,
    state: Mutex<PaceState>,
}

struct PaceState {
    rate: Option<f64>,
    slowed_at: Option<Instant>,
    next: Instant,
}

impl Pace {
    pub fn new(per_second: f64, slow_for: Duration) -> Pace {
        let base = (per_second > 0.0).then_some(per_second);
        Pace {
            base,
            slow_for,
            state: Mutex::new(PaceState {
                rate: base,
                slowed_at: None,
                next: Instant::now(),
            }),
        }
    }

    /// Waits for the next slot.
    pub async fn wait(&self) {
        let at = {
            let mut state = self.state.lock().expect("pace lock");
            let now = Instant::now();
            if state.slowed_at.is_some_and(|at| now >= at + self.slow_for) {
                // Back to full speed; slots booked at the slow rate are forgotten.
                state.slowed_at = None;
                state.rate = self.base;
                state.next = now;
            }
            let Some(rate) = state.rate else {
                return;
            };
            let at = state.next.max(now);
            state.next = at + Duration::from_secs_f64(1.0 / rate);
            at
        };
        tokio::time::sleep_until(at).await;
    }

    /// Halves the rate for a while (the SMSC said throttled or queue full).
    pub fn slow_down(&self) {
        let mut state = self.state.lock().expect("pace lock");
        let now = Instant::now();
        if state.slowed_at.is_some_and(|at| now < at + DEBOUNCE) {
            return;
        }
        let current = state.rate.unwrap_or(UNLIMITED_FALLBACK * 2.0);
        state.rate = Some((current / 2.0).max(SLOWEST));
        state.slowed_at = Some(now);
    }
}

/// Runs one connection of `bind` until `stop` changes.
pub async fn run(
    app: Arc<App>,
    bind: SmppBind,
    lease: Lease,
    queue: Queue,
    reports: mpsc::UnboundedSender<Report>,
    mut stop: watch::Receiver<bool>,
) {
    // Bound only while this node holds the connection's lease: with several
    // nodes, one binds and the others wait to take over should it die.
    while lease.take(&mut stop).await {
        let (halt_tx, halt) = watch::channel(false);
        let keeper = tokio::spawn({
            let (lease, stop) = (lease.clone(), stop.clone());
            async move { lease.keep(stop, halt_tx).await }
        });
        app.smpp.set_serving(bind.carrier_id, true);
        hold(&app, &bind, &queue, &reports, halt).await;
        app.smpp.set_serving(bind.carrier_id, false);
        keeper.abort();
        if *stop.borrow() {
            lease.release().await;
            return;
        }
    }
}

/// Binds and rebinds until `halt` is raised (stop, or the lease lost).
async fn hold(
    app: &Arc<App>,
    bind: &SmppBind,
    queue: &Queue,
    reports: &mpsc::UnboundedSender<Report>,
    mut stop: watch::Receiver<bool>,
) {
    let pace = Arc::new(Pace::new(
        bind.max_per_second,
        Duration::from_secs(bind.throttle_secs),
    ));
    let window = Arc::new(Semaphore::new(bind.window.max(1)));
    let parts = Arc::new(Mutex::new(Parts::default()));
    let mut failures = 0u32;
    loop {
        if *stop.borrow() {
            return;
        }
        match connect(bind).await {
            Ok((client, events)) => {
                failures = 0;
                tracing::info!(host = %bind.host, port = bind.port, "SMPP bound");
                let link = Link {
                    app: app.clone(),
                    bind: bind.clone(),
                    client,
                    pace: pace.clone(),
                    window: window.clone(),
                    reports: reports.clone(),
                    parts: parts.clone(),
                };
                app.smpp.set_bound(bind.carrier_id, true);
                let stopped = link.serve(events, queue, &mut stop).await;
                app.smpp.set_bound(bind.carrier_id, false);
                if stopped {
                    return;
                }
                tracing::warn!(host = %bind.host, port = bind.port, "SMPP connection lost");
            }
            Err(error) => {
                failures += 1;
                tracing::warn!(host = %bind.host, port = bind.port, %error, "SMPP bind failed");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff(failures)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Exponential back-off with full jitter in its upper half.
pub fn backoff(failures: u32) -> Duration {
    let exp = FIRST_BACKOFF.saturating_mul(1u32 << failures.min(16));
    let cap = exp.min(MAX_BACKOFF);
    let half = cap / 2;
    half + half.mul_f64(rand::rng().random::<f64>())
}

/// Opens the TCP connection and binds.
async fn connect(bind: &SmppBind) -> anyhow::Result<(Client, Events)> {
    let address = format!("{}:{}", bind.host, bind.port);
    let stream = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect(&address),
    )
    .await
    .map_err(|_| anyhow::anyhow!("connecting to {address} timed out"))??;
    // A PDU is a small write; with Nagle's algorithm the next one waits for
    // the SMSC's (delayed) ACK of the last, tens of milliseconds per window.
    stream.set_nodelay(true)?;
    let (client, events) = Client::start(
        stream,
        Timers {
            response_timeout: Duration::from_secs(bind.response_timeout_secs.max(1)),
            enquire_link: Duration::from_secs(bind.enquire_link_secs.max(1)),
        },
    );
    let login = Login {
        kind: match bind.bind.as_str() {
            "transmitter" => BindKind::Transmitter,
            "receiver" => BindKind::Receiver,
            _ => BindKind::Transceiver,
        },
        system_id: &bind.system_id,
        password: &bind.password,
        system_type: &bind.system_type,
        version: if bind.version == "5.0" {
            InterfaceVersion::Smpp5_0
        } else {
            InterfaceVersion::Smpp3_4
        },
    };
    if let Err(error) = client.bind(&login).await {
        client.close().await;
        return Err(anyhow::anyhow!("bind: {error}"));
    }
    Ok((client, events))
}

/// Answers the SMSC's `deliver_sm` number `sequence` with `status`.
pub(super) fn answer_deliver_sm(client: &Client, sequence: u32, status: CommandStatus) {
    if let Err(error) = client.deliver_sm_resp(sequence, status) {
        tracing::warn!(%error, "cannot answer deliver_sm");
    }
}

/// Parts of concatenated inbound messages, waiting for the rest. Their
/// `deliver_sm` are answered once the whole message is stored. A message
/// whose parts stop coming is forgotten after [`PARTS_KEPT_FOR`] (its parts
/// were never answered, so the SMSC delivers them again), and at most
/// [`PARTS_MAX`] messages wait at once, so a broken peer cannot grow this
/// without bound.
#[derive(Default)]
struct Parts {
    waiting: HashMap<PartsKey, (Instant, Vec<Part>)>,
}

const PARTS_KEPT_FOR: Duration = Duration::from_secs(600);
const PARTS_MAX: usize = 10_000;

/// (from, to, reference, total) of a concatenated message.
type PartsKey = (String, String, u16, u8);
/// (part number, text, sequence number of its deliver_sm).
type Part = (u8, String, u32);

/// A bound connection.
struct Link {
    app: Arc<App>,
    bind: SmppBind,
    client: Client,
    pace: Arc<Pace>,
    window: Arc<Semaphore>,
    reports: mpsc::UnboundedSender<Report>,
    parts: Arc<Mutex<Parts>>,
}

impl Link {
    /// Serves until the connection ends (false) or `stop` changes (true,
    /// after unbinding).
    async fn serve(
        self,
        mut events: Events,
        queue: &Queue,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let link = Arc::new(self);
        let submits = link.bind.bind != "receiver";
        loop {
            tokio::select! {
                _ = stop.changed() => {
                    link.unbind().await;
                    return true;
                }
                event = events.recv() => match event {
                    Some(command) => {
                        if !link.incoming(command).await {
                            return false;
                        }
                    }
                    None => return false,
                },
                job = next_job(queue, &link.window), if submits => {
                    let Some(job) = job else {
                        link.client.close().await;
                        return false;
                    };
                    tokio::spawn(link.clone().submit(job));
                }
            }
        }
    }

    async fn unbind(&self) {
        let _ = self.client.unbind(Duration::from_secs(5)).await;
        self.client.close().await;
        tracing::info!(host = %self.bind.host, port = self.bind.port, "SMPP unbound");
    }

    /// Handles a command from the SMSC; false when the SMSC unbinds.
    async fn incoming(self: &Arc<Self>, command: rusmpp::Command) -> bool {
        let sequence = command.sequence_number();
        match command.pdu() {
            Some(Pdu::DeliverSm(deliver)) => {
                // A receipt is answered by the recorder once it is stored;
                // a message from a phone takes a task of its own.
                if !self.receipt(sequence, deliver) {
                    tokio::spawn(self.clone().deliver(sequence, deliver.clone()));
                }
                true
            }
            Some(Pdu::Unbind) => {
                let _ = self.client.unbind_resp(sequence);
                self.client.close().await;
                false
            }
            _ => true,
        }
    }

    /// Submits the segments of one message not accepted yet, then reports.
    async fn submit(self: Arc<Self>, job: Job) {
        let results = self.submit_segments(&job).await;
        let _ = self.reports.send(Report::Done {
            job,
            results,
            receipts: self.bind.registered_delivery,
        });
    }

    async fn submit_segments(&self, job: &Job) -> Result<Vec<SegmentResult>, Failure> {
        if crate::store::now_ms() >= job.expires_ms {
            return Err(Failure::Expired);
        }
        // A first attempt submits what the claim carried; a later one reads
        // which segments were accepted already (and whether it still exists).
        let message = if job.attempts <= 1 {
            crate::store::smpp::SmppMessage {
                sender: job.sender.clone(),
                recipient: job.recipient.clone(),
                body: job.body.clone(),
                accepted: Vec::new(),
            }
        } else {
            match self.app.store.smpp_message(job.transaction_id).await {
                Ok(Some(message)) => message,
                Ok(None) => return Err(Failure::Gone),
                Err(error) => return Err(Failure::Temporary(format!("store: {error}"))),
            }
        };
        // The reference stays the same on every attempt, so a handset can
        // join parts sent in different attempts.
        let encoded = encoding::encode(&message.body, (job.transaction_id & 0xFF) as u8);
        let total = encoded.segments.len() as i64;
        let sends = encoded.segments.iter().enumerate().map(|(i, short)| {
            let segment = i as i64 + 1;
            let done = message.accepted.contains(&segment);
            let pdu = self.submit_sm(&message.sender, &message.recipient, &encoded, short);
            async move {
                if done {
                    return SegmentResult {
                        segment,
                        total,
                        outcome: Ok(None),
                    };
                }
                let outcome = match pdu {
                    Ok(pdu) => self.send_one(pdu).await.map(Some),
                    Err(error) => Err(Failure::Permanent(error)),
                };
                SegmentResult {
                    segment,
                    total,
                    outcome,
                }
            }
        });
        Ok(join_all(sends).await)
    }

    /// One `submit_sm` within the window and the pace.
    async fn send_one(&self, pdu: SubmitSm) -> Result<String, Failure> {
        let Ok(_permit) = self.window.acquire().await else {
            return Err(Failure::Temporary("the connection is closing".into()));
        };
        self.pace.wait().await;
        match self.client.submit_sm(pdu).await {
            Ok(message_id) => Ok(message_id),
            Err(error) => {
                let failure = Failure::of(&error);
                if matches!(failure, Failure::Throttled(_)) {
                    self.pace.slow_down();
                }
                Err(failure)
            }
        }
    }

    fn submit_sm(
        &self,
        sender: &str,
        recipient: &str,
        encoded: &encoding::Encoded,
        short: &[u8],
    ) -> Result<SubmitSm, String> {
        let source = COctetString::from_str(sender).map_err(|e| format!("source address: {e}"))?;
        let dest = COctetString::from_str(recipient).map_err(|e| format!("destination: {e}"))?;
        let short = OctetString::from_slice(short).map_err(|e| format!("short message: {e}"))?;
        // Built from the octet: rusmpp's `EsmClass::default()` sets an
        // ANSI-41 bit (0x08).
        let esm = EsmClass::from(if encoded.udhi { 0x40 } else { 0x00 });
        let receipt = if self.bind.registered_delivery {
            MCDeliveryReceipt::McDeliveryReceiptRequestedWhereFinalDeliveryOutcomeIsSuccessOrFailure
        } else {
            MCDeliveryReceipt::NoMcDeliveryReceiptRequested
        };
        Ok(SubmitSm::builder()
            .source_addr_ton(Ton::from(self.bind.source_ton))
            .source_addr_npi(Npi::from(self.bind.source_npi))
            .source_addr(source)
            .dest_addr_ton(Ton::from(self.bind.dest_ton))
            .dest_addr_npi(Npi::from(self.bind.dest_npi))
            .destination_addr(dest)
            .esm_class(esm)
            .registered_delivery(RegisteredDelivery::from(u8::from(receipt)))
            .data_coding(DataCoding::from(encoded.data_coding))
            .short_message(short)
            .build())
    }

    /// A `deliver_sm` from a phone, answered only once it is stored.
    async fn deliver(self: Arc<Self>, sequence: u32, deliver: DeliverSm) {
        // A part of a longer message is answered with the last part.
        if let Some(status) = self.message(sequence, &deliver).await {
            self.answer(sequence, status);
        }
    }

    fn answer(&self, sequence: u32, status: CommandStatus) {
        answer_deliver_sm(&self.client, sequence, status);
    }

    /// Handles a `deliver_sm` that is a delivery receipt: passed to the
    /// recorder, which answers it once it is stored. False when it is not
    /// a receipt.
    fn receipt(&self, sequence: u32, deliver: &DeliverSm) -> bool {
        let esm = u8::from(deliver.esm_class);
        let mut receipted_id = None;
        let mut state = None;
        for tlv in deliver.tlvs() {
            match tlv.value() {
                Some(TlvValue::ReceiptedMessageId(id)) => receipted_id = Some(id.to_string()),
                Some(TlvValue::MessageState(s)) => state = Some(u8::from(*s)),
                _ => {}
            }
        }
        // esm_class bits 2-5: 0x04 MC delivery receipt, 0x20 intermediate.
        if esm & 0x3C == 0 && receipted_id.is_none() {
            return false;
        }
        let text = deliver.short_message().as_ref();
        match receipt::parse(receipted_id.as_deref(), state, text) {
            None => {
                tracing::warn!("a delivery receipt without a message id was ignored");
                self.answer(sequence, CommandStatus::EsmeRok);
            }
            Some(parsed) if parsed.outcome == receipt::Outcome::Intermediate => {
                self.answer(sequence, CommandStatus::EsmeRok);
            }
            Some(parsed) => {
                // Should the recorder be gone, the answer is dropped: an error.
                let _ = self.reports.send(Report::Receipt {
                    receipt: parsed,
                    answer: Answer::new(self.client.clone(), sequence),
                });
            }
        }
        true
    }

    /// Stores a message from a phone once all its parts are here; `None`
    /// while parts are missing.
    async fn message(&self, sequence: u32, deliver: &DeliverSm) -> Option<CommandStatus> {
        let udhi = u8::from(deliver.esm_class) & 0x40 != 0;
        let decoded = encoding::decode(
            u8::from(deliver.data_coding),
            udhi,
            deliver.short_message().as_ref(),
        );
        let from = deliver.source_addr.to_string();
        let to = deliver.destination_addr.to_string();
        let (text, sequences) = match decoded.concat {
            Some(concat) if concat.total > 1 => {
                self.join(&from, &to, concat, decoded.text, sequence)?
            }
            _ => (decoded.text, Vec::new()),
        };
        let status = self.store_message(&from, &to, text).await;
        for other in sequences {
            self.answer(other, status);
        }
        Some(status)
    }

    /// Adds a part; returns the whole text and the other parts' sequence
    /// numbers once every part is here.
    fn join(
        &self,
        from: &str,
        to: &str,
        concat: Concat,
        text: String,
        sequence: u32,
    ) -> Option<(String, Vec<u32>)> {
        let key = (
            from.to_string(),
            to.to_string(),
            concat.reference,
            concat.total,
        );
        let mut parts = self.parts.lock().expect("parts lock");
        let now = Instant::now();
        parts
            .waiting
            .retain(|_, (since, _)| now.duration_since(*since) < PARTS_KEPT_FOR);
        if parts.waiting.len() >= PARTS_MAX && !parts.waiting.contains_key(&key) {
            tracing::warn!(
                "{PARTS_MAX} concatenated messages are incomplete; a new part waits for a resend"
            );
            return None;
        }
        let (_, list) = parts
            .waiting
            .entry(key.clone())
            .or_insert_with(|| (now, Vec::new()));
        list.retain(|(n, _, _)| *n != concat.number);
        list.push((concat.number, text, sequence));
        if list.len() < usize::from(concat.total) {
            return None;
        }
        let (_, mut list) = parts.waiting.remove(&key)?;
        list.sort_by_key(|(n, _, _)| *n);
        let others = list
            .iter()
            .filter(|(_, _, s)| *s != sequence)
            .map(|(_, _, s)| *s)
            .collect();
        Some((list.into_iter().map(|(_, t, _)| t).collect(), others))
    }

    async fn store_message(&self, from: &str, to: &str, text: String) -> CommandStatus {
        let Ok(from) = PhoneNumber::parse(from, self.app.region) else {
            return CommandStatus::EsmeRinvsrcadr;
        };
        let (text, images) = if self.bind.inbound_media_urls {
            crate::mm7::links::fetch_linked_media(&self.app, from.digits(), &text).await
        } else {
            (text, Vec::new())
        };
        let table = self.app.carrier_table();
        let message = InboundMessage {
            from,
            to: to.to_string(),
            text,
            subject: String::new(),
            images,
        };
        match crate::inbound::receive(&self.app.store, &self.app.config, &table, message).await {
            Ok(received) => {
                if received.webhooks > 0 {
                    self.app.webhook_wake.notify_one();
                }
                if received.reply_message_id.is_some() {
                    self.app.delivery_wake.notify_one();
                }
                CommandStatus::EsmeRok
            }
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "cannot store an inbound message");
                CommandStatus::EsmeRsyserr
            }
        }
    }
}

/// The next job, once the window has room.
async fn next_job(queue: &Queue, window: &Arc<Semaphore>) -> Option<Job> {
    // Wait for room first, so jobs stay in the shared queue for another
    // connection while this one is full.
    drop(window.acquire().await.ok()?);
    queue.lock().await.recv().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(pace: &Pace) -> Option<f64> {
        pace.state.lock().unwrap().rate
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_halves_once_per_burst_and_recovers() {
        let pace = Pace::new(0.0, Duration::from_secs(10));
        assert_eq!(rate(&pace), None);
        pace.slow_down();
        assert_eq!(rate(&pace), Some(UNLIMITED_FALLBACK));
        // The rest of a window answered "throttled" together counts once.
        pace.slow_down();
        pace.slow_down();
        assert_eq!(rate(&pace), Some(UNLIMITED_FALLBACK));
        tokio::time::advance(DEBOUNCE).await;
        pace.slow_down();
        assert_eq!(rate(&pace), Some(UNLIMITED_FALLBACK / 2.0));
        // Slots booked at the slow rate do not outlive it.
        for _ in 0..50 {
            pace.wait().await;
        }
        tokio::time::advance(Duration::from_secs(11)).await;
        let before = Instant::now();
        pace.wait().await;
        assert_eq!(Instant::now(), before, "full speed at once");
        assert_eq!(rate(&pace), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_limited_connection_never_goes_below_the_slowest_rate() {
        let pace = Pace::new(8.0, Duration::from_secs(10));
        for _ in 0..5 {
            pace.slow_down();
            tokio::time::advance(DEBOUNCE).await;
        }
        assert_eq!(rate(&pace), Some(SLOWEST));
    }
}
