//! The admin listener (off unless `[admin] listen` is set): `GET /health` (liveness),
//! `GET /ready` (config loaded, plugins compiled and every function's `min_warm`
//! processes waiting for work; false while draining) and
//! `GET /metrics` (Prometheus text format), all open, the WebSocket `@connections` API
//! ([`connections`]), and `/admin/*` (plugins and reloads, behind a bearer token),
//! answered by [`plugins`].

mod connections;
pub mod plugins;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

use crate::connections::ConnectionTable;
use crate::lambda::Functions;
use crate::respond::{self, Body};

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
    pub api: Option<Arc<plugins::AdminApi>>,
    /// The functions, whose warm processes readiness waits for.
    pub functions: Arc<Functions>,
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

async fn answer(state: &AdminState, req: Request<Incoming>) -> Response<Body> {
    if req.uri().path().starts_with("/admin/") {
        return plugins::answer(state.api.as_deref(), req).await;
    }
    if let Some(id) = req.uri().path().strip_prefix("/@connections/") {
        if let Some(refused) = plugins::refusal_if_token_set(state.api.as_deref(), &req) {
            return refused;
        }
        let id = id.to_owned();
        return connections::answer(&*state.connections, &id, req).await;
    }
    let (status, content_type, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/health") => (
            StatusCode::OK,
            "application/json",
            r#"{"status":"ok"}"#.to_owned(),
        ),
        (&Method::GET, "/ready") => {
            let cold = state.functions.not_warm();
            if state.ready.load(Ordering::Relaxed) && cold.is_empty() {
                (
                    StatusCode::OK,
                    "application/json",
                    r#"{"status":"ready"}"#.to_owned(),
                )
            } else if cold.is_empty() {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "application/json",
                    r#"{"status":"not ready"}"#.to_owned(),
                )
            } else {
                let body = serde_json::json!({ "status": "not ready", "functions_starting": cold });
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "application/json",
                    body.to_string(),
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
    respond::with_type(status, content_type, Bytes::from(body))
}
