//! Outbound HTTP from plugins: refused unless the plugin's `allow_outbound` lists the
//! request's origin, and then sent by the gateway's own client (pooled, TLS verified
//! against the gateway's trust store), within the call's deadline and with its answer
//! bounded. The client comes from the layer that owns it ([`Sender`]); the plugin host
//! only decides what may go out.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use wasmtime_wasi_http::{Error as HttpError, WasiBody, WasiHttpHooks};

/// Largest request body a plugin may send out, and largest answer it may read.
pub const MAX_OUTBOUND_BODY: usize = 10 << 20;
/// Most requests one call may send (refused past it with `connection-limit-reached`).
pub const MAX_OUTBOUND_REQUESTS: u32 = 16;

/// Sends one request for a plugin, within `timeout`; the answer's body is read whole
/// (at most `max_body` bytes). Errors are plain words for the guest's error code.
pub trait Sender: Send + Sync {
    /// The request, sent; its answer.
    fn send(
        &self,
        req: http::Request<Bytes>,
        timeout: Duration,
        max_body: usize,
    ) -> Pin<Box<dyn Future<Output = Result<http::Response<Bytes>, OutboundError>> + Send>>;
}

/// Why an outbound request got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboundError {
    /// Nothing answered at that address.
    Refused,
    /// No answer in time.
    Timeout,
    /// The answer was larger than allowed.
    TooLarge,
    /// TLS failed (an untrusted certificate, say).
    Tls,
    /// Anything else.
    Failed,
}

/// The origins one plugin may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowed(Arc<[Origin]>);

/// `scheme://host:port`, the host possibly `*.suffix`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

fn default_port(scheme: &str) -> u16 {
    if scheme == "https" { 443 } else { 80 }
}

impl Allowed {
    /// Parses `allow_outbound`; an error names the entry.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut out = Vec::new();
        for e in entries {
            let (scheme, rest) = e
                .split_once("://")
                .filter(|(s, _)| matches!(*s, "http" | "https"))
                .ok_or_else(|| format!("`{e}`: an origin is http:// or https:// and a host"))?;
            if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
                return Err(format!(
                    "`{e}`: an origin has no path, query or credentials"
                ));
            }
            let (host, port) = match rest.rsplit_once(':').filter(|(h, _)| !h.ends_with(']')) {
                Some((host, port)) => (
                    host,
                    port.parse::<u16>()
                        .map_err(|_| format!("`{e}`: invalid port `{port}`"))?,
                ),
                None => (rest, default_port(scheme)),
            };
            let wildcard = host.strip_prefix("*.");
            let bare = wildcard.unwrap_or(host);
            if bare.is_empty() || bare.contains('*') {
                return Err(format!(
                    "`{e}`: only a leading `*.` label may be a wildcard"
                ));
            }
            out.push(Origin {
                scheme: scheme.to_owned(),
                host: host.to_ascii_lowercase(),
                port,
            });
        }
        Ok(Allowed(out.into()))
    }

    /// Whether a request to `uri` may go out.
    pub fn allows(&self, uri: &http::Uri) -> bool {
        let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        let port = uri.port_u16().unwrap_or_else(|| default_port(scheme));
        self.0.iter().any(|o| {
            o.scheme == scheme
                && o.port == port
                && match o.host.strip_prefix('*') {
                    // `*.example.com` matches `a.example.com`, not `example.com`.
                    Some(suffix) => host.ends_with(suffix) && host.len() > suffix.len(),
                    None => o.host == host,
                }
        })
    }

    /// Whether nothing may go out.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The `wasi:http` hooks of one call: what may go out, how, and until when.
pub(super) struct Hooks {
    /// The plugin's name: answers are cached per plugin.
    pub(super) plugin: Arc<str>,
    pub(super) allowed: Allowed,
    pub(super) sender: Option<Arc<dyn Sender>>,
    /// The end of the call: no request may outlive it.
    pub(super) until: tokio::time::Instant,
    /// Requests sent so far in this call.
    sent: u32,
}

impl Hooks {
    /// The hooks of one call of `plugin`: its origins, the client, its deadline.
    pub(super) fn for_call(
        plugin: Arc<str>,
        allowed: Allowed,
        sender: Option<Arc<dyn Sender>>,
        until: tokio::time::Instant,
    ) -> Self {
        Hooks {
            plugin,
            allowed,
            sender,
            until,
            sent: 0,
        }
    }
}

impl Default for Hooks {
    fn default() -> Self {
        Self {
            plugin: Arc::from(""),
            allowed: Allowed::default(),
            sender: None,
            until: tokio::time::Instant::now(),
            sent: 0,
        }
    }
}

type SendResult = Result<
    (
        http::Response<WasiBody>,
        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ),
    HttpError,
>;

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let allowed = self.allowed.allows(request.uri());
        self.sent = self.sent.saturating_add(1);
        let over_limit = self.sent > MAX_OUTBOUND_REQUESTS;
        let sender = self.sender.clone();
        let cache_key =
            cacheable_request(&request).then(|| format!("{}\0{}", self.plugin, request.uri()));
        let revalidate = wants_revalidation(request.headers());
        let left = self
            .until
            .saturating_duration_since(tokio::time::Instant::now());
        Box::new(async move {
            let (Some(sender), true) = (sender, allowed) else {
                return Err(HttpError::HttpRequestDenied);
            };
            if over_limit {
                return Err(HttpError::ConnectionLimitReached);
            }
            if let Some(hit) = cache_key
                .as_deref()
                .and_then(|k| CACHE.lookup(k, revalidate, Instant::now()))
            {
                return Ok(answer(hit));
            }
            let (parts, body) = request.into_parts();
            let body = Limited::new(body, MAX_OUTBOUND_BODY)
                .collect()
                .await
                .map_err(|_| HttpError::HttpRequestBodySize(None))?
                .to_bytes();
            let req = http::Request::from_parts(parts, body);
            match sender.send(req, left, MAX_OUTBOUND_BODY).await {
                Ok(resp) => {
                    if let (Some(key), Some(ttl)) = (cache_key, freshness(&resp)) {
                        CACHE.store(key, &resp, ttl, Instant::now());
                    }
                    Ok(answer(resp))
                }
                Err(e) => Err(match e {
                    OutboundError::Refused => HttpError::ConnectionRefused,
                    OutboundError::Timeout => HttpError::ConnectionReadTimeout,
                    OutboundError::TooLarge => HttpError::HttpResponseBodySize(None),
                    OutboundError::Tls => HttpError::TlsCertificateError,
                    OutboundError::Failed => HttpError::DestinationUnavailable,
                }),
            }
        })
    }
}

/// The guest's view of an answer.
fn answer(
    resp: http::Response<Bytes>,
) -> (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
) {
    let resp = resp.map(|b| Full::new(b).map_err(|never| match never {}).boxed_unsync());
    let done: Box<dyn Future<Output = Result<(), HttpError>> + Send> = Box::new(async { Ok(()) });
    (resp, done)
}

/// Longest an answer is kept, whatever its `max-age`.
const MAX_FRESH: Duration = Duration::from_secs(3600);
/// A request with `Cache-Control: no-cache` fetches again at most this often per URL;
/// more often it gets the kept answer (a plugin that sees an unknown key id cannot
/// make the gateway hammer the key server).
const REVALIDATE_EVERY: Duration = Duration::from_secs(30);
/// Largest answer body kept, and all of them together.
const MAX_CACHED_BODY: usize = 1 << 20;
const MAX_CACHED_TOTAL: usize = 16 << 20;
/// Most answers kept.
const MAX_CACHED_ENTRIES: usize = 1024;

/// Answers to plain `GET`s that their origin allows to be kept (`Cache-Control:
/// max-age`, not `no-store`, `no-cache` or `private`), per plugin and URL, shared by
/// every worker: a plugin that is fresh on every call still fetches a key set once.
static CACHE: std::sync::LazyLock<AnswerCache> = std::sync::LazyLock::new(AnswerCache::default);

#[derive(Default)]
struct AnswerCache {
    entries: std::sync::Mutex<std::collections::HashMap<String, Kept>>,
}

struct Kept {
    resp: http::Response<Bytes>,
    fetched: Instant,
    expires: Instant,
    /// Its key, headers and body, for the total.
    size: usize,
}

impl AnswerCache {
    fn lookup(&self, key: &str, revalidate: bool, now: Instant) -> Option<http::Response<Bytes>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let kept = entries.get(key).filter(|k| k.expires > now)?;
        if revalidate && now.duration_since(kept.fetched) >= REVALIDATE_EVERY {
            return None;
        }
        let mut resp = http::Response::new(kept.resp.body().clone());
        *resp.status_mut() = kept.resp.status();
        *resp.headers_mut() = kept.resp.headers().clone();
        if let Ok(age) =
            http::HeaderValue::try_from(now.duration_since(kept.fetched).as_secs().to_string())
        {
            resp.headers_mut().insert(http::header::AGE, age);
        }
        Some(resp)
    }

    fn store(&self, key: String, resp: &http::Response<Bytes>, ttl: Duration, now: Instant) {
        if resp.body().len() > MAX_CACHED_BODY {
            return;
        }
        let size = key.len()
            + resp.body().len()
            + resp
                .headers()
                .iter()
                .map(|(n, v)| n.as_str().len() + v.len())
                .sum::<usize>();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.remove(&key);
        let fits = |entries: &std::collections::HashMap<String, Kept>| {
            entries.len() < MAX_CACHED_ENTRIES
                && entries.values().map(|k| k.size).sum::<usize>() + size <= MAX_CACHED_TOTAL
        };
        if !fits(&entries) {
            entries.retain(|_, k| k.expires > now);
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
                expires: now + ttl.min(MAX_FRESH),
                size,
            },
        );
    }
}

/// A `GET` without credentials: its answer does not depend on who asks.
fn cacheable_request<B>(req: &http::Request<B>) -> bool {
    req.method() == http::Method::GET
        && !req.headers().contains_key(http::header::AUTHORIZATION)
        && !req.headers().contains_key(http::header::COOKIE)
}

/// Whether the request asks for a fresh answer (`Cache-Control: no-cache`).
fn wants_revalidation(headers: &http::HeaderMap) -> bool {
    cache_directives(headers).any(|d| d.eq_ignore_ascii_case("no-cache"))
}

fn cache_directives(headers: &http::HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// How long a `200` may be kept, by its `Cache-Control: max-age` (none without one).
fn freshness(resp: &http::Response<Bytes>) -> Option<Duration> {
    if resp.status() != http::StatusCode::OK || resp.headers().contains_key(http::header::VARY) {
        return None;
    }
    let mut max_age = None;
    for d in cache_directives(resp.headers()) {
        let lower = d.to_ascii_lowercase();
        if matches!(lower.as_str(), "no-store" | "no-cache" | "private") {
            return None;
        }
        if let Some(v) = lower.strip_prefix("max-age=") {
            max_age = v.trim_matches('"').parse::<u64>().ok();
        }
    }
    max_age.filter(|s| *s > 0).map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(entries: &[&str]) -> Allowed {
        Allowed::parse(&entries.iter().map(|e| e.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn origins_match_scheme_host_and_port() {
        let a = allowed(&[
            "http://127.0.0.1:9000",
            "https://api.example.com",
            "https://*.idp.example",
        ]);
        let ok = |u: &str| a.allows(&u.parse().unwrap());
        assert!(ok("http://127.0.0.1:9000/x?y=1"));
        assert!(!ok("http://127.0.0.1:9001/x"));
        assert!(!ok("https://127.0.0.1:9000/x"));
        assert!(ok("https://api.example.com/v1"));
        assert!(ok("https://API.example.com:443/v1"));
        assert!(!ok("http://api.example.com/v1"));
        assert!(!ok("https://api.example.com.evil/v1"));
        assert!(ok("https://a.idp.example/keys"));
        assert!(!ok("https://idp.example/keys"));
        assert!(!ok("https://a.idp.example.evil/keys"));
        assert!(!ok("/relative"));
        assert!(Allowed::default().is_empty());
    }

    #[test]
    fn bad_origins_are_refused_by_name() {
        for bad in [
            "ftp://x",
            "http://",
            "http://x/path",
            "http://u@x",
            "http://a.*.b",
            "http://x:port",
        ] {
            let e = Allowed::parse(&[bad.to_owned()]).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }

    fn answer_with(cache_control: &str) -> http::Response<Bytes> {
        let mut r = http::Response::new(Bytes::from_static(b"{\"keys\":[]}"));
        if !cache_control.is_empty() {
            r.headers_mut()
                .insert(http::header::CACHE_CONTROL, cache_control.parse().unwrap());
        }
        r
    }

    #[test]
    fn answers_are_kept_as_their_origin_allows() {
        assert_eq!(
            freshness(&answer_with("public, max-age=600")),
            Some(Duration::from_secs(600))
        );
        for no in [
            "",
            "max-age=0",
            "no-store",
            "max-age=60, private",
            "no-cache",
        ] {
            assert_eq!(freshness(&answer_with(no)), None, "{no}");
        }
        let cache = AnswerCache::default();
        let t0 = Instant::now();
        cache.store(
            "p\0u".into(),
            &answer_with("max-age=7200"),
            Duration::from_secs(7200),
            t0,
        );
        assert!(
            cache
                .lookup("p\0u", false, t0 + Duration::from_secs(3599))
                .is_some()
        );
        // Kept at most an hour, whatever max-age says.
        assert!(
            cache
                .lookup("p\0u", false, t0 + Duration::from_secs(3601))
                .is_none()
        );
        // no-cache refetches, but not more than once per 30 s.
        assert!(
            cache
                .lookup("p\0u", true, t0 + Duration::from_secs(10))
                .is_some()
        );
        assert!(
            cache
                .lookup("p\0u", true, t0 + Duration::from_secs(31))
                .is_none()
        );
        assert!(cache.lookup("q\0u", false, t0).is_none());
        // However small the answers, the cache keeps at most MAX_CACHED_ENTRIES.
        for i in 0..MAX_CACHED_ENTRIES + 100 {
            cache.store(
                format!("p\0u{i}"),
                &answer_with(""),
                Duration::from_secs(60),
                t0,
            );
            let n = cache.entries.lock().unwrap().len();
            assert!(n <= MAX_CACHED_ENTRIES, "{n}");
        }
        let get = http::Request::get("http://x/").body(()).unwrap();
        assert!(cacheable_request(&get));
        let with_auth = http::Request::get("http://x/")
            .header("authorization", "Bearer t")
            .body(())
            .unwrap();
        assert!(!cacheable_request(&with_auth));
    }
}
