//! Taking turns on a worker: a long plugin call gives the event loop back every epoch
//! tick, and at most one waiting call takes the next slice per turn of the loop.
//!
//! A call that runs past a tick yields through tokio's `yield_now`, which wakes it only
//! after the loop has polled its sockets, so the requests those sockets carry run
//! first. But every call that yielded in one turn wakes in the next, one after the
//! other: with N long calls on a worker, a plugin-free request waited N slices per
//! step. Here only the first of them takes the slice; the others see that a turn was
//! taken since they yielded and yield again, keeping their order. So a request on any
//! other route waits at most about one slice per step, however many long calls share
//! its worker, and the long calls share the rest in turn. Calls that finish within a
//! tick — nearly all — never come here.

use std::cell::Cell;

thread_local! {
    /// Slices taken on this thread by calls that had yielded.
    static TURNS: Cell<u64> = const { Cell::new(0) };
}

/// Waits for this call's next slice: after the event loop has polled its sockets, and
/// after every call that yielded before this one has had its slice.
pub(super) async fn next_turn() {
    let mut seen = TURNS.get();
    loop {
        tokio::task::yield_now().await;
        let now = TURNS.get();
        if now == seen {
            TURNS.set(now + 1);
            return;
        }
        seen = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Eight long calls take slices; another task making ten steps (each a trip
    /// through the event loop, as a request's socket reads are) sees about one slice
    /// per step, not eight.
    #[tokio::test]
    async fn a_task_between_long_calls_waits_about_one_slice_per_step() {
        let slices = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        for _ in 0..8 {
            let (slices, stop) = (slices.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    slices.fetch_add(1, Ordering::Relaxed);
                    next_turn().await;
                }
            });
        }
        tokio::task::yield_now().await;
        let before = slices.load(Ordering::Relaxed);
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let during = slices.load(Ordering::Relaxed) - before;
        stop.store(true, Ordering::Relaxed);
        assert!(
            during <= 20,
            "{during} slices while another task made 10 steps"
        );
        assert!(during >= 5, "the long calls starved: {during} slices");
    }
}
