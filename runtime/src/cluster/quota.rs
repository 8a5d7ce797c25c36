//! Usage-plan quota counters in the shared store: one key per API key *name* and period,
//! `PREFIX:quota:NAME:PERIOD:START`, expiring a minute after the period ends (the
//! minute covers clocks that disagree a little about when it ends).
//!
//! In exact mode every counted request asks the store (one script: refuse when used
//! up, else count), so a quota used up on one node is used up on all of them at once.
//! In lease mode (the default) a node takes units in leases ([`super::lease`]) sized to
//! its demand, at most a 64th of the quota and an eighth of what is left (so the last
//! units go one at a time), and gives back what it leaves unused for a second. Leased
//! units are counted in the store when leased: the nodes together never admit more
//! than the quota. Near its end a node may refuse while units another node leased are
//! still unused; a refusing node asks the store again after a second, so units given
//! back are used.
//!
//! While the store cannot answer, a node in `local` mode counts on its own from the
//! highest count the store last told it, and adds what it counted when the store is
//! back; a store that lost the counter (restarted without persistence) gets it back
//! from the nodes ([`Cluster`]'s quota memo). In `deny` mode such requests get `503`.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use redis::{RedisResult, Script};

use super::lease::{Lease, Local, Returns};
use super::{BACKGROUND_TIMEOUT, Cluster, Conn, QuotaMemo, StoreError};
use crate::config::ClusterMode;
use crate::quota::{Exhausted, QuotaLeft, QuotaRule, period_end, period_start};
use crate::throttle::KeyId;

/// Counts up to ARGV[3] units — at most an eighth of what is left below ARGV[1], at
/// least one — unless the counter reached ARGV[1]; the key expires at ARGV[2].
/// Returns {units counted (0: refused), the count}.
static TAKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local limit = tonumber(ARGV[1])
if used >= limit then return {0, used} end
local n = math.min(tonumber(ARGV[3]), math.max(1, math.floor((limit - used) / 8)))
used = redis.call('INCRBY', KEYS[1], n)
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIREAT', KEYS[1], ARGV[2]) end
return {n, used}
",
    )
});

/// Takes ARGV[1] unused leased units off the counter, if it still exists (a counter of
/// a period that ended is gone). Returns the count.
static GIVE_BACK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local n = redis.call('DECRBY', KEYS[1], ARGV[1])
if n < 0 then redis.call('SET', KEYS[1], 0, 'KEEPTTL'); n = 0 end
return n
",
    )
});

/// How long a node that was told a quota is used up refuses before asking again (when
/// units leased elsewhere may have come back).
const REFUSE_FOR_MS: u64 = 1000;

/// Takes `unused` leased units off the counter `key`.
pub(crate) async fn give_back(cluster: &Cluster, key: &str, unused: u64) -> Result<(), StoreError> {
    cluster
        .call(BACKGROUND_TIMEOUT, |mut c| async move {
            let mut call = GIVE_BACK.prepare_invoke();
            call.key(key).arg(unused);
            call.invoke_async::<i64>(&mut c).await
        })
        .await
        .map(drop)
}

/// Asks the store for up to `want` units of the counter `key`: (units granted, the count).
async fn take_units(
    cluster: &Cluster,
    key: &str,
    rule: QuotaRule,
    expire_at: i64,
    want: u64,
    deadline: Duration,
) -> Result<(u64, u64), StoreError> {
    cluster
        .call(deadline, |mut c| async move {
            let mut call = TAKE.prepare_invoke();
            call.key(key)
                .arg(rule.limit)
                .arg(expire_at + EXPIRY_MARGIN)
                .arg(want.max(1));
            call.invoke_async::<(i64, i64)>(&mut c).await
        })
        .await
        .map(|(n, used)| (n.max(0) as u64, used.max(0) as u64))
}

/// The largest lease of a quota: a 64th of it (at least one unit).
fn lease_cap(limit: u64) -> u64 {
    (limit / 64).max(1)
}

/// Sets a counter to max(its count, ARGV[1]) + ARGV[2], expiring at ARGV[3].
static RESTORE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local n = math.max(used, tonumber(ARGV[1])) + tonumber(ARGV[2])
redis.call('SET', KEYS[1], n)
redis.call('EXPIREAT', KEYS[1], ARGV[3])
return n
",
    )
});

/// Margin past the period's end before a counter expires.
const EXPIRY_MARGIN: i64 = 60;

/// Puts back what this node knows of a counter (see the module docs).
pub(crate) async fn restore(key: &str, memo: QuotaMemo, c: &mut Conn) -> RedisResult<()> {
    let mut call = RESTORE.prepare_invoke();
    call.key(key)
        .arg(memo.known)
        .arg(memo.pending)
        .arg(memo.expire_at + EXPIRY_MARGIN);
    call.invoke_async::<i64>(c).await.map(drop)
}

/// Why a quota did not count a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaRefusal {
    /// The quota is used up for this period.
    Exhausted(Exhausted),
    /// The store could not answer and the node refuses meanwhile (`deny`).
    StoreUnavailable,
}

/// A key's quota as [`SharedQuotas::check`] found it: the period's counter and, in lease
/// mode, the key's lease.
pub struct Checked {
    store_key: Arc<str>,
    name: Arc<str>,
    rule: QuotaRule,
    end: i64,
    lease: Option<Arc<Lease>>,
}

/// The quota counters of one compiled gateway, in the store.
pub struct SharedQuotas {
    cluster: Arc<Cluster>,
    /// By [`KeyId`]: the key's name and its plan's quota.
    counters: Vec<Option<(Arc<str>, QuotaRule)>>,
    /// Lease mode: each key's lease of its current period's counter.
    leases: Option<Mutex<HashMap<KeyId, Arc<Lease>>>>,
}

impl SharedQuotas {
    /// Counters for keys `(name, rule)` by [`KeyId`].
    pub fn new(cluster: &Arc<Cluster>, keys: &[(Arc<str>, Option<QuotaRule>)]) -> Self {
        Self {
            cluster: cluster.clone(),
            counters: keys
                .iter()
                .map(|(name, rule)| rule.map(|r| (name.clone(), r)))
                .collect(),
            leases: (cluster.settings().mode == ClusterMode::Lease).then(Mutex::default),
        }
    }

    /// The key's lease of `store_key` (its period's counter), in lease mode.
    fn lease_of(&self, key: KeyId, store_key: &Arc<str>, rule: QuotaRule) -> Option<Arc<Lease>> {
        let mut leases = self
            .leases
            .as_ref()?
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match leases.get(&key) {
            // A new period has a new counter: the old lease (and its units) is dropped.
            Some(l) if l.key == *store_key => Some(l.clone()),
            _ => {
                let l = self.cluster.lease(store_key, |k| {
                    Lease::new(k, Returns::Counter, lease_cap(rule.limit))
                });
                leases.insert(key, l.clone());
                Some(l)
            }
        }
    }

    /// Asks for the key's next lease in the background, before this one runs out.
    fn refill(&self, lease: Arc<Lease>, rule: QuotaRule, end: i64) {
        let cluster = self.cluster.clone();
        self.cluster.spawn(async move {
            let want = lease.want(cluster.settings().lease);
            let asked = take_units(&cluster, &lease.key, rule, end, want, BACKGROUND_TIMEOUT).await;
            let now = cluster.now_ms();
            match asked {
                Ok((0, used)) => {
                    cluster.remember_quota(&lease.key, used, end);
                    lease.refused(now, REFUSE_FOR_MS);
                }
                Ok((granted, used)) => {
                    cluster.remember_quota(&lease.key, used, end);
                    lease.granted(granted, granted, now);
                }
                Err(_) => {}
            }
            lease.refilled();
        });
    }

    fn counter(&self, key: KeyId, now: i64) -> Option<(Arc<str>, &Arc<str>, QuotaRule, i64)> {
        let (name, rule) = self.counters.get(key.0 as usize)?.as_ref()?;
        let start = period_start(rule.period, now);
        let store_key = self
            .cluster
            .key(format_args!("quota:{name}:{:?}:{start}", rule.period));
        Some((store_key.into(), name, *rule, period_end(rule.period, now)))
    }

    fn exhausted(name: &Arc<str>, end: i64, now: i64) -> Exhausted {
        Exhausted {
            key: name.clone(),
            retry_after: Duration::from_secs((end - now).max(1) as u64),
        }
    }

    /// Refuses a key this node last saw used up, counting nothing and asking nothing
    /// (in lease mode: for a second after the store said so). What it found (the
    /// period's counter and the key's lease) is for [`Self::consume`], so a request
    /// looks them up once.
    pub fn check(&self, key: KeyId, now: i64) -> Result<Option<Checked>, Exhausted> {
        let Some((store_key, name, rule, end)) = self.counter(key, now) else {
            return Ok(None);
        };
        let lease = self.lease_of(key, &store_key, rule);
        let used_up = match &lease {
            Some(lease) => lease.refusing(self.cluster.now_ms()),
            None => self.cluster.quota_seen(&store_key) >= rule.limit,
        };
        if used_up {
            return Err(Self::exhausted(name, end, now));
        }
        Ok(Some(Checked {
            store_key,
            name: name.clone(),
            rule,
            end,
            lease,
        }))
    }

    /// Counts one request against the quota [`Self::check`] found, or refuses it when
    /// used up.
    pub async fn consume(&self, checked: Checked, now: i64) -> Result<QuotaLeft, QuotaRefusal> {
        let Checked {
            store_key,
            name,
            rule,
            end,
            lease,
        } = checked;
        let name = &name;
        // What is left: the store's count, less the units this node holds unused.
        let left = |used: u64| QuotaLeft {
            limit: rule.limit,
            remaining: rule
                .limit
                .saturating_sub(used.saturating_sub(lease.as_ref().map_or(0, |l| l.held()))),
            resets_at: end,
        };
        let refused = || Err(QuotaRefusal::Exhausted(Self::exhausted(name, end, now)));
        if let Some(l) = &lease {
            match l.take(self.cluster.now_ms()) {
                Local::Taken { refill } => {
                    if refill {
                        self.refill(l.clone(), rule, end);
                    }
                    return Ok(left(self.cluster.quota_seen(&store_key)));
                }
                Local::Refused(_) => return refused(),
                Local::Empty => {}
            }
        }
        let want = lease
            .as_ref()
            .map_or(1, |l| l.want(self.cluster.settings().lease));
        let timeout = self.cluster.settings().timeout;
        let asked = take_units(&self.cluster, &store_key, rule, end, want, timeout).await;
        match asked {
            Ok((granted, used)) => {
                self.cluster.remember_quota(&store_key, used, end);
                let now_ms = self.cluster.now_ms();
                match (&lease, granted) {
                    (Some(l), 0) => l.refused(now_ms, REFUSE_FOR_MS),
                    (Some(l), g) => l.granted(g, g - 1, now_ms),
                    (None, _) => {}
                }
                if granted == 0 {
                    refused()
                } else {
                    Ok(left(used))
                }
            }
            Err(_) if self.cluster.decides_locally() => {
                match self.cluster.count_locally(&store_key, rule.limit, end) {
                    Some(used) => Ok(left(used)),
                    None => Err(QuotaRefusal::Exhausted(Self::exhausted(name, end, now))),
                }
            }
            Err(_) => Err(QuotaRefusal::StoreUnavailable),
        }
    }
}
