//! A body read frame by frame within bounds: at most `left` more bytes, each frame within
//! `idle` of the last. The client's upload on its way to the upstream ([`super::upload`])
//! and an upstream's streamed answer on its way to the client ([`super::stream`]) both
//! read through it, and each says in its own words why a body was cut.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame};
use tokio::time::Sleep;

/// Why a bounded body ended early.
pub enum Cut<E> {
    /// More than the bytes allowed.
    TooLarge,
    /// No frame within the idle time.
    Stalled,
    /// The body itself failed.
    Broken(E),
}

/// One step of a bounded body: a frame, its end (`None`), or why it was cut.
pub type Step<E> = Option<Result<Frame<Bytes>, Cut<E>>>;

/// `body`, with the bytes it may still carry and its idle timer.
pub struct Bounded<B> {
    /// The body read.
    pub body: B,
    left: u64,
    /// How long a frame may take.
    pub idle: Duration,
    timer: Pin<Box<Sleep>>,
}

impl<B: Body<Data = Bytes> + Unpin> Bounded<B> {
    /// `body`, at most `limit` bytes, each frame within `idle` of the last (the first
    /// within `idle` from now).
    pub fn new(body: B, limit: u64, idle: Duration) -> Self {
        Bounded {
            body,
            left: limit,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
        }
    }

    /// Starts the idle time again from now (a body that waited to be read).
    pub fn restart(&mut self) {
        let next = tokio::time::Instant::now() + self.idle;
        self.timer.as_mut().reset(next);
    }

    /// The next frame, or why the body was cut.
    pub fn poll_bounded(&mut self, cx: &mut Context<'_>) -> Poll<Step<B::Error>> {
        match Pin::new(&mut self.body).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let n = data.len() as u64;
                    if n > self.left {
                        return Poll::Ready(Some(Err(Cut::TooLarge)));
                    }
                    self.left -= n;
                }
                self.restart();
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Cut::Broken(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Cut::Stalled))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}
