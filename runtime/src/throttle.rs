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
//!
//! **Shared stores.** A store answers [`Take`]: at once (the in-memory store always
//! does), or with a future to await (a shared store that must ask the cluster), or
//! [`Take::Unavailable`] when a shared store cannot answer and the node refuses rather
//! than decide alone (`[cluster] on_store_error = "deny"`).

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
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

    /// The rate as a sane number (`check` refuses the others, but a bucket may be built
    /// for a limit whose error is reported afterwards).
    pub fn sane_rate(&self) -> f64 {
        if self.rate.is_nan() {
            MIN_RATE
        } else {
            self.rate.clamp(MIN_RATE, MAX_RATE)
        }
    }

    fn quota(&self) -> Quota {
        let burst = NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN);
        // `check` refuses NaN (TOML `nan`), but a bucket may be built for a limit whose
        // error is reported afterwards, and `clamp` keeps NaN, which `Duration` rejects.
        let rate = if self.rate.is_nan() {
            MIN_RATE
        } else {
            self.rate.clamp(MIN_RATE, MAX_RATE)
        };
        let period = Duration::from_secs_f64(1.0 / rate).max(Duration::from_nanos(1));
        Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(burst)
    }
}

/// One bucket on its own, for a limit outside the request levels (a WebSocket API's
/// new-connection rate).
pub struct Bucket {
    store: Box<dyn ThrottleStore>,
    id: BucketId,
}

impl Bucket {
    /// A full bucket for `limit`.
    pub fn new(limit: Limit) -> Self {
        let mut buckets = Buckets::default();
        let id = buckets.add(limit, BucketKind::Shared);
        Self::in_store(Box::new(MemoryStore::new(&buckets)), id)
    }

    /// The bucket `name` of `registry`: the same tokens for every gateway compiled
    /// with this name and limit (see [`BucketRegistry`]).
    pub fn named(registry: &BucketRegistry, name: &str, limit: Limit) -> Self {
        let mut buckets = Buckets::default();
        let id = buckets.add_named(name.to_owned(), limit, BucketKind::Shared);
        Self::in_store(Box::new(MemoryStore::with_registry(&buckets, registry)), id)
    }

    /// Bucket `id` of `store` (a shared store's, say).
    pub fn in_store(store: Box<dyn ThrottleStore>, id: BucketId) -> Self {
        Self { store, id }
    }

    /// Takes one token at `level`, or says why not. A refusal takes nothing.
    pub async fn take(&self, level: Level) -> Result<(), Refusal> {
        settle(level, self.store.take(self.id, None)).await
    }
}

/// A bucket in a [`ThrottleStore`], as handed out by [`Buckets`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BucketId(u32);

impl BucketId {
    /// Its position in [`Buckets::iter`].
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

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
pub struct Buckets(Vec<(Option<String>, Limit, BucketKind)>);

impl Buckets {
    /// Every bucket declared: its name (if any), limit and kind, by [`BucketId`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Option<&str>, Limit, BucketKind)> {
        self.0.iter().map(|(n, l, k)| (n.as_deref(), *l, *k))
    }

    /// Declares an anonymous bucket (never shared with another compiled gateway).
    pub fn add(&mut self, limit: Limit, kind: BucketKind) -> BucketId {
        self.0.push((None, limit, kind));
        BucketId((self.0.len() - 1) as u32)
    }

    /// Declares a bucket by a name that stays the same across config reloads (e.g.
    /// `route GET /pets`): a [`BucketRegistry`] hands the same state to every gateway
    /// compiled with this name and limit.
    pub fn add_named(&mut self, name: String, limit: Limit, kind: BucketKind) -> BucketId {
        self.0.push((Some(name), limit, kind));
        BucketId((self.0.len() - 1) as u32)
    }
}

/// Bucket state that outlives one compiled gateway: a reload that keeps a bucket's name
/// and limit keeps its tokens (and its per-key buckets), so swapping a config or a
/// plugin never resets a limit. A bucket whose rate or burst changed starts full.
///
/// Only weak references are kept: the state is freed with the last gateway that uses it.
/// The lock is taken while a gateway is compiled, never on the request path.
#[derive(Default)]
pub struct BucketRegistry {
    slots: Mutex<HashMap<String, Registered>>,
}

/// A named bucket as declared last, and its state while some gateway holds it.
type Registered = (Limit, BucketKind, Weak<Slot<DefaultClock>>);

impl BucketRegistry {
    fn slot(&self, name: &str, limit: Limit, kind: BucketKind) -> Arc<Slot<DefaultClock>> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((l, k, weak)) = slots.get(name)
            && *l == limit
            && *k == kind
            && let Some(slot) = weak.upgrade()
        {
            return slot;
        }
        let slot = Arc::new(Slot::new(limit, kind, DefaultClock::default()));
        slots.insert(name.to_owned(), (limit, kind, Arc::downgrade(&slot)));
        slots.retain(|_, (_, _, weak)| weak.strong_count() > 0);
        slot
    }
}

/// What a store says to a request for a token.
pub enum Take<'a> {
    /// A token was taken.
    Taken,
    /// The bucket is empty; a token is free after this long.
    Empty(Duration),
    /// A shared store cannot answer, and the node is set to refuse meanwhile.
    Unavailable,
    /// A shared store must be asked: await this (it never answers `Ask` again).
    Ask(Pin<Box<dyn Future<Output = Take<'a>> + Send + 'a>>),
}

impl Take<'_> {
    /// The answer of a store that decides at once (the in-memory one): `Ok` when a
    /// token was taken, else the wait (`Duration::MAX` when the store did not decide).
    pub fn now(self) -> Result<(), Duration> {
        match self {
            Take::Taken => Ok(()),
            Take::Empty(wait) => Err(wait),
            Take::Unavailable | Take::Ask(_) => Err(Duration::MAX),
        }
    }
}

/// Where bucket state lives. The in-memory [`MemoryStore`] serves one node; a shared
/// store (`[cluster]`, in Redis) implements the same calls for several.
pub trait ThrottleStore: Send + Sync {
    /// Takes one token from `bucket` (the `key`'s own bucket when it is per key), or says
    /// how long until a token is free. A refusal takes nothing.
    fn take(&self, bucket: BucketId, key: Option<KeyId>) -> Take<'_>;
    /// Forgets per-key buckets that have been idle long enough to be full again.
    fn evict_idle(&self);
    /// How many per-key buckets are held (for tests and metrics).
    fn per_key_buckets(&self) -> usize;
}

type SharedLimiter<C> =
    RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;
type KeyedLimiter<C> =
    RateLimiter<KeyId, DashMapStateStore<KeyId>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// One bucket's state (shared, or one per key).
struct Slot<C: Clock>(SlotKind<C>);

enum SlotKind<C: Clock> {
    Shared(SharedLimiter<C>),
    PerKey(KeyedLimiter<C>),
}

impl<C: Clock + Clone> Slot<C> {
    fn new(limit: Limit, kind: BucketKind, clock: C) -> Self {
        Slot(match kind {
            BucketKind::Shared => {
                SlotKind::Shared(RateLimiter::direct_with_clock(limit.quota(), clock))
            }
            BucketKind::PerKey => {
                SlotKind::PerKey(RateLimiter::dashmap_with_clock(limit.quota(), clock))
            }
        })
    }
}

/// Buckets in this process's memory, lock-free for shared buckets and sharded for per-key
/// ones, so every tokio worker thread sees the same state.
pub struct MemoryStore<C: Clock = DefaultClock> {
    slots: Vec<Arc<Slot<C>>>,
    clock: C,
}

impl MemoryStore<DefaultClock> {
    /// A store for `buckets` on the real monotonic clock.
    pub fn new(buckets: &Buckets) -> Self {
        Self::with_clock(buckets, DefaultClock::default())
    }

    /// A store for `buckets` whose named buckets share their state, through `registry`,
    /// with every other store made from the same registry.
    pub fn with_registry(buckets: &Buckets, registry: &BucketRegistry) -> Self {
        let clock = DefaultClock::default();
        let slots = buckets
            .0
            .iter()
            .map(|(name, limit, kind)| match name {
                Some(name) => registry.slot(name, *limit, *kind),
                None => Arc::new(Slot::new(*limit, *kind, clock.clone())),
            })
            .collect();
        Self { slots, clock }
    }
}

impl<C: Clock + Clone> MemoryStore<C> {
    /// A store for `buckets` on `clock` (tests pass a fake clock).
    pub fn with_clock(buckets: &Buckets, clock: C) -> Self {
        let slots = buckets
            .0
            .iter()
            .map(|(_, limit, kind)| Arc::new(Slot::new(*limit, *kind, clock.clone())))
            .collect();
        Self { slots, clock }
    }
}

impl<C: Clock> MemoryStore<C> {
    /// Takes one token from `bucket` (the `key`'s own when it is per key), or says how
    /// long until one is free.
    pub fn check(&self, bucket: BucketId, key: Option<KeyId>) -> Result<(), Duration> {
        let outcome = match (self.slots.get(bucket.0 as usize).map(|s| &s.0), key) {
            (Some(SlotKind::Shared(l)), _) => l.check(),
            (Some(SlotKind::PerKey(l)), Some(key)) => l.check_key(&key),
            // A per-key bucket without a key, or an unknown bucket: nothing to limit.
            (Some(SlotKind::PerKey(_)), None) | (None, _) => return Ok(()),
        };
        outcome.map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

impl<C> ThrottleStore for MemoryStore<C>
where
    C: Clock + Send + Sync,
    C::Instant: Send + Sync,
{
    fn take(&self, bucket: BucketId, key: Option<KeyId>) -> Take<'_> {
        match self.check(bucket, key) {
            Ok(()) => Take::Taken,
            Err(wait) => Take::Empty(wait),
        }
    }

    fn evict_idle(&self) {
        for slot in &self.slots {
            if let SlotKind::PerKey(l) = &slot.0 {
                l.retain_recent();
                l.shrink_to_fit();
            }
        }
    }

    fn per_key_buckets(&self) -> usize {
        self.slots
            .iter()
            .map(|s| match &s.0 {
                SlotKind::PerKey(l) => l.len(),
                SlotKind::Shared(_) => 0,
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

/// Why a token was not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A bucket was empty.
    Throttled(Throttled),
    /// The shared store could not answer and the node refuses meanwhile.
    StoreUnavailable,
}

impl Refusal {
    /// The level that refused, when a bucket did.
    pub fn level(&self) -> Option<Level> {
        match self {
            Refusal::Throttled(t) => Some(t.level),
            Refusal::StoreUnavailable => None,
        }
    }
}

/// A store's answer as the request sees it.
async fn settle(level: Level, take: Take<'_>) -> Result<(), Refusal> {
    let take = match take {
        Take::Ask(asked) => asked.await,
        decided => decided,
    };
    match take {
        Take::Taken => Ok(()),
        Take::Empty(retry_after) => Err(Refusal::Throttled(Throttled { level, retry_after })),
        Take::Unavailable | Take::Ask(_) => Err(Refusal::StoreUnavailable),
    }
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
    pub async fn admit(&self, key: Option<(BucketId, KeyId)>, route: usize) -> Result<(), Refusal> {
        if let Some((bucket, key)) = key {
            self.take(Level::ApiKey, bucket, Some(key)).await?;
        }
        if let Some(Some(bucket)) = self.routes.get(route) {
            self.take(Level::Route, *bucket, None).await?;
        }
        self.take(Level::Account, self.account, None).await
    }

    /// Takes a token from an API key's bucket only (for keys known after the route and
    /// account levels were passed, i.e. from an authorizer).
    pub async fn admit_key(&self, bucket: BucketId, key: KeyId) -> Result<(), Refusal> {
        self.take(Level::ApiKey, bucket, Some(key)).await
    }

    /// Takes an account-level token for something that is not an HTTP request: a
    /// WebSocket connection attempt or message counts against the account.
    pub async fn admit_connection(&self) -> Result<(), Refusal> {
        self.take(Level::Account, self.account, None).await
    }

    /// Forgets idle per-key buckets; call it on a timer.
    pub fn evict_idle(&self) {
        self.store.evict_idle();
    }

    /// How many per-key buckets are held.
    pub fn per_key_buckets(&self) -> usize {
        self.store.per_key_buckets()
    }

    async fn take(
        &self,
        level: Level,
        bucket: BucketId,
        key: Option<KeyId>,
    ) -> Result<(), Refusal> {
        settle(level, self.store.take(bucket, key)).await
    }
}

#[cfg(test)]
mod tests;
