//! HTTP integrations over a pool of targets (`integration = { type = "http", upstream =
//! NAME }`): each attempt goes to the target the [`Pool`] picks, its outcome feeds
//! passive ejection, and a failed attempt is sent again — to another target when there
//! is one — only where that is safe:
//!
//! - the connection could not be opened (`connect`) or closed before any byte of the
//!   answer (`reset`): every method, since the upstream never answered;
//! - a `502` or `503` answer: idempotent methods only, unless the route says
//!   `retry_any_method`;
//! - never after a timeout (the route's timeout covers every attempt), never once any
//!   of the answer's body was passed on, never once an attempt started reading a
//!   client's streamed body (`integrate::upload`);
//! - at most `retries.attempts` times, and only while the pool's retry budget (a share
//!   of first attempts, 10 retries banked at most) has one, so retries cannot multiply
//!   an outage.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;

use super::upload::Upload;
use super::upstream::{bad_gateway, check_framing, closed_before_answer, error_chain};
use super::{Exchange, HttpTarget, TRACEPARENT, UpstreamRequest};
use crate::config::Protocol;
use crate::context::RequestContext;
use crate::error::GatewayError;
use crate::pool::h1::{self, Lease};
use crate::pool::link::whole;
use crate::pool::{InFlight, Members, Pool};

/// A route's integration with a pool.
pub struct PoolRoute {
    /// The pool.
    pub pool: Arc<Pool>,
    /// The path template, on a placeholder base (`None` path: the client's path).
    path: HttpTarget,
    /// Retry `502`/`503` answers for every method.
    retry_any_method: bool,
}

impl PoolRoute {
    /// `upstream = NAME, path = TEMPLATE` for a route whose key has `params`.
    pub fn compile(
        pool: Arc<Pool>,
        path: Option<&str>,
        retry_any_method: bool,
        params: &[String],
    ) -> Result<Self, String> {
        let path = path.unwrap_or("");
        if !path.is_empty() && !path.starts_with('/') {
            return Err(format!("path `{path}` must start with `/`"));
        }
        let path = HttpTarget::parse(&format!("http://pool{path}"), params)
            .map_err(|e| e.replace("`http://pool", "`"))?;
        Ok(Self {
            pool,
            path,
            retry_any_method,
        })
    }
}

/// An answer's head from a target, and the request counted in flight to it until the
/// body is read.
pub struct Answer {
    /// The answer (framing checked).
    pub response: Response<Incoming>,
    /// Counts the request for `least_request` while its body is read.
    pub in_flight: InFlight,
    /// The connection it came on, to give back once the body has been read to its end
    /// (an answer read whole from a plain-HTTP target over HTTP/1.1).
    pub lease: Option<Lease>,
}

/// Why an attempt got no answer: from the target's pooled client, or from its own
/// HTTP/1.1 connections.
enum AttemptError {
    Pooled(hyper_util::client::legacy::Error),
    Own(h1::Failure),
}

impl AttemptError {
    /// No connection could be opened.
    fn is_connect(&self) -> bool {
        match self {
            AttemptError::Pooled(e) => e.is_connect(),
            AttemptError::Own(f) => matches!(f, h1::Failure::Connect(_)),
        }
    }

    /// The connection closed before any byte of the answer.
    fn closed_before_answer(&self) -> bool {
        match self {
            AttemptError::Pooled(e) => closed_before_answer(e),
            AttemptError::Own(f) => f.lost(),
        }
    }

    fn into_gateway_error(self) -> GatewayError {
        match self {
            AttemptError::Pooled(e) => GatewayError::BadGateway(error_chain(&e)),
            AttemptError::Own(f) => bad_gateway(f),
        }
    }
}

/// Sends the request to the pool, retrying where safe (see the module docs), by
/// `deadline`: each attempt over the picked target's own connections, among the
/// targets the pool had when the request started. The answer is passed on as it
/// arrives.
pub async fn send(
    route: &PoolRoute,
    exchange: &Exchange<'_>,
    req: UpstreamRequest,
    ctx: &RequestContext,
    deadline: tokio::time::Instant,
) -> Result<Answer, GatewayError> {
    attempts(route, exchange, req, ctx, deadline, false).await
}

/// The attempts of [`send`]. With `read_whole` (the caller reads the answer whole), an
/// attempt to a plain-HTTP target over HTTP/1.1 with the body in memory goes on the
/// target's own connections ([`h1`]); [`Answer::lease`] then gives the connection back.
async fn attempts(
    route: &PoolRoute,
    exchange: &Exchange<'_>,
    req: UpstreamRequest,
    ctx: &RequestContext,
    deadline: tokio::time::Instant,
    read_whole: bool,
) -> Result<Answer, GatewayError> {
    let pool = &route.pool;
    let http2 = pool.protocol() != Protocol::Http1;
    let mut headers = req.headers;
    // gRPC servers ask for `te: trailers`, the one value HTTP/2 allows.
    let te_trailers = http2 && headers.get(header::TE).is_some_and(|v| v == "trailers");
    super::strip_hop_by_hop(&mut headers);
    super::forwarded_headers(&mut headers, ctx, exchange.client_host);
    if let Ok(v) = HeaderValue::from_str(&ctx.trace.child_header()) {
        headers.insert(TRACEPARENT.clone(), v);
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    let may_retry_answer = req.method.is_idempotent() || route.retry_any_method;
    let retries = &pool.spec.retries;
    pool.deposit();
    let members = pool.members();
    let mut tried: Vec<usize> = Vec::with_capacity(1);
    let mut next = pool
        .pick(&members, &headers, &tried)
        .ok_or_else(|| GatewayError::NoHealthyTarget(pool.name.clone()))?;
    loop {
        let i = next;
        let target = &members.targets[i];
        if !tried.is_empty() {
            target.retries.increment(1);
        }
        tried.push(i);
        // The target's own connections: HTTP/1.1 to `http://`, the body in memory,
        // the answer read whole (so the connection can be given back).
        let own = read_whole && !http2 && req.upload.is_none() && target.plain;
        let uri = route.path.uri_at(
            if own { "" } else { &target.base },
            exchange.client_path,
            req.path_override.as_deref(),
            &ctx.path_parameters,
            &req.query,
        )?;
        let mut head = Request::new(());
        *head.method_mut() = req.method.clone();
        *head.uri_mut() = uri;
        *head.headers_mut() = headers.clone();
        if http2 {
            // HTTP/2 names the target in `:authority` (from the URI).
            head.headers_mut().remove(header::HOST);
        } else {
            head.headers_mut()
                .insert(header::HOST, target.authority.clone());
        }
        let (head, ()) = head.into_parts();
        let in_flight = pool.begin(target);
        let sent = async {
            if own {
                let up = Request::from_parts(head, Full::new(req.body.clone()));
                target
                    .send_own(up)
                    .await
                    .map(|(response, lease)| (response, Some(lease)))
                    .map_err(AttemptError::Own)
            } else {
                let body = match &req.upload {
                    Some(upload) => upload.attempt(),
                    None => whole(req.body.clone()),
                };
                target
                    .send(Request::from_parts(head, body), http2)
                    .await
                    .map(|response| (response, None))
                    .map_err(AttemptError::Pooled)
            }
        };
        match tokio::time::timeout_at(deadline, sent).await {
            Err(_) => {
                if let Some(e) = req.upload.as_ref().and_then(Upload::error) {
                    return Err(e);
                }
                pool.report(&members, i, false);
                return Err(GatewayError::IntegrationTimeout(exchange.timeout));
            }
            Ok(Ok((response, lease))) => {
                let status = response.status().as_u16();
                pool.report(&members, i, !matches!(status, 502..=504));
                let retryable = may_retry_answer
                    && resendable(req.upload.as_ref())
                    && ((status == 502 && retries.bad_gateway)
                        || (status == 503 && retries.unavailable));
                match retryable
                    .then(|| retry_target(pool, &members, &headers, &tried))
                    .flatten()
                {
                    // The answer is dropped unread (its connection with it).
                    Some(n) => next = n,
                    None => {
                        return check_framing(response).map(|response| Answer {
                            response,
                            in_flight,
                            lease,
                        });
                    }
                }
            }
            Ok(Err(e)) => {
                if let Some(e) = req.upload.as_ref().and_then(Upload::error) {
                    // The client's side broke the upload: no fault of the target's.
                    return Err(e);
                }
                pool.report(&members, i, false);
                let safe = resendable(req.upload.as_ref())
                    && if e.is_connect() {
                        retries.connect
                    } else {
                        e.closed_before_answer() && retries.reset
                    };
                let error = e.into_gateway_error();
                match safe
                    .then(|| retry_target(pool, &members, &headers, &tried))
                    .flatten()
                {
                    Some(n) => {
                        tracing::debug!(upstream = %pool.name, target = %target.id, %error, "retrying");
                        next = n;
                    }
                    None => return Err(error),
                }
            }
        }
    }
}

/// Whether the request could be sent again: its body is in memory, or the client's
/// streamed body was not read by any attempt yet.
fn resendable(upload: Option<&Upload>) -> bool {
    upload.is_none_or(Upload::untouched)
}

/// The target of the next attempt, if one is allowed: attempts left, a target
/// available, and a retry in the budget (taken last, so nothing is spent in vain).
fn retry_target(
    pool: &Pool,
    members: &Members,
    headers: &HeaderMap,
    tried: &[usize],
) -> Option<usize> {
    if tried.len() > pool.spec.retries.attempts as usize {
        return None;
    }
    let next = pool.pick(members, headers, tried)?;
    if pool.withdraw() {
        Some(next)
    } else {
        metrics::counter!("weir_upstream_retry_budget_exhausted_total", "upstream" => pool.name.to_string())
            .increment(1);
        None
    }
}

/// Sends to the pool and reads the answer whole (up to `max_response_body`) within the
/// route's timeout.
pub async fn buffered(
    route: &PoolRoute,
    exchange: &Exchange<'_>,
    req: UpstreamRequest,
    ctx: &RequestContext,
) -> Result<Response<Bytes>, GatewayError> {
    let deadline = tokio::time::Instant::now() + exchange.timeout;
    let method = req.method.clone();
    let answer = attempts(route, exchange, req, ctx, deadline, true).await?;
    let (mut parts, body) = answer.response.into_parts();
    super::upstream::response_headers(&mut parts.headers, &method);
    let body = super::upstream::read_upstream_body(
        body,
        exchange.max_response_body,
        deadline,
        exchange.timeout,
    )
    .await?;
    drop(answer.in_flight);
    // Read to its end: the connection may carry the next request.
    if let Some(lease) = answer.lease {
        lease.release();
    }
    Ok(Response::from_parts(parts, body))
}
