//! The three ways a pool picks among its available targets.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::Ordering;

use super::Target;

/// Smooth weighted round robin (nginx's `ngx_http_upstream_get_peer`): every candidate
/// gains its weight, the one with the most is picked and pays back the candidates'
/// total. Over any `sum(weights)` picks each target gets exactly its share, interleaved.
pub fn smooth_weighted(current: &mut [i64], targets: &[Target], candidates: &[usize]) -> usize {
    let mut total = 0i64;
    let mut best = candidates[0];
    for &i in candidates {
        let w = i64::from(targets[i].weight);
        current[i] += w;
        total += w;
        if current[i] > current[best] {
            best = i;
        }
    }
    current[best] -= total;
    best
}

/// Power of two choices: two distinct candidates drawn in proportion to their weights,
/// and of them the one with fewer requests in flight per unit of weight (the first on a
/// tie, so an idle pool still spreads by weight).
pub fn two_choices(targets: &[Target], candidates: &[usize]) -> usize {
    let a = weighted_draw(targets, candidates, None);
    let b = weighted_draw(targets, candidates, Some(a));
    let load = |i: usize| targets[i].state.in_flight.load(Ordering::Relaxed) as u128;
    // load(a) / weight(a) <= load(b) / weight(b), without division.
    if load(a) * u128::from(targets[b].weight) <= load(b) * u128::from(targets[a].weight) {
        a
    } else {
        b
    }
}

/// A candidate drawn in proportion to weight, `except` one.
fn weighted_draw(targets: &[Target], candidates: &[usize], except: Option<usize>) -> usize {
    let eligible = || candidates.iter().copied().filter(|&i| Some(i) != except);
    let total: u64 = eligible().map(|i| u64::from(targets[i].weight)).sum();
    let mut r = crate::trace::random_u64() % total.max(1);
    for i in eligible() {
        let w = u64::from(targets[i].weight);
        if r < w {
            return i;
        }
        r -= w;
    }
    candidates[0]
}

/// Weighted rendezvous hashing: each candidate scores `-weight / ln(u)` with `u` a hash
/// of the key and its id (URL or address) in (0, 1); the highest wins. A key stays on its target while
/// that target is available, and the keys of a target that leaves spread over the rest.
pub fn rendezvous(targets: &[Target], candidates: &[usize], key: &[u8]) -> usize {
    let mut best = candidates[0];
    let mut best_score = f64::NEG_INFINITY;
    for &i in candidates {
        let mut h = FIXED.build_hasher();
        h.write(key);
        h.write(targets[i].id.as_bytes());
        let u = ((h.finish() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let score = -f64::from(targets[i].weight) / u.ln();
        if score > best_score {
            best = i;
            best_score = score;
        }
    }
    best
}

/// A hasher with fixed keys, so that every worker (and every restart) maps a key alike.
static FIXED: std::hash::BuildHasherDefault<std::hash::DefaultHasher> =
    std::hash::BuildHasherDefault::new();
