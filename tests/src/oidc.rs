//! A stand-in OpenID Connect provider on loopback, over HTTP or HTTPS: its discovery
//! document (`/.well-known/openid-configuration`) names its JWKS (`/jwks`), whose keys
//! a test publishes and rotates, and it can go down (every answer a `503`) and come
//! back. It counts the requests for each path.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use tokio::net::TcpListener;

use crate::TestCa;
use crate::jwt::{SigningKey, jwks};

/// The provider; it stops with the test's runtime.
pub struct Provider {
    /// Its address.
    pub addr: SocketAddr,
    tls: bool,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    jwks: serde_json::Value,
    cache_control: Option<String>,
    down: bool,
    /// (path, answered status) of every request.
    seen: Vec<(String, u16)>,
}

impl Provider {
    /// A provider over plain HTTP.
    pub async fn start() -> Provider {
        Self::start_with(None).await
    }

    /// A provider over HTTPS with `ca`'s server certificate.
    pub async fn start_tls(ca: &TestCa) -> Provider {
        let config = ca.server_config(&[b"http/1.1"]);
        Self::start_with(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Provider {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            jwks: serde_json::json!({"keys": []}),
            ..State::default()
        }));
        let provider = Provider {
            addr,
            tls: tls.is_some(),
            state: state.clone(),
        };
        let issuer = provider.issuer();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (state, tls, issuer) = (state.clone(), tls.clone(), issuer.clone());
                let svc = service_fn(move |req| {
                    let answer = answer(&req, &state, &issuer);
                    async move { Ok::<_, Infallible>(answer) }
                });
                tokio::spawn(crate::serve_http1(stream, tls, svc));
            }
        });
        provider
    }

    /// Its issuer identifier: `http(s)://127.0.0.1:PORT` (discovery beneath it).
    pub fn issuer(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Publishes these keys (and only these) in the JWKS.
    pub fn publish(&self, keys: &[&SigningKey]) {
        self.state.lock().unwrap().jwks = jwks(keys);
    }

    /// Publishes a JWKS document as it is.
    pub fn publish_raw(&self, document: serde_json::Value) {
        self.state.lock().unwrap().jwks = document;
    }

    /// The `Cache-Control` of the JWKS answers (none by default).
    pub fn cache_control(&self, value: Option<&str>) {
        self.state.lock().unwrap().cache_control = value.map(str::to_owned);
    }

    /// Whether every request is answered `503`.
    pub fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }

    /// How many requests for `path` it received.
    pub fn requests(&self, path: &str) -> usize {
        let state = self.state.lock().unwrap();
        state.seen.iter().filter(|(p, _)| p == path).count()
    }
}

fn answer(req: &Request<Incoming>, state: &Mutex<State>, issuer: &str) -> Response<Full<Bytes>> {
    let mut state = state.lock().unwrap();
    let path = req.uri().path().to_owned();
    let (status, body, cache_control) = if state.down {
        (StatusCode::SERVICE_UNAVAILABLE, String::new(), None)
    } else {
        match path.as_str() {
            "/.well-known/openid-configuration" => (
                StatusCode::OK,
                serde_json::json!({
                    "issuer": issuer,
                    "jwks_uri": format!("{issuer}/jwks"),
                    "id_token_signing_alg_values_supported": crate::jwt::ALGORITHMS,
                })
                .to_string(),
                Some("public, max-age=86400".to_owned()),
            ),
            "/jwks" => (
                StatusCode::OK,
                state.jwks.to_string(),
                state.cache_control.clone(),
            ),
            _ => (StatusCode::NOT_FOUND, String::new(), None),
        }
    };
    state.seen.push((path, status.as_u16()));
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    if let Some(cc) = cache_control {
        resp.headers_mut()
            .insert("cache-control", cc.parse().unwrap());
    }
    resp
}
