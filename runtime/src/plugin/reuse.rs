//! Opt-in bounded instance reuse (`reuse = N` in `[plugins.NAME]`): an instance serves
//! up to N calls, one at a time, and is discarded after any failed call (trap, deadline,
//! memory cap). Idle instances wait in a small per-plugin pool; a call that finds none
//! instantiates a fresh one. State may survive between the requests one instance serves.

use std::sync::Mutex;

use wasmtime::Store;

use super::state::State;

/// Most idle instances kept per plugin; more concurrent calls than this instantiate
/// fresh ones that are dropped after their call instead of pooled.
pub(super) const MAX_IDLE: usize = 16;

/// An instance between calls: its store (linear memory, tables, WASI state) and the
/// handles through which its exports are called.
pub(super) struct Warm<G> {
    pub(super) store: Store<State>,
    pub(super) guest: G,
    /// Calls it has served.
    pub(super) calls: u32,
}

/// The idle instances of one plugin.
pub(super) struct Idle<G>(Mutex<Vec<Warm<G>>>);

impl<G> Default for Idle<G> {
    fn default() -> Self {
        Idle(Mutex::new(Vec::new()))
    }
}

impl<G> Idle<G> {
    /// Takes an idle instance, if any; it is then used by one call only.
    pub(super) fn take(&self) -> Option<Warm<G>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    /// Returns an instance after a successful call, unless it has served `reuse` calls
    /// or the pool is full (then it is dropped and its slot goes back to the allocator).
    pub(super) fn give_back(&self, warm: Warm<G>, reuse: u32) {
        if warm.calls >= reuse {
            return;
        }
        let mut idle = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(warm);
        }
    }
}
