//! Bucket arithmetic on a fake clock, level order, eviction, and no over-admission
//! across threads.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use governor::clock::FakeRelativeClock;

use super::*;

fn limit(rate: f64, burst: u32) -> Limit {
    Limit { rate, burst }
}

fn one_bucket(
    l: Limit,
    kind: BucketKind,
) -> (MemoryStore<FakeRelativeClock>, BucketId, FakeRelativeClock) {
    let mut b = Buckets::default();
    let id = b.add(l, kind);
    let clock = FakeRelativeClock::default();
    (MemoryStore::with_clock(&b, clock.clone()), id, clock)
}

/// The answer of a future that a memory store resolves at once.
fn ready<T>(f: impl std::future::Future<Output = T>) -> T {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("a memory store decides at once"),
    }
}

/// The bucket that refused.
fn throttled(r: Result<(), Refusal>) -> Throttled {
    match r {
        Err(Refusal::Throttled(t)) => t,
        other => panic!("not throttled: {other:?}"),
    }
}

fn admitted(store: &dyn ThrottleStore, id: BucketId, key: Option<KeyId>, tries: usize) -> usize {
    (0..tries)
        .filter(|_| store.take(id, key).now().is_ok())
        .count()
}

#[test]
fn a_full_bucket_admits_its_burst_at_once_then_refuses() {
    let (store, id, _) = one_bucket(limit(10.0, 5), BucketKind::Shared);
    assert_eq!(admitted(&store, id, None, 20), 5);
    // The next token comes after 1/rate.
    let wait = store.take(id, None).now().unwrap_err();
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_millis(100),
        "{wait:?}"
    );
}

#[test]
fn tokens_come_back_at_the_rate() {
    let (store, id, clock) = one_bucket(limit(10.0, 5), BucketKind::Shared);
    assert_eq!(admitted(&store, id, None, 5), 5);
    clock.advance(Duration::from_millis(350));
    // 3.5 tokens refilled: 3 whole ones.
    assert_eq!(admitted(&store, id, None, 10), 3);
    clock.advance(Duration::from_secs(60));
    // Never more than the bucket holds.
    assert_eq!(admitted(&store, id, None, 100), 5);
}

#[test]
fn fractional_rates_refill_slowly() {
    let (store, id, clock) = one_bucket(limit(0.5, 1), BucketKind::Shared);
    assert_eq!(admitted(&store, id, None, 3), 1);
    let wait = store.take(id, None).now().unwrap_err();
    assert_eq!(wait, Duration::from_secs(2));
    clock.advance(Duration::from_millis(1999));
    assert!(store.take(id, None).now().is_err());
    clock.advance(Duration::from_millis(1));
    assert!(store.take(id, None).now().is_ok());
}

#[test]
fn per_key_buckets_are_independent() {
    let (store, id, _) = one_bucket(limit(1.0, 2), BucketKind::PerKey);
    assert_eq!(admitted(&store, id, Some(KeyId(0)), 5), 2);
    assert_eq!(admitted(&store, id, Some(KeyId(1)), 5), 2);
    assert_eq!(store.per_key_buckets(), 2);
}

#[test]
fn idle_per_key_buckets_are_evicted_once_full_again_for_a_period() {
    let (store, id, clock) = one_bucket(limit(1.0, 2), BucketKind::PerKey);
    admitted(&store, id, Some(KeyId(0)), 2);
    admitted(&store, id, Some(KeyId(1)), 1);
    store.evict_idle();
    assert_eq!(store.per_key_buckets(), 2, "busy buckets stay");
    // Key 1 is full again after 1 s, key 0 after 2 s; governor keeps them one more
    // refill period (1 s) before they count as idle.
    clock.advance(Duration::from_millis(1500));
    store.evict_idle();
    assert_eq!(store.per_key_buckets(), 2);
    clock.advance(Duration::from_secs(1));
    store.evict_idle();
    assert_eq!(store.per_key_buckets(), 1);
    clock.advance(Duration::from_secs(1));
    store.evict_idle();
    assert_eq!(store.per_key_buckets(), 0);
    // An evicted key starts from a full bucket, as it would have had anyway.
    assert_eq!(admitted(&store, id, Some(KeyId(0)), 5), 2);
}

fn levels(key: Limit, route: Limit, account: Limit) -> (Throttle, BucketId) {
    let mut b = Buckets::default();
    let account = b.add(account, BucketKind::Shared);
    let route = b.add(route, BucketKind::Shared);
    let key = b.add(key, BucketKind::PerKey);
    let store = MemoryStore::with_clock(&b, FakeRelativeClock::default());
    (
        Throttle::new(Box::new(store), account, vec![Some(route), None]),
        key,
    )
}

#[test]
fn levels_are_checked_key_then_route_then_account() {
    let (t, key) = levels(limit(1.0, 3), limit(1.0, 2), limit(1.0, 4));
    let k = Some((key, KeyId(0)));
    assert!(ready(t.admit(k, 0)).is_ok());
    assert!(ready(t.admit(k, 0)).is_ok());
    // The route is empty: the key gave a token, the account did not.
    assert_eq!(throttled(ready(t.admit(k, 0))).level, Level::Route);
    // The key has no tokens left (3 taken): refused before the route and account.
    assert_eq!(throttled(ready(t.admit(k, 0))).level, Level::ApiKey);
    // The account gave only 2 of its 4 tokens; route 1 has no bucket of its own.
    assert!(ready(t.admit(None, 1)).is_ok());
    assert!(ready(t.admit(None, 1)).is_ok());
    assert_eq!(throttled(ready(t.admit(None, 1))).level, Level::Account);
    assert_eq!(throttled(ready(t.admit_connection())).level, Level::Account);
}

#[test]
fn the_account_spans_routes_and_connections() {
    let (t, _) = levels(limit(1.0, 9), limit(1.0, 9), limit(0.01, 3));
    assert!(ready(t.admit(None, 0)).is_ok());
    assert!(ready(t.admit(None, 1)).is_ok());
    assert!(ready(t.admit_connection()).is_ok());
    let refused = throttled(ready(t.admit(None, 1)));
    assert_eq!(refused.level, Level::Account);
    assert_eq!(refused.retry_after, Duration::from_secs(100));
}

#[test]
fn threads_never_over_admit() {
    let mut b = Buckets::default();
    let shared = b.add(limit(MIN_RATE, 1000), BucketKind::Shared);
    let keyed = b.add(limit(MIN_RATE, 500), BucketKind::PerKey);
    // The real clock: at 0.001/s nothing refills during the test.
    let store = Arc::new(MemoryStore::new(&b));
    let (shared_ok, keyed_ok) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (store, shared_ok, keyed_ok) = (store.clone(), shared_ok.clone(), keyed_ok.clone());
            std::thread::spawn(move || {
                for _ in 0..1000 {
                    if store.take(shared, None).now().is_ok() {
                        shared_ok.fetch_add(1, Ordering::Relaxed);
                    }
                    if store.take(keyed, Some(KeyId(7))).now().is_ok() {
                        keyed_ok.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(shared_ok.load(Ordering::Relaxed), 1000);
    assert_eq!(keyed_ok.load(Ordering::Relaxed), 500);
}

#[test]
fn impossible_limits_are_named() {
    assert_eq!(limit(0.0, 1).check().unwrap_err().0, "rate");
    assert!(limit(f64::NAN, 1).check().is_err());
    assert!(limit(1e10, 1).check().is_err());
    assert_eq!(limit(1.0, 0).check().unwrap_err().0, "burst");
    assert!(limit(0.001, 1).check().is_ok());
    assert!(limit(2.0, 1).exceeds(&limit(1.0, 5)));
    assert!(!limit(1.0, 5).exceeds(&limit(1.0, 5)));
}

#[test]
fn impossible_limits_still_build_a_bucket() {
    // `check` refuses these, but compiling a config builds the store before it returns
    // the errors; building must not panic (`rate = nan` once did).
    for rate in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0, 0.0] {
        assert!(limit(rate, 0).check().is_err());
        for kind in [BucketKind::Shared, BucketKind::PerKey] {
            let (store, id, _) = one_bucket(limit(rate, 0), kind);
            assert!(admitted(&store, id, Some(KeyId(0)), 1) <= 1);
        }
    }
}

#[test]
fn named_buckets_keep_their_state_across_stores_from_one_registry() {
    let registry = BucketRegistry::default();
    let declare = |l: Limit| {
        let mut b = Buckets::default();
        let id = b.add_named("route GET /x".to_owned(), l, BucketKind::Shared);
        let anon = b.add(l, BucketKind::Shared);
        (MemoryStore::with_registry(&b, &registry), id, anon)
    };
    let (first, id, anon) = declare(limit(0.001, 2));
    assert_eq!(admitted(&first, id, None, 1), 1);
    assert_eq!(admitted(&first, anon, None, 2), 2);
    // A reload: the same name and limit share the tokens left; anonymous ones do not.
    let (second, id2, anon2) = declare(limit(0.001, 2));
    assert_eq!(admitted(&second, id2, None, 5), 1);
    assert_eq!(admitted(&second, anon2, None, 5), 2);
    // A changed limit starts full.
    let (third, id3, _) = declare(limit(0.001, 3));
    assert_eq!(admitted(&third, id3, None, 5), 3);
    // Once no store holds a bucket, its state is gone.
    drop((first, second, third));
    let (fourth, id4, _) = declare(limit(0.001, 2));
    assert_eq!(admitted(&fourth, id4, None, 5), 2);
}
