//! The WebSocket `@connections` API on the admin listener: `POST` sends the body to a
//! client (binary when the content type is `application/octet-stream` or the body is
//! not UTF-8, else text), `GET` describes the connection, `DELETE` closes it.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use crate::connections::{Command, ConnectionTable, PostError};
use crate::respond::{self, Body, message};

/// Largest body `POST /@connections/{id}` reads (the largest `max_message` allowed).
const MAX_POST: usize = 16 << 20;

/// Answers `/@connections/{id}`.
pub(super) async fn answer(
    table: &dyn ConnectionTable,
    id: &str,
    req: Request<Incoming>,
) -> Response<Body> {
    let gone = || message(StatusCode::GONE, "Gone");
    // A cluster's store (or the node holding the connection) did not answer.
    let no_answer = || message(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
    match *req.method() {
        Method::POST => {
            let binary = req
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"application/octet-stream"));
            // Nothing larger than the biggest message any API allows is buffered.
            let body = match Limited::new(req.into_body(), MAX_POST).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    return message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
                }
                Err(_) => return message(StatusCode::BAD_REQUEST, "Bad Request"),
            };
            let command = match (binary, String::from_utf8(body.to_vec())) {
                (false, Ok(text)) => Command::Text(text),
                _ => Command::Binary(body),
            };
            match table.deliver(id, command).await {
                Ok(()) => respond::with_type(StatusCode::OK, "application/json", Bytes::new()),
                Err(PostError::Gone) => gone(),
                Err(PostError::Full) => message(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests"),
                Err(PostError::TooLarge(_)) => {
                    message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large")
                }
                Err(PostError::Unreachable) => no_answer(),
            }
        }
        Method::GET => match table.describe(id).await {
            Ok(Some(info)) => {
                let time = |t| humantime::format_rfc3339_millis(t).to_string();
                let body = serde_json::json!({
                    "connectedAt": time(info.connected_at),
                    "lastActiveAt": time(info.last_active_at),
                    "identity": {
                        "sourceIp": info.source_ip.to_string(),
                        "userAgent": info.user_agent,
                    },
                });
                respond::json_text(StatusCode::OK, body.to_string())
            }
            Ok(None) => gone(),
            Err(_) => no_answer(),
        },
        Method::DELETE => match table.deliver(id, Command::Disconnect).await {
            Ok(()) => respond::with_type(StatusCode::NO_CONTENT, "application/json", Bytes::new()),
            Err(PostError::Full) => message(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests"),
            Err(PostError::Unreachable) => no_answer(),
            Err(_) => gone(),
        },
        _ => message(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed"),
    }
}
