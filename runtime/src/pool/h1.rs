//! Keep-alive HTTP/1.1 connections to plain-HTTP upstreams, for answers read whole (the
//! common proxy route): one set per worker thread for single-URL routes, and one per
//! worker thread and pool target (its [`super::link::Links`]).
//!
//! hyper-util's pooled client serves every other request (HTTPS, HTTP/2, streamed
//! answers and uploads, plugins' outbound calls). For this one it costs more than the
//! exchange needs: a hashed and locked pool checkout, a clone of the connector and a
//! boxed future the size of the whole connect path on every request, and a spawned task
//! per request to wait for the connection to be idle again. Here a request takes the connection used last
//! for its `host:port` (a worker's lock is never contended), and gives it back once its
//! answer has been read to the end, the point at which HTTP/1.1 lets the next request
//! go out on it. A connection the upstream closed is seen as closed and dropped; idle
//! ones are dropped after [`IDLE_TIMEOUT`] (by a task that looks every half of it), at
//! most [`MAX_IDLE`] are kept per upstream.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::time::Instant;

/// How long an unused connection is kept.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Most unused connections kept per upstream `host:port` and worker.
pub const MAX_IDLE: usize = 256;
/// Time a new connection has to open (as hyper-util's client is given).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

type Sender = SendRequest<Full<Bytes>>;

struct Idle {
    sender: Sender,
    since: Instant,
}

/// Idle connections by the upstream's authority as the route's URL names it.
type IdleSets = Mutex<HashMap<HeaderValue, VecDeque<Idle>>>;

/// One worker's keep-alive connections, by upstream.
#[derive(Default, Clone)]
pub struct H1Connections {
    idle: Arc<IdleSets>,
    /// Whether the task that drops expired idle connections runs.
    reaping: Arc<std::sync::atomic::AtomicBool>,
    /// The address every connection is opened to (a pool target resolved by the pool);
    /// `None`: the upstream's name, resolved at each new connection.
    address: Option<SocketAddr>,
}

/// A connection lent to one request: [`Lease::release`] gives it back once the answer
/// has been read to its end; dropped otherwise (the connection then closes).
pub struct Lease {
    sender: Sender,
    key: HeaderValue,
    idle: Weak<IdleSets>,
}

impl Lease {
    /// Gives the connection back for the next request to the same upstream.
    pub fn release(self) {
        if self.sender.is_closed() {
            return;
        }
        let Some(idle) = self.idle.upgrade() else {
            return;
        };
        let mut sets = idle.lock().unwrap_or_else(|e| e.into_inner());
        let set = sets.entry(self.key).or_default();
        if set.len() < MAX_IDLE {
            set.push_back(Idle {
                sender: self.sender,
                since: Instant::now(),
            });
        }
    }
}

/// How a request failed to get an answer head.
pub enum Failure {
    /// No connection could be opened (nothing was sent).
    Connect(String),
    /// The exchange failed.
    Exchange {
        /// Why.
        error: hyper::Error,
        /// No answer came because the connection closed: before the request went out
        /// on a new connection, or after it went out and before any of the answer (a
        /// kept connection the upstream had just closed). An idempotent request may be
        /// sent again.
        lost: bool,
    },
}

impl Failure {
    /// The connection closed before any answer (see [`Failure::Exchange`]).
    pub fn lost(&self) -> bool {
        matches!(self, Failure::Exchange { lost: true, .. })
    }
}

impl H1Connections {
    /// Connections that always open to `address` (the upstream keeps its name in `Host`).
    pub fn to_address(address: SocketAddr) -> Self {
        Self {
            address: Some(address),
            ..Self::default()
        }
    }

    /// Sends `req` (in origin form) to the upstream at `key` (its `host:port`, or `host`
    /// for port 80) on a kept connection, or a new one. A kept connection that turns
    /// out closed before the request went out is passed over without the request being
    /// lost.
    pub async fn send(
        &self,
        mut req: Request<Full<Bytes>>,
        key: &HeaderValue,
    ) -> Result<(Response<Incoming>, Lease), Failure> {
        loop {
            // A kept connection found closed is passed over; a new one that fails
            // before the request went out ends the attempt (nothing was sent, so the
            // caller may send it again), or an upstream that closes every connection
            // at once would be dialled until the deadline.
            let (mut sender, fresh) = match self.checkout(key) {
                Some(sender) => (sender, false),
                None => (self.dial(key).await?, true),
            };
            if let Err(error) = sender.ready().await {
                if fresh {
                    return Err(Failure::Exchange { error, lost: true });
                }
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let lease = Lease {
                        sender,
                        key: key.clone(),
                        idle: Arc::downgrade(&self.idle),
                    };
                    return Ok((resp, lease));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if !fresh => req = unsent,
                    taken => {
                        let error = e.into_error();
                        let lost = taken.is_some() || lost_in(Some(&error));
                        return Err(Failure::Exchange { error, lost });
                    }
                },
            }
        }
    }

    /// The connection to `key` used last and still open, if any. (The most recently
    /// used is taken, so what expires is at the front, for the reaper.)
    fn checkout(&self, key: &HeaderValue) -> Option<Sender> {
        let mut sets = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let set = sets.get_mut(key)?;
        while let Some(idle) = set.pop_back() {
            if !idle.sender.is_closed() {
                return Some(idle.sender);
            }
        }
        None
    }

    /// Opens a connection to the upstream at `key` and spawns its driving task.
    async fn dial(&self, key: &HeaderValue) -> Result<Sender, Failure> {
        self.start_reaping();
        let key = connect_address(key);
        let connect = async {
            match self.address {
                Some(address) => tokio::net::TcpStream::connect(address).await,
                None => tokio::net::TcpStream::connect(key.as_str()).await,
            }
        };
        let failed = |why: String| {
            let at = self.address.map(|a| format!(" at {a}")).unwrap_or_default();
            Failure::Connect(format!("connecting to {key}{at}: {why}"))
        };
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => return Err(failed(e.to_string())),
            Err(_) => return Err(failed(format!("no answer within {CONNECT_TIMEOUT:?}"))),
        };
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            // One send() per request instead of a writev: measurably cheaper on loopback.
            .writev(false)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|error| Failure::Exchange { error, lost: false })?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    /// Starts, once, the task that drops idle connections past [`IDLE_TIMEOUT`] (a
    /// connection an upstream keeps open forever would otherwise stay until used).
    fn start_reaping(&self) {
        use std::sync::atomic::Ordering;
        if self.reaping.swap(true, Ordering::Relaxed) {
            return;
        }
        let idle = Arc::downgrade(&self.idle);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(IDLE_TIMEOUT / 2);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(idle) = idle.upgrade() else {
                    return;
                };
                let mut sets = idle.lock().unwrap_or_else(|e| e.into_inner());
                sets.retain(|_, set| {
                    expire(set);
                    set.retain(|i| !i.sender.is_closed());
                    !set.is_empty()
                });
            }
        });
    }
}

/// Drops the connections of `set` idle for longer than [`IDLE_TIMEOUT`] (the oldest
/// are at the front).
fn expire(set: &mut VecDeque<Idle>) {
    while set
        .front()
        .is_some_and(|i| i.since.elapsed() >= IDLE_TIMEOUT)
    {
        set.pop_front();
    }
}

/// `host:port` of an `http://` upstream's authority (port 80 when it names none).
fn connect_address(authority: &HeaderValue) -> String {
    let authority = http::uri::Authority::try_from(authority.as_bytes()).ok();
    let host = authority.as_ref().map_or("", |a| a.host());
    let port = authority.as_ref().and_then(|a| a.port_u16()).unwrap_or(80);
    format!("{host}:{port}")
}

/// Whether an exchange's error says its connection closed or was reset after the
/// request went out and before any of the answer (see [`Failure::Exchange`]).
pub fn lost_in(mut source: Option<&(dyn std::error::Error + 'static)>) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_the_port() {
        let key = |s: &'static str| connect_address(&HeaderValue::from_static(s));
        assert_eq!(key("127.0.0.1:8080"), "127.0.0.1:8080");
        assert_eq!(key("example.com"), "example.com:80");
        assert_eq!(key("[::1]:9000"), "[::1]:9000");
        assert_eq!(key("[::1]"), "[::1]:80");
    }
}
