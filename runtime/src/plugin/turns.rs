//! Taking turns on a worker: a long plugin call gives the event loop back every epoch
//! tick, and at most one waiting call takes the next slice per turn of the loop, in the
//! order they came.
//!
//! A call that runs past a tick yields through tokio's `yield_now`, which wakes it only
//! after the loop has polled its sockets, so the requests those sockets carry run
//! first. But every call that yielded in one turn wakes in the next, one after the
//! other: with N long calls on a worker, a plugin-free request waited N slices per
//! step. Here the waiting calls form a queue: only its head takes a slice, and only
//! after a turn of the loop in which no slice was taken; the others sleep until they
//! head the queue. So a request on any other route waits at most about one slice per
//! step, however many long calls share its worker, and the long calls share the rest
//! in turn. Calls that finish within a tick — nearly all — never come here.
//!
//! The queue is explicit because tokio wakes yielded tasks in the reverse order of
//! their yields. And a call that starts while the head of the queue has waited over
//! [`STARVING`] queues behind it ([`behind_waiting`]). Without both, calls of about a
//! tick each (an RS256 signature check) starved: a fresh call ran a whole tick at once
//! and mostly finished, while one that had yielded got a slice only when it happened
//! to wake first in a loop turn full of fresh calls — p50 4 ms but p99 1.5 s under 64
//! connections. Queueing every call that starts while any waits cost short calls 20%
//! more CPU per request (most loop turns then let a single call start); a head that
//! waited a few turns is the usual case and does not hold new calls back.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// How long the head of the queue may wait before calls that start queue behind it.
const STARVING: Duration = Duration::from_millis(10);

/// A worker thread's queue. A call's ticket holds the queue it joined, so a task that
/// moves to another thread (a multi-threaded runtime) still leaves the right queue and
/// never stays behind as a head nobody serves.
#[derive(Default)]
struct Queue {
    /// Slices taken by calls that had yielded.
    turns: u64,
    /// The next ticket.
    tickets: u64,
    /// Calls waiting for a slice, in the order they came.
    waiting: VecDeque<Waiter>,
}

thread_local! {
    static QUEUE: Arc<Mutex<Queue>> = Arc::default();
}

fn lock(queue: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    queue.lock().unwrap_or_else(|p| p.into_inner())
}

/// One entry of the queue: its ticket, its waker once it sleeps (every one but the
/// head does) and when it began to wait.
struct Waiter {
    ticket: u64,
    waker: Option<Waker>,
    since: Instant,
}

/// A place in a queue, left when dropped (also when its call is dropped mid-wait); the
/// call behind it is woken when it becomes the head.
struct Ticket {
    queue: Arc<Mutex<Queue>>,
    n: u64,
}

impl Ticket {
    fn take() -> Self {
        let queue = QUEUE.with(Arc::clone);
        let n = {
            let mut q = lock(&queue);
            let n = q.tickets;
            q.tickets += 1;
            q.waiting.push_back(Waiter {
                ticket: n,
                waker: None,
                since: Instant::now(),
            });
            n
        };
        Ticket { queue, n }
    }

    fn turns(&self) -> u64 {
        lock(&self.queue).turns
    }

    /// Takes the slice if this ticket heads the queue and no slice was taken since
    /// `seen` turns.
    fn take_turn(&self, seen: u64) -> bool {
        let mut q = lock(&self.queue);
        let head = q.waiting.front().is_some_and(|w| w.ticket == self.n);
        if head && q.turns == seen {
            q.turns += 1;
            return true;
        }
        false
    }

    /// Ready once this ticket heads the queue; asleep until then.
    async fn head(&self) {
        std::future::poll_fn(|cx| {
            let mut q = lock(&self.queue);
            match q.waiting.iter().position(|w| w.ticket == self.n) {
                Some(0) | None => Poll::Ready(()),
                Some(i) => {
                    q.waiting[i].waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let next = {
            let mut q = lock(&self.queue);
            match q.waiting.iter().position(|w| w.ticket == self.n) {
                Some(0) => {
                    q.waiting.pop_front();
                    q.waiting.front_mut().and_then(|w| w.waker.take())
                }
                Some(i) => {
                    q.waiting.remove(i);
                    None
                }
                None => None,
            }
        };
        if let Some(w) = next {
            w.wake();
        }
    }
}

/// Waits for this call's next slice: after every call that waited before this one has
/// had its slice, and after a turn of the event loop (its sockets polled) in which no
/// other call took one.
pub(super) async fn next_turn() {
    let ticket = Ticket::take();
    loop {
        ticket.head().await;
        let seen = ticket.turns();
        tokio::task::yield_now().await;
        if ticket.take_turn(seen) {
            return;
        }
    }
}

/// Before a call starts: queues it behind the calls of this thread that wait for a
/// slice if the first of them has waited over [`STARVING`] (one uncontended lock when
/// none waits).
pub(super) async fn behind_waiting() {
    let starving = QUEUE.with(|q| {
        lock(q)
            .waiting
            .front()
            .is_some_and(|w| w.since.elapsed() > STARVING)
    });
    if starving {
        next_turn().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Calls waiting in this thread's queue.
    fn waiting() -> usize {
        QUEUE.with(|q| lock(q).waiting.len())
    }

    /// A ticket dropped on another thread (its task moved) leaves the queue it joined.
    #[test]
    fn a_ticket_leaves_its_queue_from_any_thread() {
        let first = Ticket::take();
        let second = Ticket::take();
        assert_eq!(waiting(), 2);
        std::thread::spawn(move || drop(first)).join().unwrap();
        assert_eq!(waiting(), 1);
        assert!(second.take_turn(second.turns()));
        drop(second);
        assert_eq!(waiting(), 0);
    }

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

    /// A call that starts while two others wait for slices starts at once while they
    /// have waited briefly, and gets its first slice after theirs once the first of
    /// them has waited over `STARVING`.
    #[tokio::test]
    async fn a_new_call_queues_behind_starving_ones() {
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        behind_waiting().await;
        assert_eq!(waiting(), 0);
        let mut tasks = Vec::new();
        for name in ["first", "second"] {
            let order = order.clone();
            tasks.push(tokio::spawn(async move {
                next_turn().await;
                order.lock().unwrap().push(name);
            }));
        }
        // Both have run up to their first yield.
        tokio::task::yield_now().await;
        assert_eq!(waiting(), 2);
        behind_waiting().await;
        order.lock().unwrap().push("early");
        // The event loop is held up past the limit: the next call queues.
        std::thread::sleep(STARVING + Duration::from_millis(2));
        behind_waiting().await;
        order.lock().unwrap().push("late");
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["early", "first", "second", "late"]);
        assert_eq!(waiting(), 0);
    }
}
