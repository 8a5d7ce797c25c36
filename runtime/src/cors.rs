//! The CORS stages: answer preflights before anything else, decorate every response.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Response};

use crate::error::GatewayError;
use crate::map::{PluginResponse, headers_to_pairs, pairs_to_headers, restore_raw_values};
use crate::plugin::{CorsPlugin, RequestHead};
use crate::ttl_cache::TtlCache;

/// An `OPTIONS` request with `Origin` and `Access-Control-Request-Method`.
pub fn is_preflight(head: &Parts) -> bool {
    head.method == Method::OPTIONS
        && head.headers.contains_key(header::ORIGIN)
        && head
            .headers
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

fn wit_head(head: &Parts) -> RequestHead {
    RequestHead {
        method: head.method.as_str().to_owned(),
        path: head.uri.path().to_owned(),
        query: head.uri.query().unwrap_or("").to_owned(),
        headers: headers_to_pairs(&head.headers),
    }
}

/// Answers a preflight with the policy plugin.
pub async fn preflight(
    policy: &CorsPlugin,
    head: &Parts,
    max_body: u64,
) -> Result<PluginResponse, GatewayError> {
    let resp = policy
        .preflight(&wit_head(head))
        .await
        .map_err(GatewayError::PluginFailed)?;
    PluginResponse::from_wit(resp, policy.name(), max_body)
}

/// Applies the policy's headers to a response. A request without `Origin` is not a CORS
/// request: the policy is not called and the response only gets `Vary: Origin`. If the
/// plugin fails, the response goes out without CORS headers (browsers then block it).
/// The policy is asked once per origin, method and path within a lifetime when it says
/// its answers may be reused (`host.cacheable`), or when the operator says so
/// (`[api] cors_cache`, which wins).
pub async fn decorate<B>(
    policy: &CorsPlugin,
    cache: &CorsCache,
    head: &Parts,
    resp: &mut Response<B>,
) {
    let Some(origin) = head.headers.get(header::ORIGIN) else {
        resp.headers_mut()
            .append(header::VARY, HeaderValue::from_static("origin"));
        return;
    };
    if let Some(ttl) = cache.lifetime() {
        return decorate_cached(policy, cache, ttl, origin.clone(), head, resp).await;
    }
    let original = resp.headers();
    let pairs = headers_to_pairs(original);
    let result = policy
        .decorate(&wit_head(head), &pairs)
        .await
        .map_err(GatewayError::PluginFailed)
        .and_then(|(out, cache_for)| {
            cache.learn(cache_for);
            pairs_to_headers(&out, policy.name())
        });
    match result {
        Ok(mut headers) => {
            restore_raw_values(&mut headers, original);
            *resp.headers_mut() = headers;
        }
        Err(e) => {
            tracing::error!(error = %e, "CORS policy failed; response sent without CORS headers");
            remove_access_control(resp.headers_mut());
        }
    }
}

/// The cached path: what the policy adds to an empty response is what it adds to any,
/// after the backend's `access-control-*` headers are dropped and `Vary` names `Origin`.
async fn decorate_cached<B>(
    policy: &CorsPlugin,
    cache: &CorsCache,
    ttl: Duration,
    origin: HeaderValue,
    head: &Parts,
    resp: &mut Response<B>,
) {
    let key = CorsKey {
        origin,
        method: head.method.clone(),
        path: head.uri.path().to_owned(),
    };
    let now = Instant::now();
    let added = match cache.entries.get(&key, now) {
        Some(added) => Ok(added),
        None => policy
            .decorate(&wit_head(head), &[])
            .await
            .map_err(GatewayError::PluginFailed)
            .and_then(|(out, cache_for)| {
                cache.learn(cache_for);
                pairs_to_headers(&out, policy.name())
            })
            .map(|out| {
                let added: Added = out
                    .iter()
                    .filter(|(n, _)| *n != header::VARY)
                    .map(|(n, v)| (n.clone(), v.clone()))
                    .collect();
                cache.entries.put(key, added.clone(), now + ttl);
                added
            }),
    };
    let headers = resp.headers_mut();
    remove_access_control(headers);
    match added {
        Ok(added) => {
            vary_on_origin(headers);
            for (n, v) in added.iter() {
                headers.append(n.clone(), v.clone());
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "CORS policy failed; response sent without CORS headers");
        }
    }
}

/// Adds `Origin` to `Vary` unless it (or `*`) is listed: one `Vary` value, the existing
/// ones first.
fn vary_on_origin(headers: &mut HeaderMap) {
    let mut values = Vec::new();
    for v in headers.get_all(header::VARY) {
        let Ok(v) = v.to_str() else {
            headers.append(header::VARY, HeaderValue::from_static("origin"));
            return;
        };
        for item in v.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            if item == "*" || item.eq_ignore_ascii_case("origin") {
                return;
            }
            values.push(item.to_owned());
        }
    }
    values.push("origin".to_owned());
    if let Ok(v) = HeaderValue::from_str(&values.join(", ")) {
        headers.insert(header::VARY, v);
    }
}

/// The headers a policy adds.
type Added = Arc<[(HeaderName, HeaderValue)]>;

/// A cache entry's key.
#[derive(Hash, PartialEq, Eq)]
pub struct CorsKey {
    origin: HeaderValue,
    method: Method,
    path: String,
}

/// The headers a CORS policy adds, per origin, method and path: for as long as the
/// operator set (`[api] cors_cache`), else for as long as the policy last said its
/// answers may be reused (`host.cacheable`); off when neither did.
#[derive(Default)]
pub struct CorsCache {
    /// `[api] cors_cache` (zero: the policy decides).
    ttl: Duration,
    /// What the policy's last call declared, in seconds (0: not reusable). One gateway
    /// snapshot has one policy version, so this is that version's word.
    declared: AtomicU64,
    entries: TtlCache<CorsKey, Added>,
}

impl CorsCache {
    /// A cache whose entries live `ttl` (zero: as long as the policy says).
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            declared: AtomicU64::new(0),
            entries: TtlCache::default(),
        }
    }

    /// How long an answer may be reused, if at all.
    fn lifetime(&self) -> Option<Duration> {
        if !self.ttl.is_zero() {
            return Some(self.ttl);
        }
        let secs = self.declared.load(Ordering::Relaxed);
        (secs > 0).then(|| Duration::from_secs(secs))
    }

    /// Records what the policy's last call said about reuse.
    fn learn(&self, cache_for: Option<Duration>) {
        let secs = cache_for.map_or(0, |d| d.as_secs());
        if self.declared.load(Ordering::Relaxed) != secs {
            self.declared.store(secs, Ordering::Relaxed);
        }
    }
}

/// Drops every `access-control-*` header (none of the backend's may pass unchecked).
fn remove_access_control(headers: &mut HeaderMap) {
    let names: Vec<_> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for n in names {
        headers.remove(n);
    }
}
