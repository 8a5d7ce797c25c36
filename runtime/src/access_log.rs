//! The access log: one `weir::access` record per request, with Amazon API Gateway's
//! `$context` names, and the fields an operator chose in `[access_log]`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::header;
use http::request::Parts;

use crate::websocket::EventType;
use crate::websocket::table::Connection;

/// Every field the access log can carry, in output order.
pub const FIELDS: [&str; 19] = [
    "requestId",
    "requestTime",
    "httpMethod",
    "path",
    "routeKey",
    "status",
    "responseLength",
    "responseLatency",
    "integrationLatency",
    "integrationStatus",
    "integrationError",
    "authorizer.principalId",
    "authorizer.error",
    "sourceIp",
    "userAgent",
    "protocol",
    "traceId",
    "connectionId",
    "eventType",
];

/// Which fields are written (a bit per entry of [`FIELDS`]); `None` disables the log.
#[derive(Debug, Clone, Copy)]
pub struct AccessLogFormat(Option<u32>);

impl Default for AccessLogFormat {
    fn default() -> Self {
        AccessLogFormat(Some(u32::MAX))
    }
}

impl AccessLogFormat {
    /// A format from `[access_log]`: `enabled` and the chosen field names.
    pub fn new(enabled: bool, fields: Option<&[String]>) -> Result<Self, String> {
        if !enabled {
            return Ok(AccessLogFormat(None));
        }
        let Some(fields) = fields else {
            return Ok(AccessLogFormat::default());
        };
        let mut mask = 0u32;
        for f in fields {
            let i = FIELDS
                .iter()
                .position(|known| known == f)
                .ok_or_else(|| format!("unknown field `{f}` (known: {})", FIELDS.join(", ")))?;
            mask |= 1 << i;
        }
        Ok(AccessLogFormat(Some(mask)))
    }

    fn has(self, field: usize) -> bool {
        self.0.is_some_and(|m| m & (1 << field) != 0)
    }
}

/// Facts gathered along the request path.
#[derive(Default)]
pub struct AccessRecord {
    /// The matched route.
    pub route_key: Option<Arc<str>>,
    /// Time spent in the integration.
    pub integration_latency: Option<Duration>,
    /// The integration's status.
    pub integration_status: Option<u16>,
    /// Why the integration failed.
    pub integration_error: Option<String>,
    /// The authorizer's principal.
    pub principal_id: Option<String>,
    /// Why the authorizer refused or failed.
    pub authorizer_error: Option<String>,
    /// The W3C trace id sent upstream.
    pub trace_id: Option<String>,
    /// The caller's quota, for the response headers (only when `api.quota_headers` is on).
    pub quota: Option<crate::quota::QuotaLeft>,
    /// The WebSocket connection a handshake opened.
    pub connection_id: Option<Arc<str>>,
    /// `CONNECT` for a WebSocket handshake.
    pub event_type: Option<&'static str>,
}

/// What the response looked like.
pub struct Outcome {
    /// Status code.
    pub status: u16,
    /// Body length when known.
    pub length: Option<u64>,
}

impl AccessRecord {
    /// Writes the record (when the format enables the log).
    #[allow(clippy::too_many_arguments)]
    pub fn emit(
        &self,
        format: AccessLogFormat,
        head: &Parts,
        outcome: Outcome,
        request_id: &str,
        remote: SocketAddr,
        started: Instant,
        received: SystemTime,
    ) {
        if format.0.is_none() || !tracing::enabled!(target: "weir::access", tracing::Level::INFO) {
            return;
        }
        let on = |i: usize| format.has(i);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let user_agent = head
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok());
        tracing::info!(
            target: "weir::access",
            requestId = on(0).then_some(request_id),
            requestTime = on(1).then(|| humantime::format_rfc3339_millis(received).to_string()),
            httpMethod = on(2).then(|| head.method.as_str()),
            path = on(3).then(|| head.uri.path()),
            routeKey = on(4).then(|| self.route_key.as_deref().unwrap_or("-")),
            status = on(5).then_some(outcome.status),
            responseLength = if on(6) { outcome.length } else { None },
            responseLatency = on(7).then(|| ms(started.elapsed())),
            integrationLatency = if on(8) { self.integration_latency.map(ms) } else { None },
            integrationStatus = if on(9) { self.integration_status } else { None },
            integrationError = if on(10) { self.integration_error.as_deref() } else { None },
            authorizer.principalId = if on(11) { self.principal_id.as_deref() } else { None },
            authorizer.error = if on(12) { self.authorizer_error.as_deref() } else { None },
            sourceIp = on(13).then(|| remote.ip().to_string()),
            userAgent = if on(14) { user_agent } else { None },
            protocol = on(15).then(|| format!("{:?}", head.version)),
            traceId = if on(16) { self.trace_id.as_deref() } else { None },
            connectionId = if on(17) { self.connection_id.as_deref() } else { None },
            eventType = if on(18) { self.event_type } else { None },
        );
    }
}

/// One WebSocket event after the handshake (a message or `$disconnect`).
pub struct EventRecord<'a> {
    request_id: &'a str,
    received: SystemTime,
    started: Instant,
    conn: &'a Connection,
    event_type: EventType,
    /// The route that handled it.
    pub route_key: Option<Arc<str>>,
    /// What the event ended with (the integration's status, or the gateway's).
    pub status: u16,
    /// Bytes sent back to the client.
    pub length: Option<u64>,
    /// Time spent in the integration.
    pub integration_latency: Option<Duration>,
    /// The integration's status.
    pub integration_status: Option<u16>,
    /// Why the integration failed.
    pub integration_error: Option<String>,
}

impl<'a> EventRecord<'a> {
    /// A record for an event on `conn`.
    pub fn new(
        request_id: &'a str,
        received: SystemTime,
        started: Instant,
        conn: &'a Connection,
        event_type: EventType,
    ) -> Self {
        Self {
            request_id,
            received,
            started,
            conn,
            event_type,
            route_key: None,
            status: 200,
            length: None,
            integration_latency: None,
            integration_status: None,
            integration_error: None,
        }
    }

    /// Writes the record (when the format enables the log).
    pub fn emit(&self, format: AccessLogFormat) {
        if format.0.is_none() || !tracing::enabled!(target: "weir::access", tracing::Level::INFO) {
            return;
        }
        let on = |i: usize| format.has(i);
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        tracing::info!(
            target: "weir::access",
            requestId = on(0).then_some(self.request_id),
            requestTime = on(1).then(|| humantime::format_rfc3339_millis(self.received).to_string()),
            routeKey = on(4).then(|| self.route_key.as_deref().unwrap_or("-")),
            status = on(5).then_some(self.status),
            responseLength = if on(6) { self.length } else { None },
            responseLatency = on(7).then(|| ms(self.started.elapsed())),
            integrationLatency = if on(8) { self.integration_latency.map(ms) } else { None },
            integrationStatus = if on(9) { self.integration_status } else { None },
            integrationError = if on(10) { self.integration_error.as_deref() } else { None },
            authorizer.principalId = if on(11) { self.conn.principal_id.as_deref() } else { None },
            sourceIp = on(13).then(|| self.conn.source_ip.to_string()),
            userAgent = if on(14) { self.conn.user_agent.as_deref() } else { None },
            protocol = on(15).then_some("WEBSOCKET"),
            connectionId = on(17).then_some(&*self.conn.id),
            eventType = on(18).then(|| self.event_type.name()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chooses_fields_by_name() {
        let f = AccessLogFormat::new(true, Some(&["status".into(), "traceId".into()])).unwrap();
        assert!(f.has(5) && f.has(16) && !f.has(0));
        assert!(AccessLogFormat::new(true, Some(&["nope".into()])).is_err());
        assert!(!AccessLogFormat::new(false, None).unwrap().has(0));
        assert!(AccessLogFormat::new(true, None).unwrap().has(3));
    }
}
