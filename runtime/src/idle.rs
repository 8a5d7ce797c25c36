//! The idle deadline of a client connection: from accept, and again from the end of
//! each response, a client has `header_read_timeout` to send a complete request head.
//!
//! hyper's own header timeout starts at the first byte of a head, so a connection that
//! never sends one (or a keep-alive connection that goes quiet) would be held forever,
//! and `max_connections` of them lock every other client out. [`Watched`] wraps the
//! socket (under TLS, so the handshake counts too) and fails its reads and writes once
//! the deadline passes while no request is in flight; [`Watch`] is told by the service
//! when a request starts and when its response is handed over. The same deadline bounds
//! the flush of a finished response to a client that stopped reading.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::guarded::{Deadline, Guarded};

/// What the service tells a connection's deadline.
#[derive(Debug)]
pub struct Watch {
    /// When the connection was accepted; `idle_since` counts from here.
    accepted: Instant,
    timeout: Duration,
    /// Requests whose response has not been handed over yet.
    in_flight: AtomicU32,
    /// Microseconds from `accepted` to the moment the connection last became idle.
    idle_since_us: AtomicU64,
    /// The connection became a WebSocket: no deadline from here on.
    upgraded: AtomicBool,
}

impl Watch {
    /// A connection accepted now.
    pub fn new(timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            accepted: Instant::now(),
            timeout,
            in_flight: AtomicU32::new(0),
            idle_since_us: AtomicU64::new(0),
            upgraded: AtomicBool::new(false),
        })
    }

    /// A request head arrived; the deadline is off until the returned guard drops.
    pub fn request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// The connection was handed to a WebSocket task, which has limits of its own.
    pub fn upgraded(&self) {
        self.upgraded.store(true, Ordering::Relaxed);
    }

    /// The instant the connection must have sent a complete head by, when it is idle.
    fn deadline(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Relaxed) > 0 || self.upgraded.load(Ordering::Relaxed) {
            return None;
        }
        let since = Duration::from_micros(self.idle_since_us.load(Ordering::Relaxed));
        Some(self.accepted + since + self.timeout)
    }
}

/// A request in flight on a connection (see [`Watch::request`]); when it drops (its
/// response body was handed to the connection, or the request was abandoned) the
/// connection is idle again, and its deadline starts over.
#[derive(Debug)]
pub struct InFlight(Arc<Watch>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let w = &self.0;
        let now = u64::try_from(w.accepted.elapsed().as_micros()).unwrap_or(u64::MAX);
        w.idle_since_us.fetch_max(now, Ordering::Relaxed);
        w.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A client socket whose reads and writes fail once its [`Watch`]'s deadline passes.
pub type Watched<S> = Guarded<S, Arc<Watch>>;

impl Deadline for Arc<Watch> {
    fn deadline(&mut self) -> Option<Instant> {
        Watch::deadline(self)
    }

    fn error(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            "no complete request head within header_read_timeout",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_times_out_from_accept_and_after_each_response() {
        let (client, server) = tokio::io::duplex(64);
        let watch = Watch::new(Duration::from_secs(10));
        let mut server: Watched<_> = Guarded::new(server, watch.clone());
        let mut client = client;
        let mut buf = [0u8; 8];

        // Silent from accept: the read fails at the deadline, not before.
        let started = Instant::now();
        let err = server.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(10));

        // A request in flight: no deadline, however long it takes.
        let (client2, server2) = tokio::io::duplex(64);
        let watch = Watch::new(Duration::from_secs(10));
        let mut server: Watched<_> = Guarded::new(server2, watch.clone());
        let mut client2 = client2;
        client2.write_all(b"GET").await.unwrap();
        assert_eq!(server.read(&mut buf).await.unwrap(), 3);
        let request = watch.request();
        tokio::time::advance(Duration::from_secs(60)).await;
        client2.write_all(b"x").await.unwrap();
        assert_eq!(server.read(&mut buf).await.unwrap(), 1);
        // The response handed over at t=60 s: idle again, ten more seconds from then.
        drop(request);
        let idle = Instant::now();
        let err = server.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(idle.elapsed(), Duration::from_secs(10));

        // An upgraded connection has no deadline.
        watch.upgraded();
        tokio::time::advance(Duration::from_secs(3600)).await;
        client2.write_all(b"y").await.unwrap();
        assert_eq!(server.read(&mut buf).await.unwrap(), 1);
        client.shutdown().await.unwrap();
    }
}
