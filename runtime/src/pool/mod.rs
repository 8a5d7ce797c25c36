//! Pools of upstream targets (`[upstreams.NAME]`): which target a request goes to
//! ([`Pool::pick`]), which targets are available (active checks say healthy, passive
//! ejection has not left them out), and the retry budget. Pure state: the requests
//! themselves and the health checks are sent by `integrate::pool` and
//! `integrate::health`.
//!
//! Pools live outside the gateway snapshot in the [`Pools`] registry (one per process,
//! like `lambda::Functions`): a reload keeps a pool whose settings did not change, and
//! a target's health follows its URL from one pool version to the next, so a reload
//! neither forgets an ejection nor drops a request in flight (the old snapshot, and so
//! the old pool, lives until its last request ends).

mod balance;
pub mod spec;

pub use spec::{Balance, HealthSpec, PoolSpec};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use http::HeaderMap;
use http::header::HeaderValue;

use crate::config::{Config, Protocol};

/// The pools one gateway snapshot uses, by name.
pub type PoolSet = BTreeMap<String, Arc<Pool>>;

/// A pool of targets and how to pick one.
pub struct Pool {
    /// `[upstreams.NAME]`'s name.
    pub name: Arc<str>,
    /// Its settings.
    pub spec: PoolSpec,
    /// Its targets, in config order.
    pub targets: Vec<Target>,
    /// Smooth weighted round robin's current weights.
    rotation: Mutex<Vec<i64>>,
    /// The retry budget, in thousandths of a retry.
    budget: AtomicI64,
    /// Whether its health checks have been started.
    started: AtomicBool,
}

/// One target of a pool.
pub struct Target {
    /// `http://host:port`.
    pub base: Arc<str>,
    /// `host:port`.
    pub authority: HeaderValue,
    /// Relative share.
    pub weight: u32,
    /// Health, shared with the same URL in other versions of the pool.
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

/// What is known of a target's health; outlives any one pool version.
pub struct TargetState {
    /// What the active checks last concluded (true until they say otherwise).
    checked_healthy: AtomicBool,
    /// Failed requests in a row.
    failures: AtomicU32,
    /// Left out until this time ([`now_ms`]); 0: not ejected.
    ejected_until: AtomicU64,
    /// Requests in flight to it.
    pub in_flight: AtomicUsize,
}

impl Default for TargetState {
    fn default() -> Self {
        Self {
            checked_healthy: AtomicBool::new(true),
            failures: AtomicU32::new(0),
            ejected_until: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
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
}

/// A request in flight to a target (counted for `least_request` until dropped).
pub struct InFlight(Arc<TargetState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Pool {
    fn new(name: &str, spec: PoolSpec, states: &mut StateRegistry) -> Self {
        let name: Arc<str> = name.into();
        let targets = spec
            .targets
            .iter()
            .map(|t| {
                let labels = [("upstream", name.to_string()), ("target", t.base.clone())];
                Target {
                    base: t.base.as_str().into(),
                    authority: t.authority.clone(),
                    weight: t.weight,
                    state: states.state(&name, &t.base),
                    requests: metrics::counter!("weir_upstream_requests_total", &labels),
                    failures: metrics::counter!("weir_upstream_failures_total", &labels),
                    retries: metrics::counter!("weir_upstream_retries_total", &labels),
                    ejections: metrics::counter!("weir_upstream_ejections_total", &labels),
                    healthy: metrics::gauge!("weir_upstream_healthy", &labels),
                }
            })
            .collect::<Vec<_>>();
        let pool = Self {
            name,
            rotation: Mutex::new(vec![0; targets.len()]),
            targets,
            spec,
            budget: AtomicI64::new(BUDGET_CAP),
            started: AtomicBool::new(false),
        };
        pool.refresh_gauges();
        pool
    }

    /// The target for an attempt: an available one not in `tried` when there is one,
    /// else an available one already tried; `None` when none is available (every
    /// target unhealthy or ejected: the request is answered `503`).
    pub fn pick(&self, headers: &HeaderMap, tried: &[usize]) -> Option<usize> {
        let now = now_ms();
        let mut candidates: Vec<usize> = (0..self.targets.len())
            .filter(|&i| !tried.contains(&i) && self.targets[i].state.available(now))
            .collect();
        if candidates.is_empty() {
            candidates = (0..self.targets.len())
                .filter(|&i| self.targets[i].state.available(now))
                .collect();
        }
        match candidates.len() {
            0 => None,
            1 => Some(candidates[0]),
            _ => Some(match &self.spec.balance {
                Balance::RoundRobin => self.round_robin(&candidates),
                Balance::LeastRequest => balance::two_choices(&self.targets, &candidates),
                Balance::Hash(header) => match headers.get(header) {
                    Some(v) => balance::rendezvous(&self.targets, &candidates, v.as_bytes()),
                    None => self.round_robin(&candidates),
                },
            }),
        }
    }

    fn round_robin(&self, candidates: &[usize]) -> usize {
        let mut current = self.rotation.lock().unwrap_or_else(|p| p.into_inner());
        balance::smooth_weighted(&mut current, &self.targets, candidates)
    }

    /// Counts a request in flight to target `i` until the guard is dropped.
    pub fn begin(&self, i: usize) -> InFlight {
        let state = self.targets[i].state.clone();
        state.in_flight.fetch_add(1, Ordering::Relaxed);
        self.targets[i].requests.increment(1);
        InFlight(state)
    }

    /// Records how an attempt on target `i` went: a failure (no connection, a reset, a
    /// timeout, a `502`/`503`/`504` answer) counts towards ejection; anything else
    /// resets the count.
    pub fn report(&self, i: usize, ok: bool) {
        let target = &self.targets[i];
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
        let ejected = self
            .targets
            .iter()
            .filter(|t| t.state.ejected_until.load(Ordering::Relaxed) > now)
            .count();
        let allowed = ((passive.max_ejected * self.targets.len() as f64).floor() as usize).max(1);
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
            target = %target.base,
            failures,
            eject = ?passive.eject,
            "upstream target ejected"
        );
    }

    /// What the active checks last concluded of target `i`.
    pub fn checked_healthy(&self, i: usize) -> bool {
        self.targets[i]
            .state
            .checked_healthy
            .load(Ordering::Relaxed)
    }

    /// Records an active check's verdict on target `i`.
    pub fn set_checked(&self, i: usize, healthy: bool) {
        let target = &self.targets[i];
        let was = target
            .state
            .checked_healthy
            .swap(healthy, Ordering::Relaxed);
        if was != healthy {
            if healthy {
                tracing::info!(upstream = %self.name, target = %target.base, "upstream target healthy");
            } else {
                tracing::warn!(upstream = %self.name, target = %target.base, "upstream target unhealthy");
            }
        }
        self.refresh_gauges();
    }

    /// Sets `weir_upstream_healthy` of every target (ejections end by time alone, so the
    /// health task calls this on every tick).
    pub fn refresh_gauges(&self) {
        let now = now_ms();
        for t in &self.targets {
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

    /// Whether [`Pools::start`] has started its health task (only once).
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

/// Target states by pool name and URL, held weakly: a state lives as long as some pool
/// version has that target.
#[derive(Default)]
struct StateRegistry(BTreeMap<(String, String), Weak<TargetState>>);

impl StateRegistry {
    fn state(&mut self, pool: &str, base: &str) -> Arc<TargetState> {
        let key = (pool.to_owned(), base.to_owned());
        if let Some(state) = self.0.get(&key).and_then(Weak::upgrade) {
            return state;
        }
        let state = Arc::new(TargetState::default());
        self.0.insert(key, Arc::downgrade(&state));
        state
    }
}

/// Every pool of the process between reloads.
#[derive(Default)]
pub struct Pools {
    serving: Mutex<PoolSet>,
    states: Mutex<StateRegistry>,
}

impl Pools {
    /// The pools of `config`'s `[upstreams]`: the serving one where its settings are
    /// unchanged, a new one otherwise (its health checks not started). Problems go to
    /// `errors`.
    pub fn prepare(&self, config: &Config, errors: &mut Vec<String>) -> PoolSet {
        let serving = self.serving.lock().unwrap_or_else(|p| p.into_inner());
        let mut states = self.states.lock().unwrap_or_else(|p| p.into_inner());
        states.0.retain(|_, w| w.strong_count() > 0);
        let mut set = PoolSet::new();
        for (name, table) in &config.upstreams {
            let Some(spec) = PoolSpec::compile(name, table, errors) else {
                continue;
            };
            let pool = match serving.get(name) {
                Some(p) if p.spec == spec => p.clone(),
                _ => Arc::new(Pool::new(name, spec, &mut states)),
            };
            set.insert(name.clone(), pool);
        }
        set
    }

    /// Records `set` as serving (after its snapshot is swapped in) and starts the
    /// health task of each pool not started yet with `start`. A pool no longer serving
    /// stops its task once its last snapshot is gone (the task holds it weakly).
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
