//! Each target's own connections: a keep-alive client per target whose connector dials
//! that target's one address (a resolved target), or resolves its name at connect time
//! (a target written as an address, or a pool without `resolve`). Requests keep the
//! name as written (`Host`, `:authority`, TLS server name); only the dialing differs.
//! A target's idle connections close when its last pool version lets go of it, so a
//! removed target drains: requests in flight finish on their connections, which then
//! close instead of going back to a pool.
//!
//! Each worker thread has its own clients for a target ([`WorkerLinks`], made on first
//! use), as it has its own event loop: a connection is driven by the worker whose
//! requests use it, never handed between threads.

use std::cell::Cell;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use hyper_util::rt::TokioExecutor;

use super::h1::H1Connections;

/// How a target's connector finds the address to dial.
#[derive(Clone)]
pub enum Dial {
    /// The system resolver, at each new connection.
    System(GaiResolver),
    /// Always this address (the name was resolved by the pool).
    Fixed(SocketAddr),
}

type Addresses = std::vec::IntoIter<SocketAddr>;

impl tower_service::Service<Name> for Dial {
    type Response = Addresses;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Addresses, std::io::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), std::io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        match self {
            Dial::System(gai) => {
                let lookup = gai.call(name);
                Box::pin(async move { Ok(lookup.await?.collect::<Vec<_>>().into_iter()) })
            }
            Dial::Fixed(addr) => {
                let addr = *addr;
                Box::pin(async move { Ok(vec![addr].into_iter()) })
            }
        }
    }
}

/// The body of a request to an upstream: in memory, or streamed from the client.
pub type OutBody =
    http_body_util::combinators::UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A body already in memory, as an [`OutBody`].
pub fn whole(bytes: Bytes) -> OutBody {
    use http_body_util::BodyExt;
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A target's client.
pub type TargetClient = Client<HttpsConnector<HttpConnector<Dial>>, OutBody>;

/// A target's two clients: HTTP/1.1 (`protocol = "http1"`) and HTTP/2 only (h2c by
/// prior knowledge for `http://`, ALPN `h2` for `https://`); and for a plain-HTTP
/// target's answers read whole, its HTTP/1.1 connections without the client's pool
/// ([`super::h1`], as a single-URL route has them).
pub struct Links {
    /// HTTP/1.1 (and `https://` with ALPN `http/1.1`).
    pub http1: TargetClient,
    /// HTTP/2 only.
    pub http2: TargetClient,
    /// HTTP/1.1 to `http://`, for answers read whole.
    pub own: H1Connections,
}

/// Makes targets' clients with the gateway's upstream TLS settings.
#[derive(Clone)]
pub struct Dialer {
    tls: Arc<rustls::ClientConfig>,
}

impl Default for Dialer {
    /// Trusting no certificate (for checks that send nothing).
    fn default() -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| {
                b.with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth()
            })
            .expect("ring supports the default protocol versions");
        Self {
            tls: Arc::new(config),
        }
    }
}

impl Dialer {
    /// Clients verifying `https://` targets with `tls`.
    pub fn new(tls: Arc<rustls::ClientConfig>) -> Self {
        Self { tls }
    }

    /// The clients of a target dialed as `dial` says.
    pub fn links(&self, dial: Dial) -> Links {
        let own = match &dial {
            Dial::Fixed(address) => H1Connections::to_address(*address),
            Dial::System(_) => H1Connections::default(),
        };
        let mut connector = HttpConnector::new_with_resolver(dial);
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        // The TLS layer sees the scheme; this one only opens TCP connections.
        connector.enforce_http(false);
        let h2 = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*self.tls).clone())
            .https_or_http()
            .enable_http2()
            .wrap_connector(connector.clone());
        let http2 = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .build(h2);
        let h1 = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*self.tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let http1 = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(256)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .http1_writev(false)
            .build(h1);
        Links { http1, http2, own }
    }
}

thread_local! {
    /// This thread's slot in every [`WorkerLinks`]: 0 unless [`set_worker`] said.
    static SLOT: Cell<usize> = const { Cell::new(0) };
}

/// Gives worker `i` (from 0) its own clients from now on; other threads share slot 0.
pub fn set_worker(i: usize) {
    SLOT.with(|s| s.set(i + 1));
}

/// A target's clients, one pair per worker thread (and one for every other thread),
/// each made on first use.
pub struct WorkerLinks {
    dialer: Dialer,
    dial: Dial,
    slots: Box<[OnceLock<Links>]>,
}

impl WorkerLinks {
    /// Clients dialing as `dial` says, for `workers` worker threads.
    pub fn new(dialer: Dialer, dial: Dial, workers: usize) -> Self {
        Self {
            dialer,
            dial,
            slots: (0..=workers).map(|_| OnceLock::new()).collect(),
        }
    }

    /// The calling thread's clients.
    pub fn get(&self) -> &Links {
        let slot = SLOT.with(Cell::get);
        let slot = if slot < self.slots.len() { slot } else { 0 };
        self.slots[slot].get_or_init(|| self.dialer.links(self.dial.clone()))
    }
}
