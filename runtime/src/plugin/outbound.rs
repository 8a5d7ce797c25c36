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

use super::answers::{AnswerCache, Directives, Lookup, cacheable_request};

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
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        let allowed = self.allowed.allows(request.uri());
        self.sent = self.sent.saturating_add(1);
        let over_limit = self.sent > MAX_OUTBOUND_REQUESTS;
        let sender = self.sender.clone();
        let cache_key =
            cacheable_request(&request).then(|| format!("{}\0{}", self.plugin, request.uri()));
        let directives = Directives::of(request.headers());
        let plugin = self.plugin.clone();
        let left = self
            .until
            .saturating_duration_since(tokio::time::Instant::now());
        // The guest's own timeouts (`request-options`), the smallest bounding the whole
        // exchange, within what is left of the call.
        let timeout = options
            .iter()
            .flat_map(|o| {
                [
                    o.connect_timeout,
                    o.first_byte_timeout,
                    o.between_bytes_timeout,
                ]
            })
            .flatten()
            .fold(left, Duration::min);
        Box::new(async move {
            let (Some(sender), true) = (sender, allowed) else {
                return Err(HttpError::HttpRequestDenied);
            };
            if over_limit {
                return Err(HttpError::ConnectionLimitReached);
            }
            let mut _turn = None;
            let fallback = match cache_key.as_deref() {
                None => None,
                Some(key) => {
                    let asked = Instant::now();
                    match CACHE.lookup(key, &directives, asked) {
                        Lookup::Hit(kept) => return Ok(answer(kept)),
                        Lookup::Fetch { fallback } => {
                            // One fetch of a URL at a time: calls that start with
                            // nothing kept (a cold start) wait for the first one's
                            // answer instead of all asking the origin.
                            let turn = tokio::time::timeout(timeout, turn_for(key).lock_owned())
                                .await
                                .map_err(|_| HttpError::ConnectionReadTimeout)?;
                            if let Some(kept) = CACHE.fetched_since(key, asked, Instant::now()) {
                                return Ok(answer(kept));
                            }
                            _turn = Some(turn);
                            fallback
                        }
                    }
                }
            };
            let uri = request.uri().to_string();
            let (parts, body) = request.into_parts();
            let body = Limited::new(body, MAX_OUTBOUND_BODY)
                .collect()
                .await
                .map_err(|_| HttpError::HttpRequestBodySize(None))?
                .to_bytes();
            let req = http::Request::from_parts(parts, body);
            let result = sender.send(req, timeout, MAX_OUTBOUND_BODY).await;
            let failure = match &result {
                Ok(resp) if resp.status().is_server_error() => Some(resp.status().to_string()),
                Ok(_) => None,
                Err(e) => Some(format!("{e:?}")),
            };
            if let (Some(why), Some(kept)) = (failure, fallback) {
                let age = kept.headers().get(http::header::AGE).cloned();
                tracing::warn!(
                    plugin = %plugin,
                    url = %uri,
                    error = %why,
                    age = ?age,
                    "outbound fetch failed; serving the answer kept before (stale-if-error)"
                );
                return Ok(answer(kept));
            }
            match result {
                Ok(resp) => {
                    // A 5xx leaves what is kept alone.
                    if let Some(key) = cache_key.filter(|_| !resp.status().is_server_error()) {
                        CACHE.store(key, &resp, &directives, Instant::now());
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

/// Answers kept for plugins (see [`super::answers`]), shared by every worker: a plugin
/// that is fresh on every call still fetches a key set once.
static CACHE: std::sync::LazyLock<AnswerCache> = std::sync::LazyLock::new(AnswerCache::default);

/// The URLs being fetched for kept answers, each with its turn: one fetch of a URL at a
/// time (entries go with their last holder).
static FETCHING: std::sync::LazyLock<
    std::sync::Mutex<std::collections::HashMap<String, std::sync::Weak<tokio::sync::Mutex<()>>>>,
> = std::sync::LazyLock::new(Default::default);

/// The turn to fetch `key`, shared by every call fetching it now.
fn turn_for(key: &str) -> Arc<tokio::sync::Mutex<()>> {
    let mut fetching = FETCHING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(turn) = fetching.get(key).and_then(std::sync::Weak::upgrade) {
        return turn;
    }
    fetching.retain(|_, t| t.strong_count() > 0);
    let turn = Arc::new(tokio::sync::Mutex::new(()));
    fetching.insert(key.to_owned(), Arc::downgrade(&turn));
    turn
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
}
