//! Streamed answers: on a route with `stream = true` (and for gRPC requests on routes
//! without a response mapper) the upstream's answer goes on to the client frame by
//! frame as it arrives — server-sent events, chunked answers, long downloads, gRPC with
//! its trailers — instead of being read whole first.
//!
//! Bounds change shape: the route's timeout covers the answer's head, and then each
//! wait for the next frame (an idle timeout, as AWS's response streaming splits it);
//! `max_response_body` bounds the total. A body that stalls, breaks or grows past the
//! limit after its head was sent cannot become a clean `504`/`502` any more: the
//! client's connection (or HTTP/2 stream) is reset instead, so the client sees a broken
//! answer, never a silently truncated one that looks whole.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::Response;
use http::header::{self, HeaderMap};
use hyper::body::{Frame, Incoming, SizeHint};

use super::bounded::{Bounded, Cut};
use super::{Exchange, Integration, Upstream, UpstreamRequest, integrate, pool, record};
use crate::context::RequestContext;
use crate::error::GatewayError;
use crate::pool::InFlight;
use crate::respond::{self, Body, BoxError};

/// Calls the integration and passes its answer on as it arrives (HTTP integrations; the
/// others answer whole, as [`integrate`] does). The latency recorded in `ctx` is the
/// time to the answer's head.
pub async fn stream(
    upstream: &Upstream,
    exchange: Exchange<'_>,
    req: UpstreamRequest,
    ctx: &mut RequestContext,
) -> Result<Response<Body>, GatewayError> {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + exchange.timeout;
    let method = req.method.clone();
    let sent = match exchange.integration {
        Integration::Http(target) => {
            let mut req = req;
            let upload = req.upload.take();
            let up = super::http_request(target, &exchange, req, ctx, false)?;
            match upload {
                Some(upload) => {
                    let up = up.map(|_| upload.attempt());
                    upstream
                        .send_streamed(up, &upload, exchange.timeout)
                        .await
                        .map(|response| (response, None))
                }
                None => upstream
                    .send(up, exchange.timeout)
                    .await
                    .map(|response| (response, None)),
            }
        }
        Integration::Pool(route) => pool::send(route, &exchange, req, ctx, deadline)
            .await
            .map(|a| (a.response, Some(a.in_flight))),
        _ => {
            return integrate(upstream, exchange, req, ctx)
                .await
                .map(|r| r.map(respond::full));
        }
    };
    let result = sent.and_then(|(response, in_flight)| {
        let (mut parts, body) = response.into_parts();
        super::strip_hop_by_hop(&mut parts.headers);
        let limit = exchange.max_response_body;
        if declared_length(&parts.headers).is_some_and(|n| n > limit)
            && method != http::Method::HEAD
        {
            return Err(GatewayError::BadGateway(format!(
                "the response body exceeds {limit} bytes"
            )));
        }
        let body = Streamed {
            body: Bounded::new(body, limit, exchange.timeout),
            _in_flight: in_flight,
        };
        Ok(Response::from_parts(parts, Body::new(body)))
    });
    record(ctx, started, result.as_ref().map(|r| r.status()));
    result
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// An upstream body passed on frame by frame, at most `left` more bytes, each frame
/// within `idle` of the last.
struct Streamed {
    body: Bounded<Incoming>,
    _in_flight: Option<InFlight>,
}

impl hyper::body::Body for Streamed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let error: BoxError = match std::task::ready!(this.body.poll_bounded(cx)) {
            None => return Poll::Ready(None),
            Some(Ok(frame)) => return Poll::Ready(Some(Ok(frame))),
            Some(Err(Cut::TooLarge)) => {
                tracing::warn!("streamed answer cut off: larger than max_response_body");
                "the response body is too large".into()
            }
            Some(Err(Cut::Stalled)) => {
                tracing::warn!(idle = ?this.body.idle, "streamed answer cut off: no data within the idle timeout");
                "the upstream stalled".into()
            }
            Some(Err(Cut::Broken(e))) => {
                tracing::warn!(error = %e, "streamed answer broke off upstream");
                e.into()
            }
        };
        Poll::Ready(Some(Err(error)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.body.size_hint()
    }
}
