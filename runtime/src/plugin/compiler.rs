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
//! of taking down the gateway.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::{Command, Stdio};

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

fn in_child(exe: &PathBuf, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut child = Command::new(exe)
        .args(["plugin", "precompile"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the compiler process {}: {e}", exe.display()))?;
    let Some(mut stdin) = child.stdin.take() else {
        return Err("the compiler process has no stdin".to_owned());
    };
    // The child reads all of its input before it writes; feeding it from a thread of
    // its own still keeps a child that fails early from blocking this one on a full pipe.
    let output = std::thread::scope(|s| {
        s.spawn(move || {
            // A child that exits early closes the pipe; its stderr says why.
            let _ = stdin.write_all(bytes);
        });
        child.wait_with_output()
    })
    .map_err(|e| format!("waiting for the compiler process: {e}"))?;
    if output.status.success() {
        return Ok(output.stdout);
    }
    let said = String::from_utf8_lossy(&output.stderr);
    let said = said.trim().trim_start_matches("error: ");
    Err(match output.status.code() {
        Some(_) if !said.is_empty() => said.to_owned(),
        _ => format!("the compiler process failed ({})", output.status),
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
