//! What a failed call tells its author: the trap, a bounded backtrace (with function
//! names where the component carries a name section), and what the guest wrote during
//! that call — its `host.log` lines and its stdout/stderr, where a guest's panic or
//! uncaught exception message lands.

use std::collections::VecDeque;
use std::fmt;

use super::state::escape_controls;

/// Most lines of guest output kept with one failure (the last ones: a panic message
/// comes last).
const MAX_LINES: usize = 40;
/// Most bytes of guest output kept with one failure.
const MAX_BYTES: usize = 4096;
/// Longest single line kept.
const MAX_LINE: usize = 512;
/// Most backtrace frames shown.
const MAX_FRAMES: usize = 16;

/// What the guest wrote during one call, bounded to its last [`MAX_LINES`] lines and
/// [`MAX_BYTES`] bytes, control characters escaped: `[LEVEL] message` for a
/// `host.log` line, `[stdio] line` for a line of stdout or stderr.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestOutput {
    lines: VecDeque<String>,
    bytes: usize,
    /// Lines left out to stay within the bounds.
    dropped: usize,
}

impl GuestOutput {
    /// Keeps one line (`source` is the level, or `stdio`).
    pub(super) fn push(&mut self, source: &str, line: &str) {
        let mut line = escape_controls(line).into_owned();
        if line.len() > MAX_LINE {
            let mut end = MAX_LINE;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            line.truncate(end);
            line.push('…');
        }
        let line = format!("[{source}] {line}");
        self.bytes += line.len();
        self.lines.push_back(line);
        while self.lines.len() > MAX_LINES || self.bytes > MAX_BYTES {
            let Some(first) = self.lines.pop_front() else {
                break;
            };
            self.bytes -= first.len();
            self.dropped += 1;
        }
    }

    /// Keeps each non-blank line of what the guest printed.
    pub(super) fn push_stdio(&mut self, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            self.push("stdio", line);
        }
    }

    /// Forgets everything (a new call begins).
    pub(super) fn clear(&mut self) {
        self.lines.clear();
        self.bytes = 0;
        self.dropped = 0;
    }

    /// Whether the guest wrote nothing.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.dropped == 0
    }

    /// The lines kept, oldest first.
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().map(String::as_str)
    }

    /// How many earlier lines were left out.
    pub fn dropped(&self) -> usize {
        self.dropped
    }
}

impl fmt::Display for GuestOutput {
    /// `guest output:` and one indented line each, or nothing when there was none.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return Ok(());
        }
        f.write_str("\n  guest output of this call:")?;
        if self.dropped > 0 {
            write!(f, "\n    | ({} earlier lines left out)", self.dropped)?;
        }
        for line in &self.lines {
            write!(f, "\n    | {line}")?;
        }
        Ok(())
    }
}

/// A failed call's error as its author needs it: what went wrong first (the trap, or
/// what the host refused), then the guest's backtrace, at most [`MAX_FRAMES`] frames,
/// saying so when the component carries no function names.
pub(super) fn describe(e: &wasmtime::Error) -> String {
    let mut out = match e.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        None => {
            // Not a trap (a host-side refusal, an instantiation failure): the error's
            // own chain, without the backtrace wasmtime puts in front of it.
            let chain: Vec<String> = e
                .chain()
                .map(|c| c.to_string())
                .filter(|c| !c.starts_with("error while executing at wasm backtrace"))
                .collect();
            chain.join(": ")
        }
    };
    if let Some(bt) = e.downcast_ref::<wasmtime::WasmBacktrace>() {
        out.push_str(&backtrace(bt));
    }
    out
}

fn backtrace(bt: &wasmtime::WasmBacktrace) -> String {
    let frames = bt.frames();
    if frames.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n  backtrace:");
    // The innermost frames are often the language's panic machinery, the outermost
    // the export: past MAX_FRAMES, keep a few of the first and the rest of the last.
    let head = if frames.len() > MAX_FRAMES {
        4
    } else {
        MAX_FRAMES
    };
    let tail_from = frames.len().saturating_sub(MAX_FRAMES - head).max(head);
    for (i, frame) in frames.iter().enumerate() {
        if i == head && tail_from > head {
            out.push_str(&format!("\n    … {} frames …", tail_from - head));
        }
        if i >= head && i < tail_from {
            continue;
        }
        out.push_str(&format!("\n    #{i} {}", frame_line(frame)));
    }
    if !frames.iter().any(|f| f.func_name().is_some()) {
        out.push_str(
            "\n    (no function names: the component was built without a `name` section; \
             for Rust, `strip = \"debuginfo\"` or `false` in the release profile keeps it; \
             in other languages, build without stripping)",
        );
    }
    out
}

/// `module!function` (names demangled; `wasm function N` without a name section),
/// then `at file:line` where the component carries DWARF.
fn frame_line(frame: &wasmtime::FrameInfo) -> String {
    let module = frame.module().name().unwrap_or("<unknown>");
    let mut line = match frame.func_name() {
        Some(name) => format!("{module}!{:#}", rustc_demangle::demangle(name)),
        None => format!("{module}!<wasm function {}>", frame.func_index()),
    };
    if let Some(offset) = frame.module_offset() {
        line.push_str(&format!(" ({offset:#x})"));
    }
    for symbol in frame.symbols() {
        if let (Some(file), Some(at)) = (symbol.file(), symbol.line()) {
            line.push_str(&format!(" at {file}:{at}"));
            break;
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_keeps_the_last_lines_within_bounds() {
        let mut out = GuestOutput::default();
        assert!(out.is_empty());
        assert_eq!(out.to_string(), "");
        for i in 0..100 {
            out.push("info", &format!("line {i}"));
        }
        out.push_stdio(b"panicked at src/lib.rs:9:9:\nboom\n\n");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), MAX_LINES);
        assert_eq!(lines[MAX_LINES - 1], "[stdio] boom");
        assert_eq!(lines[MAX_LINES - 2], "[stdio] panicked at src/lib.rs:9:9:");
        assert_eq!(out.dropped(), 62);
        let text = out.to_string();
        assert!(text.contains("(62 earlier lines left out)"), "{text}");
        assert!(text.ends_with("\n    | [stdio] boom"), "{text}");
    }

    #[test]
    fn lines_are_escaped_and_cut() {
        let mut out = GuestOutput::default();
        out.push("warn", "a\u{1b}[31m forged");
        out.push("info", &"x".repeat(10_000));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "[warn] a\\u{1b}[31m forged");
        assert!(lines[1].len() < MAX_LINE + 16 && lines[1].ends_with('…'));
        for _ in 0..20 {
            out.push("info", &"y".repeat(400));
        }
        assert!(out.bytes <= MAX_BYTES);
        out.clear();
        assert!(out.is_empty());
    }
}
