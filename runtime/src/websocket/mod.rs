//! WebSocket APIs as Amazon API Gateway has them: a path clients upgrade on, routes
//! `$connect`, `$disconnect`, `$default` and custom keys chosen by a route selection
//! expression, HTTP (or mock) integrations per route, and AWS's connection limits.
//!
//! The handshake runs inside the HTTP pipeline ([`handshake`]): connect-rate bucket,
//! account bucket, `$connect` authorizer, `$connect` integration, then `101`. Each open
//! connection is one task on the worker that accepted it ([`connection`]); each of its
//! messages and its `$disconnect` is an event through the same core as an HTTP request
//! ([`events`]): a request context, the mapper, the one integrate stage. Messages are
//! handled on the gateway snapshot current when they arrive. The APIs themselves are
//! compiled from the config in [`api`].

pub mod api;
mod connection;
mod events;
pub mod select;
mod stall;

use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Response, StatusCode, Version};

use crate::authorize::authorize;
use crate::connections::Connection;
use crate::context::{EventType, Peer, RequestContext};
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::integrate::{UpstreamRequest, strip_hop_by_hop};
use crate::respond::{self, Body};
use crate::throttle::Level;
use crate::trace::{self, TraceContext};
use crate::worker::Shared;

pub use api::{WebSocketApi, WsRoute};
pub use select::Selection;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// What a connection's events carry from its handshake: the client, its
/// `x-forwarded-for` chain and `Host`, the trace the handshake continued, and what the
/// `$connect` authorizer said.
pub struct Session {
    /// The connection as the table holds it.
    pub conn: Arc<Connection>,
    peer: Peer,
    forwarded_for: Option<HeaderValue>,
    host: Option<HeaderValue>,
    trace: TraceContext,
    principal_id: Option<Arc<str>>,
    authorizer_context: Vec<(String, String)>,
    /// The handshake's client certificate (mutual TLS).
    client_cert: Option<Arc<crate::client_cert::ClientCert>>,
}

/// A new connection id: 16 characters, unique in this process, hard to guess.
fn new_connection_id() -> String {
    let mut id = String::with_capacity(16);
    trace::push_hex(
        &mut id,
        trace::random_u64() ^ trace::process_seed().rotate_left(17),
    );
    id
}

fn header_has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// The upgrade request's `Sec-WebSocket-Key`, or why it is not a WebSocket handshake.
fn check_upgrade(head: &Parts) -> Result<HeaderValue, GatewayError> {
    if !header_has_token(&head.headers, header::UPGRADE, "websocket") {
        return Err(GatewayError::UpgradeRequired);
    }
    if head.method != Method::GET {
        return Err(GatewayError::BadRequest(
            "a WebSocket handshake must be a GET".into(),
        ));
    }
    if head.version != Version::HTTP_11 {
        return Err(GatewayError::BadRequest(
            "WebSocket handshakes need HTTP/1.1".into(),
        ));
    }
    if !header_has_token(&head.headers, header::CONNECTION, "upgrade") {
        return Err(GatewayError::BadRequest(
            "`Connection: Upgrade` is missing".into(),
        ));
    }
    if head
        .headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v != "13")
    {
        return Err(GatewayError::BadRequest(
            "`Sec-WebSocket-Version: 13` is missing".into(),
        ));
    }
    head.headers
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|k| k.len() == 24)
        .cloned()
        .ok_or_else(|| GatewayError::BadRequest("`Sec-WebSocket-Key` is missing or invalid".into()))
}

/// The handshake: limits, `$connect` authorizer and integration, then `101` and a task
/// that runs the connection once hyper hands over the socket.
pub async fn handshake(
    shared: &Arc<Shared>,
    gw: &Gateway,
    api: &WebSocketApi,
    head: &mut Parts,
    ctx: &mut RequestContext,
) -> Result<Response<Body>, GatewayError> {
    let key = check_upgrade(head)?;
    ctx.route_key = Some(Arc::from("$connect"));
    ctx.event_type = Some(EventType::Connect);
    // The API's own connect rate first, then the account: a refusal by the first
    // takes nothing from the second.
    api.connect_bucket.take(Level::Connect).await?;
    gw.usage.throttle().admit_connection().await?;

    let connection_id: Arc<str> = new_connection_id().into();
    ctx.connection_id = Some(connection_id.clone());
    let user_agent = head
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(Box::from);
    let (conn, commands) = Connection::new(
        connection_id,
        api.name.clone(),
        ctx.peer.client,
        user_agent,
        api.limits.max_message,
        api.limits.outbound_queue,
    );
    let mut session = Session {
        conn,
        peer: ctx.peer,
        forwarded_for: head.headers.get(&X_FORWARDED_FOR).cloned(),
        host: head.headers.get(header::HOST).cloned(),
        trace: ctx.trace.clone(),
        principal_id: None,
        authorizer_context: Vec::new(),
        client_cert: ctx.client_cert.clone(),
    };
    let mut protocol = None;
    if let Some(route) = &api.connect {
        if let Some(auth) = &route.authorizer {
            let allowed = authorize(
                auth,
                &gw.auth_cache,
                route.auth_slot,
                head,
                ctx,
                &shared.upstream,
            )
            .await
            .inspect_err(|e| ctx.authorizer_error = Some(e.to_string()))?;
            let principal: Arc<str> = allowed.principal_id.into();
            ctx.principal_id = Some(principal.clone());
            ctx.authorizer_context = allowed.context.clone();
            session.principal_id = Some(principal);
            session.authorizer_context = allowed.context;
        }
        // The handshake's headers and query string go to the `$connect` backend, with
        // the event headers.
        let mut headers = head.headers.clone();
        strip_hop_by_hop(&mut headers);
        for h in [
            header::SEC_WEBSOCKET_KEY,
            header::SEC_WEBSOCKET_VERSION,
            header::SEC_WEBSOCKET_EXTENSIONS,
        ] {
            headers.remove(h);
        }
        events::event_headers(&mut headers, &session, ctx, route);
        let req = UpstreamRequest {
            method: Method::POST,
            path_override: None,
            query: head.uri.query().unwrap_or("").to_owned(),
            headers,
            body: Bytes::new(),
            upload: None,
        };
        let resp = events::send_event(&shared.upstream, api, route, &session, req, ctx).await?;
        if !resp.status().is_success() {
            let (status, message) = if resp.status() == StatusCode::UNAUTHORIZED {
                (401, "Unauthorized")
            } else {
                (403, "Forbidden")
            };
            return Err(GatewayError::Denied {
                status,
                message: message.to_owned(),
            });
        }
        protocol = selected_protocol(&head.headers, resp.headers())?;
    }

    let on_upgrade = head
        .extensions
        .remove::<hyper::upgrade::OnUpgrade>()
        .ok_or_else(|| GatewayError::BadRequest("this connection cannot be upgraded".into()))?;
    let task = connection::ConnectionTask {
        shared: shared.clone(),
        session: Arc::new(session),
        commands,
        limits: api.limits.clone(),
    };
    tokio::spawn(task.run(on_upgrade));

    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut resp = Response::new(respond::empty_body());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(p) = protocol {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, p);
    }
    Ok(resp)
}

/// The subprotocol the `$connect` backend chose with `Sec-WebSocket-Protocol`, as AWS
/// lets it: one of those the client offered, else the backend is at fault (a client
/// must fail a handshake that names a protocol it did not offer).
fn selected_protocol(
    request: &HeaderMap,
    backend: &HeaderMap,
) -> Result<Option<HeaderValue>, GatewayError> {
    let Some(chosen) = backend.get(header::SEC_WEBSOCKET_PROTOCOL) else {
        return Ok(None);
    };
    let offered = request
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().as_bytes() == chosen.as_bytes());
    if offered {
        Ok(Some(chosen.clone()))
    } else {
        Err(GatewayError::BadGateway(format!(
            "the $connect integration chose subprotocol {chosen:?}, which the client did not offer"
        )))
    }
}
