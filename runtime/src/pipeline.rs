//! The request path of an HTTP API, top to bottom, in one function: [`handle`].
//!
//! accept → CORS preflight → route → throttle (API key from `x-api-key` → its plan →
//! route → account; quota) → authorize (then API key from the authorizer → its plan;
//! quota) → map request → integrate → map response → CORS decorate → access log. Each
//! stage lives in its own module, reads and writes the request's [`RequestContext`] and
//! returns a typed [`GatewayError`], which [`crate::respond`] turns into the response.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Request, Response};
use http_body_util::{BodyExt, Limited};

use crate::access_log::{self, Outcome, RequestLine};
use crate::authorize::authorize;
use crate::client_cert::ClientCert;
use crate::context::{Peer, RequestContext};
use crate::error::GatewayError;
use crate::gateway::{Gateway, Route};
use crate::integrate::upload::Upload;
use crate::integrate::{Exchange, Integration, Upstream, UpstreamRequest, integrate, stream};
use crate::ip_policy::IpPolicy;
use crate::map::{Mapped, map_request, map_response};
use crate::respond::{self, Body};
use crate::route::RouteMatch;
use crate::trace::{self, TraceContext};
use crate::worker::Shared;
use crate::{cors, websocket};

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static X_QUOTA_LIMIT: HeaderName = HeaderName::from_static("x-quota-limit");
static X_QUOTA_REMAINING: HeaderName = HeaderName::from_static("x-quota-remaining");
static X_QUOTA_RESET: HeaderName = HeaderName::from_static("x-quota-reset");

/// Serves one request, which came over TLS when `secure` (with the client certificate
/// the handshake verified, if any). Never fails: every error becomes a response here. Generic over the body so that the stages can be driven in
/// process, without a socket.
pub async fn handle<B>(
    shared: &Arc<Shared>,
    req: Request<B>,
    remote: SocketAddr,
    secure: bool,
    client_cert: Option<Arc<ClientCert>>,
) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // One snapshot of routes and plugins for the whole request, however long it takes
    // and whatever is swapped in meanwhile.
    let gw = shared.gateway.load_full();
    let gw = &*gw;
    let (mut head, body) = req.into_parts();
    let trace = TraceContext::from_header(trace::single_header(&head.headers, &TRACEPARENT));
    let peer = Peer {
        ip: remote.ip(),
        client: gw.trusted_proxies.client_ip(remote.ip(), &head.headers),
        secure,
    };
    let mut ctx = RequestContext::new(request_id(&head.headers), gw.stage.clone(), peer, trace);
    ctx.client_cert = client_cert;

    // Accept: size limits; then a WebSocket API's handshake, or a CORS preflight
    // answered by the policy before routing and authorization.
    let websocket = gw.websocket_at(head.uri.path());
    let preflight = gw
        .cors
        .as_ref()
        .filter(|_| websocket.is_none() && cors::is_preflight(&head));
    let accepted = accept(&head, &gw.limits).and_then(|()| admit(gw.ip_policy.as_ref(), &ctx));
    let result = match (accepted, websocket, preflight) {
        (Err(e), _, _) => {
            if let GatewayError::PayloadTooLarge { limit } = e {
                drain_refused_body(&head.headers, body, limit).await;
            }
            Err(e)
        }
        (Ok(()), Some(api), _) => websocket::handshake(shared, gw, api, &mut head, &mut ctx).await,
        (Ok(()), None, Some(policy)) => cors::preflight(policy, &head, gw.limits.max_response_body)
            .await
            .map(|p| respond::from_parts(p.status, p.headers, p.body)),
        (Ok(()), None, None) => serve(gw, &shared.upstream, &head, body, &mut ctx).await,
    };
    let mut resp = match result {
        Ok(resp) => resp,
        Err(e) => {
            if e.is_server_fault() {
                tracing::error!(request_id = %ctx.request_id, error = %e, "request failed");
            } else {
                tracing::debug!(request_id = %ctx.request_id, error = %e, "request refused");
            }
            match &e {
                GatewayError::Throttled { level, .. } => {
                    metrics::counter!("weir_throttled_total", "level" => level.name()).increment(1);
                }
                GatewayError::QuotaExceeded { .. } => {
                    metrics::counter!("weir_throttled_total", "level" => "quota").increment(1);
                }
                GatewayError::FunctionThrottled(_) => {
                    metrics::counter!("weir_throttled_total", "level" => "function").increment(1);
                }
                _ => {}
            }
            if is_grpc(&head.headers) {
                respond::grpc_error(&e)
            } else {
                respond::error(&e)
            }
        }
    };
    if let Some(policy) = &gw.cors
        && preflight.is_none()
    {
        cors::decorate(policy, &gw.cors_cache, &head, &mut resp).await;
    }
    if let Some(v) = &ctx.request_id_value {
        resp.headers_mut().insert(X_REQUEST_ID.clone(), v.clone());
    }
    if let Some(q) = ctx.quota {
        let h = resp.headers_mut();
        h.insert(X_QUOTA_LIMIT.clone(), q.limit.into());
        h.insert(X_QUOTA_REMAINING.clone(), q.remaining.into());
        h.insert(X_QUOTA_RESET.clone(), q.resets_at.into());
    }
    ctx.record_metrics(resp.status());
    let line = RequestLine {
        method: head.method.as_str(),
        path: head.uri.path(),
        version: head.version,
        user_agent: head
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
    };
    let outcome = Outcome {
        status: resp.status().as_u16(),
        length: hyper::body::Body::size_hint(resp.body()).exact(),
    };
    access_log::write(gw.access_log, &ctx, Some(line), outcome);
    resp
}

/// Whether the client's address may come in under `policy` (403 if not).
fn admit(policy: Option<&IpPolicy>, ctx: &RequestContext) -> Result<(), GatewayError> {
    match policy {
        Some(p) if !p.permits(ctx.peer.client) => Err(GatewayError::IpDenied(ctx.peer.client)),
        _ => Ok(()),
    }
}

/// The stages after accept, for a request that is not a preflight.
async fn serve<B>(
    gw: &Gateway,
    upstream: &Upstream,
    head: &Parts,
    body: B,
    ctx: &mut RequestContext,
) -> Result<Response<Body>, GatewayError>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // Route.
    let RouteMatch {
        route: index,
        params,
    } = gw
        .table
        .lookup(head.method.as_str(), head.uri.path())
        .ok_or(GatewayError::NotFound)?;
    let route = &gw.routes[index];
    ctx.route_key = Some(route.key.clone());
    ctx.path_parameters = params;
    admit(route.ip_policy.as_ref(), ctx)?;

    // Throttle, before any plugin runs: the API key from `x-api-key` (403), its quota
    // and plan bucket, then the route and account buckets (429).
    ctx.quota = gw.usage.before_authorize(index, &head.headers).await?;

    // Authorize; then the API key the authorizer returned, its quota and plan bucket.
    if let Some(auth) = &route.authorizer {
        let allowed = authorize(auth, &gw.auth_cache, index, head, ctx, upstream)
            .await
            .inspect_err(|e| ctx.authorizer_error = Some(e.to_string()))?;
        ctx.principal_id = Some(allowed.principal_id.into());
        ctx.authorizer_context = allowed.context;
        let usage_key = allowed.usage_identifier_key.as_deref();
        if let Some(left) = gw.usage.after_authorize(index, usage_key).await? {
            ctx.quota = Some(left);
        }
    }

    // Read the body (bounded), or stream it to the upstream on a streaming route that
    // no plugin needs it on (`integrate::upload`).
    let streams = route.stream || (route.response_mapping.is_none() && is_grpc(&head.headers));
    let upload = streams
        && route.request_mapping.is_none()
        && matches!(
            route.integration,
            Integration::Http(_) | Integration::Pool(_)
        )
        && !body.is_end_stream();
    let (body, upload) = if upload {
        let limits = &gw.limits;
        let upload = Upload::new(body, limits.max_body, limits.body_read_timeout);
        (Bytes::new(), Some(upload))
    } else {
        let limits = &gw.limits;
        let body = read_body(body, limits.max_body, limits.body_read_timeout).await?;
        (body, None)
    };
    let mut req = UpstreamRequest {
        method: head.method.clone(),
        path_override: None,
        query: head.uri.query().unwrap_or("").to_owned(),
        headers: head.headers.clone(),
        body,
        upload,
    };

    // Map request; what mappers see of the context is made once for both directions.
    let plugin_ctx = has_mapper(route).then(|| ctx.plugin_context());
    if let (Some(mapper), Some(pctx)) = (&route.request_mapping, &plugin_ctx) {
        match map_request(mapper, req, head.uri.path(), pctx).await? {
            Mapped::Forward(mapped) => req = mapped,
            Mapped::Respond(p) => return Ok(respond::from_parts(p.status, p.headers, p.body)),
        }
    }

    // Integrate.
    let host = client_host(head);
    let exchange = Exchange {
        integration: &route.integration,
        timeout: route.timeout,
        max_response_body: gw.limits.max_response_body,
        client_path: head.uri.path(),
        client_host: host.as_ref(),
        version: head.version,
    };
    // Streamed on as it arrives (`stream = true`, and gRPC without a response mapper),
    // or read whole.
    if streams {
        return stream(upstream, exchange, req, ctx).await;
    }
    let resp = integrate(upstream, exchange, req, ctx).await?;

    // Map response.
    match (&route.response_mapping, &plugin_ctx) {
        (Some(mapper), Some(pctx)) => {
            let (parts, body) = resp.into_parts();
            let p = map_response(mapper, parts.status, &parts.headers, body, pctx).await?;
            Ok(respond::from_parts(p.status, p.headers, p.body))
        }
        _ => Ok(resp.map(respond::full)),
    }
}

/// Whether the request is gRPC (`content-type: application/grpc`, `+proto`, …).
fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

fn has_mapper(route: &Route) -> bool {
    route.request_mapping.is_some() || route.response_mapping.is_some()
}

/// The host the client asked for: `Host`, or the authority of an absolute URI.
fn client_host(head: &Parts) -> Option<HeaderValue> {
    head.headers.get(header::HOST).cloned().or_else(|| {
        head.uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    })
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

async fn read_body<B>(body: B, limit: u64, timeout: Duration) -> Result<Bytes, GatewayError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let read = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX)).collect();
    match tokio::time::timeout(timeout, read).await {
        Err(_) => Err(GatewayError::BodyTimeout(timeout)),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(GatewayError::PayloadTooLarge { limit })
        }
        Ok(Err(e)) => Err(GatewayError::BadRequest(format!(
            "reading the request body: {e}"
        ))),
    }
}

/// Longest wait for a refused body before its `413` goes out.
const DRAIN_TIME: Duration = Duration::from_secs(5);
/// Largest refused body read, as a multiple of `max_body`.
const DRAIN_FACTOR: u64 = 4;

/// Reads and discards the body of a request refused early with `413` (its declared
/// `Content-Length` is over `max_body`) before the answer goes out, as long as it is at
/// most `DRAIN_FACTOR × max_body` bytes and arrives within [`DRAIN_TIME`]: a client that
/// writes its whole body before it reads (Python's `http.client`, `requests`) then gets
/// the `413` instead of a broken pipe, and the connection stays open. A larger body, or
/// one whose client waits for `100 Continue` (it is never asked for), is not read.
async fn drain_refused_body<B>(headers: &HeaderMap, body: B, max_body: u64)
where
    B: hyper::body::Body<Data = Bytes>,
{
    let cap = max_body.saturating_mul(DRAIN_FACTOR).max(1 << 20);
    if headers.contains_key(header::EXPECT) || content_length(headers).is_none_or(|n| n > cap) {
        return;
    }
    let mut body = std::pin::pin!(body);
    let drain = async { while let Some(Ok(_)) = body.frame().await {} };
    let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
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
