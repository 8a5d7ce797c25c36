//! End-to-end test support: start the real `weir` binary on `127.0.0.1:0` with a config,
//! start real upstream servers, send real HTTP requests, and sign real JWTs.

pub mod backend;
pub mod faulty;
pub mod grpc;
pub mod jwt;
pub mod lambda;
pub mod oidc;
pub mod redis;
pub mod ws;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

pub use weir_test_artifacts as artifacts;

/// A running `weir serve` process; killed on drop.
pub struct Weir {
    child: Child,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// `http` or `https` (with `[server] tls_cert`).
    pub scheme: &'static str,
    /// The admin listener's address, when the config has `[admin]`.
    pub admin: Option<SocketAddr>,
    /// The directory holding its config.
    pub dir: PathBuf,
    logs: Arc<Mutex<String>>,
    /// How it was started, for [`Weir::restart`].
    bin: PathBuf,
    config: PathBuf,
    env: Vec<(String, String)>,
    /// Whether dropping it removes `dir`.
    owns_dir: bool,
}

static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

/// A fresh, empty directory for one test.
pub fn test_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "weir-test-{}-{}",
        std::process::id(),
        NEXT_DIR.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Weir {
    /// Writes `config` (with `listen = 127.0.0.1:0` added unless present) and starts
    /// `bin serve` on it, waiting until it listens.
    pub fn start(bin: &str, config: &str) -> Weir {
        Self::start_with(bin, config, &[])
    }

    /// [`Weir::start`] with extra arguments after `serve --config PATH`.
    pub fn start_with(bin: &str, config: &str, args: &[&str]) -> Weir {
        let dir = test_dir();
        let config = if config.contains("[server]") {
            config.to_owned()
        } else {
            format!("[server]\nlisten = \"127.0.0.1:0\"\n\n{config}")
        };
        let path = dir.join("weir.toml");
        std::fs::write(&path, config).unwrap();
        Self::start_args(bin, &path, &[], args)
    }

    /// Starts `bin serve --config path` with extra environment variables.
    pub fn start_file(bin: &str, path: &Path, env: &[(&str, &str)]) -> Weir {
        Self::start_args(bin, path, env, &[])
    }

    /// Starts `bin serve --config path ARGS…` with extra environment variables.
    fn start_args(bin: &str, path: &Path, env: &[(&str, &str)], args: &[&str]) -> Weir {
        let mut child = Command::new(bin)
            .args(["serve", "--config"])
            .arg(path)
            .args(args)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning weir");
        let logs = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().unwrap();
        {
            let logs = logs.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = stderr.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    logs.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        let mut line = String::new();
        let mut admin = None;
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        loop {
            line.clear();
            stdout.read_line(&mut line).unwrap();
            match line.trim().strip_prefix("weir admin on http://") {
                Some(a) => admin = a.parse().ok(),
                None => break,
            }
        }
        let listening = line.trim().strip_prefix("weir listening on ");
        let Some((scheme, addr)) = listening.and_then(|url| {
            url.strip_prefix("http://")
                .map(|a| ("http", a))
                .or_else(|| url.strip_prefix("https://").map(|a| ("https", a)))
        }) else {
            std::thread::sleep(Duration::from_millis(200));
            let status = child.try_wait();
            panic!(
                "weir did not start (status {status:?}); stdout: {line:?}; stderr:\n{}",
                logs.lock().unwrap()
            );
        };
        let addr = addr.parse().unwrap();
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            while stdout.read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {
                sink.clear();
            }
        });
        Weir {
            child,
            addr,
            scheme,
            admin,
            dir: path.parent().unwrap().to_owned(),
            logs,
            bin: bin.into(),
            config: path.to_owned(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            owns_dir: true,
        }
    }

    /// Stops the server with SIGTERM (it must exit within 10 s) and starts it again on
    /// the same config and directory (the address may change).
    pub fn restart(&mut self) {
        let status = self.terminate(Duration::from_secs(10));
        assert!(status.is_some(), "weir did not stop on SIGTERM");
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let next = Weir::start_file(self.bin.to_str().unwrap(), &self.config, &env);
        let mut old = std::mem::replace(self, next);
        old.owns_dir = false;
    }

    /// `http://ADDR` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.addr, path)
    }

    /// `http://ADMIN` + `path` (panics when the config has no `[admin]`).
    pub fn admin_url(&self, path: &str) -> String {
        format!(
            "http://{}{}",
            self.admin.expect("no [admin] listener"),
            path
        )
    }

    /// Everything the server wrote to stderr so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// How many log lines contain `needle`.
    pub fn count_logs(&self, needle: &str) -> usize {
        self.logs().lines().filter(|l| l.contains(needle)).count()
    }

    /// The logs once `count` lines contain `needle` (panics after 10 s). Weir's stderr
    /// reaches the test through a reader thread, so a line written just before an
    /// answer can still be on its way when the answer arrives.
    pub async fn wait_for_logs(&self, needle: &str, count: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let logs = self.logs();
            if logs.lines().filter(|l| l.contains(needle)).count() >= count {
                return logs;
            }
            assert!(
                Instant::now() < deadline,
                "no {count} log lines with `{needle}` in:\n{logs}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM and waits (up to `timeout`) for the process to exit.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Replaces `from` with `to` in its config file and tells it to reload (`SIGHUP`).
    pub fn edit_config_and_hup(&self, from: &str, to: &str) {
        let path = self.dir.join("weir.toml");
        let text = std::fs::read_to_string(&path).unwrap().replace(from, to);
        std::fs::write(&path, text).unwrap();
        let sent = Command::new("kill")
            .args(["-HUP", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Weir {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A response as a test sees it.
#[derive(Debug)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (panics with the body if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A keep-alive HTTP/1.1 client.
#[derive(Clone)]
pub struct Client {
    inner: hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<Bytes>,
    >,
}

impl Default for Client {
    /// A client for `http://` URLs (and `https://` ones no test CA signed).
    fn default() -> Self {
        Self::with_roots(rustls::RootCertStore::empty(), false)
    }
}

impl Client {
    /// A client that also trusts `ca` for `https://` URLs.
    pub fn trusting(ca: &TestCa) -> Self {
        Self::with_tls(ca.client_config(), false)
    }

    /// [`Client::trusting`] that presents a client certificate (`(chain PEM, key PEM)`,
    /// as [`TestCa::client_cert`] makes them).
    pub fn trusting_with_cert(ca: &TestCa, cert: &(String, String)) -> Self {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain = CertificateDer::pem_slice_iter(cert.0.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(cert.1.as_bytes()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.ca_der.clone()).unwrap();
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
        Self::with_tls(tls, false)
    }

    /// [`Client::trusting`] that speaks only HTTP/2 (negotiated by ALPN).
    pub fn trusting_http2(ca: &TestCa) -> Self {
        Self::with_tls(ca.client_config(), true)
    }

    fn with_roots(roots: rustls::RootCertStore, http2: bool) -> Self {
        Self::with_tls(tls_client_config(roots), http2)
    }

    fn with_tls(tls: rustls::ClientConfig, http2: bool) -> Self {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http();
        let connector = if http2 {
            connector.enable_http2().build()
        } else {
            connector.enable_http1().build()
        };
        let mut builder = hyper_util::client::legacy::Client::builder(TokioExecutor::new());
        builder.http2_only(http2);
        Self {
            inner: builder.build(connector),
        }
    }
}

impl Client {
    /// Sends a request; panics only on transport errors.
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Reply {
        self.try_send(method, url, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"))
    }

    /// Sends a request.
    pub async fn try_send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Reply, String> {
        let mut req = Request::new(Full::new(body.into()));
        *req.method_mut() = Method::from_bytes(method.as_bytes()).unwrap();
        *req.uri_mut() = url.parse().unwrap();
        for (n, v) in headers {
            req.headers_mut().append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let resp = self
            .inner
            .request(req)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// `GET url`.
    pub async fn get(&self, url: &str) -> Reply {
        self.send("GET", url, &[], Bytes::new()).await
    }
}

/// A request an [`Upstream`] received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Method.
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// A real HTTP upstream on loopback. It answers every request with JSON describing
/// it (`method`, `path`, `query`, `headers`, `body`), except:
/// `/slow/{ms}` waits before answering, `/status/{code}` answers that status,
/// `/cors` sets `access-control-allow-origin: *` itself, and a request with
/// `x-choose-protocol: P` gets `sec-websocket-protocol: P` (a `$connect` backend
/// choosing a WebSocket subprotocol).
pub struct Upstream {
    /// Its address.
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    /// Whether it speaks HTTPS.
    tls: bool,
}

/// A certificate authority made for one test, and a server certificate it signed for
/// `127.0.0.1` and `localhost`.
pub struct TestCa {
    /// The authority's certificate, PEM: what a client must trust.
    pub ca_pem: String,
    /// The server certificate (PEM) and its key (PEM), for files a config names.
    pub server_pem: (String, String),
    ca_der: rustls::pki_types::CertificateDer<'static>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
}

impl TestCa {
    /// A new authority and server certificate.
    pub fn new() -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "weir test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();
        TestCa {
            ca_pem: ca.pem(),
            server_pem: (cert.pem(), key.serialize_pem()),
            ca_der: ca.der().clone(),
            issuer,
            chain: vec![cert.der().clone()],
            key: rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        }
    }

    /// A TLS client configuration that trusts this authority only.
    pub fn client_config(&self) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).unwrap();
        tls_client_config(roots)
    }

    /// A server configuration presenting the server certificate, offering `alpn`.
    pub fn server_config(&self, alpn: &[&[u8]]) -> rustls::ServerConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(self.chain.clone(), self.key.clone_key())
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config
    }

    /// A client certificate this authority signs: `(certificate PEM, key PEM)`.
    pub fn client_cert(&self) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "weir gateway");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// A TLS client configuration trusting `roots`.
fn tls_client_config(roots: rustls::RootCertStore) -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl Upstream {
    /// Starts the upstream on the current tokio runtime.
    pub async fn start() -> Upstream {
        Self::start_with(None).await
    }

    /// Starts an HTTPS upstream with `ca`'s server certificate.
    pub async fn start_tls(ca: &TestCa) -> Upstream {
        Self::start_tls_with(ca, false).await
    }

    /// Starts an HTTPS upstream with `ca`'s server certificate that accepts only clients
    /// presenting a certificate `ca` signed.
    pub async fn start_tls_requiring_client_cert(ca: &TestCa) -> Upstream {
        Self::start_tls_with(ca, true).await
    }

    async fn start_tls_with(ca: &TestCa, client_auth: bool) -> Upstream {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if client_auth {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.ca_der.clone()).unwrap();
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = builder
            .with_single_cert(ca.chain.clone(), ca.key.clone_key())
            .unwrap();
        Self::start_with(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let is_tls = tls.is_some();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let record = record.clone();
                let tls = tls.clone();
                let svc = service_fn(move |req| {
                    let record = record.clone();
                    async move { Ok::<_, Infallible>(answer(req, &record).await) }
                });
                tokio::spawn(serve_http1(stream, tls, svc));
            }
        });
        Upstream {
            addr,
            seen,
            accepted,
            tls: is_tls,
        }
    }

    /// `http://ADDR`, or `https://ADDR` for an HTTPS upstream.
    pub fn base(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Serves one accepted connection with HTTP/1.1, over TLS when `tls` is given (a client
/// that refuses the certificate ends the handshake, and the connection).
pub async fn serve_http1<S>(stream: TcpStream, tls: Option<tokio_rustls::TlsAcceptor>, svc: S)
where
    S: hyper::service::Service<
            Request<Incoming>,
            Response = Response<Full<Bytes>>,
            Error = Infallible,
        >,
    S::Future: Send + 'static,
{
    let http = hyper::server::conn::http1::Builder::new();
    match tls {
        Some(tls) => {
            if let Ok(stream) = tls.accept(stream).await {
                let _ = http.serve_connection(TokioIo::new(stream), svc).await;
            }
        }
        None => {
            let _ = http.serve_connection(TokioIo::new(stream), svc).await;
        }
    }
}

async fn answer(req: Request<Incoming>, record: &Mutex<Vec<Seen>>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let path = parts.uri.path().to_owned();
    record.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts.headers.clone(),
        body: body.clone(),
    });
    if path == "/introspect" {
        return introspect(&parts.headers, &body);
    }
    let mut status = StatusCode::OK;
    if let Some(ms) = path.strip_prefix("/slow/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
    }
    if let Some(code) = path.strip_prefix("/status/") {
        status = code
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::OK);
    }
    let headers: BTreeMap<String, String> = parts
        .headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let json = serde_json::json!({
        "method": parts.method.as_str(),
        "path": path,
        "query": parts.uri.query().unwrap_or(""),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    });
    let mut resp = Response::new(Full::new(Bytes::from(json.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    resp.headers_mut()
        .insert("server", "test-upstream".parse().unwrap());
    if path == "/cors" {
        resp.headers_mut()
            .insert("access-control-allow-origin", "*".parse().unwrap());
    }
    if path == "/cacheable" {
        resp.headers_mut()
            .insert("cache-control", "public, max-age=60".parse().unwrap());
    }
    if let Some(p) = parts.headers.get("x-choose-protocol") {
        resp.headers_mut()
            .insert("sec-websocket-protocol", p.clone());
    }
    resp
}

/// An OAuth 2.0 introspection endpoint (RFC 7662) for client `gateway` / secret
/// `s3cret:&`: tokens `good-NAME` are active for `NAME` with scope `read write`,
/// `expired-NAME` are active but past `exp`, anything else is inactive; other client
/// credentials are `401`.
fn introspect(headers: &http::HeaderMap, body: &[u8]) -> Response<Full<Bytes>> {
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD.encode("gateway:s3cret%3A%26");
    let authorized = headers
        .get("authorization")
        .is_some_and(|v| v.as_bytes() == format!("Basic {basic}").as_bytes());
    let form = String::from_utf8_lossy(body);
    let token = form
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .unwrap_or("");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let json = if let Some(name) = token.strip_prefix("good-") {
        serde_json::json!({"active": true, "sub": name, "scope": "read write", "client_id": "app", "exp": now + 3600})
    } else if let Some(name) = token.strip_prefix("expired-") {
        serde_json::json!({"active": true, "sub": name, "scope": "read", "exp": now - 10})
    } else {
        serde_json::json!({"active": false})
    };
    let mut resp = Response::new(Full::new(Bytes::from(json.to_string())));
    if !authorized {
        *resp.status_mut() = StatusCode::UNAUTHORIZED;
    }
    resp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    resp
}

/// Sends raw bytes on a new connection and returns whatever comes back before the
/// server closes it or `timeout` passes.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8], timeout: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(timeout, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A loopback port with nothing listening on it.
pub fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
