//! The integrate stage, one for HTTP requests and WebSocket events alike: build the
//! upstream request (URL template, forwarded headers, trace context, request id), call
//! the integration — an HTTP upstream through the pooled client, a pool of targets
//! with health checks and retries ([`pool`], [`health`]), a function through the
//! Lambda Runtime API ([`lambda`]), or a fixed mock answer — and record its latency,
//! status or error in the request's context. Answers are read whole, or passed on as
//! they arrive on streaming routes ([`stream`]).

pub mod bounded;
pub mod function;
pub mod health;
pub mod lambda;
pub mod pool;
pub mod resolve;
pub mod stream;
pub mod target;
pub mod upload;
pub mod upstream;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;

use crate::config;
use crate::context::RequestContext;
use crate::error::GatewayError;
use crate::lambda::FunctionSet;
use crate::pool::PoolSet;

pub use function::FunctionTarget;
pub use lambda::LambdaTarget;
pub use pool::PoolRoute;
pub use stream::stream;
pub use target::HttpTarget;
pub use upstream::{Upstream, UpstreamTls, UpstreamTlsFiles};

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// A route's integration.
pub enum Integration {
    /// Proxy to an upstream.
    Http(HttpTarget),
    /// Proxy to a pool of upstream targets (`[upstreams.NAME]`).
    Pool(PoolRoute),
    /// A fixed response.
    Mock(Arc<MockResponse>),
    /// Invoke a function.
    Lambda(LambdaTarget),
    /// A `wasi:http` component answers in process.
    Function(FunctionTarget),
}

/// A fixed response.
pub struct MockResponse {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Body.
    pub body: Bytes,
}

/// What an HTTP route's integration is compiled with, besides its table.
pub struct RouteContext<'a> {
    /// The parameters of the route key.
    pub params: &'a [String],
    /// The functions of `[functions]`.
    pub functions: &'a FunctionSet,
    /// The pools of `[upstreams]` (those that compiled).
    pub pools: &'a PoolSet,
    /// The `[upstreams]` tables as written.
    pub upstream_tables: &'a std::collections::BTreeMap<String, config::UpstreamPool>,
    /// Whether the route has a request mapper (a function's event is then its body).
    pub request_mapped: bool,
    /// Whether the route has a response mapper (it then sees a function's answer).
    pub response_mapped: bool,
    /// The plugins, for `function` components.
    pub catalog: &'a crate::catalog::Catalog<'a>,
    /// Where errors about this route's integration are reported.
    pub at: &'a str,
}

impl Integration {
    /// Compiles an HTTP route's `integration = {...}` table.
    pub fn compile_route(
        spec: &config::Integration,
        route: &RouteContext<'_>,
    ) -> Result<Self, String> {
        match spec {
            config::Integration::Lambda {
                function,
                payload_format,
            } => {
                let function = route.functions.get(function).ok_or_else(|| {
                    format!("function `{function}` is not defined in [functions]")
                })?;
                Ok(Integration::Lambda(LambdaTarget {
                    function: function.clone(),
                    format: *payload_format,
                    raw_event: route.request_mapped,
                    raw_answer: route.response_mapped,
                }))
            }
            config::Integration::Function { plugin } => {
                let mut errors = Vec::new();
                let at = format!("{}.integration.plugin", route.at);
                match route.catalog.function(plugin, &at, &mut errors) {
                    Some(plugin) => Ok(Integration::Function(FunctionTarget { plugin })),
                    None if errors.is_empty() => Err(format!("plugin `{plugin}` did not load")),
                    None => Err(errors.join("; ")),
                }
            }
            config::Integration::Http {
                upstream: Some(name),
                url,
                path,
                retry_any_method,
            } => {
                if url.is_some() {
                    return Err("set `url` or `upstream`, not both".to_owned());
                }
                let pool = route.pools.get(name).ok_or_else(|| {
                    if route.upstream_tables.contains_key(name) {
                        format!("upstream `{name}` is refused (see upstreams.{name})")
                    } else {
                        format!("upstream `{name}` is not defined in [upstreams]")
                    }
                })?;
                PoolRoute::compile(
                    pool.clone(),
                    path.as_deref(),
                    *retry_any_method,
                    route.params,
                )
                .map(Integration::Pool)
            }
            other => Self::compile(other, route.params),
        }
    }

    /// Compiles an `integration = {...}` table for a route whose key has `params`
    /// (functions serve HTTP routes only: see [`Integration::compile_route`]).
    pub fn compile(spec: &config::Integration, params: &[String]) -> Result<Self, String> {
        match spec {
            config::Integration::Lambda { .. } => {
                Err("lambda integrations serve HTTP API routes only".to_owned())
            }
            config::Integration::Function { .. } => {
                Err("function integrations serve HTTP API routes only".to_owned())
            }
            config::Integration::Http {
                url,
                upstream,
                path,
                retry_any_method,
            } => {
                if upstream.is_some() {
                    return Err("upstream pools serve HTTP API routes only".to_owned());
                }
                if path.is_some() || *retry_any_method {
                    return Err("`path` and `retry_any_method` go with `upstream`".to_owned());
                }
                let url = url
                    .as_ref()
                    .ok_or("an http integration needs `url` or `upstream`")?;
                HttpTarget::parse(url, params).map(Integration::Http)
            }
            config::Integration::Mock {
                status,
                headers,
                body,
            } => {
                let status = StatusCode::from_u16(*status)
                    .ok()
                    .filter(|s| (200..=599).contains(&s.as_u16()))
                    .ok_or_else(|| format!("status {status} is not between 200 and 599"))?;
                let mut compiled = Vec::new();
                for (name, value) in headers {
                    let n = HeaderName::try_from(name.as_str())
                        .map_err(|_| format!("invalid header name `{name}`"))?;
                    if n == header::CONTENT_LENGTH || n == header::TRANSFER_ENCODING {
                        return Err(format!(
                            "header `{name}` is set by the gateway from the body"
                        ));
                    }
                    let v = HeaderValue::try_from(value.as_str())
                        .map_err(|_| format!("invalid value for header `{name}`"))?;
                    compiled.push((n, v));
                }
                Ok(Integration::Mock(Arc::new(MockResponse {
                    status,
                    headers: compiled,
                    body: Bytes::from(body.clone()),
                })))
            }
        }
    }
}

/// The request as the integration receives it (after any mapping).
pub struct UpstreamRequest {
    /// Method.
    pub method: Method,
    /// A new path, when a mapper changed it.
    pub path_override: Option<String>,
    /// The query string (no `?`).
    pub query: String,
    /// Headers.
    pub headers: HeaderMap,
    /// Body (empty when `upload` is set).
    pub body: Bytes,
    /// The client's body, streamed to the upstream as it arrives (see [`upload`]).
    pub upload: Option<upload::Upload>,
}

/// What is asked of an integration for one request or event, besides the request.
pub struct Exchange<'a> {
    /// The route's integration.
    pub integration: &'a Integration,
    /// The route's timeout, which covers the whole answer, body included.
    pub timeout: Duration,
    /// Largest answer body; a larger one is `502`.
    pub max_response_body: u64,
    /// The path the client used: forwarded when the URL has none.
    pub client_path: &'a str,
    /// The client's `Host`, for `x-forwarded-host`.
    pub client_host: Option<&'a HeaderValue>,
    /// The client's HTTP version (a function's event names it).
    pub version: http::Version,
}

/// Calls the integration and records in `ctx` how long it took and how it ended. The
/// answer is read whole (up to `max_response_body`) within the route's timeout, as
/// Amazon API Gateway does, so a body that stalls or breaks is a clean `504` or `502`,
/// never a truncated `200`.
pub async fn integrate(
    upstream: &Upstream,
    exchange: Exchange<'_>,
    req: UpstreamRequest,
    ctx: &mut RequestContext,
) -> Result<Response<Bytes>, GatewayError> {
    let started = Instant::now();
    let result = match exchange.integration {
        Integration::Mock(mock) => {
            let mut resp = Response::new(mock.body.clone());
            *resp.status_mut() = mock.status;
            for (n, v) in &mock.headers {
                resp.headers_mut().append(n.clone(), v.clone());
            }
            Ok(resp)
        }
        Integration::Http(target) => http(upstream, target, &exchange, req, ctx).await,
        Integration::Pool(route) => pool::buffered(route, &exchange, req, ctx).await,
        Integration::Lambda(target) => lambda::invoke(target, &exchange, req, ctx).await,
        Integration::Function(target) => {
            function::call(target, upstream, &exchange, req, ctx).await
        }
    };
    record(ctx, started, result.as_ref().map(|r| r.status()));
    result
}

/// Records in `ctx` how long the integration took and how it ended.
fn record(ctx: &mut RequestContext, started: Instant, result: Result<StatusCode, &GatewayError>) {
    ctx.integration.latency = Some(started.elapsed());
    match result {
        Ok(status) => ctx.integration.status = Some(status.as_u16()),
        Err(e) => ctx.integration.error = Some(e.to_string()),
    }
}

async fn http(
    upstream: &Upstream,
    target: &HttpTarget,
    exchange: &Exchange<'_>,
    req: UpstreamRequest,
    ctx: &RequestContext,
) -> Result<Response<Bytes>, GatewayError> {
    let method = req.method.clone();
    let up = http_request(target, exchange, req, ctx, target.is_plain())?;
    let deadline = tokio::time::Instant::now() + exchange.timeout;
    let (resp, lease) = upstream
        .send_buffered(up, target, deadline, exchange.timeout)
        .await?;
    let (mut parts, body) = resp.into_parts();
    upstream::response_headers(&mut parts.headers, &method);
    let body =
        upstream::read_upstream_body(body, exchange.max_response_body, deadline, exchange.timeout)
            .await?;
    // Read to its end: the connection may carry the next request.
    if let Some(lease) = lease {
        lease.release();
    }
    Ok(Response::from_parts(parts, body))
}

/// The request to a single-URL upstream; its URI in origin form for the worker's own
/// connections ([`Upstream::send_buffered`] to a plain-HTTP upstream), else absolute.
fn http_request(
    target: &HttpTarget,
    exchange: &Exchange<'_>,
    req: UpstreamRequest,
    ctx: &RequestContext,
    origin_form: bool,
) -> Result<Request<Full<Bytes>>, GatewayError> {
    let base = if origin_form {
        ""
    } else {
        target.scheme_authority()
    };
    let uri = target.uri_at(
        base,
        exchange.client_path,
        req.path_override.as_deref(),
        &ctx.path_parameters,
        &req.query,
    )?;
    let mut headers = req.headers;
    strip_hop_by_hop(&mut headers);
    forwarded_headers(&mut headers, ctx, exchange.client_host);
    if let Ok(v) = HeaderValue::from_str(&ctx.trace.child_header()) {
        headers.insert(TRACEPARENT.clone(), v);
    }
    headers.insert(header::HOST, target.authority().clone());
    let mut up = Request::new(Full::new(req.body));
    *up.method_mut() = req.method;
    *up.uri_mut() = uri;
    *up.headers_mut() = headers;
    Ok(up)
}

/// `x-forwarded-for` (the request's chain, if any, then the client's address),
/// `x-forwarded-proto`, `x-forwarded-host` and `x-request-id`.
fn forwarded_headers(headers: &mut HeaderMap, ctx: &RequestContext, host: Option<&HeaderValue>) {
    let mut xff = String::with_capacity(64);
    if let Some(prev) = headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        xff.push_str(prev);
        xff.push_str(", ");
    }
    crate::access_log::push_ip(&mut xff, ctx.peer.ip);
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert(X_FORWARDED_FOR.clone(), v);
    }
    let proto = if ctx.peer.secure { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    if let Some(host) = host {
        headers.insert(X_FORWARDED_HOST.clone(), host.clone());
    }
    if let Some(v) = &ctx.request_id_value {
        headers.insert(X_REQUEST_ID.clone(), v.clone());
    }
}

/// Headers that describe one connection and are never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, including any named by `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Usually there are none, or only `Connection` (an upstream's `keep-alive`): one
    // pass over the names, then a removal of only those present, without parsing a
    // name that is not there.
    let proxy_connection = HeaderName::from_static("proxy-connection");
    let hop = |n: &HeaderName| HOP_BY_HOP.contains(n) || *n == proxy_connection;
    if !headers.keys().any(hop) {
        return;
    }
    let mut gone: Vec<HeaderName> = headers.keys().filter(|n| hop(n)).cloned().collect();
    for token in headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
    {
        // `contains_key` on a `&str` parses the name on the stack.
        if headers.contains_key(token)
            && let Ok(name) = HeaderName::try_from(token)
            && !gone.contains(&name)
        {
            gone.push(name);
        }
    }
    for name in gone {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, x-custom".parse().unwrap());
        h.insert("x-custom", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn strips_only_what_connection_names_and_is_there() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            "Keep-Alive, X-Gone , x-absent, bad name".parse().unwrap(),
        );
        h.insert("x-gone", "1".parse().unwrap());
        h.insert("proxy-connection", "keep-alive".parse().unwrap());
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-type", "x-kept"]);

        // An upstream's usual `Connection: keep-alive` takes only itself.
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive".parse().unwrap());
        h.insert(header::CONTENT_LENGTH, "2".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::CONTENT_LENGTH));
    }
}
