//! The AWS Lambda Runtime API (`2018-06-01`) for one process, on its own loopback
//! listener: `GET /runtime/invocation/next`, `POST /runtime/invocation/{id}/response`
//! and `/error`, and `POST /runtime/init/error`.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::supervisor::Process;
use super::{Failure, MAX_PAYLOAD, Next};

const PREFIX: &str = "/2018-06-01/runtime/";

/// Serves one connection of the process's runtime client.
pub(super) async fn serve(stream: TcpStream, process: Arc<Process>) {
    let _ = stream.set_nodelay(true);
    let svc = service_fn(move |req| {
        let process = process.clone();
        async move { Ok::<_, Infallible>(answer(&process, req).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), svc)
        .await;
}

async fn answer(process: &Process, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let Some(rest) = path.strip_prefix(PREFIX) else {
        return not_found();
    };
    let parts: Vec<&str> = rest.split('/').collect();
    match (req.method(), parts.as_slice()) {
        (&Method::GET, ["invocation", "next"]) => next(process).await,
        (&Method::POST, ["invocation", id, "response"]) => {
            let id = (*id).to_owned();
            match read(req).await {
                Ok(body) => finished(process, &id, Ok(body)),
                Err(status) => {
                    process.finish(&id, Err(Failure::TooLarge));
                    error(status, "RequestEntityTooLarge", "the response exceeds 6 MB")
                }
            }
        }
        (&Method::POST, ["invocation", id, "error"]) => {
            let id = (*id).to_owned();
            let kind = error_type(&req);
            let body = read(req).await.unwrap_or_default();
            let reason = describe(kind.as_deref(), &body);
            tracing::warn!(target: "weir::function", function = %process.function.name, request_id = %id, error = %reason, "invocation failed");
            finished(process, &id, Err(Failure::Error(reason)))
        }
        (&Method::POST, ["init", "error"]) => {
            let kind = error_type(&req);
            let body = read(req).await.unwrap_or_default();
            process.init_failed(describe(kind.as_deref(), &body));
            accepted()
        }
        _ => not_found(),
    }
}

/// `GET /invocation/next`: the next event, when there is one.
async fn next(process: &Process) -> Response<Full<Bytes>> {
    process.asked();
    let invocation = match process.function.next_for(process.id) {
        Next::Now(inv) => inv,
        Next::Wait(rx) => match rx.await {
            Ok(inv) => inv,
            // The function stopped: the process is about to be told to go.
            Err(_) => std::future::pending().await,
        },
        Next::Never => std::future::pending().await,
    };
    let arn = process.function.arn.clone();
    let (id, event, trace_id, deadline_ms) = process.begin(invocation);
    let mut resp = Response::new(Full::new(event));
    let h = resp.headers_mut();
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    set("lambda-runtime-aws-request-id", &id);
    set("lambda-runtime-deadline-ms", &deadline_ms.to_string());
    set("lambda-runtime-invoked-function-arn", &arn);
    if !trace_id.is_empty() {
        set("lambda-runtime-trace-id", &trace_id);
    }
    set("content-type", "application/json");
    resp
}

fn finished(process: &Process, id: &str, result: Result<Bytes, Failure>) -> Response<Full<Bytes>> {
    if process.finish(id, result) {
        accepted()
    } else {
        error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestID",
            "not the request id of the current invocation",
        )
    }
}

/// A body of at most [`MAX_PAYLOAD`] bytes.
async fn read(req: Request<Incoming>) -> Result<Bytes, StatusCode> {
    Limited::new(req.into_body(), MAX_PAYLOAD)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|_| StatusCode::PAYLOAD_TOO_LARGE)
}

fn error_type(req: &Request<Incoming>) -> Option<String> {
    req.headers()
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `errorType: errorMessage` from an error document, shortened for the log.
fn describe(kind: Option<&str>, body: &[u8]) -> String {
    let doc: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let kind = doc["errorType"].as_str().or(kind).unwrap_or("Unknown");
    let message = doc["errorMessage"].as_str().unwrap_or("");
    let mut text = format!("{kind}: {message}");
    if text.len() > 1024 {
        let mut end = 1024;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

fn accepted() -> Response<Full<Bytes>> {
    json(StatusCode::ACCEPTED, r#"{"status":"OK"}"#.to_owned())
}

fn not_found() -> Response<Full<Bytes>> {
    error(
        StatusCode::NOT_FOUND,
        "NotFound",
        "no such Runtime API path",
    )
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response<Full<Bytes>> {
    json(
        status,
        serde_json::json!({ "errorType": kind, "errorMessage": message }).to_string(),
    )
}

fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}
