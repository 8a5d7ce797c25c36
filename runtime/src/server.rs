//! The public listener: hyper 1 (HTTP/1.1 and HTTP/2 cleartext), connection limits, and
//! graceful shutdown on SIGTERM/SIGINT (in-flight requests finish).
//!
//! The server runs one single-threaded event loop per worker thread, each accepting on
//! its own `SO_REUSEPORT` socket bound to the same address, with its own upstream
//! connection pool: the kernel spreads connections over the workers, and a request
//! never crosses threads. On two cores this costs 1–3 µs less per request than a
//! work-stealing runtime.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::client_cert::ClientCert;
use crate::gateway::LiveGateway;
use crate::idle::{InFlight, Watch, Watched};
use crate::listener_tls::ListenerTls;
use crate::pipeline;
use crate::respond::Body;
use crate::worker::Shared;

/// How often changed quota counters are written to their file.
const QUOTA_FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How often idle per-key throttle buckets are forgotten.
const EVICT_EVERY: Duration = Duration::from_secs(60);

/// Server settings that are not part of the gateway's request path.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Time a client has to send its request head.
    pub header_read_timeout: Duration,
    /// Time in-flight requests get after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Largest request line plus headers.
    pub max_header_bytes: usize,
    /// Most connections this worker holds at once.
    pub max_connections: usize,
    /// Serve HTTPS with this configuration (`[server] tls_cert`); plain HTTP without.
    pub tls: Option<Arc<ListenerTls>>,
}

/// Serves `shared` on `listener` until `shutdown` resolves, then drains connections.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    settings: ServerSettings,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // The head's deadline is the connection's (`idle`): it runs from accept and from
        // the end of each response, not from the head's first byte as hyper's would.
        .header_read_timeout(None)
        // hyper answers 431 itself when the head outgrows this buffer; the pipeline
        // enforces the exact limit below it.
        .max_buf_size((settings.max_header_bytes + 1024).max(8192))
        .max_headers(1000)
        .writev(false);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(settings.max_header_bytes as u32 + 1024)
        .max_concurrent_streams(256);
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    let slots = Arc::new(tokio::sync::Semaphore::new(settings.max_connections.max(1)));
    loop {
        tokio::select! {
            // At the limit, stop accepting: new connections wait in the backlog.
            accepted = accept(&listener, &slots) => {
                let (stream, remote, slot) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let watch = Watch::new(settings.header_read_timeout);
                let stream = Watched::new(stream, watch.clone());
                let Some(tls) = &settings.tls else {
                    let service = service(shared.clone(), watch, remote, false, None);
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(%remote, error = %e, "connection ended with an error");
                        }
                        drop(slot);
                    });
                    continue;
                };
                // The handshake runs in the connection's own task, within the time a
                // client has for its request head, with the configuration in force now.
                let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
                let shared = shared.clone();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                let handshake_timeout = settings.header_read_timeout;
                tokio::spawn(async move {
                    let stream = match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            tracing::debug!(%remote, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%remote, "TLS handshake timed out");
                            return;
                        }
                    };
                    // With mutual TLS, the certificate the handshake verified.
                    let cert = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .and_then(|der| ClientCert::from_der(der))
                        .map(Arc::new);
                    let service = service(shared, watch, remote, true, cert);
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(%remote, error = %e, "connection ended with an error");
                    }
                    drop(slot);
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: draining in-flight requests");
    let deadline = tokio::time::Instant::now() + settings.shutdown_grace;
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep_until(deadline) => {
            tracing::warn!(grace = ?settings.shutdown_grace, "grace period over; closing remaining connections");
        }
    }
    // Upgraded (WebSocket) connections are no longer hyper's: they were asked to close
    // at the signal; wait for them to finish `$disconnect`, within the same grace.
    while shared.websockets() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The service of one connection: each request through the pipeline, counted in
/// flight on the connection's watch.
fn service(
    shared: Arc<Shared>,
    watch: Arc<Watch>,
    remote: std::net::SocketAddr,
    secure: bool,
    cert: Option<Arc<ClientCert>>,
) -> impl hyper::service::Service<
    http::Request<hyper::body::Incoming>,
    Response = http::Response<Tracked>,
    Error = Infallible,
    Future = impl Future<Output = Result<http::Response<Tracked>, Infallible>> + Send,
> + Send
+ 'static {
    service_fn(move |req| {
        let (shared, watch, cert) = (shared.clone(), watch.clone(), cert.clone());
        async move {
            let in_flight = watch.request();
            let resp = pipeline::handle(&shared, req, remote, secure, cert).await;
            if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                watch.upgraded();
            }
            Ok::<_, Infallible>(resp.map(|body| Tracked {
                body,
                _in_flight: in_flight,
            }))
        }
    })
}

/// A response body that keeps its request counted in flight on the connection until
/// hyper has taken all of it (see [`crate::idle`]).
struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl hyper::body::Body for Tracked {
    type Data = bytes::Bytes;
    type Error = crate::respond::BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Waits for a free connection slot, then for a connection.
async fn accept(
    listener: &TcpListener,
    slots: &Arc<tokio::sync::Semaphore>,
) -> std::io::Result<(
    tokio::net::TcpStream,
    SocketAddr,
    tokio::sync::OwnedSemaphorePermit,
)> {
    let slot = slots
        .clone()
        .acquire_owned()
        .await
        .expect("the semaphore is never closed");
    let (stream, remote) = listener.accept().await?;
    Ok((stream, remote, slot))
}

/// How often buffered histogram samples are folded into their buckets. The recorder
/// keeps every sample (8 bytes, in blocks of 64) until then: three histograms per request
/// at 40,000 requests a second are over 1 MiB a second.
const METRICS_UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// Background upkeep, off the request path, until aborted: writes changed quota
/// counters every second, evicts idle per-key buckets every minute (of the gateway in
/// force at each tick), and folds buffered histogram samples into their buckets every
/// second — whether or not the admin listener is on, or they pile up for the life of
/// the process.
pub async fn housekeeping(gateway: LiveGateway, metrics: PrometheusHandle) {
    let mut flush = tokio::time::interval(QUOTA_FLUSH_EVERY);
    let mut evict = tokio::time::interval(EVICT_EVERY);
    let mut upkeep = tokio::time::interval(METRICS_UPKEEP_EVERY);
    for tick in [&mut flush, &mut evict, &mut upkeep] {
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    loop {
        tokio::select! {
            _ = upkeep.tick() => metrics.run_upkeep(),
            _ = flush.tick() => {
                let quotas = gateway.load().usage.quotas().clone();
                if quotas.file().is_none() {
                    continue;
                }
                match tokio::task::spawn_blocking(move || quotas.flush()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "writing quota counters"),
                    Err(e) => tracing::warn!(error = %e, "quota writer failed"),
                }
            }
            _ = evict.tick() => gateway.load().usage.throttle().evict_idle(),
        }
    }
}

/// Resolves at the first SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled, so a signal sent as soon as the gateway
/// says it is listening is caught rather than killing the process.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let int = signal(SignalKind::interrupt());
        let term = signal(SignalKind::terminate());
        async move {
            let wait = |s: std::io::Result<tokio::signal::unix::Signal>| async move {
                match s {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(_) => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(int) => {},
                () = wait(term) => {},
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// One listening socket per worker on `addr` (port 0: a free port, the same for all),
/// with `SO_REUSEPORT` so that the kernel spreads connections over them. Refused when
/// anything else listens on the address — another `weir` included, which with
/// `SO_REUSEPORT` alone would silently take a share of the connections.
pub fn bind_workers(
    addr: SocketAddr,
    workers: usize,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    if addr.port() != 0 {
        // Bound without SO_REUSEPORT, this fails if any socket listens there.
        use socket2::{Domain, Socket, Type};
        let probe = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        probe.set_reuse_address(true)?;
        probe.bind(&addr.into()).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                std::io::Error::new(e.kind(), format!("{e}: another process listens on {addr}"))
            } else {
                e
            }
        })?;
    }
    let first = reuseport_listener(addr)?;
    let addr = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..workers {
        sockets.push(reuseport_listener(addr)?);
    }
    Ok(sockets)
}

/// A listening socket with `SO_REUSEPORT`, so that each worker can bind its own.
fn reuseport_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}
