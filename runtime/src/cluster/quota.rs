//! Usage-plan quota counters in the shared store: one key per API key *name* and period,
//! `PREFIX:quota:NAME:PERIOD:START`, expiring a minute after the period ends (the
//! minute covers clocks that disagree a little about when it ends).
//!
//! Every counted request asks the store (one script: refuse when used up, else count),
//! so a quota used up on one node is used up on all of them at once. Quotas are per API
//! key and per day, week or month: far fewer requests reach this than the buckets.
//!
//! While the store cannot answer, a node in `local` mode counts on its own from the
//! highest count the store last told it, and adds what it counted when the store is
//! back; a store that lost the counter (restarted without persistence) gets it back
//! from the nodes ([`Cluster`]'s quota memo). In `deny` mode such requests get `503`.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::{RedisResult, Script};

use super::{Cluster, Conn, QuotaMemo};
use crate::quota::{Exhausted, QuotaLeft, QuotaRule, period_end, period_start};
use crate::throttle::KeyId;

/// Counts a request unless the counter reached ARGV[1]; the key expires at ARGV[2].
/// Returns {1 counted | 0 refused, the count}.
static CONSUME: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used >= tonumber(ARGV[1]) then return {0, used} end
used = redis.call('INCR', KEYS[1])
if redis.call('TTL', KEYS[1]) < 0 then redis.call('EXPIREAT', KEYS[1], ARGV[2]) end
return {1, used}
",
    )
});

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

/// The quota counters of one compiled gateway, in the store.
pub struct SharedQuotas {
    cluster: Arc<Cluster>,
    /// By [`KeyId`]: the key's name and its plan's quota.
    counters: Vec<Option<(Arc<str>, QuotaRule)>>,
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
        }
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

    /// Refuses a key this node last saw used up, counting nothing and asking nothing.
    pub fn check(&self, key: KeyId, now: i64) -> Result<(), Exhausted> {
        let Some((store_key, name, rule, end)) = self.counter(key, now) else {
            return Ok(());
        };
        if self.cluster.quota_seen(&store_key) >= rule.limit {
            return Err(Self::exhausted(name, end, now));
        }
        Ok(())
    }

    /// Counts one request against the key's quota, or refuses it when used up.
    pub async fn consume(&self, key: KeyId, now: i64) -> Result<Option<QuotaLeft>, QuotaRefusal> {
        let Some((store_key, name, rule, end)) = self.counter(key, now) else {
            return Ok(None);
        };
        let left = |used: u64| QuotaLeft {
            limit: rule.limit,
            remaining: rule.limit.saturating_sub(used),
            resets_at: end,
        };
        let asked = self
            .cluster
            .call(self.cluster.settings().timeout, |mut c| {
                let store_key = store_key.clone();
                async move {
                    let mut call = CONSUME.prepare_invoke();
                    call.key(&*store_key)
                        .arg(rule.limit)
                        .arg(end + EXPIRY_MARGIN);
                    call.invoke_async::<(i64, i64)>(&mut c).await
                }
            })
            .await;
        match asked {
            Ok((counted, used)) => {
                let used = used.max(0) as u64;
                self.cluster.remember_quota(&store_key, used, end);
                if counted == 1 {
                    Ok(Some(left(used)))
                } else {
                    Err(QuotaRefusal::Exhausted(Self::exhausted(name, end, now)))
                }
            }
            Err(_) if self.cluster.decides_locally() => {
                match self.cluster.count_locally(&store_key, rule.limit, end) {
                    Some(used) => Ok(Some(left(used))),
                    None => Err(QuotaRefusal::Exhausted(Self::exhausted(name, end, now))),
                }
            }
            Err(_) => Err(QuotaRefusal::StoreUnavailable),
        }
    }
}
