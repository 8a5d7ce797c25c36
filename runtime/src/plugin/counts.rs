//! Counting a plugin's calls: by outcome for the admin API ([`CallCounts`]), and the
//! per-plugin metric handles, looked up once ([`CallMetrics`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Calls of one plugin by outcome (relaxed atomics: no lock on the request path).
#[derive(Debug, Default)]
pub struct CallCounts {
    pub(super) ok: AtomicU64,
    pub(super) trap: AtomicU64,
    pub(super) timeout: AtomicU64,
    pub(super) memory: AtomicU64,
    pub(super) busy: AtomicU64,
}

/// A reading of [`CallCounts`]. Its JSON keys are the `outcome` labels of
/// `weir_plugin_calls_total`: `ok`, `trap`, `timeout`, `memory`, `busy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CallTotals {
    /// Calls that returned.
    pub ok: u64,
    /// Calls that trapped.
    #[serde(rename = "trap")]
    pub traps: u64,
    /// Calls past their deadline.
    #[serde(rename = "timeout")]
    pub timeouts: u64,
    /// Calls past their memory cap.
    pub memory: u64,
    /// Calls that found no free slot within their deadline.
    pub busy: u64,
}

impl CallCounts {
    /// The counts now.
    pub fn totals(&self) -> CallTotals {
        CallTotals {
            ok: self.ok.load(Ordering::Relaxed),
            traps: self.trap.load(Ordering::Relaxed),
            timeouts: self.timeout.load(Ordering::Relaxed),
            memory: self.memory.load(Ordering::Relaxed),
            busy: self.busy.load(Ordering::Relaxed),
        }
    }
}

/// How a call ended, as the metrics label it (the order of [`CallMetrics::calls`]).
#[derive(Debug, Clone, Copy)]
pub(super) enum Outcome {
    Ok,
    Timeout,
    Memory,
    Trap,
    Busy,
}

/// `weir_plugin_calls_total` by outcome (ok, timeout, memory, trap, busy) and
/// `weir_plugin_call_duration_seconds` for one plugin: looked up once, not per call.
pub(super) struct CallMetrics {
    pub(super) calls: [metrics::Counter; 5],
    pub(super) duration: metrics::Histogram,
}

impl CallMetrics {
    pub(super) fn new(name: &Arc<str>) -> Self {
        let plugin = metrics::SharedString::from(name.clone());
        let calls = ["ok", "timeout", "memory", "trap", "busy"].map(|outcome| {
            metrics::counter!("weir_plugin_calls_total", "plugin" => plugin.clone(), "outcome" => outcome)
        });
        CallMetrics {
            calls,
            duration: metrics::histogram!("weir_plugin_call_duration_seconds", "plugin" => plugin),
        }
    }
}
