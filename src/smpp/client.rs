//! A small SMPP client: framing with rusmpp's codec, requests matched to
//! their responses by sequence number, and the link kept alive with
//! `enquire_link`. The session state (binding, the window, the pace,
//! reconnection) is the caller's.
//!
//! Three tasks serve one connection. The writer owns the sink and writes
//! what the [`Client`] queues on an unbounded channel; it writes whatever
//! is queued before flushing, so a burst of requests costs one flush. The
//! reader owns the stream: a response (command id with the high bit) goes
//! to the request waiting for its sequence number, the SMSC's
//! `enquire_link` is answered at once, and every other command (deliver_sm,
//! unbind, …) is passed on as an event. The keep-alive sends an
//! `enquire_link` every interval and closes the connection when one goes
//! unanswered. When the connection ends, for whatever reason, the event
//! channel ends and every waiting request fails with [`Error::Closed`].

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rusmpp::pdus::{BindReceiver, BindTransceiver, BindTransmitter, DeliverSmResp, SubmitSm};
use rusmpp::tokio_codec::CommandCodec;
use rusmpp::types::COctetString;
use rusmpp::values::{InterfaceVersion, Npi, Ton};
use rusmpp::{Command, CommandStatus, Pdu};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

/// The largest command accepted from the SMSC.
const MAX_COMMAND: usize = 64 * 1024;
/// The highest sequence number; the next one is 1 again.
const MAX_SEQUENCE: u32 = 0x7FFF_FFFF;
/// How long a graceful close waits for the queued commands to be written.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Why a request got no useful answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The SMSC answered with this non-zero command status.
    #[error("the SMSC answered command status 0x{0:08X}")]
    Status(u32),
    /// No answer within the response timeout.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The connection is closed or was lost before the answer came.
    #[error("the SMPP connection is closed")]
    Closed,
    /// The answer was not the response to the request.
    #[error("unexpected response {0:?}")]
    Unexpected(rusmpp::CommandId),
    /// A field does not fit its SMPP type.
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// How the connection binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindKind {
    Transmitter,
    Receiver,
    Transceiver,
}

/// What a bind says about the client.
pub struct Login<'a> {
    pub kind: BindKind,
    pub system_id: &'a str,
    pub password: &'a str,
    pub system_type: &'a str,
    /// 0x34 (3.4) or 0x50 (5.0).
    pub version: InterfaceVersion,
}

/// The timers of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Timers {
    pub response_timeout: Duration,
    pub enquire_link: Duration,
}

/// The commands the SMSC sends that are not responses or `enquire_link`.
pub type Events = mpsc::UnboundedReceiver<Command>;

/// What the writer is asked to do.
enum Out {
    /// Boxed: a command is a few hundred bytes, the queue slots stay small.
    Write(Box<Command>),
    /// Write what is queued before this, then close.
    Close,
}

/// What the tasks and the handles share.
struct Shared {
    out: mpsc::UnboundedSender<Out>,
    waiting: Mutex<HashMap<u32, oneshot::Sender<Command>>>,
    sequence: AtomicU32,
    timers: Timers,
    /// Cancelled once the connection is over.
    closed: CancellationToken,
}

/// Closes the connection when the last [`Client`] is dropped.
struct Handle(Arc<Shared>);

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.closed.cancel();
    }
}

/// A connection to an SMSC; cheap to clone.
#[derive(Clone)]
pub struct Client {
    handle: Arc<Handle>,
}

impl Client {
    /// Starts serving `io` (a connected socket); returns the client and
    /// the SMSC's commands.
    pub fn start<T>(io: T, timers: Timers) -> (Client, Events)
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let framed = Framed::new(io, CommandCodec::new().with_max_length(MAX_COMMAND));
        let (sink, stream) = framed.split();
        let (out, queued) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            out,
            waiting: Mutex::new(HashMap::new()),
            sequence: AtomicU32::new(0),
            timers,
            closed: CancellationToken::new(),
        });
        tokio::spawn(write(sink, queued, shared.closed.clone()));
        tokio::spawn(read(stream, shared.clone(), events_tx));
        tokio::spawn(keep_alive(shared.clone()));
        let client = Client {
            handle: Arc::new(Handle(shared)),
        };
        (client, events)
    }

    fn shared(&self) -> &Arc<Shared> {
        &self.handle.0
    }

    /// Binds; a non-zero command status is a failed bind.
    pub async fn bind(&self, login: &Login<'_>) -> Result<(), Error> {
        let system_id =
            COctetString::from_str(login.system_id).map_err(|_| Error::Invalid("system_id"))?;
        let password =
            COctetString::from_str(login.password).map_err(|_| Error::Invalid("password"))?;
        let system_type =
            COctetString::from_str(login.system_type).map_err(|_| Error::Invalid("system_type"))?;
        let (ton, npi, range) = (Ton::Unknown, Npi::Unknown, COctetString::empty());
        let version = login.version;
        let pdu = match login.kind {
            BindKind::Transmitter => Pdu::BindTransmitter(BindTransmitter::new(
                system_id,
                password,
                system_type,
                version,
                ton,
                npi,
                range,
            )),
            BindKind::Receiver => Pdu::BindReceiver(BindReceiver::new(
                system_id,
                password,
                system_type,
                version,
                ton,
                npi,
                range,
            )),
            BindKind::Transceiver => Pdu::BindTransceiver(BindTransceiver::new(
                system_id,
                password,
                system_type,
                version,
                ton,
                npi,
                range,
            )),
        };
        self.shared().request(pdu).await.map(|_| ())
    }

    /// Submits a message; the SMSC's message id.
    pub async fn submit_sm(&self, pdu: SubmitSm) -> Result<String, Error> {
        let response = self.shared().request(Pdu::SubmitSm(pdu)).await?;
        match response.pdu() {
            Some(Pdu::SubmitSmResp(resp)) => Ok(resp.message_id().to_string()),
            _ => Err(Error::Unexpected(response.id())),
        }
    }

    /// Answers the SMSC's `deliver_sm` number `sequence`.
    pub fn deliver_sm_resp(&self, sequence: u32, status: CommandStatus) -> Result<(), Error> {
        let resp = DeliverSmResp::builder()
            .message_id(COctetString::empty())
            .build();
        self.shared()
            .send(Command::new(status, sequence, Pdu::DeliverSmResp(resp)))
    }

    /// Answers the SMSC's `unbind` number `sequence`.
    pub fn unbind_resp(&self, sequence: u32) -> Result<(), Error> {
        self.shared().send(Command::new(
            CommandStatus::EsmeRok,
            sequence,
            Pdu::UnbindResp,
        ))
    }

    /// Unbinds, waiting `wait` at most for the SMSC's answer.
    pub async fn unbind(&self, wait: Duration) -> Result<(), Error> {
        let shared = self.shared();
        shared.request_within(Pdu::Unbind, wait).await.map(|_| ())
    }

    /// Writes what is queued, then closes the connection.
    pub async fn close(&self) {
        let shared = self.shared();
        if shared.out.send(Out::Close).is_ok() {
            let _ = tokio::time::timeout(CLOSE_WAIT, shared.closed.cancelled()).await;
        }
        shared.closed.cancel();
    }
}

impl Shared {
    /// The next sequence number: 1 to [`MAX_SEQUENCE`], then 1 again.
    fn next_sequence(&self) -> u32 {
        let step = |n: u32| Some(if n >= MAX_SEQUENCE { 1 } else { n + 1 });
        let previous = self
            .sequence
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, step)
            .unwrap_or(0);
        step(previous).unwrap_or(1)
    }

    fn send(&self, command: Command) -> Result<(), Error> {
        if self.closed.is_cancelled() {
            return Err(Error::Closed);
        }
        self.out
            .send(Out::Write(Box::new(command)))
            .map_err(|_| Error::Closed)
    }

    async fn request(&self, pdu: Pdu) -> Result<Command, Error> {
        self.request_within(pdu, self.timers.response_timeout).await
    }

    /// Sends a request and waits `wait` at most for its response, which
    /// must carry command status 0.
    async fn request_within(&self, pdu: Pdu, wait: Duration) -> Result<Command, Error> {
        let sequence = self.next_sequence();
        let (tx, rx) = oneshot::channel();
        {
            let mut waiting = self.waiting.lock().expect("waiting lock");
            // Checked under the lock: the reader cancels before it empties
            // the map, so an entry added here is always emptied or answered.
            if self.closed.is_cancelled() {
                return Err(Error::Closed);
            }
            waiting.insert(sequence, tx);
        }
        if let Err(error) = self.send(Command::new(CommandStatus::EsmeRok, sequence, pdu)) {
            self.forget(sequence);
            return Err(error);
        }
        let response = match tokio::time::timeout(wait, rx).await {
            Ok(Ok(response)) => response,
            Ok(Err(_)) => return Err(Error::Closed),
            Err(_) => {
                self.forget(sequence);
                return Err(Error::Timeout(wait));
            }
        };
        let status = u32::from(response.status());
        if status != 0 {
            return Err(Error::Status(status));
        }
        if response.id() == rusmpp::CommandId::GenericNack {
            return Err(Error::Unexpected(response.id()));
        }
        Ok(response)
    }

    fn forget(&self, sequence: u32) {
        self.waiting.lock().expect("waiting lock").remove(&sequence);
    }

    /// Hands a response to its request; a late one (timed out) is dropped.
    fn answered(&self, response: Command) {
        let sequence = response.sequence_number();
        let waiting = self.waiting.lock().expect("waiting lock").remove(&sequence);
        match waiting {
            Some(tx) => {
                let _ = tx.send(response);
            }
            None => tracing::debug!(sequence, "an SMPP response nobody waits for"),
        }
    }

    /// Ends the connection: every task stops and every waiting request
    /// fails.
    fn end(&self) {
        self.closed.cancel();
        self.waiting.lock().expect("waiting lock").clear();
    }
}

type Sink<T> = futures_util::stream::SplitSink<Framed<T, CommandCodec>, Command>;
type Stream<T> = futures_util::stream::SplitStream<Framed<T, CommandCodec>>;

/// The writer: writes every queued command, flushing once the queue is
/// empty, until asked to close or the connection ends.
async fn write<T: AsyncRead + AsyncWrite>(
    mut sink: Sink<T>,
    mut queued: mpsc::UnboundedReceiver<Out>,
    closed: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            biased;
            next = queued.recv() => next,
            _ = closed.cancelled() => break,
        };
        let (done, result) = tokio::select! {
            result = write_batch(&mut sink, &mut queued, next) => result,
            _ = closed.cancelled() => break,
        };
        if let Err(error) = result {
            tracing::warn!(%error, "cannot write to the SMSC");
            break;
        }
        if done {
            let _ = tokio::time::timeout(CLOSE_WAIT, sink.close()).await;
            break;
        }
    }
    closed.cancel();
}

/// Writes `first` and whatever else is queued, then flushes; true (first)
/// when a close was asked for or every client is gone.
async fn write_batch<T: AsyncRead + AsyncWrite>(
    sink: &mut Sink<T>,
    queued: &mut mpsc::UnboundedReceiver<Out>,
    first: Option<Out>,
) -> (bool, Result<(), rusmpp::tokio_codec::EncodeError>) {
    let mut next = first;
    loop {
        match next {
            Some(Out::Write(command)) => {
                if let Err(error) = sink.feed(*command).await {
                    return (true, Err(error));
                }
            }
            Some(Out::Close) | None => return (true, sink.flush().await),
        }
        match queued.try_recv() {
            Ok(out) => next = Some(out),
            Err(_) => return (false, sink.flush().await),
        }
    }
}

/// The reader: routes responses, answers `enquire_link`, passes the rest
/// on; ends the connection on an error or end of stream.
async fn read<T: AsyncRead + AsyncWrite>(
    mut stream: Stream<T>,
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<Command>,
) {
    loop {
        let item = tokio::select! {
            item = stream.next() => item,
            _ = shared.closed.cancelled() => break,
        };
        let command = match item {
            Some(Ok(command)) => command,
            Some(Err(error)) => {
                tracing::warn!(%error, "cannot read from the SMSC");
                break;
            }
            None => break,
        };
        if command.id().is_response() {
            shared.answered(command);
        } else if command.id() == rusmpp::CommandId::EnquireLink {
            let sequence = command.sequence_number();
            let _ = shared.send(Command::new(
                CommandStatus::EsmeRok,
                sequence,
                Pdu::EnquireLinkResp,
            ));
        } else {
            // Nobody listening is fine: the session is going away.
            let _ = events.send(command);
        }
    }
    shared.end();
}

/// The keep-alive: an `enquire_link` every interval; one unanswered closes
/// the connection, so the session notices and reconnects.
async fn keep_alive(shared: Arc<Shared>) {
    let every = shared.timers.enquire_link;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shared.closed.cancelled() => return,
        }
        match shared.request(Pdu::EnquireLink).await {
            // A status still proves the SMSC is there.
            Ok(_) | Err(Error::Status(_)) | Err(Error::Unexpected(_)) => {}
            Err(Error::Closed) => return,
            Err(error) => {
                tracing::warn!(%error, "enquire_link unanswered; closing the connection");
                shared.end();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timers() -> Timers {
        Timers {
            response_timeout: Duration::from_millis(300),
            enquire_link: Duration::from_secs(30),
        }
    }

    /// The far end of a client: the SMSC's framed stream.
    fn pair() -> (
        Client,
        Events,
        Framed<tokio::io::DuplexStream, CommandCodec>,
    ) {
        let (near, far) = tokio::io::duplex(64 * 1024);
        let (client, events) = Client::start(near, timers());
        (client, events, Framed::new(far, CommandCodec::new()))
    }

    #[test]
    fn sequence_numbers_wrap_to_one() {
        let (out, _queued) = mpsc::unbounded_channel();
        let shared = Shared {
            out,
            waiting: Mutex::new(HashMap::new()),
            sequence: AtomicU32::new(MAX_SEQUENCE - 1),
            timers: timers(),
            closed: CancellationToken::new(),
        };
        assert_eq!(shared.next_sequence(), MAX_SEQUENCE);
        assert_eq!(shared.next_sequence(), 1);
        assert_eq!(shared.next_sequence(), 2);
    }

    #[tokio::test]
    async fn responses_find_their_request_in_any_order() {
        let (client, _events, mut smsc) = pair();
        let submits = (0..20).map(|_| {
            let client = client.clone();
            async move { client.submit_sm(SubmitSm::builder().build()).await }
        });
        let all = tokio::spawn(futures_util::future::join_all(submits));
        let mut received = Vec::new();
        while received.len() < 20 {
            let command = smsc.next().await.expect("a command").expect("decoded");
            received.push(command.sequence_number());
        }
        for sequence in received.iter().rev() {
            let resp = rusmpp::pdus::SubmitSmResp::builder()
                .message_id(COctetString::from_str(&format!("id{sequence}")).unwrap())
                .build();
            smsc.send(Command::new(CommandStatus::EsmeRok, *sequence, resp))
                .await
                .unwrap();
        }
        let ids = all.await.unwrap();
        for (id, sequence) in ids.into_iter().zip(received) {
            assert_eq!(id, Ok(format!("id{sequence}")));
        }
    }

    #[tokio::test]
    async fn a_status_fails_the_request_and_enquire_link_is_answered() {
        let (client, _events, mut smsc) = pair();
        let submit = tokio::spawn({
            let client = client.clone();
            async move { client.submit_sm(SubmitSm::builder().build()).await }
        });
        let command = smsc.next().await.unwrap().unwrap();
        smsc.send(Command::new(
            CommandStatus::EsmeRthrottled,
            command.sequence_number(),
            Pdu::GenericNack,
        ))
        .await
        .unwrap();
        assert_eq!(submit.await.unwrap(), Err(Error::Status(0x58)));
        smsc.send(Command::new(CommandStatus::EsmeRok, 77, Pdu::EnquireLink))
            .await
            .unwrap();
        let resp = smsc.next().await.unwrap().unwrap();
        assert_eq!(resp.id(), rusmpp::CommandId::EnquireLinkResp);
        assert_eq!(resp.sequence_number(), 77);
    }

    #[tokio::test]
    async fn a_silent_smsc_times_out_and_a_lost_one_fails_everything_waiting() {
        let (client, mut events, mut smsc) = pair();
        let result = client.submit_sm(SubmitSm::builder().build()).await;
        assert_eq!(result, Err(Error::Timeout(timers().response_timeout)));
        assert!(client.shared().waiting.lock().unwrap().is_empty());
        let waiting = tokio::spawn({
            let client = client.clone();
            async move { client.submit_sm(SubmitSm::builder().build()).await }
        });
        let _ = smsc.next().await;
        let _ = smsc.next().await;
        let deliver = rusmpp::pdus::DeliverSm::builder().build();
        smsc.send(Command::new(CommandStatus::EsmeRok, 5, deliver))
            .await
            .unwrap();
        drop(smsc);
        assert_eq!(waiting.await.unwrap(), Err(Error::Closed));
        let event = events.recv().await.expect("the deliver_sm");
        assert_eq!(event.id(), rusmpp::CommandId::DeliverSm);
        assert!(
            events.recv().await.is_none(),
            "the events end with the link"
        );
        assert_eq!(
            client.submit_sm(SubmitSm::builder().build()).await,
            Err(Error::Closed)
        );
    }

    #[tokio::test]
    async fn an_unanswered_enquire_link_closes_the_connection() {
        let (near, far) = tokio::io::duplex(64 * 1024);
        let quick = Timers {
            response_timeout: Duration::from_millis(100),
            enquire_link: Duration::from_millis(50),
        };
        let (_client, mut events) = Client::start(near, quick);
        let mut smsc = Framed::new(far, CommandCodec::new());
        let first = smsc.next().await.unwrap().unwrap();
        assert_eq!(first.id(), rusmpp::CommandId::EnquireLink);
        smsc.send(Command::new(
            CommandStatus::EsmeRok,
            first.sequence_number(),
            Pdu::EnquireLinkResp,
        ))
        .await
        .unwrap();
        // Answered once: the link stays; the next one goes unanswered.
        let second = smsc.next().await.unwrap().unwrap();
        assert_eq!(second.id(), rusmpp::CommandId::EnquireLink);
        let ended = tokio::time::timeout(Duration::from_secs(5), events.recv()).await;
        assert!(matches!(ended, Ok(None)), "the connection ends");
        assert!(smsc.next().await.is_none(), "the socket is closed");
    }
}
