//! A socket with a deadline: reads and writes fail with `TimedOut` once the deadline
//! its [`Deadline`] names has passed (and wake the task when it passes, so a task
//! waiting on the socket learns of it). The client connection's idle deadline
//! ([`crate::idle`]) and a WebSocket's send deadline (`websocket::stall`) are two such.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// When a socket's reads and writes stop working.
pub trait Deadline {
    /// The instant past which they fail, if there is one now.
    fn deadline(&mut self) -> Option<Instant>;

    /// A write went out (`false`) or found the socket full (`true`).
    fn wrote(&mut self, _blocked: bool) {}

    /// What a read or write past the deadline fails with.
    fn error(&self) -> io::Error;
}

/// A socket guarded by a [`Deadline`].
pub struct Guarded<S, D> {
    io: S,
    guard: D,
    sleep: Pin<Box<Sleep>>,
    expired: bool,
}

impl<S, D: Deadline> Guarded<S, D> {
    /// Wraps `io`.
    pub fn new(io: S, guard: D) -> Self {
        Self {
            io,
            guard,
            sleep: Box::pin(tokio::time::sleep_until(Instant::now())),
            expired: false,
        }
    }

    /// Whether a deadline ever passed for this socket.
    pub fn expired(&self) -> bool {
        self.expired
    }

    /// Whether the deadline has passed; registers for a wake-up at it otherwise.
    fn check(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(deadline) = self.guard.deadline() else {
            return false;
        };
        if self.sleep.deadline() != deadline {
            self.sleep.as_mut().reset(deadline);
        }
        let passed = self.sleep.as_mut().poll(cx).is_ready();
        self.expired |= passed;
        passed
    }

    fn wrote<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Pending => {
                self.guard.wrote(true);
                if self.check(cx) {
                    return Poll::Ready(Err(self.guard.error()));
                }
                Poll::Pending
            }
            ready => {
                self.guard.wrote(false);
                ready
            }
        }
    }
}

impl<S: AsyncRead + Unpin, D: Deadline + Unpin> AsyncRead for Guarded<S, D> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.check(cx) {
            return Poll::Ready(Err(this.guard.error()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin, D: Deadline + Unpin> AsyncWrite for Guarded<S, D> {
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

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.wrote(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
