//! A client that stops reading must not hold the gateway's memory or its connection
//! task: [`Stall`] wraps a WebSocket's socket and fails its reads and writes once a
//! write has waited longer than the API's `send_timeout` without any byte going out.
//! (tungstenite's write buffer is capped, and a pong waiting to go out is replaced by a
//! newer one, so what waits is bounded too.)

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// A socket whose writes may wait at most `timeout` for the peer to read.
pub struct Stall<S> {
    io: S,
    timeout: Duration,
    /// When a write first found the socket full, if none has gone through since.
    blocked_since: Option<Instant>,
    sleep: Pin<Box<Sleep>>,
    /// The timeout passed (the connection task names the close after it).
    stalled: bool,
}

impl<S> Stall<S> {
    /// Wraps `io`.
    pub fn new(io: S, timeout: Duration) -> Self {
        Self {
            io,
            timeout,
            blocked_since: None,
            sleep: Box::pin(tokio::time::sleep(timeout)),
            stalled: false,
        }
    }

    /// Whether the peer stopped reading for longer than the timeout.
    pub fn stalled(&self) -> bool {
        self.stalled
    }

    /// Whether a write has been blocked too long; registers a wake-up otherwise.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(since) = self.blocked_since else {
            return false;
        };
        let deadline = since + self.timeout;
        if self.sleep.deadline() != deadline {
            self.sleep.as_mut().reset(deadline);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            self.stalled = true;
        }
        self.stalled
    }

    fn wrote<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Pending => {
                self.blocked_since.get_or_insert_with(Instant::now);
                if self.expired(cx) {
                    return Poll::Ready(Err(stalled()));
                }
                Poll::Pending
            }
            ready => {
                self.blocked_since = None;
                ready
            }
        }
    }
}

fn stalled() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "the client read nothing within send_timeout",
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for Stall<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.expired(cx) {
            return Poll::Ready(Err(stalled()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Stall<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.wrote(cx, polled)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.wrote(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_write_that_waits_past_the_timeout_fails_and_reads_fail_too() {
        let (mut client, server) = tokio::io::duplex(16);
        let mut server = Stall::new(server, Duration::from_secs(10));
        // Room for 16 bytes; the client reads nothing.
        server.write_all(&[0; 16]).await.unwrap();
        let started = Instant::now();
        let err = server.write_all(&[0; 1]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        assert!(server.stalled());
        let err = server.read(&mut [0; 1]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let _ = client.read(&mut [0; 1]).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_reading_client_is_never_stalled() {
        let (mut client, server) = tokio::io::duplex(16);
        let mut server = Stall::new(server, Duration::from_secs(10));
        let reader = tokio::spawn(async move {
            let mut buf = [0; 8];
            let mut total = 0;
            while total < 1600 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                total += client.read(&mut buf).await.unwrap();
            }
        });
        // Each write waits about a second for the reader, never ten.
        for _ in 0..100 {
            server.write_all(&[1; 16]).await.unwrap();
        }
        reader.await.unwrap();
        assert!(!server.stalled());
    }
}
