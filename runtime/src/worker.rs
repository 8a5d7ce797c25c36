//! What every request on a worker thread shares besides the gateway snapshot: the live
//! snapshot itself, the pooled upstream client and the WebSocket connection table. The
//! HTTP pipeline and the WebSocket tasks both stand on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::connections::ConnectionTable;
use crate::gateway::LiveGateway;
use crate::integrate::Upstream;

/// One worker thread's shared state.
pub struct Shared {
    /// The compiled gateway in force; a reload swaps it (see [`crate::reload`]).
    pub gateway: LiveGateway,
    /// The pooled upstream client.
    pub upstream: Upstream,
    /// Every open WebSocket connection (shared by all workers).
    pub connections: Arc<dyn ConnectionTable>,
    /// WebSocket connections this worker runs.
    websockets: AtomicUsize,
}

impl Shared {
    /// A worker's shared state.
    pub fn new(
        gateway: LiveGateway,
        connections: Arc<dyn ConnectionTable>,
        upstream: Upstream,
    ) -> Self {
        Self {
            gateway,
            upstream,
            connections,
            websockets: AtomicUsize::new(0),
        }
    }

    /// Counts a WebSocket connection this worker runs in (`1`) or out (`-1`).
    pub fn websockets_open(&self, delta: isize) {
        if delta >= 0 {
            self.websockets.fetch_add(delta as usize, Ordering::Relaxed);
        } else {
            self.websockets
                .fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
        }
    }

    /// WebSocket connections this worker runs.
    pub fn websockets(&self) -> usize {
        self.websockets.load(Ordering::Relaxed)
    }
}
