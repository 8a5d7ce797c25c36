//! `type = "lambda"` integrations: the request becomes an event (payload format 2.0 or
//! 1.0, or — with a request mapper — the mapper's body as it is), a process of the
//! function answers it, and the answer becomes the response (as Amazon API Gateway
//! reads it, or — with a response mapper — a `200` with the answer for the mapper).

use std::sync::Arc;

use bytes::Bytes;
use http::Response;
use http::header::{self, HeaderMap};

use super::{Exchange, UpstreamRequest, strip_hop_by_hop};
use crate::config::PayloadFormat;
use crate::context::RequestContext;
use crate::error::GatewayError;
use crate::lambda::payload::{self, HttpEvent};
use crate::lambda::{Failure, Function, InvokeError, MAX_PAYLOAD, xray_trace_id};

/// A route's function.
pub struct LambdaTarget {
    /// The function (shared with every snapshot that uses it).
    pub function: Arc<Function>,
    /// The event format.
    pub format: PayloadFormat,
    /// Mapping mode on the way in: the request mapper's body is the event.
    pub raw_event: bool,
    /// Mapping mode on the way out: the response mapper sees the answer itself.
    pub raw_answer: bool,
}

/// Invokes the function for one request.
pub(super) async fn invoke(
    target: &LambdaTarget,
    exchange: &Exchange<'_>,
    req: UpstreamRequest,
    ctx: &RequestContext,
) -> Result<Response<Bytes>, GatewayError> {
    let function = &target.function;
    let event = if target.raw_event {
        if req.body.is_empty() {
            Bytes::from_static(b"{}")
        } else {
            req.body
        }
    } else {
        let source_ip = ctx.peer.client.to_string();
        let protocol = format!("{:?}", exchange.version);
        let event = HttpEvent {
            method: req.method.as_str(),
            path: req.path_override.as_deref().unwrap_or(exchange.client_path),
            query: &req.query,
            headers: &req.headers,
            body: &req.body,
            route_key: ctx.route_key.as_deref().unwrap_or("$default"),
            path_parameters: &ctx.path_parameters,
            stage: &ctx.stage,
            request_id: &ctx.request_id,
            source_ip: &source_ip,
            user_agent: text(req.headers.get(header::USER_AGENT)),
            protocol: &protocol,
            domain_name: text(exchange.client_host),
            time: ctx.received,
            principal_id: ctx.principal_id.as_deref(),
            authorizer_context: &ctx.authorizer_context,
            client_cert: ctx.client_cert.as_deref().map(|c| c.to_json()),
        };
        Bytes::from(payload::event(target.format, &event))
    };
    if event.len() > MAX_PAYLOAD {
        function.count("too_large");
        return Err(GatewayError::PayloadTooLarge {
            limit: MAX_PAYLOAD as u64,
        });
    }
    let trace = xray_trace_id(&ctx.trace.trace_id, &ctx.trace.flags);
    let answer = match function.invoke(event, trace, exchange.timeout).await {
        Ok(answer) => answer,
        Err(InvokeError::Timeout(wait)) => {
            function.count("timeout");
            return Err(GatewayError::IntegrationTimeout(wait));
        }
        Err(InvokeError::Failed(failure)) => {
            function.count(failure.outcome());
            return Err(match failure {
                Failure::TimedOut(d) => GatewayError::IntegrationTimeout(d),
                Failure::Throttled(name) => GatewayError::FunctionThrottled(name),
                other => GatewayError::FunctionFailed(other.to_string()),
            });
        }
    };
    let parsed = if target.raw_answer {
        Ok(payload::json_answer(answer.body))
    } else {
        payload::answer(target.format, &answer.body)
    };
    let answer = match parsed {
        Ok(a) => a,
        Err(malformed) => {
            function.count("malformed");
            return Err(GatewayError::FunctionFailed(format!(
                "function `{}`: {malformed}",
                function.name()
            )));
        }
    };
    if answer.body.len() as u64 > exchange.max_response_body {
        function.count("too_large");
        return Err(GatewayError::FunctionFailed(format!(
            "function `{}` answered a body over {} bytes",
            function.name(),
            exchange.max_response_body
        )));
    }
    function.count("ok");
    let mut headers: HeaderMap = answer.headers;
    strip_hop_by_hop(&mut headers);
    let mut resp = Response::new(answer.body);
    *resp.status_mut() = answer.status;
    *resp.headers_mut() = headers;
    Ok(resp)
}

fn text(v: Option<&http::HeaderValue>) -> &str {
    v.and_then(|v| v.to_str().ok()).unwrap_or("")
}
