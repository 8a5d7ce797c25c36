//! The integrate stage: proxy to an HTTP upstream through a pooled client, or answer
//! with a mock response.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Uri};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::error::GatewayError;

/// A route's integration.
pub enum Integration {
    /// Proxy to an upstream.
    Http(HttpTarget),
    /// A fixed response.
    Mock(Arc<MockResponse>),
}

/// A fixed response.
pub struct MockResponse {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Body.
    pub body: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Param(String),
}

/// An upstream URL template: `http://host:port/path/{param}/{proxy+}` (or `https://`).
#[derive(Debug, Clone)]
pub struct HttpTarget {
    scheme_authority: String,
    authority: HeaderValue,
    /// `None`: the template has no path, so the client's path is forwarded as is.
    path: Option<Vec<Part>>,
}

impl HttpTarget {
    /// Parses a template whose `{name}` placeholders must be among `params`.
    pub fn parse(url: &str, params: &[String]) -> Result<Self, String> {
        let (scheme, rest) = if let Some(rest) = url.strip_prefix("http://") {
            ("http", rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            ("https", rest)
        } else {
            return Err(format!(
                "`{url}`: the URL must start with http:// or https://"
            ));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if path.starts_with('?') || path.contains('?') {
            return Err(format!(
                "`{url}`: a query string in the template is not supported"
            ));
        }
        let parsed: http::uri::Authority = authority
            .parse()
            .map_err(|_| format!("`{url}`: invalid host `{authority}`"))?;
        if parsed.as_str().contains('@') {
            return Err(format!("`{url}`: credentials in the URL are not supported"));
        }
        let path = if path.is_empty() {
            None
        } else {
            Some(parse_template(path, params).map_err(|e| format!("`{url}`: {e}"))?)
        };
        Ok(Self {
            scheme_authority: format!("{scheme}://{authority}"),
            authority: HeaderValue::from_str(authority)
                .map_err(|_| format!("`{url}`: invalid host `{authority}`"))?,
            path,
        })
    }

    /// The upstream URI for a request. `path_override` is a path set by a mapper.
    pub fn uri(
        &self,
        client_path: &str,
        path_override: Option<&str>,
        params: &[(String, String)],
        query: &str,
    ) -> Result<Uri, GatewayError> {
        let mut uri = String::with_capacity(self.scheme_authority.len() + 64);
        uri.push_str(&self.scheme_authority);
        match (path_override, &self.path) {
            (Some(p), _) => uri.push_str(p),
            (None, None) => uri.push_str(client_path),
            (None, Some(parts)) => {
                for part in parts {
                    match part {
                        Part::Literal(l) => uri.push_str(l),
                        Part::Param(name) => {
                            let v = params
                                .iter()
                                .find(|(k, _)| k == name)
                                .map(|(_, v)| v.as_str())
                                .unwrap_or("");
                            uri.push_str(v);
                        }
                    }
                }
            }
        }
        if !query.is_empty() {
            uri.push('?');
            uri.push_str(query);
        }
        uri.parse().map_err(|_| {
            GatewayError::BadRequest(format!("cannot build an upstream URI from `{uri}`"))
        })
    }

    /// The upstream's `host:port`.
    pub fn authority(&self) -> &HeaderValue {
        &self.authority
    }
}

fn parse_template(path: &str, params: &[String]) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let close = rest[open..]
            .find('}')
            .map(|c| open + c)
            .ok_or("unclosed `{` in the path")?;
        if open > 0 {
            parts.push(Part::Literal(rest[..open].to_owned()));
        }
        let name = rest[open + 1..close].trim_end_matches('+');
        if !params.iter().any(|p| p == name) {
            return Err(format!(
                "placeholder `{{{name}}}` is not a parameter of the route key"
            ));
        }
        parts.push(Part::Param(name.to_owned()));
        rest = &rest[close + 1..];
    }
    if rest.contains('}') {
        return Err("unmatched `}` in the path".to_owned());
    }
    if !rest.is_empty() {
        parts.push(Part::Literal(rest.to_owned()));
    }
    Ok(parts)
}

/// Headers that describe one connection and are never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, including any named by `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Usually there are none: one pass over the names instead of nine removals.
    let proxy_connection = HeaderName::from_static("proxy-connection");
    if !headers
        .keys()
        .any(|n| HOP_BY_HOP.contains(n) || *n == proxy_connection)
    {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::try_from(n.trim()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove(HeaderName::from_static("proxy-connection"));
}

/// The pooled keep-alive client shared by every HTTP integration: plain HTTP, and HTTPS
/// verified against [`UpstreamTls`]'s roots.
#[derive(Clone)]
pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
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
        Self { client }
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
        mut req: http::Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<http::Response<hyper::body::Incoming>, GatewayError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut resends = 0;
        loop {
            let again = (resends < RESENDS && req.method().is_idempotent()).then(|| copy(&req));
            match tokio::time::timeout_at(deadline, self.client.request(req)).await {
                Ok(Ok(resp)) => return check_framing(resp),
                Ok(Err(e)) => match again {
                    Some(again) if closed_before_answer(&e) => {
                        metrics::counter!("weir_upstream_retries_total").increment(1);
                        resends += 1;
                        req = again;
                    }
                    _ => return Err(GatewayError::BadGateway(error_chain(&e))),
                },
                Err(_) => return Err(GatewayError::IntegrationTimeout(timeout)),
            }
        }
    }
}

/// An upstream answer the gateway may pass on: a final status, and one framing. An
/// answer with both `Content-Length` and `Transfer-Encoding` is ambiguous (RFC 9112
/// 6.3: a sender must not send both, and one who does may be trying to smuggle a
/// response); `101` answers a request that asked for no upgrade. Both are `502`.
fn check_framing(
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

/// Whether the connection was closed or reset after the request went out and before
/// any of the response: not a refused connection, a bad answer or a broken body.
fn closed_before_answer(e: &hyper_util::client::legacy::Error) -> bool {
    if e.is_connect() {
        return false;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<hyper::Error>()
            && h.is_incomplete_message()
        {
            return true;
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            );
        }
        source = s.source();
    }
    false
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

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn substitutes_params_and_greedy_paths() {
        let t = HttpTarget::parse(
            "http://127.0.0.1:9000/pets/{id}/{rest+}",
            &params(&["id", "rest"]),
        )
        .unwrap();
        let p = vec![("id".into(), "7".into()), ("rest".into(), "a/b".into())];
        let uri = t.uri("/ignored", None, &p, "x=1").unwrap();
        assert_eq!(uri, "http://127.0.0.1:9000/pets/7/a/b?x=1");
        let uri = t.uri("/ignored", Some("/v2/x"), &p, "").unwrap();
        assert_eq!(uri, "http://127.0.0.1:9000/v2/x");
    }

    #[test]
    fn template_without_path_forwards_the_client_path() {
        let t = HttpTarget::parse("http://localhost:81", &[]).unwrap();
        assert_eq!(
            t.uri("/a/b", None, &[], "").unwrap(),
            "http://localhost:81/a/b"
        );
        assert_eq!(t.authority(), "localhost:81");
        let t = HttpTarget::parse("https://api.example/v1/{proxy}", &["proxy".into()]).unwrap();
        let params = [("proxy".to_owned(), "pets".to_owned())];
        assert_eq!(
            t.uri("/x", None, &params, "a=1").unwrap(),
            "https://api.example/v1/pets?a=1"
        );
        assert_eq!(t.authority(), "api.example");
    }

    #[test]
    fn rejects_bad_templates() {
        for (url, want) in [
            ("ftp://x/", "must start with http:// or https://"),
            ("https://", "invalid host"),
            ("http://x/{id}", "not a parameter of the route key"),
            ("http://x/{id", "unclosed"),
            ("http://x/a}", "unmatched"),
            ("http://x/?a=1", "query string"),
            ("http://u@x/", "credentials"),
        ] {
            let err = HttpTarget::parse(url, &[]).unwrap_err();
            assert!(err.contains(want), "{url}: {err}");
        }
    }

    #[test]
    fn strips_hop_by_hop_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, x-custom".parse().unwrap());
        h.insert("x-custom", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        h.insert("x-kept", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }
}
