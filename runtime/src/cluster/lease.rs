//! Leases: tokens of a shared bucket that this node took from the store in one call and
//! hands out to its own requests without asking again.
//!
//! A leased token is a real token: the store counted it when it was granted, so leases
//! never let the nodes together admit more than the limit. What a lease costs is the
//! other way: tokens one node holds cannot serve another node's requests. So a lease is
//! sized to the node's own demand (its recent rate times `[cluster] lease`, 50 ms by
//! default), never more than a cap (a tenth of the bucket's burst), and tokens unused
//! for [`TTL`] go back to the store. A node asks for the next lease in the background
//! when half of the last one is used, so a steady stream of requests never waits for
//! the store.
//!
//! Quota counters are leased the same way ([`Returns::Counter`]): units are counted in
//! the store when leased, and unused ones are taken off the counter again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::Cluster;

/// How long leased tokens may go unused before they go back to the store.
pub(crate) const TTL: Duration = Duration::from_secs(1);

/// `granted_at` before the first grant.
const NEVER: u64 = u64::MAX;

/// What a lease's tokens are, and so how unused ones go back to the store.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Returns {
    /// Tokens of a GCRA bucket of this many microseconds per token.
    Bucket(f64),
    /// Units of a quota counter: counted when leased, taken off it again when returned.
    Counter,
}

/// What the lease in hand says to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Local {
    /// A token was taken; `refill` when the lease is low and nobody is refilling it.
    Taken {
        /// Ask the store for the next lease now, in the background.
        refill: bool,
    },
    /// The store said the limit is empty, until this many milliseconds from now.
    Refused(u64),
    /// Nothing in hand: ask the store.
    Empty,
}

/// Tokens of one shared limit held by this node.
pub(crate) struct Lease {
    /// The store key.
    pub(crate) key: Arc<str>,
    /// How unused tokens go back.
    pub(crate) returns: Returns,
    /// Largest lease.
    cap: u64,
    held: AtomicU64,
    /// When tokens were last granted or taken (ms, [`Cluster::now_ms`]).
    touched: AtomicU64,
    /// The store said empty; refuse here until then (ms).
    empty_until: AtomicU64,
    /// Tokens handed out since the last grant (the demand).
    used: AtomicU64,
    granted_at: AtomicU64,
    /// Tokens per second this node used, smoothed (f64 bits).
    demand: AtomicU64,
    /// Size of the last lease asked for.
    last_want: AtomicU64,
    refilling: AtomicBool,
}

impl Lease {
    /// An empty lease of at most `cap` tokens at a time.
    pub(crate) fn new(key: Arc<str>, returns: Returns, cap: u64) -> Self {
        Self {
            key,
            returns,
            cap: cap.max(1),
            held: AtomicU64::new(0),
            touched: AtomicU64::new(0),
            empty_until: AtomicU64::new(0),
            used: AtomicU64::new(0),
            granted_at: AtomicU64::new(NEVER),
            demand: AtomicU64::new(0f64.to_bits()),
            last_want: AtomicU64::new(1),
            refilling: AtomicBool::new(false),
        }
    }

    /// Takes a token in hand, if there is one.
    pub(crate) fn take(&self, now: u64) -> Local {
        let mut held = self.held.load(Ordering::Relaxed);
        while held > 0 {
            match self.held.compare_exchange_weak(
                held,
                held - 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.used.fetch_add(1, Ordering::Relaxed);
                    self.touched.store(now, Ordering::Relaxed);
                    let low = held - 1 < self.last_want.load(Ordering::Relaxed) / 2;
                    let refill = low && !self.refilling.swap(true, Ordering::AcqRel);
                    return Local::Taken { refill };
                }
                Err(now_held) => held = now_held,
            }
        }
        let until = self.empty_until.load(Ordering::Relaxed);
        if now < until {
            Local::Refused(until - now)
        } else {
            Local::Empty
        }
    }

    /// How many tokens to ask for: the demand over `lease`, within 1 and the cap.
    pub(crate) fn want(&self, lease: Duration) -> u64 {
        let demand = f64::from_bits(self.demand.load(Ordering::Relaxed));
        let want = ((demand * lease.as_secs_f64()).ceil() as u64).clamp(1, self.cap);
        self.last_want.store(want, Ordering::Relaxed);
        want
    }

    /// The store granted `granted` tokens, `kept` of which stay in hand (the others
    /// went to the request that asked).
    pub(crate) fn granted(&self, granted: u64, kept: u64, now: u64) {
        let since = self.granted_at.swap(now, Ordering::Relaxed);
        let used = self.used.swap(0, Ordering::Relaxed) + (granted - kept);
        // The first grant has no interval to measure the demand over.
        if since != NEVER {
            let elapsed = now.saturating_sub(since).max(1) as f64 / 1000.0;
            let rate = used as f64 / elapsed;
            let old = f64::from_bits(self.demand.load(Ordering::Relaxed));
            let demand = if old == 0.0 {
                rate
            } else {
                0.5 * old + 0.5 * rate
            };
            self.demand.store(demand.to_bits(), Ordering::Relaxed);
        }
        if kept > 0 {
            self.held.fetch_add(kept, Ordering::AcqRel);
        }
        self.touched.store(now, Ordering::Relaxed);
        self.empty_until.store(0, Ordering::Relaxed);
    }

    /// The store had nothing: refuse here for `for_ms`.
    pub(crate) fn refused(&self, now: u64, for_ms: u64) {
        self.empty_until.store(now + for_ms, Ordering::Relaxed);
    }

    /// Whether the store said empty and that still holds at `now`.
    pub(crate) fn refusing(&self, now: u64) -> bool {
        self.held.load(Ordering::Relaxed) == 0 && now < self.empty_until.load(Ordering::Relaxed)
    }

    /// A background refill is over.
    pub(crate) fn refilled(&self) {
        self.refilling.store(false, Ordering::Release);
    }

    /// Whether tokens in hand went unused for [`TTL`].
    pub(crate) fn expired(&self, now: u64) -> bool {
        self.held.load(Ordering::Relaxed) > 0
            && now.saturating_sub(self.touched.load(Ordering::Relaxed)) >= TTL.as_millis() as u64
    }

    /// Empties the hand; returns how many tokens were in it.
    pub(crate) fn drain(&self) -> u64 {
        let held = self.held.swap(0, Ordering::AcqRel);
        if held > 0 {
            // The demand that justified them is gone.
            self.demand.store(0f64.to_bits(), Ordering::Relaxed);
        }
        held
    }

    /// Tokens in hand.
    pub(crate) fn held(&self) -> u64 {
        self.held.load(Ordering::Relaxed)
    }
}

/// Returns `unused` tokens of `lease` to the store (in the background's deadline).
pub(crate) async fn give_back(cluster: &Cluster, lease: &Lease, unused: u64) {
    let returned = match lease.returns {
        Returns::Bucket(interval_us) => {
            super::throttle::give_back(cluster, &lease.key, interval_us, unused).await
        }
        Returns::Counter => super::quota::give_back(cluster, &lease.key, unused).await,
    };
    if returned.is_err() {
        tracing::debug!(key = %lease.key, unused, "leased tokens not returned; the store keeps them counted");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(cap: u64) -> Lease {
        Lease::new("k".into(), Returns::Bucket(1000.0), cap)
    }

    #[test]
    fn tokens_in_hand_are_taken_once_each() {
        let l = lease(10);
        assert_eq!(l.take(0), Local::Empty);
        l.granted(4, 3, 0);
        assert!(matches!(l.take(1), Local::Taken { .. }));
        assert!(matches!(l.take(1), Local::Taken { .. }));
        assert!(matches!(l.take(1), Local::Taken { .. }));
        assert_eq!(l.take(1), Local::Empty);
        l.refused(1, 50);
        assert!(l.refusing(11));
        assert_eq!(l.take(11), Local::Refused(40));
        assert!(!l.refusing(51));
        assert_eq!(l.take(51), Local::Empty);
    }

    #[test]
    fn leases_follow_demand_within_the_cap() {
        let l = lease(100);
        assert_eq!(l.want(Duration::from_millis(50)), 1);
        // 200 tokens used in 100 ms: 2000/s, 100 per 50 ms lease.
        l.granted(1, 0, 0);
        l.used.store(200, Ordering::Relaxed);
        l.granted(1, 1, 100);
        assert_eq!(l.want(Duration::from_millis(50)), 100);
        let small = lease(3);
        small.granted(1, 0, 0);
        small.used.store(200, Ordering::Relaxed);
        small.granted(1, 1, 100);
        assert_eq!(small.want(Duration::from_millis(50)), 3);
    }

    #[test]
    fn a_low_lease_asks_for_one_refill_at_a_time() {
        let l = lease(100);
        l.last_want.store(4, Ordering::Relaxed);
        l.granted(4, 4, 0);
        assert_eq!(l.take(1), Local::Taken { refill: false });
        assert_eq!(l.take(1), Local::Taken { refill: false });
        // Below half of the last lease: one refill, not two.
        assert_eq!(l.take(1), Local::Taken { refill: true });
        assert_eq!(l.take(1), Local::Taken { refill: false });
        l.refilled();
        assert_eq!(l.take(1), Local::Empty);
    }

    #[test]
    fn unused_tokens_expire() {
        let l = lease(10);
        l.granted(5, 5, 0);
        assert!(!l.expired(999));
        assert!(l.expired(1000));
        assert_eq!(l.drain(), 5);
        assert!(!l.expired(5000));
        assert_eq!(l.held(), 0);
    }
}
