//! Token buckets in the shared store: [`SharedBuckets`] is the [`ThrottleStore`] of a
//! node in a cluster.
//!
//! Each bucket is one key holding GCRA's "theoretical arrival time" (microseconds, on
//! the store's clock, so the nodes' clocks never matter), and one Lua script takes up to
//! N tokens from it in one call: the same arithmetic as the in-memory buckets, with N
//! allowed above one for leases. Keys: `PREFIX:tb:NAME` for a bucket, `PREFIX:tb:NAME:key:
//! KEYNAME` for an API key's own bucket of a usage plan (the key's *name*, never its
//! value). A key expires when its bucket is full again.
//!
//! `mode = "lease"` (the default) takes tokens in leases ([`super::lease`]): a request
//! on a node that holds tokens decides without a round trip. `mode = "exact"` asks the
//! store for every token (concurrent requests share one pipelined connection).
//!
//! When the store cannot answer (down, or past `timeout`), a request is decided on this
//! node's in-memory buckets (`on_store_error = "local"`) or refused (`"deny"`).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use redis::Script;

use super::lease::{Lease, Local, Returns};
use super::{BACKGROUND_TIMEOUT, Cluster, StoreError};
use crate::config::ClusterMode;
use crate::throttle::{
    BucketId, BucketKind, BucketRegistry, Buckets, KeyId, Limit, MemoryStore, Take, ThrottleStore,
};

/// Takes up to ARGV[3] tokens; returns {tokens granted, microseconds until the next
/// token when none was}.
static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local tau = interval * burst
local free = math.floor((now + tau - tat) / interval + 1e-9)
local granted = math.min(want, free)
if granted <= 0 then
  return {0, math.ceil(tat + interval - tau - now)}
end
tat = tat + granted * interval
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
return {granted, 0}
",
    )
});

/// Gives back ARGV[2] unused tokens of a bucket whose interval is ARGV[1].
static GIVE_BACK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
tat = tat - tonumber(ARGV[1]) * tonumber(ARGV[2])
if tat <= now then
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
return 1
",
    )
});

/// Takes up to `want` tokens from the bucket `key`: (granted, wait until the next one).
async fn take_tokens(
    cluster: &Cluster,
    key: &str,
    interval_us: f64,
    burst: u32,
    want: u64,
    deadline: Duration,
) -> Result<(u64, Duration), StoreError> {
    let (granted, wait_us) = cluster
        .call(deadline, |mut c| async move {
            let mut call = TAKE.prepare_invoke();
            call.key(key).arg(interval_us).arg(burst).arg(want);
            call.invoke_async::<(i64, i64)>(&mut c).await
        })
        .await?;
    Ok((
        granted.max(0) as u64,
        Duration::from_micros(wait_us.max(1) as u64),
    ))
}

/// Returns `unused` leased tokens to the bucket `key`.
pub(crate) async fn give_back(
    cluster: &Cluster,
    key: &str,
    interval_us: f64,
    unused: u64,
) -> Result<(), StoreError> {
    cluster
        .call(BACKGROUND_TIMEOUT, |mut c| async move {
            let mut call = GIVE_BACK.prepare_invoke();
            call.key(key).arg(interval_us).arg(unused);
            call.invoke_async::<i64>(&mut c).await
        })
        .await
        .map(drop)
}

/// One bucket of the store.
struct SharedBucket {
    /// `PREFIX:tb:NAME`.
    key: Arc<str>,
    interval_us: f64,
    burst: u32,
    kind: BucketKind,
    /// The shared bucket's lease (lease mode).
    lease: Option<Arc<Lease>>,
    /// Each API key's lease of a per-key bucket (lease mode).
    per_key: Mutex<HashMap<KeyId, Arc<Lease>>>,
}

/// The largest lease of a bucket: a tenth of its burst (at least one token).
fn lease_cap(burst: u32) -> u64 {
    u64::from(burst / 10).max(1)
}

/// Buckets shared by every node through the store, with this node's in-memory buckets
/// (the same named state a single node uses) as the fallback.
pub struct SharedBuckets {
    cluster: Arc<Cluster>,
    local: MemoryStore,
    /// By [`BucketId`]; `None`: an anonymous bucket, kept on this node.
    buckets: Vec<Option<SharedBucket>>,
    /// API key names by the id of their per-key buckets.
    key_names: HashMap<KeyId, Arc<str>>,
    /// Lease mode.
    leasing: bool,
}

impl SharedBuckets {
    /// The store for `buckets`: named ones in the cluster store, anonymous ones (which a
    /// reload would not keep either) in memory. `key_names` names the API keys.
    pub fn new(
        cluster: &Arc<Cluster>,
        buckets: &Buckets,
        registry: &BucketRegistry,
        key_names: HashMap<KeyId, Arc<str>>,
    ) -> Self {
        let leasing = cluster.settings().mode == ClusterMode::Lease;
        let shared = buckets
            .iter()
            .map(|(name, limit, kind)| {
                let name = name?;
                Some(SharedBucket::new(cluster, name, limit, kind, leasing))
            })
            .collect();
        Self {
            cluster: cluster.clone(),
            local: MemoryStore::with_registry(buckets, registry),
            buckets: shared,
            key_names,
            leasing,
        }
    }

    /// This node's decision when the store gave none.
    fn fallback(&self, bucket: BucketId, key: Option<KeyId>) -> Take<'_> {
        if self.cluster.decides_locally() {
            self.local.take(bucket, key)
        } else {
            Take::Unavailable
        }
    }

    fn store_key(&self, b: &SharedBucket, key: Option<KeyId>) -> Arc<str> {
        match (b.kind, key.and_then(|k| self.key_names.get(&k))) {
            (BucketKind::PerKey, Some(name)) => format!("{}:key:{name}", b.key).into(),
            _ => b.key.clone(),
        }
    }

    /// One token, asked of the store (exact mode, or a lease with nothing in hand).
    async fn ask(
        &self,
        bucket: BucketId,
        key: Option<KeyId>,
        lease: Option<Arc<Lease>>,
    ) -> Take<'_> {
        let Some(Some(b)) = self.buckets.get(bucket.index()) else {
            return Take::Taken;
        };
        let settings = self.cluster.settings();
        let want = lease.as_ref().map_or(1, |l| l.want(settings.lease));
        let store_key = self.store_key(b, key);
        let asked = take_tokens(
            &self.cluster,
            &store_key,
            b.interval_us,
            b.burst,
            want,
            settings.timeout,
        )
        .await;
        let now = self.cluster.now_ms();
        match (asked, lease) {
            (Ok((0, wait)), lease) => {
                if let Some(l) = lease {
                    l.refused(now, wait.as_millis() as u64);
                }
                Take::Empty(wait)
            }
            (Ok((granted, _)), Some(l)) => {
                l.granted(granted, granted - 1, now);
                Take::Taken
            }
            (Ok(_), None) => Take::Taken,
            (Err(_), _) => self.fallback(bucket, key),
        }
    }

    /// Asks for the next lease in the background, before this one runs out.
    fn refill(&self, b: &SharedBucket, lease: Arc<Lease>) {
        let cluster = self.cluster.clone();
        let (interval_us, burst) = (b.interval_us, b.burst);
        self.cluster.spawn(async move {
            let want = lease.want(cluster.settings().lease);
            let asked = take_tokens(
                &cluster,
                &lease.key,
                interval_us,
                burst,
                want,
                BACKGROUND_TIMEOUT,
            )
            .await;
            let now = cluster.now_ms();
            match asked {
                Ok((0, wait)) => lease.refused(now, wait.as_millis() as u64),
                Ok((granted, _)) => lease.granted(granted, granted, now),
                Err(_) => {}
            }
            lease.refilled();
        });
    }

    fn lease_of(&self, b: &SharedBucket, key: Option<KeyId>) -> Option<Arc<Lease>> {
        match (b.kind, key) {
            (BucketKind::Shared, _) => b.lease.clone(),
            (BucketKind::PerKey, Some(k)) if self.leasing => {
                let mut leases = b.per_key.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(l) = leases.get(&k) {
                    return Some(l.clone());
                }
                let store_key = self.store_key(b, Some(k));
                let (interval_us, cap) = (b.interval_us, lease_cap(b.burst));
                let l = self.cluster.lease(&store_key, |key| {
                    Lease::new(key, Returns::Bucket(interval_us), cap)
                });
                leases.insert(k, l.clone());
                Some(l)
            }
            (BucketKind::PerKey, _) => None,
        }
    }
}

impl SharedBucket {
    fn new(
        cluster: &Arc<Cluster>,
        name: &str,
        limit: Limit,
        kind: BucketKind,
        leasing: bool,
    ) -> Self {
        let key: Arc<str> = cluster.key(format_args!("tb:{name}")).into();
        let interval_us = 1e6 / limit.sane_rate();
        let burst = limit.burst.max(1);
        let lease = (leasing && kind == BucketKind::Shared).then(|| {
            cluster.lease(&key, |key| {
                Lease::new(key, Returns::Bucket(interval_us), lease_cap(burst))
            })
        });
        Self {
            key,
            interval_us,
            burst,
            kind,
            lease,
            per_key: Mutex::default(),
        }
    }
}

impl ThrottleStore for SharedBuckets {
    fn take(&self, bucket: BucketId, key: Option<KeyId>) -> Take<'_> {
        let Some(Some(b)) = self.buckets.get(bucket.index()) else {
            return self.local.take(bucket, key);
        };
        if b.kind == BucketKind::PerKey && key.is_none() {
            return Take::Taken;
        }
        if !self.cluster.is_up() {
            return self.fallback(bucket, key);
        }
        let Some(lease) = self.lease_of(b, key) else {
            return Take::Ask(Box::pin(self.ask(bucket, key, None)));
        };
        match lease.take(self.cluster.now_ms()) {
            Local::Taken { refill } => {
                if refill {
                    self.refill(b, lease);
                }
                Take::Taken
            }
            Local::Refused(ms) => Take::Empty(Duration::from_millis(ms.max(1))),
            Local::Empty => Take::Ask(Box::pin(self.ask(bucket, key, Some(lease)))),
        }
    }

    fn evict_idle(&self) {
        self.local.evict_idle();
    }

    fn per_key_buckets(&self) -> usize {
        self.local.per_key_buckets()
    }
}
