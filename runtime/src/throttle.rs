//! The throttle stage's token buckets: AWS's levels (API key, route, account) over GCRA
//! rate limiters from `governor`, behind a [`ThrottleStore`] so a shared store can come.
//!
//! A bucket holds `burst` tokens and refills at `rate` tokens per second; one request
//! takes one token. GCRA is the same arithmetic without a refill timer: it keeps the
//! "theoretical arrival time" of the next request, one atomic per bucket.
//!
//! **Order and what a rejection consumes.** [`Throttle::admit`] takes a token from each
//! level in AWS's order — API key (usage plan), route, account — and stops at the first
//! empty bucket. Taking from an empty bucket takes nothing, and the levels after it are
//! never asked, so a request rejected at level N consumed nothing at levels after N. The
//! levels before N did give their token (as on AWS, a request throttled by the account
//! still counted against its usage plan); there is no refund, because a refund would race
//! with concurrent requests and could over-admit. Nothing here is hyper- or wasmtime-aware.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// Lowest rate a bucket may have, tokens per second (one token every ~17 minutes).
pub const MIN_RATE: f64 = 0.001;
/// Highest rate a bucket may have, tokens per second (one token per nanosecond).
pub const MAX_RATE: f64 = 1e9;

/// A token bucket's size and refill rate, as configured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    /// Steady refill, tokens per second (fractions allowed).
    pub rate: f64,
    /// Bucket size: requests admitted at once after a quiet spell.
    pub burst: u32,
}

impl Limit {
    /// Why this limit is impossible, if it is: the field (`rate` or `burst`) and what
    /// is wrong with it.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !(MIN_RATE..=MAX_RATE).contains(&self.rate) {
            return Err((
                "rate",
                format!(
                    "{} is not between {MIN_RATE} and {MAX_RATE:.0} requests per second",
                    self.rate
                ),
            ));
        }
        if self.burst == 0 {
            return Err(("burst", "must be at least 1".to_owned()));
        }
        Ok(())
    }

    /// Whether this limit lets through more than `other` (a higher rate or burst).
    pub fn exceeds(&self, other: &Limit) -> bool {
        self.rate > other.rate || self.burst > other.burst
    }

    fn quota(&self) -> Quota {
        let burst = NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN);
        let rate = self.rate.clamp(MIN_RATE, MAX_RATE);
        let period = Duration::from_secs_f64(1.0 / rate).max(Duration::from_nanos(1));
        Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst)
    }
}

/// One bucket on its own, for a limit outside the request levels (a WebSocket API's
/// new-connection rate).
pub struct Bucket {
    limiter: SharedLimiter<DefaultClock>,
    clock: DefaultClock,
}

impl Bucket {
    /// A full bucket for `limit`.
    pub fn new(limit: Limit) -> Self {
        let clock = DefaultClock::default();
        Self {
            limiter: RateLimiter::direct_with_clock(limit.quota(), clock.clone()),
            clock,
        }
    }

    /// Takes one token, or says how long until one is free. A refusal takes nothing.
    pub fn take(&self) -> Result<(), Duration> {
        self.limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

/// A bucket in a [`ThrottleStore`], as handed out by [`Buckets`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BucketId(u32);

/// An API key, by its index in the config; the key of per-key buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub u32);

/// Whether a bucket is one shared bucket or one bucket per API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketKind {
    /// One bucket (account, route).
    Shared,
    /// One bucket per API key, created on first use and evicted when idle.
    PerKey,
}

/// The buckets a gateway needs, declared once at compile time.
#[derive(Debug, Default)]
pub struct Buckets(Vec<(Limit, BucketKind)>);

impl Buckets {
    /// Declares a bucket.
    pub fn add(&mut self, limit: Limit, kind: BucketKind) -> BucketId {
        self.0.push((limit, kind));
        BucketId((self.0.len() - 1) as u32)
    }
}

/// Where bucket state lives. The in-memory [`MemoryStore`] serves one node; a shared
/// store (e.g. Redis) implements the same calls for several.
pub trait ThrottleStore: Send + Sync {
    /// Takes one token from `bucket` (the `key`'s own bucket when it is per key), or says
    /// how long until a token is free. A refusal takes nothing.
    fn take(&self, bucket: BucketId, key: Option<KeyId>) -> Result<(), Duration>;
    /// Forgets per-key buckets that have been idle long enough to be full again.
    fn evict_idle(&self);
    /// How many per-key buckets are held (for tests and metrics).
    fn per_key_buckets(&self) -> usize;
}

type SharedLimiter<C> =
    RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;
type KeyedLimiter<C> =
    RateLimiter<KeyId, DashMapStateStore<KeyId>, C, NoOpMiddleware<<C as Clock>::Instant>>;

enum Slot<C: Clock> {
    Shared(SharedLimiter<C>),
    PerKey(KeyedLimiter<C>),
}

/// Buckets in this process's memory, lock-free for shared buckets and sharded for per-key
/// ones, so every tokio worker thread sees the same state.
pub struct MemoryStore<C: Clock = DefaultClock> {
    slots: Vec<Slot<C>>,
    clock: C,
}

impl MemoryStore<DefaultClock> {
    /// A store for `buckets` on the real monotonic clock.
    pub fn new(buckets: &Buckets) -> Self {
        Self::with_clock(buckets, DefaultClock::default())
    }
}

impl<C: Clock + Clone> MemoryStore<C> {
    /// A store for `buckets` on `clock` (tests pass a fake clock).
    pub fn with_clock(buckets: &Buckets, clock: C) -> Self {
        let slots = buckets
            .0
            .iter()
            .map(|(limit, kind)| match kind {
                BucketKind::Shared => {
                    Slot::Shared(RateLimiter::direct_with_clock(limit.quota(), clock.clone()))
                }
                BucketKind::PerKey => Slot::PerKey(RateLimiter::dashmap_with_clock(
                    limit.quota(),
                    clock.clone(),
                )),
            })
            .collect();
        Self { slots, clock }
    }
}

impl<C> ThrottleStore for MemoryStore<C>
where
    C: Clock + Send + Sync,
    C::Instant: Send + Sync,
{
    fn take(&self, bucket: BucketId, key: Option<KeyId>) -> Result<(), Duration> {
        let outcome = match (self.slots.get(bucket.0 as usize), key) {
            (Some(Slot::Shared(l)), _) => l.check(),
            (Some(Slot::PerKey(l)), Some(key)) => l.check_key(&key),
            // A per-key bucket without a key, or an unknown bucket: nothing to limit.
            (Some(Slot::PerKey(_)), None) | (None, _) => return Ok(()),
        };
        outcome.map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    fn evict_idle(&self) {
        for slot in &self.slots {
            if let Slot::PerKey(l) = slot {
                l.retain_recent();
                l.shrink_to_fit();
            }
        }
    }

    fn per_key_buckets(&self) -> usize {
        self.slots
            .iter()
            .map(|s| match s {
                Slot::PerKey(l) => l.len(),
                Slot::Shared(_) => 0,
            })
            .sum()
    }
}

/// A throttle level, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// The API key's usage plan (or its per-route override).
    ApiKey,
    /// The route's `throttle`.
    Route,
    /// `[throttle]`, the whole gateway.
    Account,
    /// A WebSocket API's new-connection rate (`connect_rate`).
    Connect,
}

impl Level {
    /// The level's name.
    pub fn name(self) -> &'static str {
        match self {
            Level::ApiKey => "api key",
            Level::Route => "route",
            Level::Account => "account",
            Level::Connect => "websocket connect",
        }
    }
}

/// A request refused by a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    /// The level whose bucket was empty.
    pub level: Level,
    /// Time until that bucket has a token again.
    pub retry_after: Duration,
}

/// The compiled throttle levels of one gateway.
pub struct Throttle {
    store: Box<dyn ThrottleStore>,
    account: BucketId,
    /// Route buckets by route index.
    routes: Vec<Option<BucketId>>,
}

impl Throttle {
    /// Levels over `store`: the account bucket and each route's bucket (by route index).
    pub fn new(
        store: Box<dyn ThrottleStore>,
        account: BucketId,
        routes: Vec<Option<BucketId>>,
    ) -> Self {
        Self {
            store,
            account,
            routes,
        }
    }

    /// Takes a token from every level that applies, in AWS's order: the API key's bucket
    /// (when given), the route's (when it has one), the account's. Stops at the first
    /// empty bucket; see the module docs for what a refusal consumed.
    pub fn admit(&self, key: Option<(BucketId, KeyId)>, route: usize) -> Result<(), Throttled> {
        if let Some((bucket, key)) = key {
            self.take(Level::ApiKey, bucket, Some(key))?;
        }
        if let Some(Some(bucket)) = self.routes.get(route) {
            self.take(Level::Route, *bucket, None)?;
        }
        self.take(Level::Account, self.account, None)
    }

    /// Takes a token from an API key's bucket only (for keys known after the route and
    /// account levels were passed, i.e. from an authorizer).
    pub fn admit_key(&self, bucket: BucketId, key: KeyId) -> Result<(), Throttled> {
        self.take(Level::ApiKey, bucket, Some(key))
    }

    /// Takes an account-level token for something that is not an HTTP request: a
    /// WebSocket connection attempt or message counts against the account.
    pub fn admit_connection(&self) -> Result<(), Throttled> {
        self.take(Level::Account, self.account, None)
    }

    /// Forgets idle per-key buckets; call it on a timer.
    pub fn evict_idle(&self) {
        self.store.evict_idle();
    }

    /// How many per-key buckets are held.
    pub fn per_key_buckets(&self) -> usize {
        self.store.per_key_buckets()
    }

    fn take(&self, level: Level, bucket: BucketId, key: Option<KeyId>) -> Result<(), Throttled> {
        self.store
            .take(bucket, key)
            .map_err(|retry_after| Throttled { level, retry_after })
    }
}

#[cfg(test)]
mod tests;
