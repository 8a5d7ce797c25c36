//! `[cluster]`: the shared store (Redis, or a Redis-protocol server) that makes several
//! nodes one gateway. [`Cluster`] is this node's handle on it: one pipelined connection
//! (or a Redis Cluster connection), its health, and the thread that keeps it.
//!
//! The store is a dependency the gateway survives losing. Every call has a deadline
//! (`timeout`, a few milliseconds, for calls a request waits on); a broken connection,
//! or three deadlines missed in a row, marks the store down. While it is down no request
//! touches it: each decides on this node's own state (`on_store_error = "local"`) or is
//! refused (`"deny"`), and the `weir-cluster` thread reconnects with a backoff (100 ms
//! doubling to 2 s). Each change of state is logged once and shown in
//! `weir_cluster_store_up`; failed calls count in `weir_cluster_store_errors_total`.
//!
//! What lives in the store: [`throttle`] (GCRA buckets, taken in leases or one token at a
//! time), [`quota`] (usage-plan counters per period) and [`connections`] (the WebSocket
//! connection registry and delivery between nodes). Every script touches one key, so
//! nothing needs keys to share a Redis Cluster slot.

pub mod connections;
mod lease;
pub mod quota;
pub mod throttle;

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};
use tokio::sync::Notify;

use crate::config::{self, ClusterMode, OnStoreError};
use lease::Lease;

/// Backoff between reconnection attempts: the first, and the longest.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));
/// Deadline of calls no request waits on (refills, returns, registrations, pings).
pub(crate) const BACKGROUND_TIMEOUT: Duration = Duration::from_secs(1);
/// Deadlines missed in a row that mark the store down.
const MISSED_DEADLINES: u32 = 3;
/// How often unused lease tokens are looked at (and returned after [`lease::TTL`]).
const SWEEP_EVERY: Duration = Duration::from_millis(100);

/// The checked `[cluster]` settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The store's URLs (several: Redis Cluster).
    pub urls: Vec<String>,
    /// This node's id.
    pub node_id: String,
    /// What a request gets while the store cannot answer.
    pub on_store_error: OnStoreError,
    /// Leases or one token at a time.
    pub mode: ClusterMode,
    /// Longest a request waits for the store.
    pub timeout: Duration,
    /// How much demand one lease covers.
    pub lease: Duration,
    /// Prefix of keys and channels.
    pub prefix: String,
    /// How long registrations outlive their node's last refresh.
    pub connection_ttl: Duration,
    /// With `rediss://` and `tls_ca_file` or `tls_cert`: the authorities and this
    /// node's certificate, read from their files.
    pub tls: Option<redis::TlsCertificates>,
}

impl Settings {
    /// The settings of a `[cluster]` table (already checked by `gateway::assemble`);
    /// its TLS files are read, relative to `base`.
    pub fn of(c: &config::Cluster, base: &Path) -> Result<Self, String> {
        let mut errors = Vec::new();
        c.check(&mut errors);
        if let Some(e) = errors.into_iter().next() {
            return Err(e);
        }
        let read = |key: &str, file: &Path| {
            let path = base.join(file);
            std::fs::read(&path).map_err(|e| format!("cluster.{key} {}: {e}", path.display()))
        };
        let client_tls = match (&c.tls_cert, &c.tls_key) {
            (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                client_cert: read("tls_cert", cert)?,
                client_key: read("tls_key", key)?,
            }),
            _ => None,
        };
        let root_cert = c
            .tls_ca_file
            .as_ref()
            .map(|f| read("tls_ca_file", f))
            .transpose()?;
        let tls = (client_tls.is_some() || root_cert.is_some()).then_some(redis::TlsCertificates {
            client_tls,
            root_cert,
        });
        Ok(Self {
            urls: c.urls()?,
            node_id: c.node_id(),
            on_store_error: c.on_store_error,
            mode: c.mode,
            timeout: c.timeout,
            lease: c.lease,
            prefix: c.prefix.clone(),
            connection_ttl: c.connection_ttl,
            tls,
        })
    }
}

/// Why a call to the store gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// The store is down (not connected).
    Down,
    /// No answer within the deadline.
    Timeout,
    /// The connection broke.
    Connection,
    /// The store answered with an error.
    Reply,
}

/// The connection: to one server, or to a Redis Cluster.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// How connections are made: to one server, or to a Redis Cluster.
#[allow(clippy::large_enum_variant, reason = "one per process, made once")]
enum Client {
    Single(redis::Client),
    Cluster(redis::cluster::ClusterClient),
}

/// What this node remembers of a quota counter, to restore it in a store that lost it
/// and to add what it counted alone while the store was down.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct QuotaMemo {
    /// The highest count the store reported.
    pub(crate) known: u64,
    /// Requests counted here while the store was down.
    pub(crate) pending: u64,
    /// When the counter's period ends (Unix seconds).
    pub(crate) expire_at: i64,
}

/// This node's handle on the shared store.
pub struct Cluster {
    settings: Settings,
    client: Client,
    /// The subscriber connection's server (the first URL; Redis Cluster relays
    /// classic pub/sub to every node).
    pubsub: redis::Client,
    conn: ArcSwapOption<Conn>,
    up: AtomicBool,
    missed: AtomicU32,
    broken: Notify,
    runtime: tokio::runtime::Handle,
    epoch: Instant,
    leases: Mutex<HashMap<Arc<str>, Weak<Lease>>>,
    quotas: Mutex<HashMap<Arc<str>, QuotaMemo>>,
    /// Bumped each time the store comes (back) up.
    generation: tokio::sync::watch::Sender<u64>,
}

impl Cluster {
    /// Starts the `weir-cluster` thread and its first connection (waiting for it at
    /// most a second: a node whose store is unreachable starts on local state).
    pub fn start(settings: Settings) -> Result<Arc<Cluster>, String> {
        let redacted = |e: RedisError| format!("cluster.redis: {}", e.category());
        let single = |url: &str| match &settings.tls {
            None => redis::Client::open(url),
            Some(tls) => redis::Client::build_with_tls(url, tls.clone()),
        };
        let client = if settings.urls.len() == 1 {
            Client::Single(single(&settings.urls[0]).map_err(redacted)?)
        } else {
            let mut builder =
                redis::cluster::ClusterClientBuilder::new(settings.urls.iter().map(String::as_str));
            if let Some(tls) = &settings.tls {
                builder = builder.certs(tls.clone());
            }
            Client::Cluster(builder.build().map_err(redacted)?)
        };
        let pubsub = single(&settings.urls[0]).map_err(redacted)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting the cluster thread: {e}"))?;
        let cluster = Arc::new(Cluster {
            settings,
            client,
            pubsub,
            conn: ArcSwapOption::empty(),
            up: AtomicBool::new(false),
            missed: AtomicU32::new(0),
            broken: Notify::new(),
            runtime: runtime.handle().clone(),
            epoch: Instant::now(),
            leases: Mutex::default(),
            quotas: Mutex::default(),
            generation: tokio::sync::watch::Sender::new(0),
        });
        metrics::gauge!("weir_cluster_store_up").set(0.0);
        let (first, connected) = std::sync::mpsc::channel();
        let keeper = cluster.clone();
        std::thread::Builder::new()
            .name("weir-cluster".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    tokio::spawn(keeper.clone().sweep());
                    keeper.keep(first).await;
                });
            })
            .map_err(|e| format!("starting the cluster thread: {e}"))?;
        if connected.recv_timeout(Duration::from_secs(1)) != Ok(true) {
            tracing::warn!(
                node = %cluster.settings.node_id,
                on_store_error = ?cluster.settings.on_store_error,
                "cluster store unreachable at start; reconnecting in the background"
            );
        }
        Ok(cluster)
    }

    /// The settings in force.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// This node's id.
    pub fn node(&self) -> &str {
        &self.settings.node_id
    }

    /// Whether the store answers.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Whether a request the store cannot answer may be decided here.
    pub fn decides_locally(&self) -> bool {
        self.settings.on_store_error == OnStoreError::Local
    }

    /// A key or channel name under the prefix.
    pub(crate) fn key(&self, rest: std::fmt::Arguments<'_>) -> String {
        format!("{}:{rest}", self.settings.prefix)
    }

    /// Milliseconds since this node started its cluster thread (a monotonic clock).
    pub(crate) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Runs `fut` on the cluster thread.
    pub(crate) fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        self.runtime.spawn(fut);
    }

    /// Resolves each time the store comes (back) up.
    pub(crate) fn generations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// One call to the store within `deadline`; the connection's health follows the
    /// outcome.
    pub(crate) async fn call<T, F, Fut>(&self, deadline: Duration, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if !self.is_up() {
            return Err(StoreError::Down);
        }
        let Some(conn) = self.conn.load_full() else {
            return Err(StoreError::Down);
        };
        match tokio::time::timeout(deadline, f((*conn).clone())).await {
            Ok(Ok(v)) => {
                self.missed.store(0, Ordering::Relaxed);
                Ok(v)
            }
            Ok(Err(e))
                if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() =>
            {
                metrics::counter!("weir_cluster_store_errors_total", "kind" => "connection")
                    .increment(1);
                self.mark_down(e.category());
                Err(StoreError::Connection)
            }
            Ok(Err(e)) => {
                metrics::counter!("weir_cluster_store_errors_total", "kind" => "reply")
                    .increment(1);
                tracing::debug!(error = %e.category(), "cluster store refused a call");
                Err(StoreError::Reply)
            }
            Err(_) => {
                metrics::counter!("weir_cluster_store_errors_total", "kind" => "timeout")
                    .increment(1);
                if self.missed.fetch_add(1, Ordering::Relaxed) + 1 >= MISSED_DEADLINES {
                    self.mark_down("deadlines missed");
                }
                Err(StoreError::Timeout)
            }
        }
    }

    fn mark_down(&self, why: &str) {
        if self.up.swap(false, Ordering::Relaxed) {
            self.conn.store(None);
            metrics::gauge!("weir_cluster_store_up").set(0.0);
            tracing::warn!(
                reason = why,
                on_store_error = ?self.settings.on_store_error,
                "cluster store down; deciding on this node's own state until it is back"
            );
            self.broken.notify_one();
        }
    }

    /// Keeps the connection: connects with a backoff while down, refreshes this node's
    /// liveness key while up.
    async fn keep(self: Arc<Self>, first: std::sync::mpsc::Sender<bool>) {
        let mut backoff = BACKOFF.0;
        let mut first = Some(first);
        let mut failed_once = false;
        loop {
            if !self.is_up() {
                match self.connect().await {
                    Ok(conn) => {
                        self.conn.store(Some(Arc::new(conn)));
                        self.restore_quotas().await;
                        self.missed.store(0, Ordering::Relaxed);
                        self.up.store(true, Ordering::Relaxed);
                        metrics::gauge!("weir_cluster_store_up").set(1.0);
                        tracing::info!(node = %self.settings.node_id, "cluster store up");
                        self.generation.send_modify(|g| *g += 1);
                        backoff = BACKOFF.0;
                        failed_once = false;
                        self.heartbeat().await;
                    }
                    Err(e) => {
                        if !failed_once && first.is_none() {
                            tracing::warn!(error = %e, "cluster store unreachable; retrying with backoff");
                        }
                        failed_once = true;
                        if let Some(first) = first.take() {
                            let _ = first.send(false);
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(BACKOFF.1);
                        continue;
                    }
                }
                if let Some(first) = first.take() {
                    let _ = first.send(true);
                }
            }
            let beat = self.settings.connection_ttl / 3;
            tokio::select! {
                () = self.broken.notified() => {}
                () = tokio::time::sleep(beat) => self.heartbeat().await,
            }
        }
    }

    async fn connect(&self) -> Result<Conn, String> {
        let connect = async {
            let mut conn = match &self.client {
                Client::Single(c) => {
                    let config = redis::AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(BACKGROUND_TIMEOUT))
                        .set_response_timeout(None);
                    Conn::Single(
                        c.get_multiplexed_async_connection_with_config(&config)
                            .await?,
                    )
                }
                Client::Cluster(c) => Conn::Cluster(c.get_async_connection().await?),
            };
            redis::cmd("PING").query_async::<()>(&mut conn).await?;
            Ok::<_, RedisError>(conn)
        };
        match tokio::time::timeout(2 * BACKGROUND_TIMEOUT, connect).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(e.category().to_owned()),
            Err(_) => Err("no answer".to_owned()),
        }
    }

    /// Marks this node alive for the others (`PREFIX:node:ID`, expiring after
    /// `connection_ttl`).
    async fn heartbeat(&self) {
        let key = self.key(format_args!("node:{}", self.settings.node_id));
        let ttl = self.settings.connection_ttl.as_millis() as u64;
        let _ = self
            .call(BACKGROUND_TIMEOUT, |mut c| async move {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(1)
                    .arg("PX")
                    .arg(ttl)
                    .query_async::<()>(&mut c)
                    .await
            })
            .await;
    }

    /// The lease for `key`, shared by every gateway compiled in this process.
    pub(crate) fn lease(&self, key: &str, make: impl FnOnce(Arc<str>) -> Lease) -> Arc<Lease> {
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = leases.get(key).and_then(Weak::upgrade) {
            return l;
        }
        let key: Arc<str> = key.into();
        let lease = Arc::new(make(key.clone()));
        leases.insert(key, Arc::downgrade(&lease));
        lease
    }

    /// Every 100 ms: leases whose tokens went unused for [`lease::TTL`] give them back.
    async fn sweep(self: Arc<Self>) {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = self.now_ms();
            let due: Vec<Arc<Lease>> = {
                let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
                leases.retain(|_, l| l.strong_count() > 0);
                leases
                    .values()
                    .filter_map(Weak::upgrade)
                    .filter(|l| l.expired(now))
                    .collect()
            };
            for lease in due {
                let unused = lease.drain();
                if unused > 0 && self.is_up() {
                    lease::give_back(&self, &lease, unused).await;
                }
            }
        }
    }

    /// Remembers what the store said of a quota counter.
    pub(crate) fn remember_quota(&self, key: &Arc<str>, known: u64, expire_at: i64) {
        let mut quotas = self.quotas.lock().unwrap_or_else(|p| p.into_inner());
        let memo = quotas.entry(key.clone()).or_default();
        memo.known = memo.known.max(known);
        memo.expire_at = expire_at;
    }

    /// The highest count of a quota counter this node knows of (the store's last
    /// answer and what it counted alone since).
    pub(crate) fn quota_seen(&self, key: &str) -> u64 {
        let quotas = self.quotas.lock().unwrap_or_else(|p| p.into_inner());
        quotas.get(key).map_or(0, |m| m.known + m.pending)
    }

    /// Counts a request on this node alone (the store did not answer): the new count,
    /// or `None` when the counter as this node knows it reached `limit`.
    pub(crate) fn count_locally(&self, key: &Arc<str>, limit: u64, expire_at: i64) -> Option<u64> {
        let mut quotas = self.quotas.lock().unwrap_or_else(|p| p.into_inner());
        let memo = quotas.entry(key.clone()).or_default();
        memo.expire_at = expire_at;
        if memo.known + memo.pending >= limit {
            return None;
        }
        memo.pending += 1;
        Some(memo.known + memo.pending)
    }

    /// Before the store serves requests again: a counter it lost (a restart without
    /// persistence) is set back to the highest count this node saw, and what this node
    /// counted alone meanwhile is added.
    async fn restore_quotas(&self) {
        let now = crate::quota::unix_now();
        let memos: Vec<(Arc<str>, QuotaMemo)> = {
            let mut quotas = self.quotas.lock().unwrap_or_else(|p| p.into_inner());
            quotas.retain(|_, m| m.expire_at > now);
            quotas.iter().map(|(k, m)| (k.clone(), *m)).collect()
        };
        let Some(conn) = self.conn.load_full() else {
            return;
        };
        for (key, memo) in memos {
            let mut c = (*conn).clone();
            let restore = quota::restore(&key, memo, &mut c);
            match tokio::time::timeout(BACKGROUND_TIMEOUT, restore).await {
                Ok(Ok(())) => {
                    let mut quotas = self.quotas.lock().unwrap_or_else(|p| p.into_inner());
                    if let Some(m) = quotas.get_mut(&key) {
                        m.known = m.known.max(memo.known + memo.pending);
                        m.pending -= memo.pending.min(m.pending);
                    }
                }
                _ => {
                    tracing::warn!(counter = %key, "quota count not restored in the cluster store")
                }
            }
        }
    }

    /// The pub/sub server, for [`connections`].
    pub(crate) fn pubsub_client(&self) -> &redis::Client {
        &self.pubsub
    }
}
