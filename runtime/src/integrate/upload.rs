//! Streamed request bodies: on a route whose answer streams (`stream = true`, or a gRPC
//! request on a route without a response mapper) and that has no request mapper, the
//! client's body goes on to the upstream frame by frame as it arrives instead of being
//! read whole first (routes with a request mapper, and lambda, function and mock
//! integrations, still read it whole: they need all of it).
//!
//! Bounds keep their meaning: at most `max_body` bytes in all (past it the upstream's
//! request is cut off — it sees an aborted request — and the client gets `413`), and
//! each frame within `body_read_timeout` of the last (else `408`). A streamed body can
//! be sent once only, so an attempt is retried only if it never started reading the
//! body (a refused connection, say).

use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};

use super::bounded::{Bounded, Cut};
use crate::error::GatewayError;
use crate::pool::link::OutBody;
use crate::respond::BoxError;

/// A client's body on its way to the upstream, for one or more attempts.
pub struct Upload {
    slot: Arc<Mutex<Option<Source>>>,
    /// Why the body was cut off: one of the `CUT_*` values, or 0.
    cut: Arc<AtomicU8>,
    limit: u64,
    idle: Duration,
}

const CUT_TOO_LARGE: u8 = 1;
const CUT_STALLED: u8 = 2;
const CUT_BROKEN: u8 = 3;

type Source = Bounded<http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>>;

impl Upload {
    /// `body`, at most `limit` bytes, each frame within `idle` of the last.
    pub fn new<B>(body: B, limit: u64, idle: Duration) -> Self
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let source = Bounded::new(body.map_err(Into::into).boxed_unsync(), limit, idle);
        Self {
            slot: Arc::new(Mutex::new(Some(source))),
            cut: Arc::default(),
            limit,
            idle,
        }
    }

    /// The body of one attempt: it takes the client's body when first read.
    pub fn attempt(&self) -> OutBody {
        Attempt {
            slot: self.slot.clone(),
            source: None,
            cut: self.cut.clone(),
        }
        .boxed_unsync()
    }

    /// Whether no attempt has read the body yet (so another may still send it).
    pub fn untouched(&self) -> bool {
        self.slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// What cut the body off, when it was the client's side: `413` or `408`, or a
    /// client that went away.
    pub fn error(&self) -> Option<GatewayError> {
        match self.cut.load(Ordering::Relaxed) {
            CUT_TOO_LARGE => Some(GatewayError::PayloadTooLarge { limit: self.limit }),
            CUT_STALLED => Some(GatewayError::BodyTimeout(self.idle)),
            CUT_BROKEN => Some(GatewayError::BadRequest(
                "the request body broke off".to_owned(),
            )),
            _ => None,
        }
    }
}

/// One attempt's view of the upload.
struct Attempt {
    slot: Arc<Mutex<Option<Source>>>,
    source: Option<Source>,
    cut: Arc<AtomicU8>,
}

impl Body for Attempt {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.source.is_none() {
            let taken = this.slot.lock().unwrap_or_else(|p| p.into_inner()).take();
            match taken {
                Some(mut source) => {
                    source.restart();
                    this.source = Some(source);
                }
                None => return Poll::Ready(Some(Err("the request body was already sent".into()))),
            }
        }
        let Some(source) = this.source.as_mut() else {
            return Poll::Ready(None);
        };
        let (why, error): (u8, BoxError) = match std::task::ready!(source.poll_bounded(cx)) {
            None => return Poll::Ready(None),
            Some(Ok(frame)) => return Poll::Ready(Some(Ok(frame))),
            Some(Err(Cut::TooLarge)) => (CUT_TOO_LARGE, "the request body is too large".into()),
            Some(Err(Cut::Stalled)) => (CUT_STALLED, "the client stalled sending its body".into()),
            Some(Err(Cut::Broken(e))) => (CUT_BROKEN, e),
        };
        this.cut.store(why, Ordering::Relaxed);
        Poll::Ready(Some(Err(error)))
    }

    fn is_end_stream(&self) -> bool {
        self.source.as_ref().is_some_and(|s| s.body.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
