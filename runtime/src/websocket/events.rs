//! The events of an open connection — each message, then `$disconnect` — each one a
//! request of its own through the core: a [`RequestContext`] (the connection's
//! principal, authorizer context, trace and client), route selection, the optional
//! mapper, and the same integrate stage as HTTP requests. The access record and
//! metrics are made from the context, as for HTTP.

use std::sync::Arc;

use bytes::Bytes;
use http::Method;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::Session;
use super::api::{WebSocketApi, WsRoute};
use crate::access_log::{self, Outcome};
use crate::context::{EventType, RequestContext};
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::integrate::{Exchange, Upstream, UpstreamRequest, integrate};
use crate::map::{Mapped, map_request};
use crate::respond;
use crate::throttle::Refusal;
use crate::trace;
use crate::worker::Shared;

static CONNECTION_ID: HeaderName = HeaderName::from_static("connectionid");
static ROUTE_KEY: HeaderName = HeaderName::from_static("routekey");
static EVENT_TYPE: HeaderName = HeaderName::from_static("eventtype");
static REQUEST_ID: HeaderName = HeaderName::from_static("requestid");
static PRINCIPAL_ID: HeaderName = HeaderName::from_static("principalid");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// A context for one event on `session`'s connection.
pub(super) fn event_context(
    gw: &Gateway,
    session: &Session,
    kind: EventType,
    request_id: String,
) -> RequestContext {
    let conn = &session.conn;
    let mut ctx = RequestContext::new(
        request_id,
        gw.stage.clone(),
        session.peer,
        session.trace.clone(),
    );
    ctx.user_agent = conn.user_agent.as_deref().map(Arc::from);
    ctx.principal_id = session.principal_id.clone();
    ctx.authorizer_context = session.authorizer_context.clone();
    ctx.connection_id = Some(conn.id.clone());
    ctx.event_type = Some(kind);
    ctx.client_cert = session.client_cert.clone();
    ctx
}

/// The headers every event carries: `connectionId`, `routeKey`, `eventType`,
/// `requestId`, `principalId`, and the handshake's `x-forwarded-for` chain (the
/// integrate stage adds the client's address to it, as for HTTP requests).
pub(super) fn event_headers(
    headers: &mut HeaderMap,
    session: &Session,
    ctx: &RequestContext,
    route: &WsRoute,
) {
    let mut set = |name: &HeaderName, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name.clone(), v);
        }
    };
    set(&CONNECTION_ID, &session.conn.id);
    set(&ROUTE_KEY, &route.key);
    if let Some(kind) = ctx.event_type {
        set(&EVENT_TYPE, kind.name());
    }
    set(&REQUEST_ID, &ctx.request_id);
    if let Some(p) = &ctx.principal_id {
        set(&PRINCIPAL_ID, p);
    }
    if let Some(chain) = &session.forwarded_for {
        headers.insert(X_FORWARDED_FOR.clone(), chain.clone());
    }
}

/// Sends one event (a `POST` of `body` with the event headers) to its route's
/// integration, through the integrate stage.
pub(super) async fn send_event(
    upstream: &Upstream,
    api: &WebSocketApi,
    route: &WsRoute,
    session: &Session,
    req: UpstreamRequest,
    ctx: &mut RequestContext,
) -> Result<http::Response<Bytes>, GatewayError> {
    let exchange = Exchange {
        integration: &route.integration,
        timeout: route.timeout,
        max_response_body: api.limits.max_message as u64,
        client_path: &api.path,
        client_host: session.host.as_ref(),
        version: http::Version::HTTP_11,
    };
    integrate(upstream, exchange, req, ctx).await
}

/// A body for the client: text when it is UTF-8, else binary.
fn reply_message(body: Bytes) -> Message {
    match Utf8Bytes::try_from(body.clone()) {
        Ok(text) => Message::Text(text),
        Err(_) => Message::Binary(body),
    }
}

fn error_frame(message: &str, ctx: &RequestContext) -> Message {
    let conn = ctx.connection_id.as_deref().unwrap_or("");
    let text = respond::event_error(message, conn, &ctx.request_id);
    Message::Text(Utf8Bytes::from(text))
}

/// Handles one message: route selection, mapping, integration; the reply, if any.
pub(super) async fn dispatch(
    shared: Arc<Shared>,
    session: Arc<Session>,
    msg: Message,
) -> Option<Message> {
    let gw = shared.gateway.load_full();
    let mut ctx = event_context(&gw, &session, EventType::Message, trace::new_request_id());
    let body = match msg {
        Message::Text(t) => Bytes::from(t),
        Message::Binary(b) => b,
        _ => return None,
    };
    let (status, reply) = answer(&shared, &gw, &session, body, &mut ctx).await;
    let length = reply.as_ref().map(|m| m.len() as u64);
    access_log::write(gw.access_log, &ctx, None, Outcome { status, length });
    reply
}

/// What a message ends with: the status for the record, and what goes back.
async fn answer(
    shared: &Shared,
    gw: &Gateway,
    session: &Session,
    body: Bytes,
    ctx: &mut RequestContext,
) -> (u16, Option<Message>) {
    let Some(api) = gw.websocket(&session.conn.api) else {
        // The API was removed by a reload; its connections get `$default`-less errors.
        return (403, Some(error_frame("Forbidden", ctx)));
    };
    match gw.usage.throttle().admit_connection().await {
        Ok(()) => {}
        Err(Refusal::Throttled(t)) => {
            metrics::counter!("weir_throttled_total", "level" => t.level.name()).increment(1);
            return (429, Some(error_frame("Too Many Requests", ctx)));
        }
        Err(Refusal::StoreUnavailable) => {
            return (503, Some(error_frame("Service Unavailable", ctx)));
        }
    }
    let selected = api.selection.select(&body);
    let route = selected
        .as_deref()
        .and_then(|k| api.routes.get(k))
        .or(api.default.as_ref());
    let Some(route) = route else {
        return (403, Some(error_frame("Forbidden", ctx)));
    };
    ctx.route_key = Some(route.key.clone());
    match handle_message(&shared.upstream, api, route, session, body, ctx).await {
        Ok(Reply::Direct(status, body)) => (status, Some(reply_message(body))),
        Ok(Reply::Integration(status, body)) => {
            let reply = (route.route_response && !body.is_empty()).then(|| reply_message(body));
            (status, reply)
        }
        Err(e) => {
            if e.is_server_fault() {
                tracing::warn!(connection = %session.conn.id, request_id = %ctx.request_id, error = %e, "message failed");
            }
            let status = e.status_and_message().0.as_u16();
            let reply = route
                .route_response
                .then(|| error_frame("Internal server error", ctx));
            (status, reply)
        }
    }
}

enum Reply {
    /// The mapper answered: its status, and the body that goes to the client.
    Direct(u16, Bytes),
    /// The integration's status and body.
    Integration(u16, Bytes),
}

async fn handle_message(
    upstream: &Upstream,
    api: &WebSocketApi,
    route: &WsRoute,
    session: &Session,
    body: Bytes,
    ctx: &mut RequestContext,
) -> Result<Reply, GatewayError> {
    let mut req = UpstreamRequest {
        method: Method::POST,
        path_override: None,
        query: String::new(),
        headers: HeaderMap::new(),
        body,
        upload: None,
    };
    // The mapper sees the event headers the backend would get.
    event_headers(&mut req.headers, session, ctx, route);
    if let Some(mapper) = &route.request_mapping {
        match map_request(mapper, req, &api.path, &ctx.plugin_context()).await? {
            Mapped::Forward(mapped) => req = mapped,
            Mapped::Respond(resp) => return Ok(Reply::Direct(resp.status.as_u16(), resp.body)),
        }
    }
    let resp = send_event(upstream, api, route, session, req, ctx).await?;
    let status = resp.status().as_u16();
    Ok(Reply::Integration(status, resp.into_body()))
}

/// `$disconnect`, best effort, after the connection closed.
pub(super) async fn disconnect(shared: &Shared, session: &Session) {
    let gw = shared.gateway.load_full();
    let Some(api) = gw.websocket(&session.conn.api) else {
        return;
    };
    let Some(route) = &api.disconnect else {
        return;
    };
    let mut ctx = event_context(&gw, session, EventType::Disconnect, trace::new_request_id());
    ctx.route_key = Some(route.key.clone());
    let mut headers = HeaderMap::new();
    event_headers(&mut headers, session, &ctx, route);
    let req = UpstreamRequest {
        method: Method::POST,
        path_override: None,
        query: String::new(),
        headers,
        body: Bytes::new(),
        upload: None,
    };
    let status = match send_event(&shared.upstream, api, route, session, req, &mut ctx).await {
        Ok(resp) => resp.status().as_u16(),
        Err(e) => {
            tracing::debug!(connection = %session.conn.id, error = %e, "$disconnect failed");
            e.status_and_message().0.as_u16()
        }
    };
    access_log::write(
        gw.access_log,
        &ctx,
        None,
        Outcome {
            status,
            length: None,
        },
    );
}
