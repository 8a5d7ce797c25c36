//! Pools of upstream targets (`[upstreams.NAME]`): which target a request goes to
//! ([`Pool::pick`]), which targets are available (active checks say healthy, passive
//! ejection has not left them out), the retry budget, and each target's own
//! connections ([`link`]). The requests themselves, the health checks and the name
//! lookups of `resolve` are made by `integrate::pool`, `integrate::health` and
//! `integrate::resolve`.
//!
//! A pool's targets now are its [`Members`]: the config's targets, each name replaced by
//! the addresses it last resolved to when the pool has `resolve`. A request picks among
//! the members it saw when it started, so a target that leaves (a reload, a name that no
//! longer resolves to it) gets no new request but finishes those it has; its idle
//! connections close when the last of them ends.
//!
//! Pools live outside the gateway snapshot in the [`Pools`] registry (one per process,
//! like `lambda::Functions`): a reload keeps a pool whose settings did not change, and
//! a target's health and connections follow its URL (or address) from one pool version
//! to the next, so a reload neither forgets an ejection nor drops a request in flight
//! (the old snapshot, and so the old pool, lives until its last request ends).

mod balance;
pub mod h1;
pub mod link;
pub mod spec;

pub use link::{Dial, Dialer, Links, WorkerLinks};
pub use spec::{Balance, HealthSpec, PoolSpec};

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::HeaderMap;
use http::header::HeaderValue;
use hyper_util::client::legacy::connect::dns::GaiResolver;

use crate::config::{Config, Protocol};

/// The pools one gateway snapshot uses, by name.
pub type PoolSet = BTreeMap<String, Arc<Pool>>;

/// A pool of targets and how to pick one.
pub struct Pool {
    /// `[upstreams.NAME]`'s name.
    pub name: Arc<str>,
    /// Its settings.
    pub spec: PoolSpec,
    /// Its targets now: those of the config, each name replaced by the addresses it
    /// last resolved to (with `resolve`).
    members: ArcSwap<Members>,
    /// The retry budget, in thousandths of a retry.
    budget: AtomicI64,
    /// Whether its health checks have been started.
    started: AtomicBool,
    /// Where target states and clients come from.
    registry: Arc<Registry>,
}

/// The targets of a pool at one time. A request picks among the members it saw when it
/// started; a target that leaves later still serves the requests that picked it.
pub struct Members {
    /// Targets, in config order (a name's addresses in resolver order).
    pub targets: Vec<Target>,
    /// Smooth weighted round robin's current weights.
    rotation: Mutex<Vec<i64>>,
}

impl Members {
    fn new(targets: Vec<Target>) -> Self {
        Self {
            rotation: Mutex::new(vec![0; targets.len()]),
            targets,
        }
    }
}

/// One target of a pool.
#[derive(Clone)]
pub struct Target {
    /// `http://host:port` as written: the requests' URL, `Host` and TLS server name.
    pub base: Arc<str>,
    /// What tells it apart: `base`, or for an address a name resolved to,
    /// `http://ADDRESS:port` (the `target` label of its metrics).
    pub id: Arc<str>,
    /// The index of the config's target it comes from.
    pub origin: usize,
    /// `host:port`.
    pub authority: HeaderValue,
    /// Plain HTTP (`http://`).
    pub plain: bool,
    /// Relative share.
    pub weight: u32,
    /// Health and connections, shared with the same target in other versions of the
    /// pool.
    pub state: Arc<TargetState>,
    /// `weir_upstream_requests_total` for it.
    pub requests: metrics::Counter,
    /// `weir_upstream_failures_total` for it.
    pub failures: metrics::Counter,
    /// `weir_upstream_retries_total` for it (attempts that were retries).
    pub retries: metrics::Counter,
    ejections: metrics::Counter,
    healthy: metrics::Gauge,
}

/// What is known of a target's health, and its connections; outlives any one pool
/// version, and closes its idle connections when the last one lets go of it.
pub struct TargetState {
    /// What the active checks last concluded (true until they say otherwise).
    checked_healthy: AtomicBool,
    /// Failed requests in a row.
    failures: AtomicU32,
    /// Left out until this time ([`now_ms`]); 0: not ejected.
    ejected_until: AtomicU64,
    /// Requests in flight to it.
    pub in_flight: AtomicUsize,
    /// Its own keep-alive clients (per worker thread).
    pub links: WorkerLinks,
}

impl TargetState {
    fn new(links: WorkerLinks) -> Self {
        Self {
            checked_healthy: AtomicBool::new(true),
            failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            links,
        }
    }
}

/// Milliseconds since the first call in the process (never 0 afterwards).
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// Retries banked at most (and at the start): a quiet pool may retry this many at once.
const BUDGET_CAP: i64 = 10_000;

impl TargetState {
    fn available(&self, now: u64) -> bool {
        self.checked_healthy.load(Ordering::Relaxed)
            && self.ejected_until.load(Ordering::Relaxed) <= now
    }
}

impl Target {
    /// Whether requests may go to it now.
    pub fn available(&self) -> bool {
        self.state.available(now_ms())
    }

    /// What the active checks last concluded of it.
    pub fn checked_healthy(&self) -> bool {
        self.state.checked_healthy.load(Ordering::Relaxed)
    }

    /// Sends a request over its own connections (HTTP/2 only when `http2`) and waits
    /// for the answer's head, with no timeout and no resend.
    pub async fn send(
        &self,
        req: http::Request<link::OutBody>,
        http2: bool,
    ) -> Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
        let links = self.state.links.get();
        if http2 {
            links.http2.request(req).await
        } else {
            links.http1.request(req).await
        }
    }
}

impl Target {
    /// Sends a request (in origin form) over HTTP/1.1 on the target's own connections
    /// ([`h1`]), and waits for the answer's head, with no timeout and no resend; the
    /// [`h1::Lease`] gives the connection back once the answer was read to its end.
    pub async fn send_own(
        &self,
        req: http::Request<http_body_util::Full<bytes::Bytes>>,
    ) -> Result<(http::Response<hyper::body::Incoming>, h1::Lease), h1::Failure> {
        self.state.links.get().own.send(req, &self.authority).await
    }
}

/// A request in flight to a target (counted for `least_request` until dropped).
pub struct InFlight(Arc<TargetState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Pool {
    fn new(name: &str, spec: PoolSpec, registry: Arc<Registry>) -> Self {
        let name: Arc<str> = name.into();
        let pool = Self {
            name,
            members: ArcSwap::from_pointee(Members::new(Vec::new())),
            spec,
            budget: AtomicI64::new(BUDGET_CAP),
            started: AtomicBool::new(false),
            registry,
        };
        // Names are resolved at each connection until the first resolution.
        let targets = (0..pool.spec.targets.len())
            .map(|origin| {
                let id = pool.spec.targets[origin].base.clone();
                pool.member(origin, id.into(), Dial::System(GaiResolver::new()))
            })
            .collect();
        pool.members.store(Arc::new(Members::new(targets)));
        pool.refresh_gauges();
        pool
    }

    fn member(&self, origin: usize, id: Arc<str>, dial: Dial) -> Target {
        let t = &self.spec.targets[origin];
        let labels = [
            ("upstream", self.name.to_string()),
            ("target", id.to_string()),
        ];
        Target {
            base: t.base.as_str().into(),
            plain: t.base.starts_with("http://"),
            origin,
            authority: t.authority.clone(),
            weight: t.weight,
            state: self.registry.state(&self.name, &id, dial),
            id,
            requests: metrics::counter!("weir_upstream_requests_total", &labels),
            failures: metrics::counter!("weir_upstream_failures_total", &labels),
            retries: metrics::counter!("weir_upstream_retries_total", &labels),
            ejections: metrics::counter!("weir_upstream_ejections_total", &labels),
            healthy: metrics::gauge!("weir_upstream_healthy", &labels),
        }
    }

    /// Its targets now.
    pub fn members(&self) -> Arc<Members> {
        self.members.load_full()
    }

    /// Takes in a resolution: per config target, the addresses its name resolved to
    /// (`None`: an address as written, or a failed lookup — its members stay). Each
    /// address becomes a target of its own, with the weight of the one written; an
    /// address already among the targets is not added twice. Targets that leave keep
    /// serving the requests that picked them, and close their connections after.
    /// Returns whether the targets changed.
    pub fn set_resolved(&self, resolved: &[Option<Vec<SocketAddr>>]) -> bool {
        let current = self.members();
        let mut next: Vec<Target> = Vec::new();
        let mut ids: BTreeSet<Arc<str>> = BTreeSet::new();
        for (origin, spec) in self.spec.targets.iter().enumerate() {
            match resolved.get(origin).and_then(Option::as_ref) {
                Some(addresses) if !addresses.is_empty() => {
                    for &address in addresses {
                        let id: Arc<str> = spec.at(address).into();
                        if !ids.insert(id.clone()) {
                            continue;
                        }
                        let kept = current.targets.iter().find(|t| t.id == id);
                        next.push(match kept {
                            Some(t) => t.clone(),
                            None => self.member(origin, id, Dial::Fixed(address)),
                        });
                    }
                }
                _ => {
                    for t in current.targets.iter().filter(|t| t.origin == origin) {
                        if ids.insert(t.id.clone()) {
                            next.push(t.clone());
                        }
                    }
                }
            }
        }
        let same = next.len() == current.targets.len()
            && next.iter().zip(&current.targets).all(|(a, b)| a.id == b.id);
        if same {
            return false;
        }
        for t in &current.targets {
            if !ids.contains(&t.id) {
                t.healthy.set(0.0);
                if t.id == t.base {
                    // The name as written, dialed until its first lookup answered.
                    tracing::debug!(upstream = %self.name, target = %t.id, "upstream name resolved");
                } else {
                    tracing::info!(upstream = %self.name, target = %t.id, "upstream target left: draining");
                }
            }
        }
        for t in &next {
            if !current.targets.iter().any(|c| c.id == t.id) {
                tracing::info!(upstream = %self.name, target = %t.id, "upstream target joined");
            }
        }
        self.members.store(Arc::new(Members::new(next)));
        self.refresh_gauges();
        true
    }

    /// The target for an attempt among `members`: an available one not in `tried` when
    /// there is one, else an available one already tried; `None` when none is
    /// available (every target unhealthy or ejected: the request is answered `503`).
    pub fn pick(&self, members: &Members, headers: &HeaderMap, tried: &[usize]) -> Option<usize> {
        let now = now_ms();
        let targets = &members.targets;
        let mut candidates: Vec<usize> = (0..targets.len())
            .filter(|&i| !tried.contains(&i) && targets[i].state.available(now))
            .collect();
        if candidates.is_empty() {
            candidates = (0..targets.len())
                .filter(|&i| targets[i].state.available(now))
                .collect();
        }
        match candidates.len() {
            0 => None,
            1 => Some(candidates[0]),
            _ => Some(match &self.spec.balance {
                Balance::RoundRobin => round_robin(members, &candidates),
                Balance::LeastRequest => balance::two_choices(targets, &candidates),
                Balance::Hash(header) => match headers.get(header) {
                    Some(v) => balance::rendezvous(targets, &candidates, v.as_bytes()),
                    None => round_robin(members, &candidates),
                },
            }),
        }
    }

    /// Counts a request in flight to `target` until the guard is dropped.
    pub fn begin(&self, target: &Target) -> InFlight {
        let state = target.state.clone();
        state.in_flight.fetch_add(1, Ordering::Relaxed);
        target.requests.increment(1);
        InFlight(state)
    }

    /// Records how an attempt on target `i` of `members` went: a failure (no
    /// connection, a reset, a timeout, a `502`/`503`/`504` answer) counts towards
    /// ejection; anything else resets the count.
    pub fn report(&self, members: &Members, i: usize, ok: bool) {
        let target = &members.targets[i];
        if ok {
            target.state.failures.store(0, Ordering::Relaxed);
            return;
        }
        target.failures.increment(1);
        let passive = &self.spec.passive;
        let failures = target.state.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if passive.consecutive_failures == 0 || failures < passive.consecutive_failures {
            return;
        }
        let now = now_ms();
        let ejected = members
            .targets
            .iter()
            .filter(|t| t.state.ejected_until.load(Ordering::Relaxed) > now)
            .count();
        let allowed =
            ((passive.max_ejected * members.targets.len() as f64).floor() as usize).max(1);
        if ejected >= allowed || target.state.ejected_until.load(Ordering::Relaxed) > now {
            return;
        }
        let until = now + passive.eject.as_millis() as u64;
        target.state.ejected_until.store(until, Ordering::Relaxed);
        target.state.failures.store(0, Ordering::Relaxed);
        target.ejections.increment(1);
        target.healthy.set(0.0);
        tracing::warn!(
            upstream = %self.name,
            target = %target.id,
            failures,
            eject = ?passive.eject,
            "upstream target ejected"
        );
    }

    /// Records an active check's verdict on `target`.
    pub fn set_checked(&self, target: &Target, healthy: bool) {
        let was = target
            .state
            .checked_healthy
            .swap(healthy, Ordering::Relaxed);
        if was != healthy {
            if healthy {
                tracing::info!(upstream = %self.name, target = %target.id, "upstream target healthy");
            } else {
                tracing::warn!(upstream = %self.name, target = %target.id, "upstream target unhealthy");
            }
        }
        self.refresh_gauges();
    }

    /// Sets `weir_upstream_healthy` of every target (ejections end by time alone, so the
    /// health task calls this on every tick).
    pub fn refresh_gauges(&self) {
        let now = now_ms();
        for t in &self.members().targets {
            t.healthy
                .set(if t.state.available(now) { 1.0 } else { 0.0 });
        }
    }

    /// Banks this first attempt's share of a retry.
    pub fn deposit(&self) {
        let share = (self.spec.retries.budget * 1000.0) as i64;
        let _ = self
            .budget
            .try_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                (b < BUDGET_CAP).then(|| (b + share).min(BUDGET_CAP))
            });
    }

    /// Takes one retry from the budget, if it has one.
    pub fn withdraw(&self) -> bool {
        self.budget
            .try_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                (b >= 1000).then_some(b - 1000)
            })
            .is_ok()
    }

    /// Marks its health task started; true the first time (see [`Pools::commit`]).
    pub fn mark_started(&self) -> bool {
        !self.started.swap(true, Ordering::Relaxed)
    }

    /// How its targets are spoken to.
    pub fn protocol(&self) -> Protocol {
        self.spec.protocol
    }

    /// Time between ticks of its health task: the check interval, or 1 s to keep
    /// `weir_upstream_healthy` current when only passive ejection runs.
    pub fn tick(&self) -> Duration {
        self.spec
            .health
            .as_ref()
            .map_or(Duration::from_secs(1), |h| h.interval)
    }
}

fn round_robin(members: &Members, candidates: &[usize]) -> usize {
    let mut current = members.rotation.lock().unwrap_or_else(|p| p.into_inner());
    balance::smooth_weighted(&mut current, &members.targets, candidates)
}

/// Target states by pool name and target id, held weakly (a state lives as long as
/// some pool version has that target), and the clients' maker.
#[derive(Default)]
struct Registry {
    states: Mutex<BTreeMap<(String, String), Weak<TargetState>>>,
    /// The clients' maker, and how many worker threads have clients of their own.
    dialer: Mutex<(Dialer, usize)>,
}

impl Registry {
    fn state(&self, pool: &str, id: &str, dial: Dial) -> Arc<TargetState> {
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        let key = (pool.to_owned(), id.to_owned());
        if let Some(state) = states.get(&key).and_then(Weak::upgrade) {
            return state;
        }
        states.retain(|_, w| w.strong_count() > 0);
        let (dialer, workers) = self
            .dialer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let state = Arc::new(TargetState::new(WorkerLinks::new(dialer, dial, workers)));
        states.insert(key, Arc::downgrade(&state));
        state
    }
}

/// Every pool of the process between reloads.
#[derive(Default)]
pub struct Pools {
    serving: Mutex<PoolSet>,
    registry: Arc<Registry>,
}

impl Pools {
    /// Targets' clients verify `https://` targets with `tls` from now on, and each of
    /// `workers` worker threads (see [`link::set_worker`]) gets clients of its own.
    pub fn set_tls(&self, tls: Arc<rustls::ClientConfig>, workers: usize) {
        *self
            .registry
            .dialer
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = (Dialer::new(tls), workers);
    }

    /// The pools of `config`'s `[upstreams]` (files relative to `base_dir`): the
    /// serving one where its settings are unchanged, a new one otherwise (its health
    /// checks not started). Problems go to `errors`.
    pub fn prepare(&self, config: &Config, base_dir: &Path, errors: &mut Vec<String>) -> PoolSet {
        let serving = self.serving.lock().unwrap_or_else(|p| p.into_inner());
        let hosts_file = config.server.hosts_file.as_ref().map(|f| base_dir.join(f));
        let mut set = PoolSet::new();
        for (name, table) in &config.upstreams {
            let Some(spec) = PoolSpec::compile(name, table, hosts_file.as_deref(), errors) else {
                continue;
            };
            let pool = match serving.get(name) {
                Some(p) if p.spec == spec => p.clone(),
                _ => Arc::new(Pool::new(name, spec, self.registry.clone())),
            };
            set.insert(name.clone(), pool);
        }
        set
    }

    /// Records `set` as serving (after its snapshot is swapped in) and starts the
    /// health (and resolution) tasks of each pool not started yet with `start`. A pool
    /// no longer serving stops its tasks once its last snapshot is gone (they hold it
    /// weakly).
    pub fn commit(&self, set: &PoolSet, start: impl Fn(&Arc<Pool>)) {
        for pool in set.values() {
            if pool.mark_started() {
                start(pool);
            }
        }
        *self.serving.lock().unwrap_or_else(|p| p.into_inner()) = set.clone();
    }
}

#[cfg(test)]
mod tests;
