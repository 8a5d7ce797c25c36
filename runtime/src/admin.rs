//! The admin listener (off unless `[admin] listen` is set): `GET /health` (liveness),
//! `GET /ready` (config loaded and plugins compiled; false while draining) and
//! `GET /metrics` (Prometheus text format), all open, the WebSocket `@connections` API,
//! and `/admin/*` (plugins and reloads, behind a bearer token), answered by
//! [`crate::reload::api`].

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

use crate::websocket::{Command, ConnectionTable, PostError};

/// Largest body `POST /@connections/{id}` reads (the largest `max_message` allowed).
const MAX_POST: usize = 16 << 20;

/// Latency buckets, in seconds, for every histogram.
const BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 30.0,
];

/// Installs the process-wide Prometheus recorder; metrics recorded before this are lost.
pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new()
        .set_buckets(&BUCKETS)?
        .install_recorder()?;
    Ok(handle)
}

/// What the admin endpoints report.
#[derive(Clone)]
pub struct AdminState {
    /// Whether the gateway is ready for traffic.
    pub ready: Arc<AtomicBool>,
    /// Renders the metrics.
    pub metrics: PrometheusHandle,
    /// Open WebSocket connections, for `/@connections/{id}`.
    pub connections: Arc<dyn ConnectionTable>,
    /// The admin API under `/admin/` (off when `None`).
    pub api: Option<Arc<crate::reload::api::AdminApi>>,
}

/// Serves the admin endpoints until `shutdown` resolves.
pub async fn serve(listener: TcpListener, state: AdminState, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(answer(&state, req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            () = &mut shutdown => break,
        }
    }
}

async fn answer(state: &AdminState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.uri().path().starts_with("/admin/") {
        return crate::reload::api::answer(state.api.as_deref(), req).await;
    }
    if let Some(id) = req.uri().path().strip_prefix("/@connections/") {
        if let Some(refused) = crate::reload::api::refusal_if_token_set(state.api.as_deref(), &req)
        {
            return refused;
        }
        let id = id.to_owned();
        return connections(state, &id, req).await;
    }
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/health") => (
            StatusCode::OK,
            "application/json",
            r#"{"status":"ok"}"#.to_owned(),
        ),
        (&Method::GET, "/ready") => {
            if state.ready.load(Ordering::Relaxed) {
                (
                    StatusCode::OK,
                    "application/json",
                    r#"{"status":"ready"}"#.to_owned(),
                )
            } else {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "application/json",
                    r#"{"status":"not ready"}"#.to_owned(),
                )
            }
        }
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            state.metrics.render(),
        ),
        (_, "/health" | "/ready" | "/metrics") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "application/json",
            r#"{"message":"Method Not Allowed"}"#.to_owned(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "application/json",
            r#"{"message":"Not Found"}"#.to_owned(),
        ),
    };
    response(status, content_type, Bytes::from(body))
}

fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    resp
}

fn message(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "message": message }).to_string();
    response(status, "application/json", Bytes::from(body))
}

/// `/@connections/{id}`: `POST` sends the body to the client (binary when the content
/// type is `application/octet-stream` or the body is not UTF-8, else text), `GET`
/// describes the connection, `DELETE` closes it.
async fn connections(
    state: &AdminState,
    id: &str,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let table = &state.connections;
    let gone = || message(StatusCode::GONE, "Gone");
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
            match table.send(id, command) {
                Ok(()) => response(StatusCode::OK, "application/json", Bytes::new()),
                Err(PostError::Gone) => gone(),
                Err(PostError::Full) => message(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests"),
                Err(PostError::TooLarge(_)) => {
                    message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large")
                }
            }
        }
        Method::GET => match table.info(id) {
            Some(info) => {
                let time = |t| humantime::format_rfc3339_millis(t).to_string();
                let body = serde_json::json!({
                    "connectedAt": time(info.connected_at),
                    "lastActiveAt": time(info.last_active_at),
                    "identity": {
                        "sourceIp": info.source_ip.to_string(),
                        "userAgent": info.user_agent,
                    },
                });
                response(
                    StatusCode::OK,
                    "application/json",
                    Bytes::from(body.to_string()),
                )
            }
            None => gone(),
        },
        Method::DELETE => match table.send(id, Command::Disconnect) {
            Ok(()) => response(StatusCode::NO_CONTENT, "application/json", Bytes::new()),
            Err(PostError::Full) => message(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests"),
            Err(_) => gone(),
        },
        _ => message(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed"),
    }
}
