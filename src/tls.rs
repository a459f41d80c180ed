//! HTTPS terminated by moms itself (spec section 1): the old clients speak
//! HTTPS, and a site without a reverse proxy in front still has to answer
//! them. `tls.cert` and `tls.key` name PEM files, read once at start; both
//! empty means plain HTTP.
//!
//! [`TlsListener`] hands the HTTP server completed TLS streams only.
//! Handshakes run off the accept path, each in its own task under a
//! deadline, so a client that connects and then stays silent delays nobody
//! but itself.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail};
use rustls::ServerConfig;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::Tls;

/// How long a client has to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Finished handshakes waiting for the HTTP server to take them.
const READY_QUEUE: usize = 64;

/// Ends every configuration error: what the operator can do about it.
const HINT: &str = "set tls.cert and tls.key to PEM files, or leave both empty for plain HTTP";

/// The TLS settings named by `tls`; `None` when both files are unset.
///
/// Fails, naming the key and the file, when only one is set, a file cannot
/// be read or holds no certificate or key, or the key is not the
/// certificate's.
pub fn server_config(tls: &Tls) -> anyhow::Result<Option<Arc<ServerConfig>>> {
    match (tls.cert.is_empty(), tls.key.is_empty()) {
        (true, true) => return Ok(None),
        (false, true) => bail!("tls.cert is set but tls.key is empty; {HINT}"),
        (true, false) => bail!("tls.key is set but tls.cert is empty; {HINT}"),
        (false, false) => {}
    }
    let certs = certificates(&tls.cert)?;
    let key = private_key(&tls.key)?;
    // An explicit provider: the result does not depend on what else in the
    // process installed a default one first.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            anyhow!(
                "tls.key {} does not fit the certificate in tls.cert {}: {e}; {HINT}",
                tls.key,
                tls.cert
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

/// `https` when `tls` is set, else `http`: the scheme of the server's own
/// URLs. (A half-set `tls` never gets this far: the server does not start.)
pub fn scheme(tls: &Tls) -> &'static str {
    if tls.cert.is_empty() { "http" } else { "https" }
}

/// The certificate chain in `path`, the server's own certificate first.
fn certificates(path: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let bytes = read("tls.cert", path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("tls.cert {path}: not a valid PEM file: {e}; {HINT}"))?;
    if certs.is_empty() {
        bail!("tls.cert {path}: holds no \"BEGIN CERTIFICATE\" section; {HINT}");
    }
    Ok(certs)
}

/// The first private key in `path` (PKCS#8, PKCS#1 or SEC1).
fn private_key(path: &str) -> anyhow::Result<PrivateKeyDer<'static>> {
    let bytes = read("tls.key", path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => {
            anyhow!("tls.key {path}: holds no \"BEGIN PRIVATE KEY\" section; {HINT}")
        }
        e => anyhow!("tls.key {path}: not a valid PEM file: {e}; {HINT}"),
    })
}

fn read(key: &str, path: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow!("{key} {path}: cannot read: {e}; {HINT}"))
}

/// A listener whose connections have finished their TLS handshake.
pub struct TlsListener {
    local_addr: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    accepting: JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting on `tcp` and handshaking with `config`.
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> io::Result<TlsListener> {
        let local_addr = tcp.local_addr()?;
        let (sender, ready) = mpsc::channel(READY_QUEUE);
        let accepting = tokio::spawn(accept_loop(tcp, TlsAcceptor::from(config), sender));
        Ok(TlsListener {
            local_addr,
            ready,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    /// Closes the port: the server has stopped taking connections.
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            None => {
                // Only a panic ends the accept loop while this listener lives.
                tracing::error!("the TLS accept loop stopped; no new connections");
                std::future::pending().await
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

/// Takes TCP connections and starts a handshake task for each.
async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (stream, peer) = match tcp.accept().await {
            Ok(connection) => connection,
            Err(error) => {
                accept_failed(error).await;
                continue;
            }
        };
        // As on plain HTTP (see `crate::app::serve_tcp`).
        let _ = stream.set_nodelay(true);
        tokio::spawn(handshake(acceptor.clone(), stream, peer, ready.clone()));
    }
}

/// One handshake; a failed or late one is the client's problem, so it is
/// logged at debug level only and the connection dropped.
async fn handshake(
    acceptor: TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    ready: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            // Fails only when the server is shutting down.
            let _ = ready.send((tls, peer)).await;
        }
        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
    }
}

/// As axum does for plain TCP: a connection that died before it was taken
/// is nothing; anything else (out of file descriptors) gets a pause so the
/// loop does not spin.
async fn accept_failed(error: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        error.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "accepting a connection failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
