//! One instance's host state: its WASI context (no capabilities; stdout and stderr
//! into a bounded pipe), its memory cap, and the host functions the WIT package gives
//! every world (`host.log`, `host.config`, ...; `json` lives in [`super::json`], the
//! values `host.keep` keeps in [`super::kept`]).

use std::borrow::Cow;
use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime::{Engine, ResourceLimiter, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::Limits;
use super::bindings;
use super::kept::Kept;
use super::outbound::Hooks;
use super::output::GuestOutput;
use crate::client_cert::ClientCert;

/// Most bytes of guest stdout/stderr kept per call.
pub(super) const GUEST_OUTPUT_CAP: usize = 64 * 1024;
/// Longest guest log message kept.
const GUEST_LOG_CAP: usize = 4096;
/// Most `host.log` lines one call may write; then one line says the rest was dropped.
const LOG_LINES_PER_CALL: u32 = 100;
/// Most bytes of `host.log` messages one call may write.
const LOG_BYTES_PER_CALL: usize = 64 * 1024;
/// Longest reuse `host.cacheable` may declare.
const MAX_CACHE_SECONDS: u32 = 3600;

/// The store data of one instance. (It names the plugin rather than holding its
/// settings: idle instances live inside a plugin version, and must not keep it alive.)
pub struct State {
    pub(super) name: Arc<str>,
    config_json: Arc<str>,
    /// A smoke test: the guest's log lines are dropped.
    pub(super) quiet: bool,
    /// Made when the guest first calls WASI: most calls of most plugins never do, and
    /// making it is a tenth of a fresh call.
    wasi: Option<WasiCtx>,
    table: ResourceTable,
    pub(super) memory: MemoryCap,
    /// The guest's stdout and stderr, and how much of it has been logged already.
    pub(super) output: MemoryOutputPipe,
    pub(super) logged: usize,
    /// `host.log` lines and bytes written in this call, and whether some were dropped.
    log_lines: u32,
    log_bytes: usize,
    log_cut: bool,
    /// What the call declared with `host.cacheable`, in seconds.
    pub(super) cache_for: Option<u32>,
    /// The certificate of the client of this call's request (`host.client-cert`).
    pub(super) client_cert: Option<Arc<ClientCert>>,
    /// The plugin version's kept values (`host.kept`, `host.keep`).
    kept: Arc<Kept>,
    /// `wasi:http` (function components): the context, and what may go out.
    http: WasiHttpCtx,
    pub(super) hooks: Hooks,
    /// This call's `host.log` lines and stdout/stderr, for the error if it fails, and
    /// how much of the pipe it holds already.
    pub(super) transcript: GuestOutput,
    transcribed: usize,
}

impl State {
    /// A store for one instance of the plugin `name`.
    pub(super) fn store(
        engine: &Engine,
        name: &Arc<str>,
        config_json: &Arc<str>,
        limits: &Limits,
        kept: Arc<Kept>,
        quiet: bool,
    ) -> Store<State> {
        // A reused instance keeps its pipe: give it room for one more call's worth of
        // output after any earlier call's (it is retired once it has used
        // GUEST_OUTPUT_CAP).
        let capacity = if limits.reuse > 1 {
            2 * GUEST_OUTPUT_CAP
        } else {
            GUEST_OUTPUT_CAP
        };
        let output = MemoryOutputPipe::new(capacity);
        let mut store = Store::new(
            engine,
            State {
                name: name.clone(),
                config_json: config_json.clone(),
                quiet,
                wasi: None,
                table: ResourceTable::new(),
                memory: MemoryCap {
                    limit: limits.max_memory,
                    current: 0,
                    hit: false,
                },
                output,
                logged: 0,
                log_lines: 0,
                log_bytes: 0,
                log_cut: false,
                cache_for: None,
                client_cert: None,
                kept,
                http: WasiHttpCtx::new(),
                hooks: Hooks::default(),
                transcript: GuestOutput::default(),
                transcribed: 0,
            },
        );
        store.limiter(|s| &mut s.memory);
        store
    }

    /// Readies the state for the next call: a clean memory-cap flag, a fresh log budget.
    pub(super) fn next_call(&mut self) {
        self.memory.hit = false;
        self.log_lines = 0;
        self.log_bytes = 0;
        self.log_cut = false;
        self.cache_for = None;
        self.client_cert = None;
        self.transcript.clear();
        // The last call's output was logged (and transcribed) up to here.
        self.transcribed = self.logged;
    }

    /// Adds what the guest printed since the last look to the call's transcript, so
    /// that it keeps the order of printed lines and `host.log` lines.
    fn transcribe_stdio(&mut self) {
        let output = self.output.contents();
        if output.len() > self.transcribed {
            self.transcript.push_stdio(&output[self.transcribed..]);
            self.transcribed = output.len();
        }
    }

    /// Logs what the guest wrote to stdout and stderr since the last call (unless this
    /// is a smoke test), one line per line, control characters escaped.
    pub(super) fn log_output(&mut self) {
        self.transcribe_stdio();
        let output = self.output.contents();
        if output.len() <= self.logged {
            return;
        }
        if !self.quiet {
            let text = String::from_utf8_lossy(&output[self.logged..]);
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let line = escape_controls(line);
                tracing::info!(target: "weir::plugin", plugin = &*self.name, stream = "stdio", "{line}");
            }
        }
        self.logged = output.len();
    }
}

/// The linear-memory cap of one instance, and whether a call hit it.
pub(super) struct MemoryCap {
    limit: usize,
    /// The linear memory's size after its last growth.
    current: usize,
    pub(super) hit: bool,
}

impl MemoryCap {
    /// Bytes the instance may still take.
    pub(super) fn left(&self) -> usize {
        self.limit.saturating_sub(self.current)
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.hit = true;
            return Ok(false);
        }
        self.current = self.current.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let output = &self.output;
        let ctx = self.wasi.get_or_insert_with(|| {
            WasiCtxBuilder::new()
                .stdout(output.clone())
                .stderr(output.clone())
                .allow_tcp(false)
                .allow_udp(false)
                .build()
        });
        WasiCtxView {
            ctx,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl bindings::mapper::weir::plugin::types::Host for State {}
impl bindings::mapper::weir::plugin::outcomes::Host for State {}

impl bindings::mapper::weir::plugin::host::Host for State {
    fn log(&mut self, level: bindings::LogLevel, mut message: String) {
        if message.len() > GUEST_LOG_CAP {
            let mut end = GUEST_LOG_CAP;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        // Kept for the error if this call fails (a smoke test's too, whose lines are
        // not logged).
        self.transcribe_stdio();
        self.transcript.push(level_name(level), &message);
        if self.quiet {
            return;
        }
        let plugin = &*self.name;
        if self.log_lines >= LOG_LINES_PER_CALL
            || self.log_bytes + message.len() > LOG_BYTES_PER_CALL
        {
            if !self.log_cut {
                self.log_cut = true;
                tracing::warn!(
                    target: "weir::plugin",
                    plugin,
                    "log output of this call truncated (at most {LOG_LINES_PER_CALL} lines and {LOG_BYTES_PER_CALL} bytes per call)"
                );
            }
            return;
        }
        self.log_lines += 1;
        self.log_bytes += message.len();
        let message = escape_controls(&message);
        use bindings::LogLevel as L;
        match level {
            L::Trace => tracing::trace!(target: "weir::plugin", plugin, "{message}"),
            L::Debug => tracing::debug!(target: "weir::plugin", plugin, "{message}"),
            L::Info => tracing::info!(target: "weir::plugin", plugin, "{message}"),
            L::Warn => tracing::warn!(target: "weir::plugin", plugin, "{message}"),
            L::Error => tracing::error!(target: "weir::plugin", plugin, "{message}"),
        }
    }

    fn config(&mut self) -> String {
        self.config_json.to_string()
    }

    fn cacheable(&mut self, seconds: u32) {
        self.cache_for = Some(seconds.min(MAX_CACHE_SECONDS));
    }

    fn client_cert(&mut self) -> Option<bindings::ClientCertificate> {
        self.client_cert
            .as_deref()
            .map(|c| bindings::ClientCertificate {
                client_cert_pem: c.pem.clone(),
                subject_dn: c.subject_dn.clone(),
                issuer_dn: c.issuer_dn.clone(),
                serial_number: c.serial_number.clone(),
                not_before: c.not_before.clone(),
                not_after: c.not_after.clone(),
            })
    }

    fn kept(&mut self, key: String) -> Option<Vec<u8>> {
        self.kept.get(&key, std::time::Instant::now())
    }

    fn keep(&mut self, key: String, value: Vec<u8>, seconds: u32) -> bool {
        self.kept
            .put(key, value, seconds, std::time::Instant::now())
    }
}

fn level_name(level: bindings::LogLevel) -> &'static str {
    use bindings::LogLevel as L;
    match level {
        L::Trace => "trace",
        L::Debug => "debug",
        L::Info => "info",
        L::Warn => "warn",
        L::Error => "error",
    }
}

/// `text` with its control characters (newlines included) written as escapes, so that
/// what a plugin logs stays on its own line and cannot pass for a line of the gateway's.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        assert!(matches!(escape_controls("plain text"), Cow::Borrowed(_)));
        assert_eq!(
            escape_controls("ok\n2026 INFO forged\r\u{1b}[31m"),
            "ok\\n2026 INFO forged\\r\\u{1b}[31m"
        );
    }
}
