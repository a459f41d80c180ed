//! A fake SMSC: a real SMPP server on port 0, written with rusmpp's codec,
//! that a test steers: refuse binds, answer submits with ids (hex or
//! decimal) or with a command status, stay silent, drop the connection,
//! send receipts (before or after the response, at once or later), and
//! inject messages from phones. Like a real SMSC it can keep every receipt
//! until it is answered and send it again on the next bind, answer nothing
//! at all, write bytes that are no PDU, and send receipts for ids it never
//! gave. It numbers its TCP sessions and records which one each bind and
//! submit came on, and the most sessions ever bound at once (tests of
//! several nodes sharing one bind).

use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use moms::config::SmppBind;
use rusmpp::pdus::{BindTransceiverResp, DeliverSm, SubmitSmResp};
use rusmpp::tlvs::MessageDeliveryRequestTlvValue;
use rusmpp::tokio_codec::CommandCodec;
use rusmpp::types::{COctetString, OctetString};
use rusmpp::values::{DataCoding, EsmClass, MessageState};
use rusmpp::{Command, CommandStatus, Pdu};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

/// How the SMSC answers one submit_sm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Accept,
    /// A submit_sm_resp with this command status.
    Status(u32),
    /// No answer at all.
    Silent,
    /// Close the connection without answering.
    Drop,
}

/// A submit_sm as received.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub destination: String,
    pub source: String,
    pub data_coding: u8,
    pub esm_class: u8,
    pub short_message: Vec<u8>,
    /// The id it was given, if accepted.
    pub id: Option<String>,
    /// When it arrived (and, if accepted, was acknowledged).
    pub at: Instant,
    /// The TCP session it came on: 1 for the first connection accepted, …
    pub session: usize,
}

/// A bind accepted: on which TCP session, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    pub session: usize,
    pub at: Instant,
}

/// What the SMSC does; change it with [`Smsc::set`].
#[derive(Debug, Clone)]
pub struct Behaviour {
    pub refuse_binds: bool,
    /// Ids in hex (`00A1B2`-like, upper case, padded) instead of decimal.
    pub hex_ids: bool,
    /// Answers for the next submits, in order; `Accept` once empty.
    pub answers: VecDeque<Answer>,
    /// A receipt with this stat after each accepted submit (`None`: none).
    pub receipt: Option<String>,
    /// Send that receipt before the submit_sm_resp.
    pub receipt_first: bool,
    pub receipt_delay: Duration,
    /// Write the receipt's id in decimal even when ids are hex.
    pub receipt_id_decimal: bool,
    /// Put the id and state in TLVs too (SMPP 5.0 style).
    pub receipt_tlvs: bool,
    /// Keep each receipt until a deliver_sm_resp with status 0 answers it,
    /// and send the unanswered ones again after every bind.
    pub redeliver_receipts: bool,
    /// Answer nothing at all, enquire_link included (binds still succeed).
    pub mute: bool,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            refuse_binds: false,
            hex_ids: false,
            answers: VecDeque::new(),
            receipt: Some("DELIVRD".into()),
            receipt_first: false,
            receipt_delay: Duration::ZERO,
            receipt_id_decimal: false,
            receipt_tlvs: false,
            redeliver_receipts: false,
            mute: false,
        }
    }
}

#[derive(Default)]
struct State {
    behaviour: Behaviour,
    next_id: u64,
    next_sequence: u32,
    submits: Vec<Submitted>,
    /// (interface version, system_id) of every bind accepted.
    binds: Vec<(u8, String)>,
    unbinds: usize,
    /// deliver_sm_resp received: (sequence, status).
    acks: Vec<(u32, u32)>,
    connections: Vec<(mpsc::UnboundedSender<Out>, CancellationToken)>,
    /// Receipts sent and not answered yet, by sequence: (id, stat).
    unanswered: std::collections::HashMap<u32, (String, String)>,
    /// Connections accepted, bound or not.
    accepted: usize,
    /// Every bind accepted, in order.
    bound_log: Vec<Bound>,
    /// Sessions bound and not closed yet.
    bound_now: Vec<usize>,
    /// The most sessions ever bound at the same moment.
    most_bound_at_once: usize,
}

/// What the SMSC writes on a connection.
#[derive(Debug)]
pub enum Out {
    Command(Box<Command>),
    /// Bytes as they are, PDU or not.
    Raw(Vec<u8>),
}

impl From<Command> for Out {
    fn from(command: Command) -> Out {
        Out::Command(Box::new(command))
    }
}

#[derive(Clone)]
pub struct Smsc {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

impl Smsc {
    pub async fn start() -> Smsc {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind smsc");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            next_id: 0xA1B0,
            next_sequence: 2,
            ..State::default()
        }));
        let accepting = state.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve(socket, accepting.clone()));
            }
        });
        Smsc { port, state }
    }

    /// A bind to this SMSC for `carrier_id`.
    pub fn bind(&self, carrier_id: i64) -> SmppBind {
        SmppBind {
            carrier_id,
            host: "127.0.0.1".into(),
            port: self.port,
            system_id: "moms".into(),
            password: "secret".into(),
            response_timeout_secs: 1,
            ..SmppBind::default()
        }
    }

    pub fn set(&self, change: impl FnOnce(&mut Behaviour)) {
        change(&mut self.state.lock().unwrap().behaviour);
    }

    pub fn submits(&self) -> Vec<Submitted> {
        self.state.lock().unwrap().submits.clone()
    }

    pub fn binds(&self) -> Vec<(u8, String)> {
        self.state.lock().unwrap().binds.clone()
    }

    pub fn unbinds(&self) -> usize {
        self.state.lock().unwrap().unbinds
    }

    pub fn acks(&self) -> Vec<(u32, u32)> {
        self.state.lock().unwrap().acks.clone()
    }

    /// Waits (5 s at most) until `check` holds of the state.
    async fn until(&self, what: &str, check: impl Fn(&State) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !check(&self.state.lock().unwrap()) {
            assert!(Instant::now() < deadline, "the SMSC never saw {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn wait_bound(&self) {
        self.until("a bind", |s| {
            !s.connections.is_empty() && !s.binds.is_empty()
        })
        .await;
    }

    pub async fn wait_submits(&self, n: usize) -> Vec<Submitted> {
        self.until(&format!("{n} submits"), |s| s.submits.len() >= n)
            .await;
        self.submits()
    }

    /// Waits until `n` deliver_sm have been answered; every answer so far.
    pub async fn wait_acks(&self, n: usize) -> Vec<(u32, u32)> {
        self.until(&format!("{n} answers to deliver_sm"), |s| s.acks.len() >= n)
            .await;
        self.acks()
    }

    pub async fn wait_ack(&self, sequence: u32) -> u32 {
        self.until(&format!("the answer to deliver_sm {sequence}"), |s| {
            s.acks.iter().any(|(q, _)| *q == sequence)
        })
        .await;
        let acks = self.acks();
        acks.iter().find(|(q, _)| *q == sequence).unwrap().1
    }

    /// Sends a deliver_sm from a phone on the newest connection; returns
    /// its sequence number.
    pub fn inject(&self, from: &str, to: &str, data_coding: u8, esm: u8, short: &[u8]) -> u32 {
        let pdu = DeliverSm::builder()
            .source_addr(COctetString::from_str(from).unwrap())
            .destination_addr(COctetString::from_str(to).unwrap())
            .esm_class(EsmClass::from(esm))
            .data_coding(DataCoding::from(data_coding))
            .short_message(OctetString::from_slice(short).unwrap())
            .build();
        let mut state = self.state.lock().unwrap();
        let sequence = state.next_sequence;
        state.next_sequence += 2;
        let command = Command::new(CommandStatus::EsmeRok, sequence, pdu);
        let connection = state.connections.last().expect("a connection");
        let _ = connection.0.send(command.into());
        sequence
    }

    /// Writes `bytes` as they are on the newest connection.
    pub fn send_raw(&self, bytes: Vec<u8>) {
        let state = self.state.lock().unwrap();
        let connection = state.connections.last().expect("a connection");
        let _ = connection.0.send(Out::Raw(bytes));
    }

    /// Sends a receipt for an id this SMSC never gave, on the newest
    /// connection; returns its sequence number.
    pub fn receipt_for(&self, id: &str, stat: &str) -> u32 {
        let mut state = self.state.lock().unwrap();
        let command = receipt(&mut state, id, stat);
        let sequence = command.sequence_number();
        let connection = state.connections.last().expect("a connection");
        let _ = connection.0.send(command.into());
        sequence
    }

    /// Connections accepted so far, bound or not.
    pub fn connections_accepted(&self) -> usize {
        self.state.lock().unwrap().accepted
    }

    /// Every bind accepted, with its session, in order.
    pub fn bound_log(&self) -> Vec<Bound> {
        self.state.lock().unwrap().bound_log.clone()
    }

    /// Sessions bound now (not closed by either side).
    pub fn bound_now(&self) -> Vec<usize> {
        self.state.lock().unwrap().bound_now.clone()
    }

    /// The most sessions that were ever bound at the same moment.
    pub fn most_bound_at_once(&self) -> usize {
        self.state.lock().unwrap().most_bound_at_once
    }

    /// Receipts sent and not answered with status 0 yet.
    pub fn unanswered_receipts(&self) -> usize {
        self.state.lock().unwrap().unanswered.len()
    }

    /// Waits (`secs` at most) until `n` binds were accepted in all.
    pub async fn wait_binds(&self, n: usize, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.binds().len() < n {
            assert!(
                Instant::now() < deadline,
                "the SMSC saw {} binds, not {n}",
                self.binds().len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Closes every connection (the peer sees them drop).
    pub fn drop_connections(&self) {
        for (_, kill) in self.state.lock().unwrap().connections.drain(..) {
            kill.cancel();
        }
    }
}

/// A receipt deliver_sm for message `id`.
fn receipt(state: &mut State, id: &str, stat: &str) -> Command {
    let b = &state.behaviour;
    let written = if b.receipt_id_decimal {
        u64::from_str_radix(id, 16).unwrap().to_string()
    } else {
        id.to_string()
    };
    receipt_written(state, &written, stat)
}

/// A receipt deliver_sm naming `written` as it is.
fn receipt_written(state: &mut State, written: &str, stat: &str) -> Command {
    let b = &state.behaviour;
    let text = format!(
        "id:{written} sub:001 dlvrd:001 submit date:2611270101 done date:2611270102 stat:{stat} err:000 text:"
    );
    let mut pdu = DeliverSm::builder()
        .source_addr(COctetString::from_str("13108675309").unwrap())
        .destination_addr(COctetString::from_str("21534").unwrap())
        .esm_class(EsmClass::from(0x04))
        .short_message(OctetString::from_slice(text.as_bytes()).unwrap());
    if b.receipt_tlvs {
        let state_value = if stat == "DELIVRD" {
            MessageState::Delivered
        } else {
            MessageState::Undeliverable
        };
        pdu = pdu
            .push_tlv(MessageDeliveryRequestTlvValue::ReceiptedMessageId(
                COctetString::from_str(written).unwrap(),
            ))
            .push_tlv(MessageDeliveryRequestTlvValue::MessageState(state_value));
    }
    let sequence = state.next_sequence;
    state.next_sequence += 2;
    if state.behaviour.redeliver_receipts {
        state
            .unanswered
            .insert(sequence, (written.to_string(), stat.to_string()));
    }
    Command::new(CommandStatus::EsmeRok, sequence, pdu.build())
}

async fn serve(socket: tokio::net::TcpStream, state: Arc<Mutex<State>>) {
    let (read, write) = socket.into_split();
    let mut stream = FramedRead::new(read, CommandCodec::new());
    let mut sink = FramedWrite::new(write, CommandCodec::new());
    let (out, mut outbox) = mpsc::unbounded_channel::<Out>();
    let kill = CancellationToken::new();
    let writer_kill = kill.clone();
    let writer = tokio::spawn(async move {
        loop {
            tokio::select! {
                item = outbox.recv() => match item {
                    Some(Out::Command(command)) => if sink.send(*command).await.is_err() { break },
                    Some(Out::Raw(bytes)) => {
                        if sink.get_mut().write_all(&bytes).await.is_err() { break }
                    }
                    None => break,
                },
                _ = writer_kill.cancelled() => break,
            }
        }
    });
    let session = {
        let mut s = state.lock().unwrap();
        s.accepted += 1;
        s.connections.push((out.clone(), kill.clone()));
        s.accepted
    };
    loop {
        let command = tokio::select! {
            command = stream.next() => command,
            _ = kill.cancelled() => None,
        };
        let Some(Ok(command)) = command else { break };
        if !answer(&state, &out, session, command) {
            break;
        }
    }
    // Nothing more is read from this session: it no longer counts as bound.
    state
        .lock()
        .unwrap()
        .bound_now
        .retain(|bound| *bound != session);
    // Let a last answer go out, then close both halves.
    tokio::time::sleep(Duration::from_millis(20)).await;
    kill.cancel();
    let _ = writer.await;
    state
        .lock()
        .unwrap()
        .connections
        .retain(|(c, _)| !c.same_channel(&out));
}

/// Answers one command; false to close the connection.
fn answer(
    state: &Arc<Mutex<State>>,
    out: &mpsc::UnboundedSender<Out>,
    session: usize,
    command: Command,
) -> bool {
    let sequence = command.sequence_number();
    let mute = state.lock().unwrap().behaviour.mute;
    let reply = |status: CommandStatus, pdu: Pdu| {
        if !mute || matches!(pdu, Pdu::BindTransceiverResp(_)) {
            let _ = out.send(Command::new(status, sequence, pdu).into());
        }
    };
    match command.pdu() {
        Some(Pdu::BindTransceiver(bind)) => {
            let mut s = state.lock().unwrap();
            let resp = BindTransceiverResp::builder()
                .system_id(COctetString::from_str("fake").unwrap())
                .build();
            if s.behaviour.refuse_binds {
                reply(CommandStatus::EsmeRbindfail, Pdu::BindTransceiverResp(resp));
                return false;
            }
            s.binds
                .push((u8::from(bind.interface_version), bind.system_id.to_string()));
            s.bound_log.push(Bound {
                session,
                at: Instant::now(),
            });
            s.bound_now.push(session);
            s.most_bound_at_once = s.most_bound_at_once.max(s.bound_now.len());
            reply(CommandStatus::EsmeRok, Pdu::BindTransceiverResp(resp));
            // What a store-and-forward SMSC still holds goes out again.
            let mut again: Vec<(String, String)> = s.unanswered.drain().map(|(_, r)| r).collect();
            again.sort();
            for (id, stat) in again {
                let command = receipt_written(&mut s, &id, &stat);
                let _ = out.send(command.into());
            }
        }
        Some(Pdu::EnquireLink) => reply(CommandStatus::EsmeRok, Pdu::EnquireLinkResp),
        Some(Pdu::Unbind) => {
            state.lock().unwrap().unbinds += 1;
            reply(CommandStatus::EsmeRok, Pdu::UnbindResp);
            return false;
        }
        Some(Pdu::DeliverSmResp(_)) => {
            let mut s = state.lock().unwrap();
            let status = u32::from(command.status());
            s.acks.push((sequence, status));
            if status == 0 {
                s.unanswered.remove(&sequence);
            }
        }
        Some(Pdu::SubmitSm(_)) if mute => {
            if let Some(Pdu::SubmitSm(submit)) = command.pdu() {
                state
                    .lock()
                    .unwrap()
                    .submits
                    .push(record_of(submit, session));
            }
        }
        Some(Pdu::SubmitSm(submit)) => return submitted(state, out, session, sequence, submit),
        _ => {}
    }
    true
}

/// A submit_sm as recorded, without an id yet.
fn record_of(submit: &rusmpp::pdus::SubmitSm, session: usize) -> Submitted {
    Submitted {
        destination: submit.destination_addr.to_string(),
        source: submit.source_addr.to_string(),
        data_coding: u8::from(submit.data_coding),
        esm_class: u8::from(submit.esm_class),
        short_message: submit.short_message().as_ref().to_vec(),
        id: None,
        at: Instant::now(),
        session,
    }
}

fn submitted(
    state: &Arc<Mutex<State>>,
    out: &mpsc::UnboundedSender<Out>,
    session: usize,
    sequence: u32,
    submit: &rusmpp::pdus::SubmitSm,
) -> bool {
    let mut s = state.lock().unwrap();
    let answer = s.behaviour.answers.pop_front().unwrap_or(Answer::Accept);
    let mut record = record_of(submit, session);
    match answer {
        Answer::Silent => {
            s.submits.push(record);
            true
        }
        Answer::Drop => {
            s.submits.push(record);
            false
        }
        Answer::Status(status) => {
            s.submits.push(record);
            let resp = SubmitSmResp::builder()
                .message_id(COctetString::empty())
                .build();
            let _ = out.send(Command::new(CommandStatus::from(status), sequence, resp).into());
            true
        }
        Answer::Accept => {
            let n = s.next_id;
            s.next_id += 1;
            // Hex ids padded with zeros and in upper case; decimal plain.
            let id = if s.behaviour.hex_ids {
                format!("{n:08X}")
            } else {
                n.to_string()
            };
            record.id = Some(id.clone());
            s.submits.push(record);
            let resp = Command::new(
                CommandStatus::EsmeRok,
                sequence,
                SubmitSmResp::builder()
                    .message_id(COctetString::from_str(&id).unwrap())
                    .build(),
            );
            let receipt_id = if s.behaviour.hex_ids {
                id.clone()
            } else {
                format!("{n:x}")
            };
            let hex_for_receipt = s.behaviour.hex_ids;
            let stat = s.behaviour.receipt.clone();
            let first = s.behaviour.receipt_first;
            let delay = s.behaviour.receipt_delay;
            let receipt_command = stat.map(|stat| {
                if hex_for_receipt {
                    receipt(&mut s, &receipt_id, &stat)
                } else {
                    // Decimal ids are written as given.
                    let saved = s.behaviour.receipt_id_decimal;
                    s.behaviour.receipt_id_decimal = false;
                    let c = receipt(&mut s, &id, &stat);
                    s.behaviour.receipt_id_decimal = saved;
                    c
                }
            });
            drop(s);
            match receipt_command {
                Some(r) if first => {
                    let _ = out.send(r.into());
                    let _ = out.send(resp.into());
                }
                Some(r) => {
                    let _ = out.send(resp.into());
                    let out = out.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let _ = out.send(r.into());
                    });
                }
                None => {
                    let _ = out.send(resp.into());
                }
            }
            true
        }
    }
}
