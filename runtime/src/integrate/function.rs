//! `type = "function"` integrations: a `wasi:http/proxy` component of `[plugins]`
//! answers the request in process, in a fresh instance, within the route's timeout and
//! its plugin's memory cap; it reaches out only to the origins its `allow_outbound`
//! lists, through the gateway's own upstream client.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Request, Response};

use super::{Exchange, Upstream, UpstreamRequest, forwarded_headers, strip_hop_by_hop};
use crate::context::RequestContext;
use crate::error::GatewayError;
use crate::plugin::{FunctionPlugin, PluginError};

/// A route's component.
pub struct FunctionTarget {
    /// The component (a plugin of world `function`).
    pub plugin: FunctionPlugin,
}

/// Calls the component for one request.
pub(super) async fn call(
    target: &FunctionTarget,
    upstream: &Upstream,
    exchange: &Exchange<'_>,
    req: UpstreamRequest,
    ctx: &RequestContext,
) -> Result<Response<Bytes>, GatewayError> {
    let path = req.path_override.as_deref().unwrap_or(exchange.client_path);
    let host = exchange
        .client_host
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let mut uri = format!("http://{host}{path}");
    if !req.query.is_empty() {
        uri.push('?');
        uri.push_str(&req.query);
    }
    let mut headers = req.headers;
    strip_hop_by_hop(&mut headers);
    forwarded_headers(&mut headers, ctx, exchange.client_host);
    if let Ok(v) = HeaderValue::from_str(&ctx.trace.child_header()) {
        headers.insert(header::HeaderName::from_static("traceparent"), v);
    }
    let mut call = Request::new(req.body);
    *call.method_mut() = req.method.clone();
    *call.uri_mut() = uri
        .parse()
        .map_err(|_| GatewayError::BadRequest(format!("cannot build a URI from `{uri}`")))?;
    *call.headers_mut() = headers;
    let max_body = usize::try_from(exchange.max_response_body).unwrap_or(usize::MAX);
    let sender = Arc::new(upstream.clone());
    let resp = target
        .plugin
        .handle(call, exchange.timeout, max_body, sender)
        .await
        .map_err(|e| match e {
            PluginError::Deadline { .. } => GatewayError::IntegrationTimeout(exchange.timeout),
            e => GatewayError::FunctionFailed(e.to_string()),
        })?;
    let (mut parts, body) = resp.into_parts();
    super::upstream::response_headers(&mut parts.headers, &req.method);
    Ok(Response::from_parts(parts, body))
}
