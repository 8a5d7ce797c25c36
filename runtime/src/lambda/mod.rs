//! Lambda functions run by the gateway: `[functions.NAME]` processes that fetch their
//! work from the AWS Lambda Runtime API, which the gateway serves on loopback.
//!
//! A [`Function`] owns a queue of invocations and up to `concurrency` processes
//! ([`supervisor`]), each with a Runtime API listener of its own ([`runtime_api`]), so
//! every request the API receives is known to come from that one process. An idle
//! process waits in `GET /invocation/next`; [`Function::invoke`] hands an event to such
//! a process, or queues it (at most `max_queue`, then `429`) and starts another process
//! while fewer than `concurrency` run. [`payload`] turns HTTP requests into events and
//! answers into responses.
//!
//! Functions live outside the gateway snapshot, in the [`Functions`] registry (one per
//! process, like `usage::UsageState`): a compiled route holds an `Arc<Function>`, and a
//! reload keeps every function whose settings did not change, with its processes.

mod ids;
pub mod payload;
mod runtime_api;
mod spec;
mod supervisor;

pub use ids::xray_trace_id;
pub use spec::{FunctionSpec, specs};

use ids::uuid;

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{oneshot, watch};

/// Largest event and answer (Lambda's synchronous payload limit, 6 MB).
pub const MAX_PAYLOAD: usize = 6 * 1024 * 1024;
/// Longest invocation timeout (Lambda's: 15 minutes).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(900);
/// Most processes of one function.
pub const MAX_CONCURRENCY: u32 = 1024;
/// Longest `idle_timeout`.
pub const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Time a process gets between SIGTERM and SIGKILL when it is stopped.
pub const STOP_GRACE: Duration = Duration::from_secs(3);
/// The region functions see unless their `env` sets `AWS_REGION`.
pub const DEFAULT_REGION: &str = "us-east-1";

/// The functions one gateway snapshot uses, by name.
pub type FunctionSet = BTreeMap<String, Arc<Function>>;

/// Every function of the process, by name, between reloads.
#[derive(Default)]
pub struct Functions {
    serving: Mutex<FunctionSet>,
    /// The thread whose runtime runs the processes and their Runtime API listeners,
    /// started with the first function.
    runtime: OnceLock<tokio::runtime::Handle>,
}

impl Functions {
    /// The functions for `specs`: the running one where its settings are unchanged, a
    /// new (not yet started) one otherwise.
    pub fn prepare(&self, specs: BTreeMap<String, FunctionSpec>) -> FunctionSet {
        let serving = self.serving.lock().unwrap_or_else(|p| p.into_inner());
        specs
            .into_iter()
            .map(|(name, spec)| {
                let f = match serving.get(&name) {
                    Some(f) if f.spec == spec && !f.is_retired() => f.clone(),
                    _ => Function::new(&name, spec),
                };
                (name, f)
            })
            .collect()
    }

    /// Starts the functions of `set` that are not running yet (before the snapshot
    /// that uses them is swapped in).
    pub fn start(&self, set: &FunctionSet) {
        for f in set.values() {
            if f.runtime.get().is_none() {
                f.activate(self.handle());
            }
        }
    }

    /// Makes `set` the serving functions (after its snapshot was swapped in): those it
    /// replaced or dropped stop once their current invocations end.
    pub fn commit(&self, set: &FunctionSet) {
        let mut serving = self.serving.lock().unwrap_or_else(|p| p.into_inner());
        for (name, old) in serving.iter() {
            if set.get(name).is_none_or(|new| !Arc::ptr_eq(new, old)) {
                tracing::info!(target: "weir::function", function = %name, "stopping the function's processes (removed or changed)");
                old.retire();
            }
        }
        *serving = set.clone();
    }

    /// Functions whose `min_warm` processes are not all waiting for work yet.
    pub fn not_warm(&self) -> Vec<String> {
        let serving = self.serving.lock().unwrap_or_else(|p| p.into_inner());
        serving
            .iter()
            .filter(|(_, f)| !f.is_warm())
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Stops every function: each process ends its invocation, then gets SIGTERM and,
    /// [`STOP_GRACE`] later, SIGKILL. Returns when all have exited (or after `wait`).
    pub async fn shutdown(&self, wait: Duration) {
        let all: Vec<Arc<Function>> = {
            let mut serving = self.serving.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::take(&mut *serving).into_values().collect()
        };
        for f in &all {
            f.retire();
        }
        let deadline = Instant::now() + wait;
        while all.iter().any(|f| f.processes() > 0) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn handle(&self) -> tokio::runtime::Handle {
        self.runtime
            .get_or_init(|| {
                let (tx, rx) = std::sync::mpsc::channel();
                std::thread::Builder::new()
                    .name("weir-functions".into())
                    .spawn(move || {
                        let runtime = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .expect("starting the functions' runtime");
                        let _ = tx.send(runtime.handle().clone());
                        runtime.block_on(std::future::pending::<()>());
                    })
                    .expect("starting the functions' thread");
                rx.recv().expect("the functions' runtime")
            })
            .clone()
    }
}

/// Why an invocation did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The function reported an error (`/invocation/{id}/error`).
    #[error("the function failed: {0}")]
    Error(String),
    /// The process exited (or broke the Runtime API) during the invocation.
    #[error("the function's process exited during the invocation: {0}")]
    Crashed(String),
    /// The invocation ran past the function's `timeout`; the process was killed.
    #[error("the function timed out after {0:?}; its process was killed")]
    TimedOut(Duration),
    /// The answer is larger than [`MAX_PAYLOAD`].
    #[error("the function's answer exceeds {MAX_PAYLOAD} bytes")]
    TooLarge,
    /// No process could be started.
    #[error("function `{function}` cannot start: {reason}")]
    CannotStart {
        /// The function.
        function: Arc<str>,
        /// The last start's failure.
        reason: String,
    },
    /// Every process is busy and the queue is full.
    #[error("function `{0}` is at its concurrency and its queue is full")]
    Throttled(Arc<str>),
    /// The function was removed or replaced by a reload, or the gateway is stopping.
    #[error("function `{0}` is stopping")]
    Stopped(Arc<str>),
}

impl Failure {
    /// The label of `weir_function_invocations_total{outcome}`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Failure::Error(_) => "error",
            Failure::Crashed(_) => "crash",
            Failure::TimedOut(_) => "timeout",
            Failure::TooLarge => "too_large",
            Failure::CannotStart { .. } => "start_failed",
            Failure::Throttled(_) => "throttled",
            Failure::Stopped(_) => "stopped",
        }
    }
}

/// A function's answer.
pub struct Answer {
    /// What the function returned (JSON).
    pub body: Bytes,
    /// Time it ran, from the process taking the event to its answer.
    pub ran: Duration,
}

/// One invocation, queued or running.
pub(crate) struct Invocation {
    /// `Lambda-Runtime-Aws-Request-Id`.
    id: String,
    event: Bytes,
    /// `Lambda-Runtime-Trace-Id`.
    trace_id: String,
    responder: oneshot::Sender<Result<Answer, Failure>>,
}

/// Where a process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Started, not yet asking for work (initializing).
    Starting,
    /// Waiting in `GET /invocation/next`.
    Idle,
    /// Running an invocation.
    Busy,
}

struct Waiter {
    process: u64,
    tx: oneshot::Sender<Invocation>,
    /// When it began to wait.
    since: Instant,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Invocation>,
    waiters: VecDeque<Waiter>,
    /// Live processes by id.
    phases: BTreeMap<u64, Phase>,
    /// Slot tasks: each runs one process at a time, restarting it as needed.
    slots: usize,
    /// The last start failed (the reason) and no process is up: invocations fail at
    /// once until this instant, when a start is tried again.
    failing: Option<(String, Instant)>,
    retired: bool,
    next_process: u64,
}

impl State {
    fn count(&self, phase: Phase) -> usize {
        self.phases.values().filter(|p| **p == phase).count()
    }

    fn up(&self) -> usize {
        self.count(Phase::Idle) + self.count(Phase::Busy)
    }
}

/// One function: its settings, its queue and its processes.
pub struct Function {
    name: Arc<str>,
    spec: FunctionSpec,
    arn: String,
    region: String,
    state: Mutex<State>,
    runtime: OnceLock<tokio::runtime::Handle>,
    /// Set when the function stops: processes end once idle.
    stop: watch::Sender<bool>,
    stopped: AtomicBool,
}

impl Function {
    fn new(name: &str, spec: FunctionSpec) -> Arc<Self> {
        let region = spec
            .env
            .get("AWS_REGION")
            .cloned()
            .unwrap_or_else(|| DEFAULT_REGION.to_owned());
        Arc::new(Self {
            name: name.into(),
            arn: format!(
                "arn:aws:lambda:{region}:{}:function:{name}",
                payload::ACCOUNT_ID
            ),
            region,
            spec,
            state: Mutex::default(),
            runtime: OnceLock::new(),
            stop: watch::channel(false).0,
            stopped: AtomicBool::new(false),
        })
    }

    /// Its name in `[functions]`.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Its invocation timeout.
    pub fn timeout(&self) -> Duration {
        self.spec.timeout
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_retired(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }

    fn is_warm(&self) -> bool {
        self.lock().up() >= self.spec.min_warm
    }

    fn processes(&self) -> usize {
        self.lock().slots
    }

    /// Starts its `min_warm` processes, and processes for invocations already queued.
    fn activate(self: &Arc<Self>, runtime: tokio::runtime::Handle) {
        if self.runtime.set(runtime).is_err() {
            return;
        }
        let mut state = self.lock();
        let wanted = self
            .spec
            .min_warm
            .max(state.queue.len().min(self.spec.concurrency));
        while state.slots < wanted {
            self.add_slot(&mut state);
        }
        self.publish(&state);
    }

    /// Runs one more slot (the caller checked the concurrency).
    fn add_slot(self: &Arc<Self>, state: &mut State) {
        if let Some(runtime) = self.runtime.get() {
            state.slots += 1;
            runtime.spawn(supervisor::run_slot(self.clone()));
        }
    }

    /// Sends `event` to a process and waits (at most `wait`) for the answer.
    pub async fn invoke(
        self: &Arc<Self>,
        event: Bytes,
        trace_id: String,
        wait: Duration,
    ) -> Result<Answer, InvokeError> {
        let (tx, rx) = oneshot::channel();
        let invocation = Invocation {
            id: uuid(),
            event,
            trace_id,
            responder: tx,
        };
        self.dispatch(invocation)?;
        self.answer(rx, wait).await
    }

    /// Hands `invocation` to an idle process, or queues it (starting a process when
    /// fewer than `concurrency` run); refuses it when the queue is full, the function
    /// cannot start or is stopping.
    fn dispatch(self: &Arc<Self>, mut invocation: Invocation) -> Result<(), Failure> {
        let mut state = self.lock();
        if state.retired {
            return Err(Failure::Stopped(self.name.clone()));
        }
        while let Some(waiter) = state.waiters.pop_front() {
            match waiter.tx.send(invocation) {
                Ok(()) => {
                    state.phases.insert(waiter.process, Phase::Busy);
                    self.publish(&state);
                    return Ok(());
                }
                Err(back) => invocation = back,
            }
        }
        if let Some((reason, retry_at)) = &state.failing
            && state.up() == 0
            && Instant::now() < *retry_at
        {
            return Err(Failure::CannotStart {
                function: self.name.clone(),
                reason: reason.clone(),
            });
        }
        if state.queue.len() >= self.spec.max_queue {
            return Err(Failure::Throttled(self.name.clone()));
        }
        state.queue.push_back(invocation);
        let starting = state.slots.saturating_sub(state.up());
        if state.slots < self.spec.concurrency && starting < state.queue.len() {
            self.add_slot(&mut state);
        }
        self.publish(&state);
        Ok(())
    }

    async fn answer(
        &self,
        rx: oneshot::Receiver<Result<Answer, Failure>>,
        wait: Duration,
    ) -> Result<Answer, InvokeError> {
        match tokio::time::timeout(wait, rx).await {
            Err(_) => Err(InvokeError::Timeout(wait)),
            Ok(Err(_)) => Err(Failure::Crashed("the invocation was dropped".into()).into()),
            Ok(Ok(Ok(answer))) => {
                metrics::histogram!("weir_function_duration_seconds", "function" => self.name.to_string())
                    .record(answer.ran.as_secs_f64());
                Ok(answer)
            }
            Ok(Ok(Err(failure))) => Err(failure.into()),
        }
    }

    /// Counts an invocation's outcome (`weir_function_invocations_total`).
    pub fn count(&self, outcome: &'static str) {
        metrics::counter!("weir_function_invocations_total", "function" => self.name.to_string(), "outcome" => outcome)
            .increment(1);
    }

    /// A new process of a slot: its id.
    fn process_started(&self) -> u64 {
        let mut state = self.lock();
        state.next_process += 1;
        let id = state.next_process;
        state.phases.insert(id, Phase::Starting);
        self.publish(&state);
        id
    }

    /// A process asks for work: an invocation now, or a channel one will come on.
    fn next_for(&self, process: u64) -> Next {
        let mut state = self.lock();
        if state.phases.get(&process) == Some(&Phase::Starting) {
            state.failing = None;
        }
        if state.retired {
            state.phases.insert(process, Phase::Idle);
            self.publish(&state);
            return Next::Never;
        }
        while let Some(inv) = state.queue.pop_front() {
            if inv.responder.is_closed() {
                // Its caller gave up (the route's timeout) while it waited.
                continue;
            }
            state.phases.insert(process, Phase::Busy);
            self.publish(&state);
            return Next::Now(inv);
        }
        let (tx, rx) = oneshot::channel();
        state.waiters.push_back(Waiter {
            process,
            tx,
            since: Instant::now(),
        });
        state.phases.insert(process, Phase::Idle);
        self.publish(&state);
        Next::Wait(rx)
    }

    /// A process ended; whether its slot starts another one. A process that never
    /// asked for work failed to start: invocations fail at once for `backoff` (the
    /// slot's wait before its next try), queued ones too when no process is up.
    fn process_ended(
        &self,
        process: u64,
        initialized: bool,
        reason: &str,
        backoff: Duration,
    ) -> bool {
        let mut state = self.lock();
        state.phases.remove(&process);
        state.waiters.retain(|w| w.process != process);
        if !initialized && !state.retired {
            tracing::error!(target: "weir::function", function = %self.name, reason, "function cannot start");
            state.failing = Some((reason.to_owned(), Instant::now() + backoff));
            if state.up() == 0 {
                for inv in std::mem::take(&mut state.queue) {
                    let _ = inv.responder.send(Err(Failure::CannotStart {
                        function: self.name.clone(),
                        reason: reason.to_owned(),
                    }));
                }
            }
        }
        // Other slots still starting a process will take that many queued invocations.
        let others_starting = (state.slots - 1).saturating_sub(state.up());
        let again = !state.retired
            && (state.slots <= self.spec.min_warm || state.queue.len() > others_starting);
        if !again {
            state.slots -= 1;
        }
        self.publish(&state);
        again
    }

    /// Whether `process` is to stop because it waited `idle_timeout` for work while
    /// more than `min_warm` processes run; if so it gets no more work.
    fn release_if_idle(&self, process: u64) -> bool {
        let mut state = self.lock();
        if state.retired || state.slots <= self.spec.min_warm {
            return false;
        }
        let Some(i) = state
            .waiters
            .iter()
            .position(|w| w.process == process && w.since.elapsed() >= self.spec.idle_timeout)
        else {
            return false;
        };
        state.waiters.remove(i);
        state.phases.remove(&process);
        self.publish(&state);
        true
    }

    /// Stops taking invocations; queued ones fail, processes end once idle.
    fn retire(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        let mut state = self.lock();
        state.retired = true;
        for inv in std::mem::take(&mut state.queue) {
            let _ = inv.responder.send(Err(Failure::Stopped(self.name.clone())));
        }
        state.waiters.clear();
        drop(state);
        self.stop.send_replace(true);
    }

    /// Sets `weir_function_processes{state}`.
    fn publish(&self, state: &State) {
        let idle = state.count(Phase::Idle);
        let busy = state.count(Phase::Busy);
        let starting = state.slots.saturating_sub(idle + busy);
        for (label, n) in [("idle", idle), ("busy", busy), ("starting", starting)] {
            metrics::gauge!("weir_function_processes", "function" => self.name.to_string(), "state" => label)
                .set(n as f64);
        }
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

/// What a process asking for work gets.
enum Next {
    /// This invocation.
    Now(Invocation),
    /// One later, on this channel.
    Wait(oneshot::Receiver<Invocation>),
    /// None: the function is stopping.
    Never,
}

/// Why [`Function::invoke`] returned no answer.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// The function failed (see [`Failure`]).
    #[error(transparent)]
    Failed(#[from] Failure),
    /// The caller's wait (the route's timeout) ran out first.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}
