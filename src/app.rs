//! The running server's shared state and its start-up: one [`App`] behind an
//! `Arc`, handed to the HTTP layer and to every background loop.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::serve::{Listener, ListenerExt};
use rlibphonenumber::enums::Region;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::api::auth::AuthLimiter;
use crate::config::Config;
use crate::connection_idle::{Busy, IdleIo};
use crate::domain::carrier::CarrierTable;
use crate::store::Store;
use crate::store::campaign::Campaign;
use crate::store::client::Client;
use crate::store::sends::SendBatcher;
use crate::tls::TlsListener;

/// A read-mostly cache, dropped whole when an operator changes something.
pub struct Cache<K, V> {
    map: RwLock<HashMap<K, V>>,
}

impl<K: Eq + Hash, V: Clone> Cache<K, V> {
    pub fn new() -> Self {
        Cache {
            map: RwLock::new(HashMap::new()),
        }
    }

    pub fn get(&self, key: &K) -> Option<V> {
        self.map.read().expect("cache lock").get(key).cloned()
    }

    pub fn insert(&self, key: K, value: V) {
        self.map.write().expect("cache lock").insert(key, value);
    }

    pub fn remove(&self, key: &K) {
        self.map.write().expect("cache lock").remove(key);
    }

    pub fn clear(&self) {
        self.map.write().expect("cache lock").clear();
    }
}

impl<K: Eq + Hash, V: Clone> Default for Cache<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

pub struct App {
    pub config: Config,
    pub store: Store,
    pub time_zone: chrono_tz::Tz,
    pub region: Region,
    pub clients: Cache<i64, Arc<Client>>,
    pub campaigns: Cache<i64, Arc<Campaign>>,
    pub carriers: RwLock<Arc<CarrierTable>>,
    pub sends: SendBatcher,
    /// Signalled when delivery work was queued.
    pub delivery_wake: Arc<Notify>,
    /// Signalled when a callback was queued.
    pub webhook_wake: Arc<Notify>,
    /// Signalled when an e-mail callback was queued.
    pub mail_wake: Arc<Notify>,
    /// Signalled when a blast was queued.
    pub blast_wake: Arc<Notify>,
    pub auth_failures: AuthLimiter,
    pub http: reqwest::Client,
    /// Reverse proxies whose X-Forwarded-For is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Send-rate buckets of clients with a send limit.
    pub send_limits: crate::api::limits::SendLimits,
    /// Delivery rate limits per client and campaign.
    pub rates: crate::delivery::rate::Rates,
    /// The change counter when the store was opened.
    pub generation_at_open: crate::store::Generation,
    /// The SMPP connector: its binds' job queues.
    pub smpp: crate::smpp::Connector,
    /// This node's name in leases (see [`crate::cluster`]).
    pub node: String,
    /// Another node changed cached objects (PostgreSQL's NOTIFY).
    pub changed_wake: Arc<Notify>,
    /// The MM7 connector: its MMSCs and the messages handed to them.
    pub mm7: crate::mm7::Connector,
    /// Renders `/metrics`.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

impl App {
    /// Opens the store and builds the state; no task is started here.
    pub async fn open(config: Config) -> anyhow::Result<Arc<App>> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let time_zone = config.time_zone()?;
        let trusted_proxies = config.trusted_proxies()?;
        let region =
            crate::domain::phone::parse_region(&config.default_region).ok_or_else(|| {
                anyhow::anyhow!(
                    "default_region {:?} is not a two-letter region code such as \"US\"",
                    config.default_region
                )
            })?;
        std::fs::create_dir_all(config.media_dir())?;
        std::fs::create_dir_all(config.tmp_dir())?;
        let store = Store::open(&config).await?;
        store.apply_configured_carriers(&config.carriers).await?;
        let generation_at_open = store.generation().await?;
        let rates = crate::delivery::rate::Rates::new(
            config.delivery.client_per_second,
            config.delivery.campaign_per_second,
        );
        let carriers = store.carrier_table().await?;
        let delivery_wake = Arc::new(Notify::new());
        let sends = SendBatcher::start(store.clone(), delivery_wake.clone());
        let http = crate::media::fetch::http_client(&config)?;
        let smpp = crate::smpp::Connector::new(&config.smpp);
        let mm7 = crate::mm7::Connector::new(&config.mm7)?;
        Ok(Arc::new(App {
            smpp,
            mm7,
            node: crate::cluster::node_name(&config),
            changed_wake: Arc::new(Notify::new()),
            auth_failures: AuthLimiter::new(
                config.limits.failed_auth_per_ip,
                config.limits.failed_auth_per_client,
                Duration::from_secs(config.limits.failed_auth_window_secs),
            ),
            config,
            store,
            time_zone,
            region,
            clients: Cache::new(),
            campaigns: Cache::new(),
            carriers: RwLock::new(Arc::new(carriers)),
            sends,
            delivery_wake,
            webhook_wake: Arc::new(Notify::new()),
            mail_wake: Arc::new(Notify::new()),
            blast_wake: Arc::new(Notify::new()),
            http,
            generation_at_open,
            rates,
            send_limits: Default::default(),
            trusted_proxies,
            metrics: crate::metrics::install(),
        }))
    }

    /// The carrier table as it is now.
    pub fn carrier_table(&self) -> Arc<CarrierTable> {
        self.carriers.read().expect("carrier lock").clone()
    }

    /// Drops every cache, and reloads the carrier table.
    pub async fn reload(&self) -> anyhow::Result<()> {
        self.clients.clear();
        self.campaigns.clear();
        self.reload_carriers().await
    }

    /// Rebuilds the carrier table from the store.
    pub async fn reload_carriers(&self) -> anyhow::Result<()> {
        let table = self.store.carrier_table().await?;
        *self.carriers.write().expect("carrier lock") = Arc::new(table);
        Ok(())
    }

    /// A client by id, from the cache when it is there.
    pub async fn client(&self, id: i64) -> sqlx::Result<Option<Arc<Client>>> {
        if let Some(client) = self.clients.get(&id) {
            return Ok(Some(client));
        }
        let Some(client) = self.store.client(id).await? else {
            return Ok(None);
        };
        let client = Arc::new(client);
        self.clients.insert(id, client.clone());
        Ok(Some(client))
    }

    /// A live campaign of this client; `None` for a destroyed one or one of
    /// another client, which callers answer exactly like a missing one.
    pub async fn campaign(&self, client_id: i64, id: i64) -> sqlx::Result<Option<Arc<Campaign>>> {
        let campaign = match self.campaigns.get(&id) {
            Some(campaign) => campaign,
            None => {
                let Some(campaign) = self.store.campaign(id).await? else {
                    return Ok(None);
                };
                let campaign = Arc::new(campaign);
                self.campaigns.insert(id, campaign.clone());
                campaign
            }
        };
        Ok(Some(campaign).filter(|c| c.client_id == client_id && !c.destroyed))
    }
}

/// Runs the server on a TCP listener until `shutdown` completes: HTTPS when
/// `tls` is given (see [`crate::tls::server_config`]), plain HTTP otherwise.
pub async fn serve_tcp(
    app: Arc<App>,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    match tls {
        Some(tls) => serve(app, TlsListener::new(listener, tls)?, shutdown).await,
        // An answer is one small write: without TCP_NODELAY, a client's
        // next request on a kept-alive connection can wait for a delayed
        // ACK (40 ms on Linux) before the answer leaves.
        None => {
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            serve(app, listener, shutdown).await
        }
    }
}

/// Runs the server on `listener` until `shutdown` completes: the HTTP API
/// and every background loop (delivery, callbacks, mails, blasts, cache refresh).
pub async fn serve<L>(
    app: Arc<App>,
    listener: L,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()>
where
    L: Listener<Addr = SocketAddr>,
{
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(crate::delivery::run(app.clone(), stop_rx.clone()));
    tasks.spawn(crate::smpp::run(app.clone(), stop_rx.clone()));
    tasks.spawn(crate::mm7::run(app.clone(), stop_rx.clone()));
    tasks.spawn(crate::webhooks::run(app.clone(), stop_rx.clone()));
    tasks.spawn(crate::mail::run(app.clone(), stop_rx.clone()));
    tasks.spawn(crate::delivery::blast::run(app.clone(), stop_rx.clone()));
    tasks.spawn(watch_generation(app.clone(), stop_rx.clone()));
    tasks.spawn(crate::cluster::listen(app.clone(), stop_rx.clone()));
    tasks.spawn(retention(app.clone(), stop_rx.clone()));
    if let Some(handle) = app.metrics.clone() {
        let mut stop = stop_rx.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => handle.run_upkeep(),
                    _ = stop.changed() => break,
                }
            }
        });
    }
    let router = crate::api::router(app.clone()).merge(crate::mm7::server::router(app.clone()));
    http_loop(&app, listener, router, shutdown).await;
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    app.sends.flush().await;
    Ok(())
}

/// Accepts connections until `shutdown` completes, then closes the
/// listener and gives requests in progress `shutdown.grace_secs` to finish
/// (a stalled client cannot hold the process, and its SMPP binds, open).
///
/// Each HTTP/1 connection must send a request's headers within
/// `limits.header_secs` (hyper's header read timeout, which needs a timer
/// that `axum::serve` does not set): a client trickling its headers is
/// cut off. A connection idle for `limits.idle_secs` (nothing sent, or
/// kept alive and left silent) is closed ([`crate::connection_idle`]).
/// Handlers see the peer address as axum's `ConnectInfo`.
async fn http_loop<L>(
    app: &Arc<App>,
    mut listener: L,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) where
    L: Listener<Addr = SocketAddr>,
{
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(app.config.limits.header_secs.max(1)));
    builder.http2().timer(TokioTimer::new());
    let idle = Duration::from_secs(app.config.limits.idle_secs.max(1));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut shutdown => break,
        };
        let router = router.clone();
        let busy = Busy::default();
        let io = IdleIo::new(io, idle, busy.clone());
        let service = hyper::service::service_fn(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                let handling = busy.enter();
                let answer = tower::ServiceExt::oneshot(router.clone(), request);
                async move {
                    let answer = answer.await;
                    drop(handling);
                    answer
                }
            },
        );
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    // No new connections from here on.
    drop(listener);
    let grace = Duration::from_secs(app.config.shutdown.grace_secs);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(grace) => {
            tracing::warn!(?grace, "requests still open when the shutdown grace ended were cut");
        }
    }
}

/// Drops caches when an operator (or another process) changed something.
async fn watch_generation(app: Arc<App>, mut stop: tokio::sync::watch::Receiver<bool>) {
    // Read when the caches were empty, so no change made since can be missed.
    let mut seen = app.generation_at_open;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = app.changed_wake.notified() => {}
            _ = stop.changed() => return,
        }
        match app.store.generation().await {
            Ok(now) if now != seen => {
                app.clients.clear();
                app.campaigns.clear();
                // The carrier table can hold millions of ported numbers:
                // rebuilt only when carriers changed.
                if now.carriers != seen.carriers
                    && let Err(error) = app.reload_carriers().await
                {
                    tracing::warn!(%error, "carrier reload failed");
                }
                seen = now;
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "cannot read the change counters"),
        }
    }
}

/// Forgets old SMPP segments in chunks, each its own short commit with a
/// pause after it, so the sends and the delivery get the writer between
/// them (the first sweep of a store that never had one may take minutes).
async fn prune_smpp_segments(app: &App, before_ms: i64) {
    const CHUNK: i64 = 2_000;
    const PAUSE: Duration = Duration::from_millis(10);
    let (mut after, mut removed) = (0, 0);
    loop {
        match app.store.prune_smpp_segments(after, before_ms, CHUNK).await {
            Ok(pruned) => {
                removed += pruned.removed;
                match pruned.next {
                    Some(next) => after = next,
                    None => break,
                }
                tokio::time::sleep(PAUSE).await;
            }
            Err(error) => {
                tracing::warn!(%error, "sweep of old SMPP segments failed");
                break;
            }
        }
    }
    if removed > 0 {
        tracing::info!(removed, "SMPP segments of long-finished messages forgotten");
    }
}

/// Hourly housekeeping, once at start too: applies `retention.days`
/// (when set), drops receipts that named no message for longer than the
/// validity period (no message can match them any more; an SMSC that
/// sends junk ids must not grow the table without end), and forgets the
/// SMPP segments of messages finished as long ago.
async fn retention(app: Arc<App>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let days = i64::from(app.config.retention.days);
    let validity_ms = app.config.delivery.validity_secs.saturating_mul(1000);
    loop {
        if days > 0 {
            match app.store.expire(crate::store::now() - days * 86_400).await {
                Ok(media) => crate::media::storage::remove_files(&app.config, &media).await,
                Err(error) => tracing::warn!(%error, "retention sweep failed"),
            }
        }
        let before = crate::store::now_ms().saturating_sub(validity_ms);
        match app.store.drop_stale_receipts(before).await {
            Ok(0) => {}
            Ok(dropped) => tracing::info!(dropped, "receipts for unknown ids expired"),
            Err(error) => tracing::warn!(%error, "sweep of unmatched receipts failed"),
        }
        prune_smpp_segments(&app, before).await;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = stop.changed() => return,
        }
    }
}
