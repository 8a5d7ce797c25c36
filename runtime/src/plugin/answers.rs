//! Outbound answers kept by the host, per plugin and URL, shared by every worker and
//! instance (a plugin is fresh on every call and cannot keep them itself). What is kept
//! and for how long follows HTTP caching (RFC 9111) on both sides: the origin's
//! `Cache-Control: max-age` says how long an answer is fresh (at most an hour), and the
//! plugin's request says what it accepts — `no-cache` (fetch again), `max-stale=N` (an
//! answer up to N s past its freshness), `stale-if-error=N` (RFC 5861: the kept answer
//! when fetching again fails). Every served answer carries its `Age`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Longest an answer is fresh, whatever its `max-age`.
pub(super) const MAX_FRESH: Duration = Duration::from_secs(3600);
/// Longest an answer is kept after it was fetched, fresh or stale: past its freshness
/// it serves only requests that accept it stale (`max-stale`, `stale-if-error`).
pub(super) const MAX_KEPT: Duration = Duration::from_secs(24 * 3600);
/// A URL is asked again at most this often while an answer the request may take is
/// kept: a request that would fetch it sooner gets the kept answer (a plugin that
/// sees an unknown key id on every call cannot make the gateway hammer the key server,
/// nor one whose origin is down).
pub(super) const REVALIDATE_EVERY: Duration = Duration::from_secs(30);
/// Largest answer body kept, and all of them together.
const MAX_CACHED_BODY: usize = 1 << 20;
const MAX_CACHED_TOTAL: usize = 16 << 20;
/// Most answers kept.
pub(super) const MAX_CACHED_ENTRIES: usize = 1024;

/// What a request says about kept answers (its `Cache-Control`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Directives {
    /// `no-cache` (or `max-age=0`): fetch again.
    pub(super) no_cache: bool,
    /// `max-stale[=N]`: an answer at most this far past its freshness will do
    /// (`max-stale` without a value: any kept one).
    pub(super) max_stale: Option<Duration>,
    /// `stale-if-error=N`: when fetching fails (no answer, or a 5xx), an answer at most
    /// this far past its freshness will do.
    pub(super) stale_if_error: Option<Duration>,
}

impl Directives {
    /// The directives of a request's headers.
    pub(super) fn of(headers: &http::HeaderMap) -> Self {
        let mut d = Directives::default();
        for directive in cache_directives(headers) {
            let lower = directive.to_ascii_lowercase();
            let (name, value) = match lower.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
                None => (lower.as_str(), None),
            };
            let seconds = value
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_secs);
            match name {
                "no-cache" => d.no_cache = true,
                "max-age" if seconds == Some(Duration::ZERO) => d.no_cache = true,
                "max-stale" => {
                    d.max_stale = Some(if value.is_none() {
                        MAX_KEPT
                    } else {
                        seconds.unwrap_or_default()
                    })
                }
                "stale-if-error" => d.stale_if_error = seconds,
                _ => {}
            }
        }
        d
    }

    /// Whether an answer that is no longer fresh may be worth keeping for this request.
    fn takes_stale(&self) -> bool {
        self.max_stale.is_some() || self.stale_if_error.is_some()
    }
}

pub(super) fn cache_directives(headers: &http::HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|d| !d.is_empty())
}

/// What to do with a request, given what is kept.
#[derive(Debug)]
pub(super) enum Lookup {
    /// Serve this kept answer.
    Hit(http::Response<Bytes>),
    /// Fetch; should that fail, serve `fallback` (`stale-if-error`) when there is one.
    Fetch {
        fallback: Option<http::Response<Bytes>>,
    },
}

/// The kept answers.
#[derive(Default)]
pub(super) struct AnswerCache {
    entries: Mutex<HashMap<String, Kept>>,
}

struct Kept {
    resp: http::Response<Bytes>,
    fetched: Instant,
    /// The answer's own `Age` when it arrived (it may come from a shared cache).
    age_at_fetch: Duration,
    /// Its freshness lifetime: `max-age`, at most [`MAX_FRESH`].
    fresh_for: Duration,
    /// When the URL was last asked (successfully or not).
    tried: Instant,
    /// Its key, headers and body, for the total.
    size: usize,
}

impl Kept {
    fn age(&self, now: Instant) -> Duration {
        self.age_at_fetch + now.saturating_duration_since(self.fetched)
    }

    /// The kept answer, with its current `Age`.
    fn answer(&self, now: Instant) -> http::Response<Bytes> {
        let mut resp = http::Response::new(self.resp.body().clone());
        *resp.status_mut() = self.resp.status();
        *resp.headers_mut() = self.resp.headers().clone();
        if let Ok(age) = http::HeaderValue::try_from(self.age(now).as_secs().to_string()) {
            resp.headers_mut().insert(http::header::AGE, age);
        }
        resp
    }
}

impl AnswerCache {
    /// What a request with directives `d` for `key` gets at `now`. A fetch it is told
    /// to make counts as the URL's attempt (for [`REVALIDATE_EVERY`]) from now on.
    pub(super) fn lookup(&self, key: &str, d: &Directives, now: Instant) -> Lookup {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let Some(kept) = entries.get_mut(key) else {
            return Lookup::Fetch { fallback: None };
        };
        if now.saturating_duration_since(kept.fetched) >= MAX_KEPT {
            entries.remove(key);
            return Lookup::Fetch { fallback: None };
        }
        let age = kept.age(now);
        let stale_by = age.saturating_sub(kept.fresh_for);
        let fresh = age < kept.fresh_for;
        let within = |window: Option<Duration>| window.is_some_and(|w| stale_by <= w);
        let acceptable = fresh || within(d.max_stale);
        if acceptable && !d.no_cache {
            return Lookup::Hit(kept.answer(now));
        }
        // The URL was asked a moment ago: that answer (or, the asking having failed,
        // the one kept before) is what a request that may take it gets.
        let recently = now.saturating_duration_since(kept.tried) < REVALIDATE_EVERY;
        if recently && (acceptable || within(d.stale_if_error)) {
            return Lookup::Hit(kept.answer(now));
        }
        kept.tried = now;
        Lookup::Fetch {
            fallback: within(d.stale_if_error).then(|| kept.answer(now)),
        }
    }

    /// The answer kept for `key` if it was fetched at or after `since`: what a request
    /// that waited for another's fetch of the same URL takes.
    pub(super) fn fetched_since(
        &self,
        key: &str,
        since: Instant,
        now: Instant,
    ) -> Option<http::Response<Bytes>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .filter(|k| k.fetched >= since)
            .map(|k| k.answer(now))
    }

    /// Keeps (or forgets) the answer to a request with directives `d` fetched at `now`:
    /// a `200` its origin lets be kept, fresh for its `max-age`, or — when the request
    /// takes stale answers — without one.
    pub(super) fn store(
        &self,
        key: String,
        resp: &http::Response<Bytes>,
        d: &Directives,
        now: Instant,
    ) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.remove(&key);
        let Some((fresh_for, age_at_fetch)) = freshness(resp) else {
            return;
        };
        if (fresh_for <= age_at_fetch && !d.takes_stale()) || resp.body().len() > MAX_CACHED_BODY {
            return;
        }
        let size = key.len()
            + resp.body().len()
            + resp
                .headers()
                .iter()
                .map(|(n, v)| n.as_str().len() + v.len())
                .sum::<usize>();
        let fits = |entries: &HashMap<String, Kept>| {
            entries.len() < MAX_CACHED_ENTRIES
                && entries.values().map(|k| k.size).sum::<usize>() + size <= MAX_CACHED_TOTAL
        };
        if !fits(&entries) {
            // Stale ones first, then everything.
            entries.retain(|_, k| k.age(now) < k.fresh_for);
            if !fits(&entries) {
                entries.clear();
            }
        }
        let mut kept = http::Response::new(resp.body().clone());
        *kept.status_mut() = resp.status();
        *kept.headers_mut() = resp.headers().clone();
        entries.insert(
            key,
            Kept {
                resp: kept,
                fetched: now,
                age_at_fetch,
                fresh_for,
                tried: now,
                size,
            },
        );
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }
}

/// A `GET` without credentials: its answer does not depend on who asks.
pub(super) fn cacheable_request<B>(req: &http::Request<B>) -> bool {
    req.method() == http::Method::GET
        && !req.headers().contains_key(http::header::AUTHORIZATION)
        && !req.headers().contains_key(http::header::COOKIE)
}

/// Whether an answer may be kept at all, and if so its freshness lifetime (`max-age`,
/// at most [`MAX_FRESH`], zero without one) and its own `Age`: a `200` without `Vary`,
/// `no-store`, `no-cache` or `private`.
pub(super) fn freshness(resp: &http::Response<Bytes>) -> Option<(Duration, Duration)> {
    if resp.status() != http::StatusCode::OK || resp.headers().contains_key(http::header::VARY) {
        return None;
    }
    let mut max_age = Duration::ZERO;
    for d in cache_directives(resp.headers()) {
        let lower = d.to_ascii_lowercase();
        if matches!(lower.as_str(), "no-store" | "no-cache" | "private") {
            return None;
        }
        if let Some(v) = lower.strip_prefix("max-age=") {
            max_age = v
                .trim_matches('"')
                .parse::<u64>()
                .map(Duration::from_secs)
                .unwrap_or_default();
        }
    }
    let age = resp
        .headers()
        .get(http::header::AGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or_default();
    Some((max_age.min(MAX_FRESH), age.min(MAX_KEPT)))
}

#[cfg(test)]
mod tests;
