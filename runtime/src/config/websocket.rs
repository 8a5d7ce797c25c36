//! `[websocket.NAME]`: WebSocket APIs, their limits and routes.

use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

use super::{Integration, RouteAuthorizer};

/// `[websocket.NAME]`: a WebSocket API on one path of the public listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSocketApi {
    /// The path clients upgrade on, e.g. `/ws` (a `GET` with `Upgrade: websocket`).
    pub path: String,
    /// Chooses a message's route: `$request.body.action`, or a template such as
    /// `${request.body.type}/${request.body.name}`.
    #[serde(default = "default_route_selection")]
    pub route_selection: String,
    /// Connection and message limits (AWS's defaults).
    #[serde(default)]
    pub limits: WebSocketLimits,
    /// Routes: `$connect`, `$disconnect`, `$default` and custom route keys.
    #[serde(default)]
    pub routes: Vec<WebSocketRoute>,
}

fn default_route_selection() -> String {
    "$request.body.action".to_owned()
}

/// `[websocket.NAME.limits]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSocketLimits {
    /// New connections per second (over: 429 at the handshake).
    #[serde(default = "default_connect_rate")]
    pub connect_rate: u32,
    /// Connections that may open at once before `connect_rate` applies (default: the rate).
    pub connect_burst: Option<u32>,
    /// Longest a connection may stay open (then close 1001).
    #[serde(default = "default_max_duration", with = "humantime_serde")]
    pub max_duration: Duration,
    /// Longest a connection may stay silent in both directions (then close 1001).
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Largest message, all its frames together (over: close 1009).
    #[serde(default = "default_max_message")]
    pub max_message: ByteSize,
    /// Largest frame (over: close 1009).
    #[serde(default = "default_max_frame")]
    pub max_frame: ByteSize,
    /// Messages queued for one client before `POST /@connections/{id}` answers 429.
    #[serde(default = "default_outbound_queue")]
    pub outbound_queue: usize,
    /// Longest a send to the client may wait while the client reads nothing (default
    /// 10 s); past it the connection closes (`send_timeout`).
    #[serde(default = "default_send_timeout", with = "humantime_serde")]
    pub send_timeout: Duration,
}

impl Default for WebSocketLimits {
    fn default() -> Self {
        Self {
            connect_rate: default_connect_rate(),
            connect_burst: None,
            max_duration: default_max_duration(),
            idle_timeout: default_idle_timeout(),
            max_message: default_max_message(),
            max_frame: default_max_frame(),
            outbound_queue: default_outbound_queue(),
            send_timeout: default_send_timeout(),
        }
    }
}

fn default_connect_rate() -> u32 {
    500
}
fn default_max_duration() -> Duration {
    Duration::from_secs(2 * 3600)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(600)
}
fn default_max_message() -> ByteSize {
    ByteSize::kib(128)
}
fn default_max_frame() -> ByteSize {
    ByteSize::kib(32)
}
fn default_send_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_outbound_queue() -> usize {
    64
}

/// `[[websocket.NAME.routes]]`: one route of a WebSocket API.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSocketRoute {
    /// `$connect`, `$disconnect`, `$default`, or a value of the route selection expression.
    pub key: String,
    /// Where the event goes: `http` (POSTed with `connectionId`, `routeKey`, `eventType`
    /// and `requestId` headers) or `mock`.
    pub integration: Integration,
    /// The authorizer (only on `$connect`).
    pub authorizer: Option<RouteAuthorizer>,
    /// A mapper plugin applied to each message (the message is the request body).
    pub request_mapping: Option<String>,
    /// Send the integration's response body back to the client (two-way route).
    #[serde(default)]
    pub route_response: bool,
    /// This route's integration timeout (overrides `limits.integration_timeout`).
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}
