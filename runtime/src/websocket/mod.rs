//! WebSocket APIs as Amazon API Gateway has them: a path clients upgrade on, routes
//! `$connect`, `$disconnect`, `$default` and custom keys chosen by a route selection
//! expression, HTTP (or mock) integrations per route, and AWS's connection limits.
//!
//! The handshake runs inside the HTTP pipeline ([`handshake`]): connect-rate bucket,
//! account bucket, `$connect` authorizer, `$connect` integration, then `101`. Each open
//! connection is one task on the worker that accepted it ([`run`]): it reads frames,
//! queues messages and dispatches them one at a time, in order, to their routes (so a
//! client's messages reach the backend in the order it sent them), writes what the
//! `@connections` API posts, and closes at the idle and duration limits. Messages are
//! handled on the gateway snapshot current when they arrive.

pub mod select;
mod stall;
pub mod table;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::access_log::{AccessRecord, EventRecord};
use crate::authorize::{RouteAuthorizer, authorize};
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::integrate::{Integration, Upstream, read_upstream_body, strip_hop_by_hop};
use crate::map::{Mapped, MappedRequest, Mapper, map_request};
use crate::pipeline::{Body, Shared};
use crate::plugin::Context;
use crate::throttle::{Bucket, Level};
use crate::trace::{self, TraceContext};

pub use select::Selection;
use stall::Stall;
use table::Connection;
pub use table::{Command, ConnectionTable, LocalConnections, PostError};

/// Messages read ahead of the one being dispatched; past it, reading pauses.
const MAX_PENDING: usize = 16;
/// Longest a server-initiated close waits for the client to hang up.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// Bytes read and discarded while lingering.
const CLOSE_LINGER_BYTES: usize = 1 << 20;

static CONNECTION_ID: HeaderName = HeaderName::from_static("connectionid");
static ROUTE_KEY: HeaderName = HeaderName::from_static("routekey");
static EVENT_TYPE: HeaderName = HeaderName::from_static("eventtype");
static REQUEST_ID: HeaderName = HeaderName::from_static("requestid");
static PRINCIPAL_ID: HeaderName = HeaderName::from_static("principalid");
static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// A compiled WebSocket API.
pub struct WebSocketApi {
    /// Its name in `[websocket.NAME]`.
    pub name: Arc<str>,
    /// The path clients upgrade on.
    pub path: String,
    /// The route selection expression.
    pub selection: Selection,
    /// `$connect`.
    pub connect: Option<WsRoute>,
    /// `$disconnect`.
    pub disconnect: Option<WsRoute>,
    /// `$default`.
    pub default: Option<WsRoute>,
    /// Custom route keys.
    pub routes: HashMap<String, WsRoute>,
    /// Limits.
    pub limits: Limits,
    /// The new-connection bucket.
    pub connect_bucket: Bucket,
}

/// A WebSocket API's limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest a connection stays open.
    pub max_duration: Duration,
    /// Longest a connection may be silent both ways.
    pub idle_timeout: Duration,
    /// Largest message.
    pub max_message: usize,
    /// Largest frame.
    pub max_frame: usize,
    /// Outbound messages queued per connection.
    pub outbound_queue: usize,
    /// Longest a send may wait for the client to read.
    pub send_timeout: Duration,
}

/// One route of a WebSocket API.
pub struct WsRoute {
    /// Its key.
    pub key: Arc<str>,
    /// Where its events go.
    pub integration: Integration,
    /// The authorizer (`$connect` only).
    pub authorizer: Option<RouteAuthorizer>,
    /// The slot of this route in the gateway's authorizer cache.
    pub auth_slot: usize,
    /// The message mapper.
    pub request_mapping: Option<Mapper>,
    /// Whether the integration's answer goes back to the client.
    pub route_response: bool,
    /// The integration timeout.
    pub timeout: Duration,
}

/// The three kinds of event a backend receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// The handshake (`$connect`).
    Connect,
    /// A message.
    Message,
    /// The connection closed (`$disconnect`).
    Disconnect,
}

impl EventType {
    /// As AWS writes it.
    pub fn name(self) -> &'static str {
        match self {
            EventType::Connect => "CONNECT",
            EventType::Message => "MESSAGE",
            EventType::Disconnect => "DISCONNECT",
        }
    }
}

/// Why a connection closed (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloseReason {
    Client,
    Idle,
    MaxDuration,
    TooBig,
    Protocol,
    Deleted,
    Shutdown,
    /// The client went away without a close frame.
    Dropped,
    /// The client read nothing for `send_timeout` while the gateway had data for it.
    SendTimeout,
    Error,
}

impl CloseReason {
    fn label(self) -> &'static str {
        match self {
            CloseReason::Client => "client",
            CloseReason::Idle => "idle_timeout",
            CloseReason::MaxDuration => "max_duration",
            CloseReason::TooBig => "message_too_big",
            CloseReason::Protocol => "protocol_error",
            CloseReason::Deleted => "deleted",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Dropped => "dropped",
            CloseReason::SendTimeout => "send_timeout",
            CloseReason::Error => "error",
        }
    }
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
    request_id: &str,
    remote: SocketAddr,
    access: &mut AccessRecord,
) -> Result<Response<Body>, GatewayError> {
    let key = check_upgrade(head)?;
    access.route_key = Some(Arc::from("$connect"));
    access.event_type = Some(EventType::Connect.name());
    // The API's own connect rate first, then the account: a refusal by the first
    // takes nothing from the second.
    api.connect_bucket
        .take()
        .map_err(|retry_after| GatewayError::Throttled {
            level: Level::Connect,
            retry_after,
        })?;
    gw.usage.throttle().admit_connection()?;

    let connection_id: Arc<str> = new_connection_id().into();
    access.connection_id = Some(connection_id.clone());
    let mut principal = None;
    let mut protocol = None;
    if let Some(route) = &api.connect {
        let mut ctx = context(gw, request_id, &route.key, remote.ip(), None);
        if let Some(auth) = &route.authorizer {
            let allowed = authorize(auth, &gw.auth_cache, route.auth_slot, head, &ctx)
                .await
                .inspect_err(|e| access.authorizer_error = Some(e.to_string()))?;
            access.principal_id = Some(allowed.principal_id.clone());
            ctx.principal_id = Some(allowed.principal_id.clone());
            principal = Some(allowed.principal_id);
        }
        // The handshake's headers and query string go to the `$connect` backend.
        let mut headers = head.headers.clone();
        strip_hop_by_hop(&mut headers);
        for h in [
            header::SEC_WEBSOCKET_KEY,
            header::SEC_WEBSOCKET_VERSION,
            header::SEC_WEBSOCKET_EXTENSIONS,
        ] {
            headers.remove(h);
        }
        let event = Event {
            kind: EventType::Connect,
            api,
            route,
            connection_id: &connection_id,
            request_id,
            source_ip: remote.ip(),
            principal: principal.as_deref(),
        };
        let started = Instant::now();
        let result = send_event(
            &shared.upstream,
            &event,
            &mut headers,
            head.uri.query().unwrap_or(""),
            Bytes::new(),
        )
        .await;
        access.integration_latency = Some(started.elapsed());
        let (status, _) = result.inspect_err(|e| access.integration_error = Some(e.to_string()))?;
        access.integration_status = Some(status.as_u16());
        if !status.is_success() {
            let (status, message) = if status == StatusCode::UNAUTHORIZED {
                (401, "Unauthorized")
            } else {
                (403, "Forbidden")
            };
            return Err(GatewayError::Denied {
                status,
                message: message.to_owned(),
            });
        }
        protocol = selected_protocol(&head.headers, &headers)?;
    }

    let on_upgrade = head
        .extensions
        .remove::<hyper::upgrade::OnUpgrade>()
        .ok_or_else(|| GatewayError::BadRequest("this connection cannot be upgraded".into()))?;
    let user_agent = head
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(Box::from);
    let (conn, commands) = Connection::new(
        connection_id,
        api.name.clone(),
        remote.ip(),
        user_agent,
        principal.map(Box::from),
        api.limits.max_message,
        api.limits.outbound_queue,
    );
    let task = ConnectionTask {
        shared: shared.clone(),
        conn,
        commands,
        limits: api.limits.clone(),
    };
    tokio::spawn(task.run(on_upgrade));

    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut resp = Response::new(crate::pipeline::empty_body());
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

fn context(
    gw: &Gateway,
    request_id: &str,
    route_key: &str,
    source_ip: IpAddr,
    principal: Option<&str>,
) -> Context {
    Context {
        request_id: request_id.to_owned(),
        route_key: route_key.to_owned(),
        stage: gw.stage.to_string(),
        path_parameters: Vec::new(),
        source_ip: source_ip.to_string(),
        principal_id: principal.map(str::to_owned),
        authorizer_context: Vec::new(),
    }
}

/// One event for a backend.
struct Event<'a> {
    kind: EventType,
    api: &'a WebSocketApi,
    route: &'a WsRoute,
    connection_id: &'a str,
    request_id: &'a str,
    source_ip: IpAddr,
    principal: Option<&'a str>,
}

impl Event<'_> {
    /// The headers every event carries.
    fn headers(&self, headers: &mut HeaderMap) {
        let mut set = |name: &HeaderName, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.insert(name.clone(), v);
            }
        };
        set(&CONNECTION_ID, self.connection_id);
        set(&ROUTE_KEY, &self.route.key);
        set(&EVENT_TYPE, self.kind.name());
        set(&REQUEST_ID, self.request_id);
        set(&X_FORWARDED_FOR, &self.source_ip.to_string());
        set(
            &TRACEPARENT,
            &TraceContext::from_header(None).child_header(),
        );
        if let Some(p) = self.principal {
            set(&PRINCIPAL_ID, p);
        }
    }
}

/// Sends an event to its route's integration: the status and (bounded) body. On return
/// `headers` holds the integration's response headers (none for a mock).
async fn send_event(
    upstream: &Upstream,
    event: &Event<'_>,
    headers: &mut HeaderMap,
    query: &str,
    body: Bytes,
) -> Result<(StatusCode, Bytes), GatewayError> {
    send_request(upstream, event, Method::POST, None, query, headers, body).await
}

async fn send_request(
    upstream: &Upstream,
    event: &Event<'_>,
    method: Method,
    path: Option<&str>,
    query: &str,
    headers: &mut HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Bytes), GatewayError> {
    let route = event.route;
    match &route.integration {
        Integration::Mock(mock) => {
            headers.clear();
            Ok((mock.status, mock.body.clone()))
        }
        Integration::Http(target) => {
            event.headers(headers);
            headers.insert(header::HOST, target.authority().clone());
            let uri = target.uri(&event.api.path, path, &[], query)?;
            let mut req = Request::new(Full::new(body));
            *req.method_mut() = method;
            *req.uri_mut() = uri;
            *req.headers_mut() = std::mem::take(headers);
            let deadline = tokio::time::Instant::now() + route.timeout;
            let (parts, body) = upstream.send(req, route.timeout).await?.into_parts();
            *headers = parts.headers;
            let limit = event.api.limits.max_message as u64;
            let body = read_upstream_body(body, limit, deadline, route.timeout).await?;
            Ok((parts.status, body))
        }
    }
}

type Dispatch = Pin<Box<dyn Future<Output = Option<Message>> + Send>>;

/// A client's WebSocket, over a socket that may not stall a send for long.
type Ws = WebSocketStream<Stall<TokioIo<hyper::upgrade::Upgraded>>>;

/// Bytes a connection's write buffer may hold beyond one message: frame headers, a
/// close frame, the one pong that may wait to go out.
const WRITE_BUFFER_SLACK: usize = 64 * 1024;

/// Messages read from the client and not yet answered: the one being dispatched and
/// those read ahead of it.
#[derive(Default)]
struct Backlog {
    job: Option<Dispatch>,
    pending: VecDeque<Message>,
}

impl Backlog {
    /// After the connection closed: every message already read still reaches its
    /// integration, in order (the one in flight is not cancelled); replies are dropped,
    /// there is no one to send them to. Bounded by the routes' timeouts and
    /// `MAX_PENDING`.
    async fn deliver(self, shared: &Arc<Shared>, conn: &Arc<Connection>) {
        if let Some(job) = self.job {
            job.await;
        }
        for msg in self.pending {
            dispatch(shared.clone(), conn.clone(), msg).await;
        }
    }
}

/// One open connection's task.
struct ConnectionTask {
    shared: Arc<Shared>,
    conn: Arc<Connection>,
    commands: tokio::sync::mpsc::Receiver<Command>,
    limits: Limits,
}

/// Counts a worker's open connections while it lives.
struct Live(Arc<Shared>);

impl Live {
    fn new(shared: Arc<Shared>) -> Self {
        shared.websockets_open(1);
        metrics::gauge!("weir_websocket_connections_open").increment(1.0);
        Live(shared)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.websockets_open(-1);
        metrics::gauge!("weir_websocket_connections_open").decrement(1.0);
    }
}

impl ConnectionTask {
    async fn run(mut self, on_upgrade: hyper::upgrade::OnUpgrade) {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(connection = %self.conn.id, error = %e, "upgrade failed");
                return;
            }
        };
        let _live = Live::new(self.shared.clone());
        // The write buffer holds at most one message and some slack: a client that
        // sends pings and reads nothing gets one pending pong, not a growing queue.
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0)
            .max_write_buffer_size(self.limits.max_message + WRITE_BUFFER_SLACK)
            .max_message_size(Some(self.limits.max_message))
            .max_frame_size(Some(self.limits.max_frame));
        let socket = Stall::new(TokioIo::new(upgraded), self.limits.send_timeout);
        let mut ws = WebSocketStream::from_raw_socket(socket, Role::Server, Some(config)).await;
        let table = self.shared.connections.clone();
        table.insert(self.conn.clone());
        metrics::counter!("weir_websocket_connections_opened_total").increment(1);
        tracing::debug!(connection = %self.conn.id, api = %self.conn.api, "connected");

        let mut backlog = Backlog::default();
        let reason = self.serve(&mut ws, &mut backlog).await;

        table.remove(&self.conn.id);
        metrics::counter!("weir_websocket_connections_closed_total", "reason" => reason.label())
            .increment(1);
        tracing::debug!(connection = %self.conn.id, reason = reason.label(), "closed");
        // Wait (briefly) for the client to hang up, so it reads our close frame, while
        // the messages it sent before closing reach their integration; then `$disconnect`.
        tokio::join!(linger(ws), backlog.deliver(&self.shared, &self.conn));
        disconnect(&self.shared, &self.conn).await;
    }

    async fn serve(&mut self, ws: &mut Ws, backlog: &mut Backlog) -> CloseReason {
        let conn = self.conn.clone();
        let lifetime = tokio::time::sleep(self.limits.max_duration.saturating_sub(conn.age()));
        let idle = tokio::time::sleep(self.limits.idle_timeout);
        tokio::pin!(lifetime, idle);
        let Backlog { job, pending } = backlog;
        loop {
            let active = tokio::select! {
                frame = ws.next(), if pending.len() < MAX_PENDING => match frame {
                    None => return CloseReason::Client,
                    Some(Ok(Message::Close(_))) => {
                        // tungstenite answers the close; flush it out.
                        let _ = ws.flush().await;
                        return CloseReason::Client;
                    }
                    Some(Ok(msg @ (Message::Text(_) | Message::Binary(_)))) => {
                        metrics::counter!("weir_websocket_messages_total", "direction" => "in").increment(1);
                        pending.push_back(msg);
                        true
                    }
                    Some(Ok(_)) => true,
                    Some(Err(WsError::Capacity(e))) => {
                        tracing::debug!(connection = %conn.id, error = %e, "message too big");
                        close(ws, CloseCode::Size, "Message too big").await;
                        return CloseReason::TooBig;
                    }
                    Some(Err(WsError::Protocol(
                        ProtocolError::ResetWithoutClosingHandshake,
                    ))) => return CloseReason::Dropped,
                    Some(Err(WsError::Protocol(e))) => {
                        tracing::debug!(connection = %conn.id, error = %e, "protocol error");
                        close(ws, CloseCode::Protocol, "Protocol error").await;
                        return CloseReason::Protocol;
                    }
                    Some(Err(WsError::Utf8(e))) => {
                        tracing::debug!(connection = %conn.id, error = %e, "text message is not UTF-8");
                        close(ws, CloseCode::Invalid, "Invalid UTF-8").await;
                        return CloseReason::Protocol;
                    }
                    Some(Err(e)) => return failed(ws, &conn, &e),
                },
                command = self.commands.recv() => match command {
                    Some(Command::Text(s)) => {
                        if let Err(e) = send(ws, Message::Text(Utf8Bytes::from(s))).await {
                            return failed(ws, &conn, &e);
                        }
                        true
                    }
                    Some(Command::Binary(b)) => {
                        if let Err(e) = send(ws, Message::Binary(b)).await {
                            return failed(ws, &conn, &e);
                        }
                        true
                    }
                    Some(Command::Disconnect) => {
                        close(ws, CloseCode::Normal, "Disconnected").await;
                        return CloseReason::Deleted;
                    }
                    Some(Command::Shutdown) | None => {
                        close(ws, CloseCode::Away, "Going away").await;
                        return CloseReason::Shutdown;
                    }
                },
                reply = async { job.as_mut().expect("guarded by is_some").await }, if job.is_some() => {
                    *job = None;
                    match reply {
                        Some(msg) => {
                            if let Err(e) = send(ws, msg).await {
                                return failed(ws, &conn, &e);
                            }
                            true
                        }
                        None => false,
                    }
                },
                () = &mut idle => {
                    close(ws, CloseCode::Away, "Idle timeout").await;
                    return CloseReason::Idle;
                },
                () = &mut lifetime => {
                    close(ws, CloseCode::Away, "Maximum connection duration").await;
                    return CloseReason::MaxDuration;
                },
            };
            if active {
                conn.touch();
                idle.as_mut()
                    .reset(tokio::time::Instant::now() + self.limits.idle_timeout);
            }
            if job.is_none()
                && let Some(msg) = pending.pop_front()
            {
                *job = Some(Box::pin(dispatch(self.shared.clone(), conn.clone(), msg)));
            }
        }
    }
}

/// Why a read or a send failed: the client stopped reading, went away, or the
/// connection broke.
fn failed(ws: &Ws, conn: &Connection, e: &WsError) -> CloseReason {
    if ws.get_ref().stalled() {
        tracing::debug!(connection = %conn.id, "client read nothing within send_timeout; closing");
        return CloseReason::SendTimeout;
    }
    match e {
        WsError::ConnectionClosed | WsError::AlreadyClosed => CloseReason::Dropped,
        WsError::Io(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            ) =>
        {
            CloseReason::Dropped
        }
        e => {
            tracing::debug!(connection = %conn.id, error = %e, "connection error");
            CloseReason::Error
        }
    }
}

async fn send(ws: &mut Ws, msg: Message) -> Result<(), WsError> {
    ws.send(msg).await?;
    metrics::counter!("weir_websocket_messages_total", "direction" => "out").increment(1);
    Ok(())
}

async fn close(ws: &mut Ws, code: CloseCode, reason: &'static str) {
    let frame = CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    };
    let _ = tokio::time::timeout(CLOSE_LINGER, ws.close(Some(frame))).await;
}

/// After our close frame: read and discard until the client hangs up (bounded in time
/// and bytes), so closing our end does not reset a connection with unread data.
async fn linger(ws: Ws) {
    use tokio::io::AsyncReadExt;
    let mut io = ws.into_inner();
    let drain = async {
        let mut buf = [0u8; 4096];
        let mut left = CLOSE_LINGER_BYTES;
        while left > 0 {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_LINGER, drain).await;
}

/// An error frame for the client, as AWS words them.
fn error_frame(message: &str, connection_id: &str, request_id: &str) -> Message {
    let body = serde_json::json!({
        "message": message,
        "connectionId": connection_id,
        "requestId": request_id,
    });
    Message::Text(Utf8Bytes::from(body.to_string()))
}

/// A body for the client: text when it is UTF-8, else binary.
fn reply_message(body: Bytes) -> Message {
    match Utf8Bytes::try_from(body.clone()) {
        Ok(text) => Message::Text(text),
        Err(_) => Message::Binary(body),
    }
}

/// Handles one message: route selection, mapping, integration; the reply, if any.
async fn dispatch(shared: Arc<Shared>, conn: Arc<Connection>, msg: Message) -> Option<Message> {
    let received = SystemTime::now();
    let started = Instant::now();
    let gw = shared.gateway.load_full();
    let request_id = trace::new_request_id();
    let Some(api) = gw.websocket(&conn.api) else {
        // The API was removed by a reload; its connections get `$default`-less errors.
        return Some(error_frame("Forbidden", &conn.id, &request_id));
    };
    let body = match msg {
        Message::Text(t) => Bytes::from(t),
        Message::Binary(b) => b,
        _ => return None,
    };
    let mut record = EventRecord::new(&request_id, received, started, &conn, EventType::Message);
    if let Err(t) = gw.usage.throttle().admit_connection() {
        metrics::counter!("weir_throttled_total", "level" => t.level.name()).increment(1);
        record.status = 429;
        record.emit(gw.access_log);
        return Some(error_frame("Too Many Requests", &conn.id, &request_id));
    }
    let selected = api.selection.select(&body);
    let route = selected
        .as_deref()
        .and_then(|k| api.routes.get(k))
        .or(api.default.as_ref());
    let Some(route) = route else {
        record.status = 403;
        record.emit(gw.access_log);
        return Some(error_frame("Forbidden", &conn.id, &request_id));
    };
    record.route_key = Some(route.key.clone());
    let event = Event {
        kind: EventType::Message,
        api,
        route,
        connection_id: &conn.id,
        request_id: &request_id,
        source_ip: conn.source_ip,
        principal: conn.principal_id.as_deref(),
    };
    let result = handle_message(&shared.upstream, &gw, &event, body, &mut record).await;
    let reply = match result {
        Ok(Reply::Direct(body)) => Some(reply_message(body)),
        Ok(Reply::Integration(status, body)) => {
            record.status = status.as_u16();
            (route.route_response && !body.is_empty()).then(|| reply_message(body))
        }
        Err(e) => {
            let (status, _) = e.status_and_message();
            record.status = status.as_u16();
            if e.is_server_fault() {
                tracing::warn!(connection = %conn.id, request_id = %request_id, error = %e, "message failed");
            }
            route
                .route_response
                .then(|| error_frame("Internal server error", &conn.id, &request_id))
        }
    };
    record.length = reply.as_ref().map(|m| m.len() as u64);
    record.emit(gw.access_log);
    reply
}

enum Reply {
    /// The mapper answered; this goes to the client.
    Direct(Bytes),
    /// The integration's status and body.
    Integration(StatusCode, Bytes),
}

async fn handle_message(
    upstream: &Upstream,
    gw: &Gateway,
    event: &Event<'_>,
    body: Bytes,
    record: &mut EventRecord<'_>,
) -> Result<Reply, GatewayError> {
    let route = event.route;
    let mut req = MappedRequest {
        method: Method::POST,
        path_override: None,
        query: String::new(),
        headers: HeaderMap::new(),
        body,
    };
    if let Some(mapper) = &route.request_mapping {
        let ctx = context(
            gw,
            event.request_id,
            &route.key,
            event.source_ip,
            event.principal,
        );
        // The mapper sees the event headers the backend would get.
        event.headers(&mut req.headers);
        match map_request(mapper, req, &event.api.path, &ctx).await? {
            Mapped::Forward(mapped) => req = mapped,
            Mapped::Respond(resp) => {
                record.status = resp.status.as_u16();
                return Ok(Reply::Direct(resp.body));
            }
        }
    }
    let started = Instant::now();
    let result = send_request(
        upstream,
        event,
        req.method,
        req.path_override.as_deref(),
        &req.query,
        &mut req.headers,
        req.body,
    )
    .await;
    record.integration_latency = Some(started.elapsed());
    match result {
        Ok((status, body)) => {
            record.integration_status = Some(status.as_u16());
            Ok(Reply::Integration(status, body))
        }
        Err(e) => {
            record.integration_error = Some(e.to_string());
            Err(e)
        }
    }
}

/// `$disconnect`, best effort, after the connection closed.
async fn disconnect(shared: &Shared, conn: &Connection) {
    let gw = shared.gateway.load_full();
    let Some(api) = gw.websocket(&conn.api) else {
        return;
    };
    let Some(route) = &api.disconnect else {
        return;
    };
    let request_id = trace::new_request_id();
    let mut record = EventRecord::new(
        &request_id,
        SystemTime::now(),
        Instant::now(),
        conn,
        EventType::Disconnect,
    );
    record.route_key = Some(route.key.clone());
    let event = Event {
        kind: EventType::Disconnect,
        api,
        route,
        connection_id: &conn.id,
        request_id: &request_id,
        source_ip: conn.source_ip,
        principal: conn.principal_id.as_deref(),
    };
    let started = Instant::now();
    let result = send_event(
        &shared.upstream,
        &event,
        &mut HeaderMap::new(),
        "",
        Bytes::new(),
    )
    .await;
    record.integration_latency = Some(started.elapsed());
    match result {
        Ok((status, _)) => {
            record.integration_status = Some(status.as_u16());
            record.status = status.as_u16();
        }
        Err(e) => {
            tracing::debug!(connection = %conn.id, error = %e, "$disconnect failed");
            record.status = e.status_and_message().0.as_u16();
            record.integration_error = Some(e.to_string());
        }
    }
    record.emit(gw.access_log);
}
