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
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use wasmtime::Engine;

/// How components are compiled.
#[derive(Debug, Clone, Default)]
pub enum Compiler {
    /// On this process's threads: for short-lived commands (`weir plugin check`,
    /// `weir validate`) and library use.
    #[default]
    InProcess,
    /// In a child process running `EXE plugin precompile`.
    Child(PathBuf),
}

impl Compiler {
    /// A child of the running executable. On Linux this is `/proc/self/exe`, which
    /// names the running file even after a package upgrade replaced it on disk, so the
    /// child is always the same build as the gateway (wasmtime refuses artifacts of any
    /// other build, too).
    pub fn child_of_self() -> std::io::Result<Self> {
        let exe = if cfg!(target_os = "linux") {
            PathBuf::from("/proc/self/exe")
        } else {
            std::env::current_exe()?
        };
        Ok(Compiler::Child(exe))
    }

    /// Compiles `bytes` into an artifact for `Component::deserialize` on `engine`.
    pub(super) fn precompile(&self, engine: &Engine, bytes: &[u8]) -> Result<Vec<u8>, String> {
        match self {
            Compiler::InProcess => engine
                .precompile_component(bytes)
                .map_err(|e| format!("{e:#}")),
            Compiler::Child(exe) => in_child(exe, bytes),
        }
    }
}

/// Longest a compile may take; past it the compiler process is killed and the component
/// refused. Cranelift is linear in the code's size (an 18 MB Python component takes
/// ~4 s on 2 cores), so this only stops a compiler that is stuck.
const COMPILE_DEADLINE: Duration = Duration::from_secs(300);

/// One compiler process at a time. Each compiles on every core (Cranelift's functions
/// in parallel), so running several at once would only add their peak memory up: a
/// config with four interpreted plugins would have ~2 GiB in flight at start.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn in_child(exe: &Path, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut child = Command::new(exe)
        .args(["plugin", "precompile"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the compiler process {}: {e}", exe.display()))?;
    let (Some(mut stdin), Some(mut stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        let _ = child.wait();
        return Err("the compiler process has no pipes".to_owned());
    };
    let started = Instant::now();
    // Each pipe has a thread of its own, so a child that fails early or writes a lot of
    // errors never blocks on a full pipe; this thread watches the deadline.
    let (status, artifact, said) = std::thread::scope(|s| {
        s.spawn(move || {
            // A child that exits early closes the pipe; its stderr says why.
            let _ = stdin.write_all(bytes);
        });
        let artifact = s.spawn(move || {
            let mut out = Vec::new();
            stdout.read_to_end(&mut out).map(|_| out)
        });
        let said = s.spawn(move || {
            let mut out = Vec::new();
            let _ = stderr.read_to_end(&mut out);
            out
        });
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) if started.elapsed() > COMPILE_DEADLINE => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(format!(
                        "the compiler process ran past {}s and was stopped",
                        COMPILE_DEADLINE.as_secs()
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(format!("waiting for the compiler process: {e}"));
                }
            }
        };
        let artifact = artifact.join().unwrap_or_else(|_| Ok(Vec::new()));
        let said = said.join().unwrap_or_default();
        (status, artifact, said)
    });
    let status = status?;
    if status.success() {
        return artifact.map_err(|e| format!("reading the compiler process's output: {e}"));
    }
    let said = String::from_utf8_lossy(&said);
    let said = said.trim().trim_start_matches("error: ");
    Err(match status.code() {
        Some(_) if !said.is_empty() => said.to_owned(),
        _ => format!("the compiler process failed ({status})"),
    })
}

/// The child's side (`weir plugin precompile`): a component on stdin, the artifact on
/// stdout, an error on stderr with exit status 1.
pub fn precompile_stdio() -> anyhow::Result<()> {
    let mut bytes = Vec::new();
    std::io::stdin().read_to_end(&mut bytes)?;
    let engine = Engine::new(&super::engine_config()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let artifact = engine
        .precompile_component(&bytes)
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let mut out = std::io::stdout().lock();
    out.write_all(&artifact)?;
    out.flush()?;
    Ok(())
}
