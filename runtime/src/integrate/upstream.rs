//! The pooled upstream client shared by every HTTP integration (plain HTTP, and HTTPS
//! verified against [`UpstreamTls`]), and what it checks of every answer.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::strip_hop_by_hop;
use super::upload::Upload;
use crate::error::GatewayError;
use crate::pool::h1::{self, H1Connections, Lease};
use crate::pool::link::OutBody;

/// The pooled keep-alive client shared by every HTTP integration: plain HTTP, and HTTPS
/// verified against [`UpstreamTls`]'s roots.
#[derive(Clone)]
pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, OutBody>,
    /// This worker's own keep-alive connections to plain-HTTP upstreams, for answers
    /// read whole ([`Upstream::send_buffered`]).
    h1: H1Connections,
}

impl Upstream {
    /// A client for `http://` and `https://` upstreams.
    pub fn new(tls: &UpstreamTls) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        // The TLS layer sees the scheme; this one only opens TCP connections.
        connector.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls.config).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            // One send() per request instead of a writev: measurably cheaper on loopback.
            .http1_writev(false)
            .build(connector);
        Self {
            client,
            h1: H1Connections::default(),
        }
    }
}

/// How `https://` upstreams are reached: verified against the system's trusted
/// certificates and those of `[server] upstream_ca_file`, presenting the client
/// certificate of `upstream_client_cert` when an upstream asks for one. Read once, at
/// start.
pub struct UpstreamTls {
    config: Arc<rustls::ClientConfig>,
    /// Certificates trusted from the system's store.
    pub system_roots: usize,
    /// Certificates trusted from `upstream_ca_file`.
    pub file_roots: usize,
    /// Whether a client certificate is presented.
    pub client_cert: bool,
}

/// Where [`UpstreamTls`] reads its files from (paths already resolved).
#[derive(Debug, Default)]
pub struct UpstreamTlsFiles<'a> {
    /// PEM certificates to trust besides the system's.
    pub ca_file: Option<&'a std::path::Path>,
    /// The client certificate chain (PEM), with `client_key`.
    pub client_cert: Option<&'a std::path::Path>,
    /// The client certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub client_key: Option<&'a std::path::Path>,
}

impl UpstreamTls {
    /// The TLS settings of connections to `https://` upstreams.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        self.config.clone()
    }

    /// The `[server]` settings' files (`upstream_*`, relative to `base`), loaded.
    pub fn from_config(server: &crate::config::Server, base: &Path) -> Result<Self, String> {
        let resolve = |f: &Option<std::path::PathBuf>| f.as_ref().map(|f| base.join(f));
        let (ca_file, client_cert, client_key) = (
            resolve(&server.upstream_ca_file),
            resolve(&server.upstream_client_cert),
            resolve(&server.upstream_client_key),
        );
        Self::load(&UpstreamTlsFiles {
            ca_file: ca_file.as_deref(),
            client_cert: client_cert.as_deref(),
            client_key: client_key.as_deref(),
        })
    }

    /// Trusts the system's certificates and every certificate in `files.ca_file`; with
    /// `files.client_cert` and `files.client_key`, presents that certificate. An error
    /// names the setting whose file cannot be read, holds nothing usable, or lacks its
    /// pair.
    pub fn load(files: &UpstreamTlsFiles<'_>) -> Result<Self, String> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        let (system_roots, _) = roots.add_parsable_certificates(native.certs);
        let mut file_roots = 0;
        if let Some(path) = files.ca_file {
            for cert in crate::tls::pem_certificates("upstream_ca_file", path)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("upstream_ca_file {}: {e}", path.display()))?;
                file_roots += 1;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots);
        let config = match (files.client_cert, files.client_key) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let chain = crate::tls::pem_certificates("upstream_client_cert", cert)?;
                let key_der = crate::tls::pem_key("upstream_client_key", key)?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|e| format!("upstream_client_cert and upstream_client_key: {e}"))?
            }
            (Some(_), None) => return Err("upstream_client_cert needs upstream_client_key".into()),
            (None, Some(_)) => return Err("upstream_client_key needs upstream_client_cert".into()),
        };
        Ok(Self {
            config: Arc::new(config),
            system_roots,
            file_roots,
            client_cert: files.client_cert.is_some(),
        })
    }
}

impl Upstream {
    /// Sends a request and waits for the response head, within `timeout`.
    ///
    /// An idempotent request whose connection closed before any answer is sent again
    /// (at most `RESENDS` times) within the same timeout: a pooled keep-alive connection
    /// the upstream has just closed (it answered, then hung up without
    /// `Connection: close`) can be picked before its close is seen, and the request
    /// written to it is lost through no fault of its own; under load the next pooled
    /// connection may be such a one too. nginx's `proxy_next_upstream error` does the
    /// same.
    pub async fn send(
        &self,
        req: http::Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<http::Response<hyper::body::Incoming>, GatewayError> {
        let deadline = tokio::time::Instant::now() + timeout;
        self.send_by(req, deadline, timeout).await
    }

    /// [`Upstream::send`] with its deadline given.
    async fn send_by(
        &self,
        req: http::Request<Full<Bytes>>,
        deadline: tokio::time::Instant,
        timeout: Duration,
    ) -> Result<http::Response<hyper::body::Incoming>, GatewayError> {
        self.send_or_fail(req, deadline).await.map_err(|f| match f {
            SendFailure::Timeout => GatewayError::IntegrationTimeout(timeout),
            SendFailure::Client(e) => GatewayError::BadGateway(error_chain(&e)),
            SendFailure::Answer(e) => e,
        })
    }

    /// [`Upstream::send`], with the client's own error when there is no answer by
    /// `deadline`.
    async fn send_or_fail(
        &self,
        req: http::Request<Full<Bytes>>,
        deadline: tokio::time::Instant,
    ) -> Result<http::Response<hyper::body::Incoming>, SendFailure> {
        let client = &self.client;
        let sent = with_resends(req, deadline, closed_before_answer, move |req| {
            client.request(req.map(|b| b.map_err(|never| match never {}).boxed_unsync()))
        });
        match sent.await {
            Ok(resp) => check_framing(resp).map_err(SendFailure::Answer),
            Err(Some(e)) => Err(SendFailure::Client(e)),
            Err(None) => Err(SendFailure::Timeout),
        }
    }

    /// [`Upstream::send`] for an answer that will be read whole by `deadline` (`timeout`
    /// from now), to `target`: to a plain-HTTP upstream (`req` in origin form) the
    /// request goes over this worker's own keep-alive connections
    /// ([`crate::pool::h1`]), and the [`Lease`] gives the connection back once the
    /// answer's body has been read to its end. An idempotent request is sent again as `send` does.
    pub async fn send_buffered(
        &self,
        req: http::Request<Full<Bytes>>,
        target: &super::HttpTarget,
        deadline: tokio::time::Instant,
        timeout: Duration,
    ) -> Result<(http::Response<hyper::body::Incoming>, Option<Lease>), GatewayError> {
        if !target.is_plain() {
            return self
                .send_by(req, deadline, timeout)
                .await
                .map(|resp| (resp, None));
        }
        let key = target.authority();
        let h1 = &self.h1;
        let sent = with_resends(req, deadline, h1::Failure::lost, move |req| {
            h1.send(req, key)
        });
        match sent.await {
            Ok((resp, lease)) => check_framing(resp).map(|resp| (resp, Some(lease))),
            Err(Some(failure)) => Err(bad_gateway(failure)),
            Err(None) => Err(GatewayError::IntegrationTimeout(timeout)),
        }
    }
}

/// Makes `attempt` with `req` by `deadline`; while an idempotent request's attempt
/// failed with its connection closed before any answer (`lost`), makes it again with a
/// copy, at most [`RESENDS`] times (see [`Upstream::send`]). The last attempt's error,
/// or `None` past the deadline.
async fn with_resends<T, E, Fut>(
    mut req: http::Request<Full<Bytes>>,
    deadline: tokio::time::Instant,
    lost: impl Fn(&E) -> bool,
    mut attempt: impl FnMut(http::Request<Full<Bytes>>) -> Fut,
) -> Result<T, Option<E>>
where
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let mut resends = 0;
    loop {
        let again = (resends < RESENDS && req.method().is_idempotent()).then(|| copy(&req));
        match tokio::time::timeout_at(deadline, attempt(req)).await {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(e)) => match again {
                Some(again) if lost(&e) => {
                    metrics::counter!("weir_upstream_retries_total").increment(1);
                    resends += 1;
                    req = again;
                }
                _ => return Err(Some(e)),
            },
            Err(_) => return Err(None),
        }
    }
}

/// Why [`Upstream::send_or_fail`] has no answer to pass on.
enum SendFailure {
    /// None within the timeout.
    Timeout,
    /// The client failed: connecting, TLS, or the connection broke.
    Client(hyper_util::client::legacy::Error),
    /// An answer that may not be passed on ([`check_framing`]).
    Answer(GatewayError),
}

/// What a failed outbound request tells a plugin (a `wasi:http` error code), from the
/// errors the client's failure carries: nothing listening, or TLS refused. (An
/// `io::Error`'s `source` skips the error it wraps, so wrapped errors are looked into.)
fn outbound_error(e: &(dyn std::error::Error + 'static)) -> crate::plugin::outbound::OutboundError {
    use crate::plugin::outbound::OutboundError;
    let mut source = Some(e);
    while let Some(s) = source {
        if s.is::<rustls::Error>() {
            return OutboundError::Tls;
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return OutboundError::Refused;
            }
            if let Some(inner) = io.get_ref() {
                let found = outbound_error(inner);
                if found != OutboundError::Failed {
                    return found;
                }
            }
        }
        source = s.source();
    }
    OutboundError::Failed
}

impl Upstream {
    /// Sends a request whose body streams from the client (`upload`), once, and waits
    /// for the response head within `timeout`. A body the client side cut off is its
    /// error (`413`, `408`), not a `502`.
    pub async fn send_streamed(
        &self,
        req: http::Request<OutBody>,
        upload: &Upload,
        timeout: Duration,
    ) -> Result<http::Response<hyper::body::Incoming>, GatewayError> {
        match tokio::time::timeout(timeout, self.client.request(req)).await {
            Ok(Ok(resp)) => check_framing(resp),
            Ok(Err(e)) => Err(upload
                .error()
                .unwrap_or_else(|| GatewayError::BadGateway(error_chain(&e)))),
            Err(_) => Err(upload
                .error()
                .unwrap_or(GatewayError::IntegrationTimeout(timeout))),
        }
    }
}

/// An upstream answer the gateway may pass on: a final status, and one framing. An
/// answer with both `Content-Length` and `Transfer-Encoding` is ambiguous (RFC 9112
/// 6.3: a sender must not send both, and one who does may be trying to smuggle a
/// response); `101` answers a request that asked for no upgrade. Both are `502`.
pub(super) fn check_framing(
    resp: http::Response<hyper::body::Incoming>,
) -> Result<http::Response<hyper::body::Incoming>, GatewayError> {
    if resp.status().is_informational() {
        return Err(GatewayError::BadGateway(format!(
            "the upstream answered {} to a request that asked for no upgrade",
            resp.status()
        )));
    }
    let h = resp.headers();
    if h.contains_key(header::CONTENT_LENGTH) && h.contains_key(header::TRANSFER_ENCODING) {
        return Err(GatewayError::BadGateway(
            "the upstream's answer has both Content-Length and Transfer-Encoding".into(),
        ));
    }
    Ok(resp)
}

/// Makes an upstream answer's headers fit to send on: hop-by-hop headers go, and so
/// does `Content-Length` (the body is read whole, and its length is what the client is
/// told), except in the answer to a `HEAD`, which has no body to measure.
pub fn response_headers(headers: &mut HeaderMap, method: &http::Method) {
    strip_hop_by_hop(headers);
    if method != http::Method::HEAD {
        headers.remove(header::CONTENT_LENGTH);
    }
}

/// How many times an idempotent request may be sent again after its connection closed
/// unanswered (see [`Upstream::send`]).
const RESENDS: u32 = 2;

/// The request again (its body is already in memory).
fn copy(req: &http::Request<Full<Bytes>>) -> http::Request<Full<Bytes>> {
    let mut again = http::Request::new(req.body().clone());
    *again.method_mut() = req.method().clone();
    *again.uri_mut() = req.uri().clone();
    *again.version_mut() = req.version();
    *again.headers_mut() = req.headers().clone();
    again
}

/// The `502` for an exchange on one of [`crate::pool::h1`]'s connections that got no
/// answer.
pub(super) fn bad_gateway(failure: h1::Failure) -> GatewayError {
    GatewayError::BadGateway(match failure {
        h1::Failure::Exchange { error, .. } => error_chain(&error),
        h1::Failure::Connect(why) => why,
    })
}

/// Whether the connection was closed or reset after the request went out and before
/// any of the response: not a refused connection, a bad answer or a broken body.
pub(super) fn closed_before_answer(e: &hyper_util::client::legacy::Error) -> bool {
    !e.is_connect() && h1::lost_in(std::error::Error::source(e))
}

/// Reads an upstream response body, at most `limit` bytes, by `deadline`: 504 when it
/// stalls past it, 502 when it is too large or breaks off.
pub async fn read_upstream_body(
    body: hyper::body::Incoming,
    limit: u64,
    deadline: tokio::time::Instant,
    timeout: Duration,
) -> Result<Bytes, GatewayError> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    match tokio::time::timeout_at(deadline, Limited::new(body, limit).collect()).await {
        Err(_) => Err(GatewayError::IntegrationTimeout(timeout)),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(GatewayError::BadGateway(format!(
            "the response body exceeds {limit} bytes"
        ))),
        Ok(Err(e)) => Err(GatewayError::BadGateway(format!(
            "reading the response body: {}",
            error_chain(&*e)
        ))),
    }
}

pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Outbound requests of plugins (`function` components, authorizers with
/// `allow_outbound`) go out through this client, as the gateway's own do: pooled, TLS
/// verified against the gateway's trust store, errors told apart by their types.
impl crate::plugin::outbound::Sender for Upstream {
    fn send(
        &self,
        req: http::Request<Bytes>,
        timeout: Duration,
        max_body: usize,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = Result<http::Response<Bytes>, crate::plugin::outbound::OutboundError>,
                > + Send,
        >,
    > {
        use crate::plugin::outbound::OutboundError;
        let upstream = self.clone();
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + timeout;
            let resp = upstream
                .send_or_fail(req.map(Full::new), deadline)
                .await
                .map_err(|f| match f {
                    SendFailure::Timeout => OutboundError::Timeout,
                    SendFailure::Client(e) => outbound_error(&e),
                    SendFailure::Answer(_) => OutboundError::Failed,
                })?;
            let (parts, body) = resp.into_parts();
            let limited = Limited::new(body, max_body).collect();
            let body = match tokio::time::timeout_at(deadline, limited).await {
                Err(_) => return Err(OutboundError::Timeout),
                Ok(Ok(collected)) => collected.to_bytes(),
                Ok(Err(e)) if e.is::<LengthLimitError>() => return Err(OutboundError::TooLarge),
                Ok(Err(_)) => return Err(OutboundError::Failed),
            };
            Ok(http::Response::from_parts(parts, body))
        })
    }
}
