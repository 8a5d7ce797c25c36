//! Named backends for pool tests: real HTTP/1.1 or h2c servers on loopback that say who
//! answered, can be told to fail their health check or every request, stream
//! server-sent events, and be stopped and restarted on the same port.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// A backend's answers: `GET /health` answers the health status (200 unless set);
/// `/grpc?n=N&gap=MS` echoes the body N times (default 1), MS apart, then ends with
/// `grpc-status` trailers (from `x-grpc-status`);
/// `/events?n=N&gap=MS` streams N server-sent events `data: I`, MS apart; `/bytes?n=N`
/// streams N zero bytes in 64 KiB chunks; `/upload` reads the body and answers JSON
/// `{"bytes", "frames", "first_ms", "last_ms"}`; anything else answers (after `?ms=N`
/// milliseconds) JSON
/// `{"backend", "method", "path", "version", "host"}` with the status set (200 unless set).
pub struct Backend {
    /// Its address (kept across restarts).
    pub addr: SocketAddr,
    state: Arc<State>,
    mode: Mode,
    task: Option<JoinHandle<()>>,
}

/// How a backend speaks.
#[derive(Clone)]
enum Mode {
    Http1,
    H2c,
    /// HTTP/2 over TLS (ALPN `h2`).
    H2Tls(tokio_rustls::TlsAcceptor),
}

struct State {
    name: String,
    hits: AtomicUsize,
    /// Connections open now.
    open: AtomicUsize,
    /// `/upload` bodies that broke off before their end.
    aborted: AtomicUsize,
    health: AtomicU16,
    status: AtomicU16,
}

type Body = BoxBody<Bytes, Infallible>;

impl Backend {
    /// An HTTP/1.1 backend.
    pub async fn start(name: &str) -> Backend {
        Self::start_with(name, Mode::Http1).await
    }

    /// An HTTP/2 backend with prior knowledge (h2c).
    pub async fn start_h2c(name: &str) -> Backend {
        Self::start_with(name, Mode::H2c).await
    }

    /// An HTTP/2 backend over TLS with `ca`'s server certificate (ALPN `h2` only).
    pub async fn start_h2_tls(name: &str, ca: &crate::TestCa) -> Backend {
        let config = ca.server_config(&[b"h2"]);
        Self::start_with(name, Mode::H2Tls(Arc::new(config).into())).await
    }

    /// An HTTP/1.1 backend on `addr` (a port already taken is an error).
    pub async fn start_at(name: &str, addr: SocketAddr) -> std::io::Result<Backend> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Self::on(name, Mode::Http1, listener))
    }

    async fn start_with(name: &str, mode: Mode) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::on(name, mode, listener)
    }

    fn on(name: &str, mode: Mode, listener: TcpListener) -> Backend {
        let mut backend = Backend {
            addr: listener.local_addr().unwrap(),
            state: Arc::new(State {
                name: name.to_owned(),
                hits: AtomicUsize::new(0),
                open: AtomicUsize::new(0),
                aborted: AtomicUsize::new(0),
                health: AtomicU16::new(200),
                status: AtomicU16::new(200),
            }),
            mode,
            task: None,
        };
        backend.serve(listener);
        backend
    }

    fn serve(&mut self, listener: TcpListener) {
        let state = self.state.clone();
        let mode = self.mode.clone();
        self.task = Some(tokio::spawn(async move {
            // Dropped with the task: every connection ends with it.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                let mode = mode.clone();
                state.open.fetch_add(1, Ordering::Relaxed);
                let open = OpenConnection(state.clone());
                connections.spawn(async move {
                    let _open = open;
                    let svc = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(answer(req, &state).await) }
                    });
                    let h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                    match mode {
                        Mode::H2c => {
                            let _ = h2.serve_connection(TokioIo::new(stream), svc).await;
                        }
                        Mode::H2Tls(tls) => {
                            if let Ok(stream) = tls.accept(stream).await {
                                let _ = h2.serve_connection(TokioIo::new(stream), svc).await;
                            }
                        }
                        Mode::Http1 => {
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(TokioIo::new(stream), svc)
                                .await;
                        }
                    }
                });
                while connections.try_join_next().is_some() {}
            }
        }));
    }

    /// `http://ADDR`, or `https://ADDR` over TLS.
    pub fn base(&self) -> String {
        match self.mode {
            Mode::H2Tls(_) => format!("https://{}", self.addr),
            _ => format!("http://{}", self.addr),
        }
    }

    /// Requests answered (health checks aside).
    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::Relaxed)
    }

    /// Connections open now (health checks' included).
    pub fn open_connections(&self) -> usize {
        self.state.open.load(Ordering::Relaxed)
    }

    /// `/upload` bodies that broke off before their end.
    pub fn aborted_uploads(&self) -> usize {
        self.state.aborted.load(Ordering::Relaxed)
    }

    /// The status of every answer but health checks from now on.
    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::Relaxed);
    }

    /// The status of `GET /health` from now on.
    pub fn set_health(&self, status: u16) {
        self.state.health.store(status, Ordering::Relaxed);
    }

    /// Closes the port and every open connection (requests in flight are cut off).
    pub async fn stop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens on the same port again.
    pub async fn restart(&mut self) {
        self.stop().await;
        let listener = TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }
}

/// Counts a connection open until dropped.
struct OpenConnection(Arc<State>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn query_number(req: &Request<Incoming>, key: &str) -> u64 {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

async fn answer(req: Request<Incoming>, state: &State) -> Response<Body> {
    let path = req.uri().path().to_owned();
    if path == "/health" {
        let status = StatusCode::from_u16(state.health.load(Ordering::Relaxed)).unwrap();
        let mut resp = Response::new(Full::new(Bytes::from_static(b"ok")).boxed());
        *resp.status_mut() = status;
        return resp;
    }
    state.hits.fetch_add(1, Ordering::Relaxed);
    if path == "/events" {
        let n = query_number(&req, "n");
        let gap = Duration::from_millis(query_number(&req, "gap"));
        let events = futures_util::stream::unfold(0, move |i| async move {
            if i == n {
                return None;
            }
            if i > 0 {
                tokio::time::sleep(gap).await;
            }
            let event = Frame::data(Bytes::from(format!("data: {i}\n\n")));
            Some((Ok::<_, Infallible>(event), i + 1))
        });
        let mut resp = Response::new(StreamBody::new(events).boxed());
        resp.headers_mut()
            .insert("content-type", "text/event-stream".parse().unwrap());
        return resp;
    }
    if path == "/grpc" {
        // Echoes the request's messages `n` times (a server stream, default once), `gap`
        // ms apart, then trailers with the status asked for in `x-grpc-status` (0 unless
        // set).
        let status = req
            .headers()
            .get("x-grpc-status")
            .cloned()
            .unwrap_or_else(|| "0".parse().unwrap());
        let n = query_number(&req, "n").max(1);
        let gap = Duration::from_millis(query_number(&req, "gap"));
        let body = req
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", status);
        trailers.insert("grpc-message", state.name.parse().unwrap());
        let frames = futures_util::stream::unfold(0, move |i| {
            let body = body.clone();
            let trailers = trailers.clone();
            async move {
                if i > n {
                    return None;
                }
                if i == n {
                    return Some((Ok::<_, Infallible>(Frame::trailers(trailers)), i + 1));
                }
                if i > 0 {
                    tokio::time::sleep(gap).await;
                }
                Some((Ok(Frame::data(body)), i + 1))
            }
        });
        let mut resp = Response::new(StreamBody::new(frames).boxed());
        resp.headers_mut()
            .insert("content-type", "application/grpc".parse().unwrap());
        return resp;
    }
    if path == "/bytes" {
        let mut left = query_number(&req, "n");
        let chunks = futures_util::stream::poll_fn(move |_| {
            if left == 0 {
                return std::task::Poll::Ready(None);
            }
            let n = left.min(64 * 1024);
            left -= n;
            let chunk = Frame::data(Bytes::from(vec![0u8; n as usize]));
            std::task::Poll::Ready(Some(Ok::<_, Infallible>(chunk)))
        });
        return Response::new(StreamBody::new(chunks).boxed());
    }
    if path == "/upload" {
        // Reads the body frame by frame: its size, when its first and last bytes came
        // (ms after the head), and how many frames.
        let started = std::time::Instant::now();
        let mut body = req.into_body();
        let (mut bytes, mut frames, mut first, mut last) = (0usize, 0usize, None, 0u128);
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        bytes += data.len();
                        frames += 1;
                        let at = started.elapsed().as_millis();
                        first.get_or_insert(at);
                        last = at;
                    }
                }
                Err(_) => {
                    state.aborted.fetch_add(1, Ordering::Relaxed);
                    return Response::new(Full::new(Bytes::from_static(b"aborted")).boxed());
                }
            }
        }
        let json = serde_json::json!({
            "bytes": bytes, "frames": frames, "first_ms": first, "last_ms": last,
        });
        return Response::new(Full::new(Bytes::from(json.to_string())).boxed());
    }
    let ms = query_number(&req, "ms");
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let json = serde_json::json!({
        "backend": state.name,
        "method": req.method().as_str(),
        "path": path,
        "version": format!("{:?}", req.version()),
        "host": req.headers().get("host").and_then(|h| h.to_str().ok())
            .or(req.uri().authority().map(|a| a.as_str())),
    });
    let _ = req.into_body().collect().await;
    let mut resp = Response::new(Full::new(Bytes::from(json.to_string())).boxed());
    *resp.status_mut() = StatusCode::from_u16(state.status.load(Ordering::Relaxed)).unwrap();
    resp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    resp.headers_mut()
        .insert("x-backend", state.name.parse().unwrap());
    resp
}
