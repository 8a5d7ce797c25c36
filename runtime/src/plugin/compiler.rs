//! Where Cranelift runs.
//!
//! `weir serve` compiles components in a child process: the same executable, run as
//! `weir plugin precompile`, reads the component on stdin and writes wasmtime's
//! artifact on stdout; the gateway only maps the artifact. Compiling needs far more
//! memory than the result: an 18 MB Python component peaks near 450 MiB. In the
//! gateway's own heap that memory stayed (the allocator keeps what it freed on threads
//! that then go idle): one hot load of such a plugin left the gateway at ~125 MiB after
//! it was replaced again, and even a small plugin's compile under load left 2-3 MiB
//! (bench/README.md, "Hot swap under load"). In a child it goes when the child exits,
//! and a compile that runs out of memory or crashes refuses that one component instead
//! of taking down the gateway. One compiler process runs at a time (each uses every
//! core), and one that runs past [`COMPILE_DEADLINE`] is killed.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmtime::Engine;

/// How components are compiled.
#[derive(Debug, Clone, Default)]
pub enum Compiler {
    /// On this process's threads: for short-lived commands (`weir plugin check`,
    /// `weir validate`) and library use.
    #[default]
    InProcess,
    /// In a child process running `EXE plugin precompile`, allowed `max_memory` bytes
    /// of data (`RLIMIT_DATA`).
    Child {
        /// The executable.
        exe: PathBuf,
        /// The child's data limit in bytes (`[limits] compile_memory`).
        max_memory: u64,
    },
}

impl Compiler {
    /// A child of the running executable. On Linux this is `/proc/self/exe`, which
    /// names the running file even after a package upgrade replaced it on disk, so the
    /// child is always the same build as the gateway (wasmtime refuses artifacts of any
    /// other build, too).
    pub fn child_of_self(max_memory: u64) -> std::io::Result<Self> {
        let exe = if cfg!(target_os = "linux") {
            PathBuf::from("/proc/self/exe")
        } else {
            std::env::current_exe()?
        };
        Ok(Compiler::Child { exe, max_memory })
    }

    /// Compiles `bytes` into an artifact for `Component::deserialize` on `engine`.
    pub(super) fn precompile(&self, engine: &Engine, bytes: &[u8]) -> Result<Vec<u8>, String> {
        match self {
            Compiler::InProcess => engine
                .precompile_component(bytes)
                .map_err(|e| format!("{e:#}")),
            Compiler::Child { exe, max_memory } => match in_child(exe, *max_memory, bytes) {
                Ok(artifact) => Ok(artifact),
                Err(ChildError::Failed(why)) => Err(why),
                Err(ChildError::CannotStart(why)) => {
                    // A sandbox that forbids starting processes should not make every
                    // plugin unloadable: compile here, as before, and say so once.
                    if !WARNED.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            reason = %why,
                            "compiling plugins in the gateway's own process; its memory will hold what compiles leave"
                        );
                    }
                    Compiler::InProcess.precompile(engine, bytes)
                }
            },
        }
    }
}

/// Whether the fallback to compiling in-process has been logged.
static WARNED: AtomicBool = AtomicBool::new(false);

/// Why a compile in a child process gave no artifact.
enum ChildError {
    /// The process could not be started.
    CannotStart(String),
    /// The compile failed (the child's own error) or the process died or hung.
    Failed(String),
}

/// Longest a compile may take; past it the compiler process is killed and the component
/// refused. Cranelift is linear in the code's size (an 18 MB Python component takes
/// ~4 s on 2 cores), so this only stops a compiler that is stuck.
const COMPILE_DEADLINE: Duration = Duration::from_secs(300);

/// One compiler process at a time. Each compiles on every core (Cranelift's functions
/// in parallel), so running several at once would only add their peak memory up: a
/// config with four interpreted plugins would have ~2 GiB in flight at start.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn in_child(exe: &Path, max_memory: u64, bytes: &[u8]) -> Result<Vec<u8>, ChildError> {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut child = Command::new(exe)
        .args(["plugin", "precompile", "--max-memory"])
        .arg(max_memory.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            ChildError::CannotStart(format!(
                "cannot start the compiler process {}: {e}",
                exe.display()
            ))
        })?;
    let (Some(mut stdin), Some(mut stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(ChildError::CannotStart(
            "the compiler process has no pipes".to_owned(),
        ));
    };
    let started = Instant::now();
    // stdin and stderr have threads of their own, so a child that fails early or writes
    // a lot of errors never blocks on a full pipe, and another thread watches the
    // deadline. The artifact is read on this thread: the loading thread, which frees
    // it and then hands back what it freed (`return_freed_memory`); read on a thread
    // that then exits, it stayed resident.
    let (status, artifact, said) = std::thread::scope(|s| {
        s.spawn(move || {
            // A child that exits early closes the pipe; its stderr says why.
            let _ = stdin.write_all(bytes);
        });
        let said = s.spawn(move || {
            let mut out = Vec::new();
            let _ = stderr.read_to_end(&mut out);
            out
        });
        let status = s.spawn(|| watch(&mut child, started));
        // Ends when the child closes stdout: done, failed, or killed by the watch.
        let mut artifact = Vec::new();
        let artifact = stdout.read_to_end(&mut artifact).map(|_| artifact);
        let status = status
            .join()
            .unwrap_or_else(|_| Err("watching the compiler process failed".to_owned()));
        let said = said.join().unwrap_or_default();
        (status, artifact, said)
    });
    let status = status.map_err(ChildError::Failed)?;
    if status.success() {
        return artifact.map_err(|e| {
            ChildError::Failed(format!("reading the compiler process's output: {e}"))
        });
    }
    let said = String::from_utf8_lossy(&said);
    let said = said.trim().trim_start_matches("error: ");
    // Past its data limit the child either reports the failed allocation (wasmtime's
    // own error) or aborts in Rust's allocation-failure handler.
    if said.contains("out of memory") || said.starts_with("memory allocation of") {
        return Err(ChildError::Failed(format!(
            "compiling it needs more memory than limits.compile_memory ({}) allows",
            bytesize::ByteSize(max_memory).display().iec()
        )));
    }
    Err(ChildError::Failed(match status.code() {
        Some(_) if !said.is_empty() => said.to_owned(),
        _ => format!("the compiler process failed ({status})"),
    }))
}

/// Waits for the compiler process to exit, killing it past [`COMPILE_DEADLINE`].
fn watch(child: &mut std::process::Child, started: Instant) -> Result<ExitStatus, String> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if started.elapsed() > COMPILE_DEADLINE => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the compiler process ran past {}s and was stopped",
                    COMPILE_DEADLINE.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("waiting for the compiler process: {e}"));
            }
        }
    }
}

/// The child's side (`weir plugin precompile`): a component on stdin, the artifact on
/// stdout, an error on stderr with exit status 1.
///
/// With `max_memory`, the process limits its data (heap, anonymous mappings, thread
/// stacks) to that many bytes and starts itself again without the flag: the allocator
/// reserves its arenas when a process starts, so a limit must be in place by then.
pub fn precompile_stdio(max_memory: Option<u64>) -> anyhow::Result<()> {
    if let Some(max) = max_memory {
        return limit_data_and_restart(max);
    }
    let mut bytes = Vec::new();
    std::io::stdin().read_to_end(&mut bytes)?;
    let engine =
        Engine::new(&super::engine::compile_config()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let artifact = engine
        .precompile_component(&bytes)
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let mut out = std::io::stdout().lock();
    out.write_all(&artifact)?;
    out.flush()?;
    Ok(())
}

#[cfg(target_os = "linux")]
fn limit_data_and_restart(max: u64) -> anyhow::Result<()> {
    use rustix::process::{Resource, Rlimit, setrlimit};
    use std::os::unix::process::CommandExt as _;
    let limit = Rlimit {
        current: Some(max),
        maximum: Some(max),
    };
    setrlimit(Resource::Data, limit).map_err(|e| anyhow::anyhow!("limiting memory: {e}"))?;
    // Only returns if the executable could not be started; stdin, stdout and stderr
    // pass on as they are.
    let e = Command::new("/proc/self/exe")
        .args(["plugin", "precompile"])
        .exec();
    Err(anyhow::anyhow!("restarting the compiler process: {e}"))
}

/// Elsewhere the compiler process runs without a limit of its own.
#[cfg(not(target_os = "linux"))]
fn limit_data_and_restart(_max: u64) -> anyhow::Result<()> {
    precompile_stdio(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest component there is: the header and nothing else.
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    #[test]
    fn a_compiler_process_that_cannot_start_falls_back_to_this_one() {
        let engine = Engine::new(&crate::plugin::engine::engine_config()).unwrap();
        let compiler = Compiler::Child {
            exe: PathBuf::from("/nonexistent/weir"),
            max_memory: 1 << 30,
        };
        let artifact = compiler.precompile(&engine, EMPTY_COMPONENT).unwrap();
        let expected = Compiler::InProcess
            .precompile(&engine, EMPTY_COMPONENT)
            .unwrap();
        assert_eq!(artifact, expected);
    }

    #[test]
    #[cfg(unix)]
    fn a_compiler_process_that_fails_refuses_the_component() {
        let engine = Engine::new(&crate::plugin::engine::engine_config()).unwrap();
        // Exits 1 without a word, as a crashed compiler would say nothing.
        let compiler = Compiler::Child {
            exe: PathBuf::from("false"),
            max_memory: 1 << 30,
        };
        let err = compiler.precompile(&engine, EMPTY_COMPONENT).unwrap_err();
        assert_eq!(err, "the compiler process failed (exit status: 1)");
    }

    #[test]
    fn the_compiler_engine_makes_artifacts_the_gateway_engine_takes() {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let hash = |config: &wasmtime::Config| {
            let engine = Engine::new(config).unwrap();
            let mut h = DefaultHasher::new();
            engine.precompile_compatibility_hash().hash(&mut h);
            h.finish()
        };
        assert_eq!(
            hash(&crate::plugin::engine::compile_config()),
            hash(&crate::plugin::engine::engine_config())
        );
    }
}
