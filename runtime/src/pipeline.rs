//! The request path of an HTTP API, top to bottom, in one function: [`handle`].
//!
//! accept → CORS preflight → route → throttle (API key from `x-api-key` → its plan →
//! route → account; quota) → authorize (then API key from the authorizer → its plan;
//! quota) → map request → integrate → map response → CORS decorate → access log. Each
//! stage lives in its own module and returns a typed [`GatewayError`]; only this module
//! turns errors into responses.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use crate::access_log::{AccessRecord, Outcome};
use crate::authorize::authorize;
use crate::error::GatewayError;
use crate::gateway::{Gateway, Route};
use crate::integrate::{Integration, Upstream, read_upstream_body, strip_hop_by_hop};
use crate::map::{Mapped, MappedRequest, PluginResponse, map_request, map_response};
use crate::plugin::Context;
use crate::reload::LiveGateway;
use crate::trace::{self, TraceContext};
use crate::websocket::{self, ConnectionTable};
use crate::{cors, route::RouteMatch};

/// The body of every response the gateway sends: buffered, or streamed from an upstream.
pub type Body = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static X_QUOTA_LIMIT: HeaderName = HeaderName::from_static("x-quota-limit");
static X_QUOTA_REMAINING: HeaderName = HeaderName::from_static("x-quota-remaining");
static X_QUOTA_RESET: HeaderName = HeaderName::from_static("x-quota-reset");

/// What every request needs besides the gateway: the upstream client, the WebSocket
/// connection table. One per worker thread.
pub struct Shared {
    /// The compiled gateway in force; a reload swaps it (see [`crate::reload`]).
    pub gateway: LiveGateway,
    /// The pooled upstream client.
    pub upstream: Upstream,
    /// Every open WebSocket connection (shared by all workers).
    pub connections: Arc<dyn ConnectionTable>,
    /// WebSocket connections this worker runs.
    websockets: AtomicUsize,
}

impl Shared {
    /// A worker's shared state.
    pub fn new(
        gateway: LiveGateway,
        connections: Arc<dyn ConnectionTable>,
        upstream: Upstream,
    ) -> Self {
        Self {
            gateway,
            upstream,
            connections,
            websockets: AtomicUsize::new(0),
        }
    }

    /// Counts a WebSocket connection this worker runs in (`1`) or out (`-1`).
    pub fn websockets_open(&self, delta: isize) {
        if delta >= 0 {
            self.websockets.fetch_add(delta as usize, Ordering::Relaxed);
        } else {
            self.websockets
                .fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
        }
    }

    /// WebSocket connections this worker runs.
    pub fn websockets(&self) -> usize {
        self.websockets.load(Ordering::Relaxed)
    }
}

/// Serves one request, which came over TLS when `secure`. Never fails: every error
/// becomes a response here.
pub async fn handle(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    remote: SocketAddr,
    secure: bool,
) -> Response<Body> {
    let started = Instant::now();
    let received = SystemTime::now();
    // One snapshot of routes and plugins for the whole request, however long it takes
    // and whatever is swapped in meanwhile.
    let gw = shared.gateway.load_full();
    let gw = &*gw;
    let (mut head, body) = req.into_parts();
    let request_id = request_id(&head.headers);
    let mut access = AccessRecord::default();

    // Accept: size limits; then a WebSocket API's handshake, or a CORS preflight
    // answered by the policy before routing and authorization.
    let websocket = gw.websocket_at(head.uri.path());
    let preflight = gw
        .cors
        .as_ref()
        .filter(|_| websocket.is_none() && cors::is_preflight(&head));
    let result = match (accept(&head, &gw.limits), preflight) {
        (Err(e), _) => Err(e),
        (Ok(()), _) if websocket.is_some() => {
            let api = websocket.expect("checked");
            websocket::handshake(shared, gw, api, &mut head, &request_id, remote, &mut access).await
        }
        (Ok(()), Some(policy)) => cors::preflight(policy, &head, gw.limits.max_response_body)
            .await
            .map(plugin_response),
        (Ok(()), None) => {
            serve(
                gw,
                &shared.upstream,
                &head,
                body,
                &request_id,
                Peer { remote, secure },
                &mut access,
            )
            .await
        }
    };
    let mut resp = match result {
        Ok(resp) => resp,
        Err(e) => {
            if e.is_server_fault() {
                tracing::error!(request_id = %request_id, error = %e, "request failed");
            } else {
                tracing::debug!(request_id = %request_id, error = %e, "request refused");
            }
            match &e {
                GatewayError::Throttled { level, .. } => {
                    metrics::counter!("weir_throttled_total", "level" => level.name()).increment(1);
                }
                GatewayError::QuotaExceeded { .. } => {
                    metrics::counter!("weir_throttled_total", "level" => "quota").increment(1);
                }
                _ => {}
            }
            error_response(&e)
        }
    };
    if let Some(policy) = &gw.cors
        && preflight.is_none()
    {
        cors::decorate(policy, &gw.cors_cache, &head, &mut resp).await;
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert(X_REQUEST_ID.clone(), v);
    }
    if let Some(q) = access.quota {
        let h = resp.headers_mut();
        h.insert(X_QUOTA_LIMIT.clone(), q.limit.into());
        h.insert(X_QUOTA_REMAINING.clone(), q.remaining.into());
        h.insert(X_QUOTA_RESET.clone(), q.resets_at.into());
    }
    record_metrics(&resp, &access, started);
    let outcome = Outcome {
        status: resp.status().as_u16(),
        length: hyper::body::Body::size_hint(resp.body()).exact(),
    };
    access.emit(
        gw.access_log,
        &head,
        outcome,
        &request_id,
        remote,
        started,
        received,
    );
    resp
}

fn record_metrics(resp: &Response<Body>, access: &AccessRecord, started: Instant) {
    let status = resp.status();
    let elapsed = started.elapsed().as_secs_f64();
    ROUTE_METRICS.with(|cache| {
        let mut cache = cache.borrow_mut();
        let handles = cache.get(access.route_key.as_ref(), status);
        handles.requests.increment(1);
        handles.duration.record(elapsed);
        if let Some(latency) = access.integration_latency {
            handles.integration.record(latency.as_secs_f64());
        }
    });
}

thread_local! {
    static ROUTE_METRICS: std::cell::RefCell<RouteMetrics> = std::cell::RefCell::default();
}

/// This thread's handles of the per-route metrics, by route and status: looking a
/// labelled metric up in the registry on every request cost about as much as the rest
/// of the bookkeeping. An entry holds its route key, so the key's address (the map's
/// key) cannot be reused by another route while the entry lives; the map is emptied
/// when it reaches [`RouteMetrics::MAX`] entries, which bounds it across reloads.
#[derive(Default)]
struct RouteMetrics {
    map: std::collections::HashMap<(usize, StatusCode), RouteHandles>,
}

struct RouteHandles {
    _key: Option<Arc<str>>,
    requests: metrics::Counter,
    duration: metrics::Histogram,
    integration: metrics::Histogram,
}

impl RouteMetrics {
    const MAX: usize = 4096;

    fn get(&mut self, key: Option<&Arc<str>>, status: StatusCode) -> &RouteHandles {
        let id = key.map_or(0, |k| Arc::as_ptr(k).cast::<u8>() as usize);
        if self.map.len() >= Self::MAX && !self.map.contains_key(&(id, status)) {
            self.map.clear();
        }
        self.map.entry((id, status)).or_insert_with(|| {
            let route = match key {
                Some(key) => metrics::SharedString::from(key.clone()),
                None => metrics::SharedString::const_str("$none"),
            };
            let status = metrics::SharedString::const_str(status_label(status));
            RouteHandles {
                _key: key.cloned(),
                requests: metrics::counter!("weir_requests_total", "route" => route.clone(), "status" => status.clone()),
                duration: metrics::histogram!("weir_request_duration_seconds", "route" => route.clone(), "status" => status),
                integration: metrics::histogram!("weir_integration_duration_seconds", "route" => route),
            }
        })
    }
}

/// The stages after accept, for a request that is not a preflight.
async fn serve(
    gw: &Gateway,
    upstream: &Upstream,
    head: &Parts,
    body: Incoming,
    request_id: &str,
    peer: Peer,
    access: &mut AccessRecord,
) -> Result<Response<Body>, GatewayError> {
    let max_body = gw.limits.max_body;

    // Route.
    let RouteMatch {
        route: index,
        params,
    } = gw
        .table
        .lookup(head.method.as_str(), head.uri.path())
        .ok_or(GatewayError::NotFound)?;
    let route = &gw.routes[index];
    access.route_key = Some(route.key.clone());
    let mut ctx = needs_context(route).then(|| Context {
        request_id: request_id.to_owned(),
        route_key: route.key.to_string(),
        stage: gw.stage.to_string(),
        path_parameters: params.clone(),
        source_ip: peer.remote.ip().to_string(),
        principal_id: None,
        authorizer_context: Vec::new(),
    });

    // Throttle, before any plugin runs: the API key from `x-api-key` (403), its quota
    // and plan bucket, then the route and account buckets (429).
    access.quota = gw.usage.before_authorize(index, &head.headers)?;

    // Authorize; then the API key the authorizer returned, its quota and plan bucket.
    if let (Some(auth), Some(ctx)) = (&route.authorizer, ctx.as_mut()) {
        let allowed = authorize(auth, &gw.auth_cache, index, head, ctx)
            .await
            .inspect_err(|e| access.authorizer_error = Some(e.to_string()))?;
        access.principal_id = Some(allowed.principal_id.clone());
        ctx.principal_id = Some(allowed.principal_id);
        ctx.authorizer_context = allowed.context;
        let usage_key = allowed.usage_identifier_key.as_deref();
        if let Some(left) = gw.usage.after_authorize(index, usage_key)? {
            access.quota = Some(left);
        }
    }

    // Read the body (bounded).
    let body = read_body(body, max_body, gw.limits.body_read_timeout).await?;
    let mut req = MappedRequest {
        method: head.method.clone(),
        path_override: None,
        query: head.uri.query().unwrap_or("").to_owned(),
        headers: head.headers.clone(),
        body,
    };

    // Map request.
    if let (Some(mapper), Some(ctx)) = (&route.request_mapping, ctx.as_ref()) {
        match map_request(mapper, req, head.uri.path(), ctx).await? {
            Mapped::Forward(mapped) => req = mapped,
            Mapped::Respond(resp) => return Ok(plugin_response(resp)),
        }
    }

    // Integrate.
    let integration_started = Instant::now();
    let down = Downstream {
        head,
        params: &params,
        request_id,
        peer,
    };
    let result = integrate(
        route,
        upstream,
        req,
        down,
        gw.limits.max_response_body,
        access,
    )
    .await;
    access.integration_latency = Some(integration_started.elapsed());
    let resp = result.inspect_err(|e| access.integration_error = Some(e.to_string()))?;
    access.integration_status = Some(resp.status().as_u16());

    // Map response.
    match (&route.response_mapping, ctx.as_ref()) {
        (Some(mapper), Some(ctx)) => {
            let (parts, body) = resp.into_parts();
            let mapped = map_response(mapper, parts.status, &parts.headers, body, ctx).await?;
            Ok(plugin_response(mapped))
        }
        _ => Ok(resp.map(full)),
    }
}

/// A static label for a status code, so recording a metric allocates nothing.
fn status_label(status: StatusCode) -> &'static str {
    // 100..=999, made once: a fixed 900 short strings for the life of the process.
    static LABELS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    let labels = LABELS.get_or_init(|| {
        (100..1000u16)
            .map(|code| &*Box::leak(code.to_string().into_boxed_str()))
            .collect()
    });
    labels[usize::from(status.as_u16()) - 100]
}

fn needs_context(route: &Route) -> bool {
    route.authorizer.is_some()
        || route.request_mapping.is_some()
        || route.response_mapping.is_some()
}

/// The client's end of the connection.
#[derive(Clone, Copy)]
struct Peer {
    remote: SocketAddr,
    /// Whether the connection is TLS.
    secure: bool,
}

/// The client side of an exchange, as the integration needs it.
struct Downstream<'a> {
    head: &'a Parts,
    params: &'a [(String, String)],
    request_id: &'a str,
    peer: Peer,
}

async fn integrate(
    route: &Route,
    upstream: &Upstream,
    req: MappedRequest,
    down: Downstream<'_>,
    max_response_body: u64,
    access: &mut AccessRecord,
) -> Result<Response<Bytes>, GatewayError> {
    let Downstream {
        head,
        params,
        request_id,
        peer,
    } = down;
    match &route.integration {
        Integration::Mock(mock) => {
            let mut resp = Response::new(mock.body.clone());
            *resp.status_mut() = mock.status;
            for (n, v) in &mock.headers {
                resp.headers_mut().append(n.clone(), v.clone());
            }
            Ok(resp)
        }
        Integration::Http(target) => {
            let uri = target.uri(
                head.uri.path(),
                req.path_override.as_deref(),
                params,
                &req.query,
            )?;
            let mut headers = req.headers;
            strip_hop_by_hop(&mut headers);
            forwarded_headers(&mut headers, head, request_id, peer);
            let trace =
                TraceContext::from_header(crate::trace::single_header(&head.headers, &TRACEPARENT));
            if let Ok(v) = HeaderValue::from_str(&trace.child_header()) {
                headers.insert(TRACEPARENT.clone(), v);
            }
            access.trace_id = Some(trace.trace_id);
            headers.insert(header::HOST, target.authority().clone());
            let mut up = Request::new(Full::new(req.body));
            *up.method_mut() = req.method;
            *up.uri_mut() = uri;
            *up.headers_mut() = headers;
            // The whole exchange, body included, must end within the route's timeout:
            // the response is buffered (up to max_response_body), as Amazon API Gateway
            // does, so a
            // body that stalls or breaks is a clean 504 or 502, never a truncated 200.
            let deadline = tokio::time::Instant::now() + route.timeout;
            let resp = upstream.send(up, route.timeout).await?;
            let (mut parts, body) = resp.into_parts();
            crate::integrate::response_headers(&mut parts.headers, &head.method);
            let body = read_upstream_body(body, max_response_body, deadline, route.timeout).await?;
            Ok(Response::from_parts(parts, body))
        }
    }
}

fn forwarded_headers(headers: &mut HeaderMap, head: &Parts, request_id: &str, peer: Peer) {
    let mut xff = String::with_capacity(64);
    if let Some(prev) = headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        xff.push_str(prev);
        xff.push_str(", ");
    }
    crate::access_log::push_ip(&mut xff, peer.remote.ip());
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    let proto = if peer.secure { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    if let Some(host) = head.headers.get(header::HOST).cloned().or_else(|| {
        head.uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    }) {
        headers.insert(X_FORWARDED_HOST.clone(), host);
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert(X_REQUEST_ID.clone(), v);
    }
}

/// The accept stage: the request line plus headers (431) and a declared body (413)
/// within limits. A body without `Content-Length` is checked while it is read.
fn accept(head: &Parts, limits: &crate::gateway::Limits) -> Result<(), GatewayError> {
    check_header_size(head, limits.max_header_bytes)?;
    if !head.uri.path().is_ascii() {
        return Err(GatewayError::BadRequest(
            "the path has bytes that are not ASCII (percent-encode them)".into(),
        ));
    }
    if crate::route::has_dot_segment(head.uri.path()) {
        return Err(GatewayError::BadRequest(
            "the path has a `.` or `..` segment".into(),
        ));
    }
    if content_length(&head.headers).is_some_and(|len| len > limits.max_body) {
        return Err(GatewayError::PayloadTooLarge {
            limit: limits.max_body,
        });
    }
    Ok(())
}

fn check_header_size(head: &Parts, limit: usize) -> Result<(), GatewayError> {
    // Request line: METHOD SP URI SP HTTP/1.1 CRLF; each header: name ": " value CRLF.
    let uri = &head.uri;
    let target = uri.path_and_query().map_or(1, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| {
            a.as_str().len() + 3 + uri.scheme_str().map_or(0, str::len)
        });
    let mut size = head.method.as_str().len() + target + 12;
    for (n, v) in &head.headers {
        size += n.as_str().len() + v.len() + 4;
    }
    if size > limit {
        return Err(GatewayError::HeadersTooLarge { limit });
    }
    Ok(())
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

async fn read_body(body: Incoming, limit: u64, timeout: Duration) -> Result<Bytes, GatewayError> {
    let read = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX)).collect();
    match tokio::time::timeout(timeout, read).await {
        Err(_) => Err(GatewayError::BodyTimeout(timeout)),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(GatewayError::PayloadTooLarge { limit })
        }
        Ok(Err(e)) => Err(GatewayError::BadRequest(e.to_string())),
    }
}

/// An empty body.
pub fn empty_body() -> Body {
    full(Bytes::new())
}

fn full(body: Bytes) -> Body {
    Full::new(body).map_err(|never| match never {}).boxed()
}

fn plugin_response(p: PluginResponse) -> Response<Body> {
    let mut resp = Response::new(full(p.body));
    *resp.status_mut() = p.status;
    *resp.headers_mut() = p.headers;
    resp
}

/// The response for a failed request: status and `{"message": ...}`.
pub fn error_response(e: &GatewayError) -> Response<Body> {
    let (status, _) = e.status_and_message();
    let mut resp = json_response(status, e.body());
    if let Some(secs) = e.retry_after_secs() {
        resp.headers_mut().insert(header::RETRY_AFTER, secs.into());
    }
    resp
}

/// A JSON response.
pub fn json_response(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(full(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The client's `x-request-id` when it is sane, else a new one.
fn request_id(headers: &HeaderMap) -> String {
    if let Some(v) = headers.get(&X_REQUEST_ID).and_then(|v| v.to_str().ok())
        && (1..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        return v.to_owned();
    }
    trace::new_request_id()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_sane_request_ids_only() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", "abc-123".parse().unwrap());
        assert_eq!(request_id(&h), "abc-123");
        h.insert("x-request-id", "bad id".parse().unwrap());
        let id = request_id(&h);
        assert_eq!(id.len(), 32);
        assert_ne!(id, trace::new_request_id());
    }
}
