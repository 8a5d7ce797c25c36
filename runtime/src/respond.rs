//! Building responses: the one body type every listener sends, the JSON builders, and
//! the only place a [`GatewayError`] becomes a response (its status and message come
//! from [`GatewayError::status_and_message`]). The HTTP pipeline, the WebSocket
//! handshake and events, and the admin listener all answer through here.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};

use crate::error::GatewayError;

/// The body of every response the gateway sends: bytes in memory, or an upstream's
/// answer streamed on (`integrate::stream`), whose error resets the client's
/// connection.
pub type Body = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// Why a streamed body broke off.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body of these bytes.
pub fn full(body: Bytes) -> Body {
    Full::new(body).map_err(|never| match never {}).boxed()
}

/// An empty body.
pub fn empty_body() -> Body {
    full(Bytes::new())
}

/// A response with this status, headers and body.
pub fn from_parts(status: StatusCode, headers: HeaderMap, body: Bytes) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    *resp.headers_mut() = headers;
    resp
}

/// A response whose body is `body`, of this content type.
pub fn with_type(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// A JSON response from JSON text.
pub fn json_text(status: StatusCode, body: String) -> Response<Body> {
    with_type(status, "application/json", Bytes::from(body))
}

/// A JSON response from a value.
pub fn json(status: StatusCode, body: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    with_type(status, "application/json", Bytes::from(body))
}

/// `{"message": ...}` with this status: how every refusal reads.
pub fn message(status: StatusCode, message: &str) -> Response<Body> {
    json(status, &serde_json::json!({ "message": message }))
}

/// The response for a failed request: its status, `{"message": ...}`, and
/// `Retry-After` when waiting helps.
pub fn error(e: &GatewayError) -> Response<Body> {
    let (status, _) = e.status_and_message();
    let mut resp = json_text(status, e.body());
    if let Some(secs) = e.retry_after_secs() {
        resp.headers_mut().insert(header::RETRY_AFTER, secs.into());
    }
    resp
}

/// The response for a failed gRPC request: a trailers-only answer (`200`,
/// `content-type: application/grpc`) whose `grpc-status` says what the HTTP status
/// would (gRPC's HTTP-to-status mapping, with deadlines and limits named as such), and
/// whose `grpc-message` is the message.
pub fn grpc_error(e: &GatewayError) -> Response<Body> {
    let (status, message) = e.status_and_message();
    let code: u16 = match status.as_u16() {
        401 => 16,            // UNAUTHENTICATED
        403 => 7,             // PERMISSION_DENIED
        404 => 12,            // UNIMPLEMENTED
        408 | 504 => 4,       // DEADLINE_EXCEEDED
        413 | 429 | 431 => 8, // RESOURCE_EXHAUSTED
        500 => 13,            // INTERNAL
        502 | 503 => 14,      // UNAVAILABLE
        _ => 2,               // UNKNOWN
    };
    let mut resp = Response::new(empty_body());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert("grpc-status", HeaderValue::from(code));
    if let Ok(v) = HeaderValue::from_str(message) {
        h.insert("grpc-message", v);
    }
    resp
}

/// The text of an error frame for a WebSocket client, as AWS words them:
/// `{"message", "connectionId", "requestId"}`.
pub fn event_error(message: &str, connection_id: &str, request_id: &str) -> String {
    serde_json::json!({
        "message": message,
        "connectionId": connection_id,
        "requestId": request_id,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn errors_answer_with_their_status_message_and_retry_after() {
        let e = GatewayError::Throttled {
            level: crate::throttle::Level::Route,
            retry_after: Duration::from_millis(1500),
        };
        let resp = error(&e);
        assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "2");
        assert_eq!(resp.headers()[header::CONTENT_TYPE], "application/json");
        let resp = error(&GatewayError::NotFound);
        assert!(!resp.headers().contains_key(header::RETRY_AFTER));
        let frame = event_error("Forbidden", "c1", "r1");
        let v: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(v["connectionId"], "c1");
    }
}
