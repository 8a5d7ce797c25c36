//! One upstream connection per client connection, driven in the client connection's
//! own task.
//!
//! Through the pooled client, every request crosses into the upstream connection's task
//! and back (a channel each way, two task wake-ups) and checks a connection out of the
//! shared pool and in again. A client that keeps its connection alive sends request
//! after request to the same upstream, one at a time; from its second request on, its
//! connection gets an upstream connection of its own, polled by the same task that
//! serves the client ([`Affinity::drive`]), and used without the pool.
//!
//! Anything unusual goes through the pool as before: a client's first request (it may
//! not send another), a second upstream, concurrent requests on an HTTP/2 connection
//! while the dedicated connection is busy, a worker that already holds
//! [`MAX_DEDICATED`] of them, a connection that cannot be opened. A dedicated connection
//! that fails a request is dropped; an idempotent request it lost before any answer is
//! sent again through the pool. When the client connection ends, so does its upstream
//! connection.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Authority;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use hyper_util::client::legacy::connect::HttpConnector;
use tower_service::Service;

/// Dedicated upstream connections a worker holds at most; beyond, clients share the
/// pool.
pub const MAX_DEDICATED: usize = 256;

/// The upstream side of one client connection. Shared by the connection's task (which
/// polls [`Affinity::drive`]) and its requests.
#[derive(Default)]
pub struct Affinity {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Requests this client connection sent to an HTTP upstream.
    requests: u64,
    /// A request is opening a dedicated connection (the others use the pool meanwhile).
    opening: bool,
    dedicated: Option<Dedicated>,
    /// Numbers the dedicated connections, so that a request acts only on its own.
    next_id: u64,
    /// The client connection's task, woken when a dedicated connection is installed.
    waker: Option<Waker>,
}

struct Dedicated {
    id: u64,
    authority: Authority,
    /// `None` while a request uses it.
    sender: Option<SendRequest<Full<Bytes>>>,
    /// The connection itself, polled by [`Affinity::drive`].
    conn: Pin<Box<dyn Future<Output = ()> + Send>>,
    _count: Counted,
}

/// Holds one of the worker's [`MAX_DEDICATED`] places until dropped.
pub struct Counted(Arc<AtomicUsize>);

/// Dedicated upstream connections open now, over all workers.
const GAUGE: &str = "weir_upstream_dedicated_connections";

impl Counted {
    fn take(count: &Arc<AtomicUsize>) -> Option<Counted> {
        count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < MAX_DEDICATED).then_some(n + 1)
            })
            .ok()?;
        metrics::gauge!(GAUGE).increment(1.0);
        Some(Counted(count.clone()))
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!(GAUGE).decrement(1.0);
    }
}

/// What a request should use.
pub enum Checkout<'a> {
    /// The dedicated connection, ready for this request.
    Ready(Lease<'a>),
    /// Open a dedicated connection.
    Open(Opening<'a>),
    /// The shared pool.
    Pool,
}

/// The dedicated connection's sender, lent to one request. Given back once the request
/// has its answer; dropped without that (the request failed, timed out or was
/// abandoned), it takes the connection with it: what is left on it is unknown.
pub struct Lease<'a> {
    affinity: &'a Affinity,
    id: u64,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Lease<'_> {
    /// The sender.
    pub fn sender(&mut self) -> &mut SendRequest<Full<Bytes>> {
        self.sender.as_mut().expect("present until given back")
    }

    /// Returns the sender after the request got its answer.
    pub fn give_back(mut self) {
        let sender = self.sender.take();
        let mut inner = self.affinity.lock();
        if let Some(d) = inner.dedicated.as_mut().filter(|d| d.id == self.id) {
            d.sender = sender;
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if self.sender.is_some() {
            let mut inner = self.affinity.lock();
            if inner.dedicated.as_ref().is_some_and(|d| d.id == self.id) {
                inner.dedicated = None;
            }
        }
    }
}

/// The right to open the dedicated connection; until it is used or dropped, other
/// requests use the pool.
pub struct Opening<'a> {
    affinity: &'a Affinity,
    count: Option<Counted>,
}

impl Drop for Opening<'_> {
    fn drop(&mut self) {
        self.affinity.lock().opening = false;
    }
}

impl<'a> Opening<'a> {
    /// Opens a dedicated connection to `authority` and lends its sender to the request
    /// that opened it, or `None` when it cannot be opened within `timeout`.
    pub async fn open(
        mut self,
        connector: &HttpConnector,
        authority: &Authority,
        timeout: Duration,
    ) -> Option<Lease<'a>> {
        let uri = http::Uri::builder()
            .scheme("http")
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .ok()?;
        let mut connector = connector.clone();
        let opened = tokio::time::timeout(timeout, async {
            let stream = connector.call(uri).await.ok()?;
            hyper::client::conn::http1::Builder::new()
                .writev(false)
                .handshake::<_, Full<Bytes>>(stream)
                .await
                .ok()
        })
        .await
        .ok()
        .flatten();
        let (sender, conn) = opened?;
        let conn: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(async move {
            let _ = conn.await;
        });
        let affinity = self.affinity;
        let mut inner = affinity.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        inner.dedicated = Some(Dedicated {
            id,
            authority: authority.clone(),
            sender: None,
            conn,
            _count: self.count.take()?,
        });
        if let Some(w) = &inner.waker {
            w.wake_by_ref();
        }
        drop(inner);
        Some(Lease {
            affinity,
            id,
            sender: Some(sender),
        })
    }
}

impl Affinity {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Polls the dedicated connection, if there is one, for as long as the client
    /// connection lives; never completes. Run it in the client connection's task, next to
    /// the connection (a `select!`), so the upstream exchange needs no other task.
    pub fn drive(self: Arc<Self>) -> impl Future<Output = ()> + Send {
        std::future::poll_fn(move |cx| {
            let mut inner = self.lock();
            if !inner
                .waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                inner.waker = Some(cx.waker().clone());
            }
            if let Some(d) = inner.dedicated.as_mut()
                && d.conn.as_mut().poll(cx).is_ready()
            {
                // Closed by the upstream, or broken: later requests use the pool or
                // open another.
                inner.dedicated = None;
            }
            Poll::Pending
        })
    }

    /// Decides how a request to `authority` goes upstream.
    pub fn checkout(&self, authority: &Authority, count: &Arc<AtomicUsize>) -> Checkout<'_> {
        let mut inner = self.lock();
        inner.requests += 1;
        let again = inner.requests >= 2;
        let Some(d) = inner.dedicated.as_mut() else {
            if !again || inner.opening {
                return Checkout::Pool;
            }
            let Some(count) = Counted::take(count) else {
                return Checkout::Pool;
            };
            inner.opening = true;
            return Checkout::Open(Opening {
                affinity: self,
                count: Some(count),
            });
        };
        if d.authority != *authority {
            return Checkout::Pool;
        }
        match d.sender.take() {
            Some(s) if s.is_ready() => Checkout::Ready(Lease {
                affinity: self,
                id: d.id,
                sender: Some(s),
            }),
            Some(s) if s.is_closed() => {
                inner.dedicated = None;
                Checkout::Pool
            }
            // Busy (its last response is still being read) or lent out.
            other => {
                d.sender = other;
                Checkout::Pool
            }
        }
    }
}
