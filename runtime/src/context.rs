//! The per-request context: what the core learns about one HTTP request or WebSocket
//! event as it passes the stages — ids, route, principal and authorizer context, trace,
//! timings and the integration's outcome. Every stage reads and writes it; the plugin
//! [`Context`], the access record ([`crate::access_log`]) and the request metrics are
//! all made from it, so the HTTP and WebSocket paths cannot tell them different things.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::StatusCode;

use crate::client_cert::ClientCert;
use crate::plugin::{CallContext, Context};
use crate::quota::QuotaLeft;
use crate::trace::TraceContext;

/// The three kinds of WebSocket event a backend receives.
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

/// The client's end, as the integration reports it upstream.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// The address the connection came from.
    pub ip: IpAddr,
    /// The client's address (`sourceIp`): `ip`, or behind trusted proxies the address
    /// their `X-Forwarded-For` names.
    pub client: IpAddr,
    /// Whether the connection is TLS.
    pub secure: bool,
}

/// What the integration did: how long it took and how it ended.
#[derive(Debug, Default)]
pub struct IntegrationOutcome {
    /// Time spent in it.
    pub latency: Option<Duration>,
    /// The status it answered.
    pub status: Option<u16>,
    /// Why it failed.
    pub error: Option<String>,
}

/// One HTTP request or WebSocket event, from the moment it arrived.
pub struct RequestContext {
    /// `$context.requestId`.
    pub request_id: String,
    /// The same as a header value (made once for the upstream's and the client's
    /// `x-request-id`); `None` if the id is not one.
    pub request_id_value: Option<http::HeaderValue>,
    /// When it arrived (`requestTime`).
    pub received: SystemTime,
    /// When it arrived, for latencies.
    pub started: Instant,
    /// `$context.stage`.
    pub stage: Arc<str>,
    /// The client.
    pub peer: Peer,
    /// The client's `User-Agent`.
    pub user_agent: Option<Arc<str>>,
    /// The trace the upstream request continues.
    pub trace: TraceContext,
    /// The matched route (`routeKey`).
    pub route_key: Option<Arc<str>>,
    /// Path parameters of the matched route.
    pub path_parameters: Vec<(String, String)>,
    /// `$context.authorizer.principalId`.
    pub principal_id: Option<Arc<str>>,
    /// `$context.authorizer.*`.
    pub authorizer_context: Vec<(String, String)>,
    /// Why the authorizer refused or failed.
    pub authorizer_error: Option<String>,
    /// The integration's outcome.
    pub integration: IntegrationOutcome,
    /// The caller's quota, for the response headers (`api.quota_headers`).
    pub quota: Option<QuotaLeft>,
    /// The WebSocket connection (a handshake's new one, or an event's).
    pub connection_id: Option<Arc<str>>,
    /// For WebSocket traffic: which event this is.
    pub event_type: Option<EventType>,
    /// The certificate the client presented (mutual TLS).
    pub client_cert: Option<Arc<ClientCert>>,
}

impl RequestContext {
    /// A request that arrived now from `peer`, continuing `trace`.
    pub fn new(request_id: String, stage: Arc<str>, peer: Peer, trace: TraceContext) -> Self {
        Self {
            request_id_value: http::HeaderValue::from_str(&request_id).ok(),
            request_id,
            received: SystemTime::now(),
            started: Instant::now(),
            stage,
            peer,
            user_agent: None,
            trace,
            route_key: None,
            path_parameters: Vec::new(),
            principal_id: None,
            authorizer_context: Vec::new(),
            authorizer_error: None,
            integration: IntegrationOutcome::default(),
            quota: None,
            connection_id: None,
            event_type: None,
            client_cert: None,
        }
    }

    /// What a plugin sees of it.
    pub fn plugin_context(&self) -> CallContext {
        let context = Context {
            request_id: self.request_id.clone(),
            route_key: self.route_key.as_deref().unwrap_or("").to_owned(),
            stage: self.stage.to_string(),
            path_parameters: self.path_parameters.clone(),
            source_ip: self.peer.client.to_string(),
            principal_id: self.principal_id.as_deref().map(str::to_owned),
            authorizer_context: self.authorizer_context.clone(),
        };
        CallContext {
            context,
            client_cert: self.client_cert.clone(),
        }
    }

    /// Counts the request in the per-route metrics: requests and latency by route and
    /// status, integration latency by route.
    pub fn record_metrics(&self, status: StatusCode) {
        let elapsed = self.started.elapsed().as_secs_f64();
        ROUTE_METRICS.with(|cache| {
            let mut cache = cache.borrow_mut();
            let handles = cache.get(self.route_key.as_ref(), status);
            handles.requests.increment(1);
            handles.duration.record(elapsed);
            if let Some(latency) = self.integration.latency {
                handles.integration.record(latency.as_secs_f64());
            }
        });
    }
}

thread_local! {
    static ROUTE_METRICS: std::cell::RefCell<RouteMetrics> = std::cell::RefCell::default();
}

/// This thread's handles of the per-route metrics, by route and status: looking a
/// labelled metric up in the registry on every request cost about as much as the rest
/// of the bookkeeping. An entry holds its route key, so the key's address (the map's
/// key) cannot be reused by another route while the entry lives; the map is emptied
/// when it reaches [`RouteMetrics::MAX`] entries, which bounds it across reloads.
#[derive(Default)]
struct RouteMetrics {
    map: std::collections::HashMap<(usize, StatusCode), RouteHandles>,
}

struct RouteHandles {
    _key: Option<Arc<str>>,
    requests: metrics::Counter,
    duration: metrics::Histogram,
    integration: metrics::Histogram,
}

impl RouteMetrics {
    const MAX: usize = 4096;

    fn get(&mut self, key: Option<&Arc<str>>, status: StatusCode) -> &RouteHandles {
        let id = key.map_or(0, |k| Arc::as_ptr(k).cast::<u8>() as usize);
        if self.map.len() >= Self::MAX && !self.map.contains_key(&(id, status)) {
            self.map.clear();
        }
        self.map.entry((id, status)).or_insert_with(|| {
            let route = match key {
                Some(key) => metrics::SharedString::from(key.clone()),
                None => metrics::SharedString::const_str("$none"),
            };
            let status = metrics::SharedString::const_str(status_label(status));
            RouteHandles {
                _key: key.cloned(),
                requests: metrics::counter!("weir_requests_total", "route" => route.clone(), "status" => status.clone()),
                duration: metrics::histogram!("weir_request_duration_seconds", "route" => route.clone(), "status" => status),
                integration: metrics::histogram!("weir_integration_duration_seconds", "route" => route),
            }
        })
    }
}

/// A static label for a status code, so recording a metric allocates nothing.
fn status_label(status: StatusCode) -> &'static str {
    // 100..=999, made once: a fixed 900 short strings for the life of the process.
    static LABELS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    let labels = LABELS.get_or_init(|| {
        (100..1000u16)
            .map(|code| &*Box::leak(code.to_string().into_boxed_str()))
            .collect()
    });
    labels[usize::from(status.as_u16()) - 100]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plugin_sees_what_the_stages_learned() {
        let mut ctx = RequestContext::new(
            "r1".into(),
            "prod".into(),
            Peer {
                ip: "10.0.0.1".parse().unwrap(),
                client: "10.0.0.7".parse().unwrap(),
                secure: false,
            },
            TraceContext::from_header(None),
        );
        ctx.route_key = Some("GET /pets/{id}".into());
        ctx.path_parameters = vec![("id".into(), "7".into())];
        ctx.principal_id = Some("alice".into());
        let p = ctx.plugin_context().context;
        assert_eq!(p.request_id, "r1");
        assert_eq!(p.route_key, "GET /pets/{id}");
        assert_eq!(p.stage, "prod");
        assert_eq!(p.source_ip, "10.0.0.7");
        assert_eq!(p.principal_id.as_deref(), Some("alice"));
        assert_eq!(status_label(StatusCode::IM_A_TEAPOT), "418");
    }
}
