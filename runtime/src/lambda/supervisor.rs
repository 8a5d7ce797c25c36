//! A function's processes: each slot starts one process at a time with a Runtime API
//! listener of its own, sends its output to the log, enforces the invocation timeout
//! (the process is killed), and starts the next one — at once after a process that
//! served, with a growing backoff after one that failed to start or died young.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{Answer, Failure, Function, Invocation, STOP_GRACE};
use crate::plugin::escape_controls;

/// Longest output line logged; the rest of a longer line is dropped.
pub const MAX_LOG_LINE: usize = 8 * 1024;
/// A process that ends sooner than this after its start counts as failing (backoff).
const YOUNG: Duration = Duration::from_secs(1);
/// First and longest wait before a slot starts a process again.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(10));
/// Variables of the gateway's environment a function inherits; nothing else is passed.
const INHERITED: [&str; 4] = ["PATH", "HOME", "LANG", "TZ"];

/// The invocation a process runs.
pub(super) struct Current {
    id: String,
    responder: tokio::sync::oneshot::Sender<Result<Answer, Failure>>,
    started: Instant,
}

/// One running process, as its Runtime API handlers see it.
pub(super) struct Process {
    pub(super) id: u64,
    pub(super) function: Arc<Function>,
    current: Mutex<Option<Current>>,
    /// When the current invocation must have answered; `None` when there is none.
    deadline: watch::Sender<Option<tokio::time::Instant>>,
    initialized: AtomicBool,
    /// What the runtime reported to `/init/error`.
    init_error: Mutex<Option<String>>,
}

impl Process {
    fn current(&self) -> std::sync::MutexGuard<'_, Option<Current>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The process took `inv`: its deadline starts now.
    pub(super) fn begin(&self, inv: Invocation) -> (String, super::Bytes, String, u64) {
        self.initialized.store(true, Ordering::Relaxed);
        let timeout = self.function.spec.timeout;
        let deadline_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| (d + timeout).as_millis() as u64);
        let previous = self.current().replace(Current {
            id: inv.id.clone(),
            responder: inv.responder,
            started: Instant::now(),
        });
        if let Some(previous) = previous {
            let _ = previous.responder.send(Err(Failure::Crashed(
                "the runtime asked for the next invocation without answering".into(),
            )));
        }
        self.deadline
            .send_replace(Some(tokio::time::Instant::now() + timeout));
        (inv.id, inv.event, inv.trace_id, deadline_ms)
    }

    /// The process asked for work (its first request ends its initialization).
    pub(super) fn asked(&self) {
        self.initialized.store(true, Ordering::Relaxed);
        if let Some(previous) = self.current().take() {
            self.deadline.send_replace(None);
            let _ = previous.responder.send(Err(Failure::Crashed(
                "the runtime asked for the next invocation without answering".into(),
            )));
        }
    }

    /// Ends invocation `id` with `result`; false when that is not the current one.
    pub(super) fn finish(&self, id: &str, result: Result<super::Bytes, Failure>) -> bool {
        let mut current = self.current();
        let Some(c) = current.take_if(|c| c.id == id) else {
            return false;
        };
        drop(current);
        self.deadline.send_replace(None);
        let ran = c.started.elapsed();
        let _ = c.responder.send(result.map(|body| Answer { body, ran }));
        true
    }

    /// The runtime reported that it cannot initialize.
    pub(super) fn init_failed(&self, reason: String) {
        tracing::error!(target: "weir::function", function = %self.function.name, reason, "function initialization failed");
        *self.init_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
    }
}

/// Runs processes of `function` one after another while the function wants them.
pub(super) async fn run_slot(function: Arc<Function>) {
    let mut failures = 0u32;
    let mut stop = function.stop.subscribe();
    loop {
        let id = function.process_started();
        let started = Instant::now();
        let (initialized, reason) = run_process(&function, id, &mut stop).await;
        if !initialized || started.elapsed() < YOUNG {
            failures = failures.saturating_add(1);
        } else {
            failures = 0;
        }
        let backoff = if failures == 0 {
            Duration::ZERO
        } else {
            BACKOFF
                .0
                .saturating_mul(1 << (failures - 1).min(10))
                .min(BACKOFF.1)
        };
        if !function.process_ended(id, initialized, &reason, backoff) {
            return;
        }
        if !backoff.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = async { let _ = stop.wait_for(|s| *s).await; } => {}
            }
        }
    }
}

/// Runs one process until it exits, is killed at an invocation's deadline, or is
/// stopped. Returns whether it ever asked for work, and why it ended.
async fn run_process(
    function: &Arc<Function>,
    id: u64,
    stop: &mut watch::Receiver<bool>,
) -> (bool, String) {
    if *stop.borrow() {
        return (true, "stopped".into());
    }
    let listener = match TcpListener::bind(("127.0.0.1", 0)).await {
        Ok(l) => l,
        Err(e) => return (false, format!("cannot listen for the Runtime API: {e}")),
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => return (false, format!("cannot listen for the Runtime API: {e}")),
    };
    let mut child = match command(function, &addr.to_string(), id).spawn() {
        Ok(c) => c,
        Err(e) => {
            return (
                false,
                format!("cannot run `{}`: {e}", function.spec.command[0]),
            );
        }
    };
    metrics::counter!("weir_function_cold_starts_total", "function" => function.name.to_string())
        .increment(1);
    let pid = child.id();
    tracing::debug!(target: "weir::function", function = %function.name, pid, %addr, "process started");
    let mut tasks = JoinSet::new();
    if let Some(out) = child.stdout.take() {
        tasks.spawn(pump(out, function.name.clone(), "stdout"));
    }
    if let Some(err) = child.stderr.take() {
        tasks.spawn(pump(err, function.name.clone(), "stderr"));
    }
    let process = Arc::new(Process {
        id,
        function: function.clone(),
        current: Mutex::new(None),
        deadline: watch::channel(None).0,
        initialized: AtomicBool::new(false),
        init_error: Mutex::new(None),
    });
    let mut deadline = process.deadline.subscribe();
    let mut connections = JoinSet::new();
    let mut stopping = false;
    // Looks a few times per `idle_timeout` whether this process waited that long.
    let mut idle_check = tokio::time::interval(
        (function.spec.idle_timeout / 4).clamp(Duration::from_millis(100), Duration::from_secs(30)),
    );
    idle_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let reason = loop {
        let due = *deadline.borrow_and_update();
        if stopping && due.is_none() {
            break terminate(&mut child, pid).await;
        }
        tokio::select! {
            status = child.wait() => {
                break match status {
                    Ok(s) => format!("exited ({s})"),
                    Err(e) => format!("cannot wait for it: {e}"),
                };
            }
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    connections.spawn(super::runtime_api::serve(stream, process.clone()));
                }
            }
            () = sleep_until(due) => {
                kill_group(pid, true);
                let _ = child.wait().await;
                let timeout = function.spec.timeout;
                if let Some(c) = process.current().take() {
                    let _ = c.responder.send(Err(Failure::TimedOut(timeout)));
                }
                tracing::warn!(target: "weir::function", function = %function.name, ?timeout, "invocation timed out; process killed");
                break "killed at the invocation's timeout".to_owned();
            }
            _ = deadline.changed() => {}
            _ = stop.changed(), if !stopping => stopping = *stop.borrow(),
            _ = idle_check.tick(), if !stopping => {
                if function.release_if_idle(id) {
                    tracing::debug!(target: "weir::function", function = %function.name, pid, "idle process stopped");
                    stopping = true;
                }
            }
        }
    };
    // Whatever the process started goes with it.
    kill_group(pid, true);
    drop(listener);
    connections.abort_all();
    let initialized = process.initialized.load(Ordering::Relaxed);
    if let Some(c) = process.current().take() {
        let _ = c.responder.send(Err(Failure::Crashed(reason.clone())));
    }
    // The rest of its output, then the record of its end.
    let _ = tokio::time::timeout(Duration::from_millis(200), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    let reason = process
        .init_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take()
        .unwrap_or(reason);
    if initialized && !stopping {
        tracing::warn!(target: "weir::function", function = %function.name, pid, reason, "function process ended");
    }
    (initialized, reason)
}

async fn sleep_until(due: Option<tokio::time::Instant>) {
    match due {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// The process with the Lambda environment: `AWS_LAMBDA_RUNTIME_API` and the variables
/// Lambda sets, a few of the gateway's own, then the function's `env`.
fn command(function: &Function, api: &str, id: u64) -> Command {
    let spec = &function.spec;
    let mut cmd = Command::new(&spec.command[0]);
    cmd.args(&spec.command[1..])
        .current_dir(&spec.dir)
        .env_clear()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    #[cfg(unix)]
    cmd.process_group(0);
    #[cfg(target_os = "linux")]
    die_with_gateway(&mut cmd);
    for name in INHERITED {
        if let Some(v) = std::env::var_os(name) {
            cmd.env(name, v);
        }
    }
    let name = &*function.name;
    cmd.env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env(
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            spec.memory_size.to_string(),
        )
        .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
        .env(
            "AWS_LAMBDA_LOG_STREAM_NAME",
            format!("weir/{}/{id}", std::process::id()),
        )
        .env("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
        .env("AWS_REGION", &function.region)
        .env("AWS_DEFAULT_REGION", &function.region)
        .env("LAMBDA_TASK_ROOT", &spec.dir)
        .envs(&spec.env)
        .env("AWS_LAMBDA_RUNTIME_API", api);
    cmd
}

/// Has the kernel kill the process when the gateway dies, even by `SIGKILL` (which no
/// cleanup of ours survives). The signal is tied to the thread that starts the process:
/// a runtime thread, which lives as long as the gateway.
#[cfg(target_os = "linux")]
fn die_with_gateway(cmd: &mut Command) {
    let parent = rustix::process::getpid();
    // SAFETY: the closure runs in the child between fork and exec; it calls only
    // prctl(2) and getppid(2), which are async-signal-safe, and allocates nothing.
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
            // The gateway died before the signal was set: do not run orphaned.
            if rustix::process::getppid() != Some(parent) {
                return Err(std::io::Error::other("the gateway is gone"));
            }
            Ok(())
        });
    }
}

/// Asks the process to stop (SIGTERM to its group), then kills it after [`STOP_GRACE`].
async fn terminate(child: &mut Child, pid: Option<u32>) -> String {
    kill_group(pid, false);
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(_) => "stopped".to_owned(),
        Err(_) => {
            kill_group(pid, true);
            let _ = child.wait().await;
            "killed after the stop grace".to_owned()
        }
    }
}

/// Signals the process group led by `pid` (the process and whatever it started).
fn kill_group(pid: Option<u32>, kill: bool) {
    #[cfg(target_os = "linux")]
    if let Some(pid) = pid
        .and_then(|p| i32::try_from(p).ok())
        .filter(|p| *p > 1)
        .and_then(rustix::process::Pid::from_raw)
    {
        let signal = if kill {
            rustix::process::Signal::KILL
        } else {
            rustix::process::Signal::TERM
        };
        let _ = rustix::process::kill_process_group(pid, signal);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (pid, kill);
}

/// Logs what a process writes, one record per line (at most [`MAX_LOG_LINE`] bytes),
/// control characters escaped, tagged with the function's name.
async fn pump(reader: impl AsyncRead + Unpin, function: Arc<str>, stream: &'static str) {
    let mut reader = BufReader::new(reader);
    let mut line: Vec<u8> = Vec::new();
    let mut cut = false;
    loop {
        let chunk = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(chunk) => chunk,
        };
        let (part, ends) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (&chunk[..i], Some(i + 1)),
            None => (chunk, None),
        };
        let room = MAX_LOG_LINE.saturating_sub(line.len());
        if part.len() > room {
            cut = true;
        }
        line.extend_from_slice(&part[..part.len().min(room)]);
        let used = ends.unwrap_or(chunk.len());
        reader.consume(used);
        if ends.is_some() {
            log_line(&function, stream, &line, cut);
            line.clear();
            cut = false;
        }
    }
    log_line(&function, stream, &line, cut);
}

fn log_line(function: &str, stream: &str, line: &[u8], cut: bool) {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches('\r');
    if text.trim().is_empty() {
        return;
    }
    let text = escape_controls(text);
    let more = if cut { " [line cut]" } else { "" };
    tracing::info!(target: "weir::function", function, stream, "{text}{more}");
}
