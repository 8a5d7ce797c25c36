//! The WebAssembly plugin host: the only module that touches wasmtime.
//!
//! Each plugin is compiled once at load into an `InstancePre`. Every call gets a fresh
//! `Store` and instance from the pooling allocator (or, with `reuse = N`, an idle
//! instance that has served fewer than N calls), a deadline enforced by epoch
//! interruption and a linear-memory cap, so a broken plugin fails only the call that hit
//! it. Guests are linked against WASI with no capabilities: no files, network,
//! environment or arguments; their stdout and stderr go to the log.
//!
//! `weir serve` compiles in a child process (`compiler`), so Cranelift's memory never
//! lands in the gateway's heap. Compiled code is kept in an on-disk cache (`cache`)
//! keyed by the component's SHA-256 and the engine's settings. Every version is checked against its world and, unless
//! its config says otherwise, called once with a synthetic input before it may serve
//! ([`Plugin::smoke_test`]).

mod bindings;
mod cache;
mod compiler;
pub(crate) mod json;
mod reuse;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter,
    Store, UpdateDeadline,
};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

pub use crate::config::World;
pub use bindings::{
    Allow, AuthorizationRequest, Context, Decision, Deny, Request, RequestHead, RequestOutcome,
    Response,
};
pub use compiler::{Compiler, precompile_stdio};

/// How often the epoch advances; deadlines are measured in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(1);
/// Most bytes of guest stdout/stderr kept per call.
const GUEST_OUTPUT_CAP: usize = 64 * 1024;
/// Longest guest log message kept.
const GUEST_LOG_CAP: usize = 4096;
/// Most plugin instances alive at once (concurrent calls).
const MAX_INSTANCES: u32 = 1000;
/// Free pool slots that may keep a plugin's pages resident (`linear_memory_keep_resident`)
/// while no instance uses them. A slot freed by a call stays tied to its plugin, so the
/// next call of that plugin reuses it without a page fault; a new plugin version (a swap)
/// starts with no such slots. With wasmtime's default of 100, every swap took fresh
/// slots until 100 sat warm, and RSS rose by ~1 MiB in the first swaps and stayed there.
/// 32 still covers the slots a few busy plugins keep at their usual concurrency; past
/// it, a version without a free slot of its own takes the least recently used one.
const WARM_SLOTS: u32 = 32;
/// Upper bound of any plugin's `max_memory`.
pub const MEMORY_CEILING: u64 = 1 << 30;
/// Upper bound of any plugin's `reuse`.
pub const MAX_REUSE: u32 = 1_000_000;

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("plugin `{plugin}`: cannot read {path}: {source}")]
    Read {
        /// Plugin name.
        plugin: String,
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The bytes are not a component.
    #[error(
        "plugin `{plugin}`: {path} is not a WebAssembly component ({what}); build it for wasm32-wasip2 or wrap a core module with `wasm-tools component new`"
    )]
    NotAComponent {
        /// Plugin name.
        plugin: String,
        /// The file.
        path: String,
        /// What it looks like instead.
        what: &'static str,
    },
    /// Compilation or linking failed, or the component does not implement its world.
    #[error("plugin `{plugin}`: {message}")]
    Invalid {
        /// Plugin name.
        plugin: String,
        /// What wasmtime said.
        message: String,
    },
}

/// Why one plugin call failed. The request that made it fails; nothing else does.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The call ran past its deadline and was interrupted.
    #[error("plugin `{plugin}` exceeded its {deadline:?} deadline")]
    Deadline {
        /// Plugin name.
        plugin: Arc<str>,
        /// The configured deadline.
        deadline: Duration,
    },
    /// The guest tried to grow its memory past the cap.
    #[error("plugin `{plugin}` exceeded its memory limit of {limit} bytes")]
    Memory {
        /// Plugin name.
        plugin: Arc<str>,
        /// The cap.
        limit: usize,
    },
    /// The guest trapped (panic, `unreachable`, out of bounds, ...) or could not start.
    #[error("plugin `{plugin}` failed: {message}")]
    Trap {
        /// Plugin name.
        plugin: Arc<str>,
        /// wasmtime's description.
        message: String,
    },
}

/// Per-plugin settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Execution deadline of one call.
    pub deadline: Duration,
    /// Linear-memory cap of one instance, in bytes.
    pub max_memory: usize,
    /// Calls one instance may serve (0 and 1: a fresh instance for every call).
    pub reuse: u32,
}

/// The engine shared by every plugin, plus the thread that drives its epoch.
pub struct PluginHost {
    engine: Engine,
    linkers: [Linker<State>; 3],
    cache: Option<cache::DiskCache>,
    compiler: Compiler,
    epoch: Arc<Epoch>,
    ticker: Option<JoinHandle<()>>,
}

/// Drives the engine's epoch, which the deadlines of running calls are checked on: a
/// tick every [`EPOCH_TICK`]; after [`EPOCH_REST_AFTER`] ticks without a call the
/// thread parks until the next call (an idle gateway, or one serving routes without
/// plugins, does not wake a thousand times a second). Under load it never parks, so a
/// call costs two counter updates and two reads, not a wake-up.
#[derive(Default)]
struct Epoch {
    /// Calls running now.
    running: AtomicUsize,
    /// A call started since the last tick.
    active: AtomicBool,
    /// The ticker is parked (or about to be).
    parked: AtomicBool,
    ticker: OnceLock<std::thread::Thread>,
    stop: AtomicBool,
}

/// Ticks without a call before the epoch thread parks.
const EPOCH_REST_AFTER: u32 = 100;

impl Epoch {
    /// Counts a call in until the returned guard drops; wakes a parked ticker.
    fn enter(self: &Arc<Self>) -> InCall {
        self.running.fetch_add(1, Ordering::SeqCst);
        if !self.active.load(Ordering::Relaxed) {
            self.active.store(true, Ordering::Relaxed);
        }
        if self.parked.load(Ordering::SeqCst)
            && self.parked.swap(false, Ordering::SeqCst)
            && let Some(t) = self.ticker.get()
        {
            t.unpark();
        }
        InCall(self.clone())
    }

    fn tick(&self, engine: &Engine) {
        let mut idle = 0;
        while !self.stop.load(Ordering::SeqCst) {
            std::thread::sleep(EPOCH_TICK);
            engine.increment_epoch();
            let busy = self.active.swap(false, Ordering::Relaxed)
                || self.running.load(Ordering::SeqCst) > 0;
            idle = if busy { 0 } else { idle + 1 };
            if idle < EPOCH_REST_AFTER {
                continue;
            }
            // Announce the rest, then look again: a call that starts from here on sees
            // `parked` and wakes the thread (an unpark before the park is kept).
            self.parked.store(true, Ordering::SeqCst);
            if self.running.load(Ordering::SeqCst) == 0 && !self.stop.load(Ordering::SeqCst) {
                std::thread::park();
            }
            self.parked.store(false, Ordering::SeqCst);
            idle = 0;
        }
    }
}

/// A call in progress (see [`Epoch::enter`]).
struct InCall(Arc<Epoch>);

impl Drop for InCall {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How many plugin versions are in memory (compiled code plus `InstancePre`): the
/// serving ones and those still finishing in-flight requests.
const VERSIONS_ALIVE: &str = "weir_plugin_versions_alive";
static ALIVE: AtomicU64 = AtomicU64::new(0);

/// Plugin versions in memory right now (see [`VERSIONS_ALIVE`]).
pub fn versions_alive() -> u64 {
    ALIVE.load(Ordering::Relaxed)
}

impl PluginHost {
    /// Creates the engine (pooling allocator, epoch interruption) and its linkers,
    /// without a disk cache.
    pub fn new() -> anyhow::Result<Self> {
        Self::with_cache(None)
    }

    /// Like [`PluginHost::new`], caching compiled components in a directory, kept
    /// under a size in bytes.
    pub fn with_cache(cache: Option<(PathBuf, u64)>) -> anyhow::Result<Self> {
        let engine =
            Engine::new(&engine_config()).map_err(|e| anyhow::anyhow!("plugin engine: {e}"))?;

        let linker = |world| {
            linker_for(&engine, world)
                .map_err(|e| anyhow::anyhow!("linking the `{}` world: {e}", world.name()))
        };
        let linkers = [
            linker(World::Mapper)?,
            linker(World::Authorizer)?,
            linker(World::Cors)?,
        ];

        let epoch = Arc::new(Epoch::default());
        let ticker = {
            let engine = engine.clone();
            let epoch = epoch.clone();
            std::thread::Builder::new()
                .name("weir-epoch".into())
                .spawn(move || epoch.tick(&engine))?
        };
        let _ = epoch.ticker.set(ticker.thread().clone());
        let cache = cache.map(|(dir, max_size)| cache::DiskCache::new(&dir, &engine, max_size));
        Ok(Self {
            engine,
            linkers,
            cache,
            compiler: Compiler::InProcess,
            epoch,
            ticker: Some(ticker),
        })
    }

    /// Compiles with `compiler` from now on ([`Compiler::InProcess`] by default).
    pub fn with_compiler(mut self, compiler: Compiler) -> Self {
        self.compiler = compiler;
        self
    }

    /// Compiles a component file, checks it implements `world`, and pre-instantiates it.
    pub fn load(
        &self,
        name: &str,
        path: &Path,
        world: World,
        limits: Limits,
        config_json: String,
    ) -> Result<Plugin, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            plugin: name.to_owned(),
            path: path.display().to_string(),
            source,
        })?;
        self.load_bytes(
            name,
            &path.display().to_string(),
            &bytes,
            world,
            limits,
            config_json,
        )
    }

    /// Like [`PluginHost::load`], from bytes; `origin` names them in errors.
    pub fn load_bytes(
        &self,
        name: &str,
        origin: &str,
        bytes: &[u8],
        world: World,
        limits: Limits,
        config_json: String,
    ) -> Result<Plugin, LoadError> {
        let compiled = self.compile(name, origin, bytes, world)?;
        Ok(compiled.plugin(name, limits, config_json, Arc::default()))
    }

    /// Compiles a component (or takes it from the disk cache) and checks that it
    /// implements `world`. Slow (Cranelift): call it off the request path.
    pub fn compile(
        &self,
        name: &str,
        origin: &str,
        bytes: &[u8],
        world: World,
    ) -> Result<Compiled, LoadError> {
        let invalid = |message: String| LoadError::Invalid {
            plugin: name.to_owned(),
            message,
        };
        match bytes.get(..8) {
            Some([0, b'a', b's', b'm', _, _, 1, 0]) => {}
            Some([0, b'a', b's', b'm', _, _, 0, 0]) => {
                return Err(LoadError::NotAComponent {
                    plugin: name.to_owned(),
                    path: origin.to_owned(),
                    what: "a core module",
                });
            }
            _ => {
                return Err(LoadError::NotAComponent {
                    plugin: name.to_owned(),
                    path: origin.to_owned(),
                    what: "not WebAssembly at all",
                });
            }
        }
        let sha256: Arc<str> = cache::hex(&Sha256::digest(bytes)).into();
        let label = metrics::SharedString::from(name.to_owned());
        let cached = match &self.cache {
            Some(c) => match c.get(&self.engine, &sha256) {
                cache::Lookup::Hit(component) => Some(component),
                cache::Lookup::Miss => None,
                cache::Lookup::Rejected(why) => {
                    tracing::warn!(plugin = name, reason = %why, "ignoring a cache entry; compiling again");
                    None
                }
            },
            None => None,
        };
        let component = match cached {
            Some(component) => {
                metrics::counter!("weir_plugin_cache_hits_total", "plugin" => label).increment(1);
                component
            }
            None => {
                let started = Instant::now();
                let artifact = self
                    .compiler
                    .precompile(&self.engine, bytes)
                    .map_err(|e| invalid(format!("compiling {origin}: {e}")))?;
                if let Some(c) = &self.cache
                    && let Err(e) = c.put(&sha256, &artifact)
                {
                    tracing::warn!(plugin = name, error = %e, "cannot write the plugin cache");
                }
                let component = cache::deserialize(&self.engine, &artifact)
                    .map_err(|e| invalid(format!("loading {origin}'s compiled code: {e:#}")))?;
                let took = started.elapsed();
                metrics::counter!("weir_plugin_compiles_total", "plugin" => label.clone())
                    .increment(1);
                metrics::histogram!("weir_plugin_compile_duration_seconds", "plugin" => label)
                    .record(took.as_secs_f64());
                tracing::info!(
                    plugin = name,
                    compile_ms = took.as_millis() as u64,
                    "plugin compiled"
                );
                component
            }
        };
        let linker = &self.linkers[world as usize];
        let pre = linker.instantiate_pre(&component).map_err(|e| {
            invalid(format!(
                "component does not fit the `{}` world: {e:#}",
                world.name()
            ))
        })?;
        let pre = match world {
            World::Mapper => bindings::mapper::MapperPre::new(pre).map(Pre::Mapper),
            World::Authorizer => bindings::authorizer::AuthorizerPre::new(pre).map(Pre::Authorizer),
            World::Cors => bindings::cors::CorsPre::new(pre).map(Pre::Cors),
        }
        .map_err(|e| {
            invalid(format!(
                "component does not implement the `{}` world: {e:#}",
                world.name()
            ))
        })?;
        Ok(Compiled {
            pre: Arc::new(pre),
            world,
            sha256,
            engine: self.engine.clone(),
            epoch: self.epoch.clone(),
        })
    }
}

/// A component compiled and checked against its world, not yet bound to a plugin's
/// settings; cheap to clone.
#[derive(Clone)]
pub struct Compiled {
    pre: Arc<Pre>,
    world: World,
    sha256: Arc<str>,
    engine: Engine,
    epoch: Arc<Epoch>,
}

impl Compiled {
    /// SHA-256 of the component's bytes, lowercase hex.
    pub fn sha256(&self) -> &Arc<str> {
        &self.sha256
    }

    /// The world it implements.
    pub fn world(&self) -> World {
        self.world
    }

    /// The plugin `name` with these settings; `counts` collects its calls (share one
    /// across versions to count per name).
    pub fn plugin(
        &self,
        name: &str,
        limits: Limits,
        config_json: String,
        counts: Arc<CallCounts>,
    ) -> Plugin {
        let alive = ALIVE.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::gauge!(VERSIONS_ALIVE).set(alive as f64);
        Plugin {
            inner: Arc::new(Loaded {
                name: name.into(),
                world: self.world,
                limits,
                config_json: config_json.into(),
                pre: self.pre.clone(),
                sha256: self.sha256.clone(),
                loaded_at: SystemTime::now(),
                counts,
                idle: reuse::Idle::default(),
                metrics: OnceLock::new(),
            }),
            engine: self.engine.clone(),
            epoch: self.epoch.clone(),
        }
    }
}

/// Calls of one plugin by outcome (relaxed atomics: no lock on the request path).
#[derive(Debug, Default)]
pub struct CallCounts {
    ok: AtomicU64,
    trap: AtomicU64,
    timeout: AtomicU64,
    memory: AtomicU64,
}

/// A reading of [`CallCounts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CallTotals {
    /// Calls that returned.
    pub ok: u64,
    /// Calls that trapped.
    pub traps: u64,
    /// Calls past their deadline.
    pub timeouts: u64,
    /// Calls past their memory cap.
    pub memory: u64,
}

impl CallCounts {
    /// The counts now.
    pub fn totals(&self) -> CallTotals {
        CallTotals {
            ok: self.ok.load(Ordering::Relaxed),
            traps: self.trap.load(Ordering::Relaxed),
            timeouts: self.timeout.load(Ordering::Relaxed),
            memory: self.memory.load(Ordering::Relaxed),
        }
    }
}

/// Returns the memory this thread freed to the system now; call it on each thread that
/// took part in a plugin load, once the load's buffers (the component's bytes, the
/// compiled artifact) are dropped. mimalloc returns freed pages lazily, on the freeing
/// thread's later allocations; a thread that just loaded a plugin goes idle instead (a
/// blocking-pool thread) or allocates little (the admin thread), and kept what it
/// freed. A plugin load is rare and off the request path, and the collect costs far
/// less than the load itself.
#[allow(unsafe_code)]
pub fn return_freed_memory() {
    // SAFETY: `mi_collect` takes no pointers; it only releases pages mimalloc holds
    // free. Where mimalloc is not the global allocator, it has nothing to release.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// What compiled code depends on: the same in the gateway and in its compiler process
/// (the artifact a compile makes fits only an engine with these). The compiler process
/// instantiates nothing, so it has no instance pool (whose reserved address space a
/// data limit on that process would count).
fn compile_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true).epoch_interruption(true);
    config
}

/// The gateway's engine: [`compile_config`] with the instance pool.
fn engine_config() -> Config {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(MAX_INSTANCES)
        .total_core_instances(MAX_INSTANCES * 4)
        .max_core_instances_per_component(64)
        .total_memories(MAX_INSTANCES)
        .max_memories_per_component(8)
        .total_tables(MAX_INSTANCES * 2)
        .max_tables_per_component(32)
        .total_stacks(MAX_INSTANCES)
        .max_memory_size(MEMORY_CEILING as usize)
        .linear_memory_keep_resident(1 << 20)
        .table_keep_resident(1 << 20)
        .pagemap_scan(Enabled::Auto)
        .max_unused_warm_slots(WARM_SLOTS);
    let mut config = compile_config();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

impl Drop for PluginHost {
    fn drop(&mut self) {
        self.epoch.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.ticker.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

fn linker_for(engine: &Engine, world: World) -> Result<Linker<State>, String> {
    let mut linker = Linker::<State>::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| e.to_string())?;
    match world {
        World::Mapper => {
            bindings::mapper::Mapper::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
        }
        World::Authorizer => {
            bindings::authorizer::Authorizer::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
        }
        World::Cors => bindings::cors::Cors::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s),
    }
    .map_err(|e| e.to_string())?;
    Ok(linker)
}

enum Pre {
    Mapper(bindings::mapper::MapperPre<State>),
    Authorizer(bindings::authorizer::AuthorizerPre<State>),
    Cors(bindings::cors::CorsPre<State>),
}

struct Loaded {
    name: Arc<str>,
    world: World,
    limits: Limits,
    config_json: Arc<str>,
    pre: Arc<Pre>,
    sha256: Arc<str>,
    loaded_at: SystemTime,
    counts: Arc<CallCounts>,
    idle: reuse::Idle,
    /// The handles of this plugin's call metrics, made at its first call.
    metrics: OnceLock<CallMetrics>,
}

/// `weir_plugin_calls_total` by outcome (ok, timeout, memory, trap) and
/// `weir_plugin_call_duration_seconds` for one plugin: looked up once, not per call.
struct CallMetrics {
    calls: [metrics::Counter; 4],
    duration: metrics::Histogram,
}

impl CallMetrics {
    fn new(name: &Arc<str>) -> Self {
        let plugin = metrics::SharedString::from(name.clone());
        let calls = ["ok", "timeout", "memory", "trap"].map(|outcome| {
            metrics::counter!("weir_plugin_calls_total", "plugin" => plugin.clone(), "outcome" => outcome)
        });
        CallMetrics {
            calls,
            duration: metrics::histogram!("weir_plugin_call_duration_seconds", "plugin" => plugin),
        }
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        let alive = ALIVE.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
        metrics::gauge!(VERSIONS_ALIVE).set(alive as f64);
    }
}

/// A loaded plugin; cheap to clone, callable from any task.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<Loaded>,
    engine: Engine,
    epoch: Arc<Epoch>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.inner.name)
            .field("world", &self.inner.world)
            .finish()
    }
}

/// The store data of one instance. (It names the plugin rather than holding its
/// `Loaded`: idle instances live inside `Loaded`, and must not keep it alive.)
struct State {
    name: Arc<str>,
    config_json: Arc<str>,
    /// A smoke test: the guest's log lines are dropped.
    quiet: bool,
    wasi: WasiCtx,
    table: ResourceTable,
    memory: MemoryCap,
    /// The guest's stdout and stderr, and how much of it has been logged already.
    output: MemoryOutputPipe,
    logged: usize,
}

struct MemoryCap {
    limit: usize,
    hit: bool,
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
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::mapper::weir::plugin::types::Host for State {}
impl bindings::mapper::weir::plugin::outcomes::Host for State {}

impl bindings::mapper::weir::plugin::host::Host for State {
    fn log(&mut self, level: bindings::LogLevel, mut message: String) {
        if self.quiet {
            return;
        }
        if message.len() > GUEST_LOG_CAP {
            let mut end = GUEST_LOG_CAP;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        let plugin = &*self.name;
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
}

#[derive(Debug)]
struct DeadlineExceeded;

impl std::fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("deadline exceeded")
    }
}

impl std::error::Error for DeadlineExceeded {}

/// One call's sandbox: a fresh store, or an idle instance's, and its guest once
/// instantiated.
struct Call {
    store: Store<State>,
    guest: Option<reuse::Guest>,
    /// Calls the instance served before this one.
    calls: u32,
    started: Instant,
    /// Keeps the epoch ticking until the call ends.
    _running: InCall,
}

impl Call {
    /// The guest, instantiated into the call's store unless the instance is reused.
    async fn guest(&mut self, pre: &Pre) -> wasmtime::Result<reuse::Guest> {
        if let Some(g) = self.guest.take() {
            return Ok(g);
        }
        Ok(match pre {
            Pre::Mapper(p) => reuse::Guest::Mapper(p.instantiate_async(&mut self.store).await?),
            Pre::Authorizer(p) => {
                reuse::Guest::Authorizer(p.instantiate_async(&mut self.store).await?)
            }
            Pre::Cors(p) => reuse::Guest::Cors(p.instantiate_async(&mut self.store).await?),
        })
    }
}

/// Calls `$method` on the plugin's guest, which must be of world `$world`.
macro_rules! call_guest {
    ($self:ident, $world:ident, |$g:ident, $store:ident| $body:expr) => {{
        if $self.inner.world != World::$world {
            return Err($self.wrong_world(World::$world));
        }
        let mut call = $self.begin(false);
        let result = async {
            let guest = call.guest(&$self.inner.pre).await?;
            let reuse::Guest::$world($g) = &guest else {
                unreachable!("the instance was made from this plugin's InstancePre");
            };
            let $store = &mut call.store;
            let out = $body.await;
            call.guest = Some(guest);
            out
        }
        .await;
        $self.finish(call, result)
    }};
}

impl Plugin {
    /// The plugin's name from the config.
    pub fn name(&self) -> &Arc<str> {
        &self.inner.name
    }

    /// The world the plugin implements.
    pub fn world(&self) -> World {
        self.inner.world
    }

    /// SHA-256 of the component, lowercase hex.
    pub fn sha256(&self) -> &Arc<str> {
        &self.inner.sha256
    }

    /// When this version was loaded.
    pub fn loaded_at(&self) -> SystemTime {
        self.inner.loaded_at
    }

    /// Its calls so far.
    pub fn counts(&self) -> &Arc<CallCounts> {
        &self.inner.counts
    }

    /// Its limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Whether `other` is this very version with the same settings.
    pub fn same_as(&self, other: &Plugin) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// A store for one call: an idle instance's when the plugin reuses instances and one
    /// is free (never for a quiet smoke test), else a fresh one. Either way with this
    /// call's deadline and a clean memory-cap flag.
    fn begin(&self, quiet: bool) -> Call {
        let warm = if quiet { None } else { self.inner.idle.take() };
        let (mut store, guest, calls) = match warm {
            Some(warm) => (warm.store, Some(warm.guest), warm.calls),
            None => (self.fresh_store(quiet), None, 0),
        };
        store.data_mut().memory.hit = false;
        let started = Instant::now();
        let deadline = self.inner.limits.deadline;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if started.elapsed() >= deadline {
                Err(DeadlineExceeded.into())
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        Call {
            store,
            guest,
            calls,
            started,
            _running: self.epoch.enter(),
        }
    }

    fn fresh_store(&self, quiet: bool) -> Store<State> {
        // A reused instance keeps its pipe: give it room for one more call's worth of
        // output after any earlier call's (it is retired once it has used GUEST_OUTPUT_CAP).
        let capacity = if self.inner.limits.reuse > 1 {
            2 * GUEST_OUTPUT_CAP
        } else {
            GUEST_OUTPUT_CAP
        };
        let output = MemoryOutputPipe::new(capacity);
        let wasi = WasiCtxBuilder::new()
            .stdout(output.clone())
            .stderr(output.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .build();
        let mut store = Store::new(
            &self.engine,
            State {
                name: self.inner.name.clone(),
                config_json: self.inner.config_json.clone(),
                quiet,
                wasi,
                table: ResourceTable::new(),
                memory: MemoryCap {
                    limit: self.inner.limits.max_memory,
                    hit: false,
                },
                output,
                logged: 0,
            },
        );
        store.limiter(|s| &mut s.memory);
        store
    }

    fn finish<T>(&self, mut call: Call, result: wasmtime::Result<T>) -> Result<T, PluginError> {
        let state = call.store.data_mut();
        let output = state.output.contents();
        if output.len() > state.logged {
            if !state.quiet {
                let text = String::from_utf8_lossy(&output[state.logged..]);
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    tracing::info!(target: "weir::plugin", plugin = &*self.inner.name, stream = "stdio", "{line}");
                }
            }
            state.logged = output.len();
        }
        let result = result.map_err(|e| {
            let plugin = self.inner.name.clone();
            if e.downcast_ref::<DeadlineExceeded>().is_some() {
                PluginError::Deadline {
                    plugin,
                    deadline: self.inner.limits.deadline,
                }
            } else if call.store.data().memory.hit {
                PluginError::Memory {
                    plugin,
                    limit: self.inner.limits.max_memory,
                }
            } else {
                PluginError::Trap {
                    plugin,
                    message: format!("{e:#}"),
                }
            }
        });
        if call.store.data().quiet {
            return result;
        }
        // Only an instance whose call succeeded may serve another; a failed one may be
        // mid-update, out of memory or interrupted anywhere.
        let reuse = self.inner.limits.reuse;
        let (started, calls) = (call.started, call.calls);
        if result.is_ok()
            && reuse > 1
            && call.store.data().logged <= GUEST_OUTPUT_CAP
            && let Some(guest) = call.guest.take()
        {
            self.inner.idle.give_back(
                reuse::Warm {
                    store: call.store,
                    guest,
                    calls: calls + 1,
                },
                reuse,
            );
        }
        let counts = &self.inner.counts;
        let (outcome, count) = match &result {
            Ok(_) => (0, &counts.ok),
            Err(PluginError::Deadline { .. }) => (1, &counts.timeout),
            Err(PluginError::Memory { .. }) => (2, &counts.memory),
            Err(PluginError::Trap { .. }) => (3, &counts.trap),
        };
        count.fetch_add(1, Ordering::Relaxed);
        let handles = self
            .inner
            .metrics
            .get_or_init(|| CallMetrics::new(&self.inner.name));
        handles.calls[outcome].increment(1);
        handles.duration.record(started.elapsed().as_secs_f64());
        result
    }

    fn wrong_world(&self, wanted: World) -> PluginError {
        PluginError::Trap {
            plugin: self.inner.name.clone(),
            message: format!(
                "is a `{}` plugin, not a `{}` plugin",
                self.inner.world.name(),
                wanted.name()
            ),
        }
    }

    /// `mapper.map-request`.
    pub async fn map_request(
        &self,
        req: &Request,
        ctx: &Context,
    ) -> Result<RequestOutcome, PluginError> {
        call_guest!(self, Mapper, |g, store| g.call_map_request(store, req, ctx))
    }

    /// `mapper.map-response`.
    pub async fn map_response(
        &self,
        resp: &Response,
        ctx: &Context,
    ) -> Result<Response, PluginError> {
        call_guest!(self, Mapper, |g, store| g
            .call_map_response(store, resp, ctx))
    }

    /// `authorizer.authorize`.
    pub async fn authorize(
        &self,
        req: &AuthorizationRequest,
        ctx: &Context,
    ) -> Result<Decision, PluginError> {
        call_guest!(self, Authorizer, |g, store| g
            .call_authorize(store, req, ctx))
    }

    /// `cors.preflight`.
    pub async fn preflight(&self, req: &RequestHead) -> Result<Response, PluginError> {
        call_guest!(self, Cors, |g, store| g.call_preflight(store, req))
    }

    /// `cors.decorate`.
    pub async fn decorate(
        &self,
        req: &RequestHead,
        headers: &[(String, String)],
    ) -> Result<Vec<(String, String)>, PluginError> {
        call_guest!(self, Cors, |g, store| g.call_decorate(store, req, headers))
    }

    /// Instantiates this version and calls it once with a synthetic input (a `GET /`
    /// without headers or body; for a CORS policy, a preflight from
    /// `https://smoke-test.invalid`). Whatever the guest answers is fine; a trap, a
    /// deadline or the memory cap is not. Guest output is dropped and the call is not
    /// counted in metrics.
    pub async fn smoke_test(&self) -> Result<(), PluginError> {
        let ctx = Context {
            request_id: "smoke-test".to_owned(),
            route_key: "$smoke-test".to_owned(),
            stage: "$default".to_owned(),
            path_parameters: Vec::new(),
            source_ip: "127.0.0.1".to_owned(),
            principal_id: None,
            authorizer_context: Vec::new(),
        };
        let head = RequestHead {
            method: "OPTIONS".to_owned(),
            path: "/".to_owned(),
            query: String::new(),
            headers: vec![
                ("origin".to_owned(), "https://smoke-test.invalid".to_owned()),
                ("access-control-request-method".to_owned(), "GET".to_owned()),
            ],
        };
        let mut call = self.begin(true);
        let result = async {
            match &*self.inner.pre {
                Pre::Mapper(pre) => {
                    let req = Request {
                        method: "GET".to_owned(),
                        path: "/".to_owned(),
                        query: String::new(),
                        headers: Vec::new(),
                        body: Vec::new(),
                    };
                    let guest = pre.instantiate_async(&mut call.store).await?;
                    guest.call_map_request(&mut call.store, &req, &ctx).await?;
                }
                Pre::Authorizer(pre) => {
                    let req = AuthorizationRequest {
                        method: "GET".to_owned(),
                        path: "/".to_owned(),
                        query: String::new(),
                        headers: Vec::new(),
                        identity: vec![String::new()],
                        scopes: Vec::new(),
                    };
                    let guest = pre.instantiate_async(&mut call.store).await?;
                    guest.call_authorize(&mut call.store, &req, &ctx).await?;
                }
                Pre::Cors(pre) => {
                    let guest = pre.instantiate_async(&mut call.store).await?;
                    guest.call_preflight(&mut call.store, &head).await?;
                }
            }
            wasmtime::Result::Ok(())
        }
        .await;
        self.finish(call, result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_tests::artifacts::STAMP_V1;

    /// A freed pool slot keeps resident only the pages its instance wrote, not all of
    /// `linear_memory_keep_resident`: what a slot keeps is zeroed when it is freed, so
    /// keeping more than was written costs every call. (wasmtime 50.0.1 kept and zeroed
    /// the whole 1 MiB, which made a fresh call 3-4 times as expensive as with 48.)
    /// Needs the PAGEMAP_SCAN ioctl (Linux 6.7 or later); without it the pool zeroes
    /// the whole amount by design, and there is nothing to check.
    #[test]
    fn a_freed_slot_keeps_only_the_pages_the_call_wrote() {
        if !PoolingAllocationConfig::is_pagemap_scan_available() {
            return;
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let host = PluginHost::new().unwrap();
        let limits = Limits {
            deadline: Duration::from_secs(10),
            max_memory: 64 << 20,
            reuse: 0,
        };
        let plugin = host
            .load(
                "stamp",
                Path::new(STAMP_V1),
                World::Mapper,
                limits,
                "{}".into(),
            )
            .unwrap();
        let req = Request {
            method: "GET".into(),
            path: "/".into(),
            query: String::new(),
            headers: vec![("host".into(), "api.example".into())],
            body: Vec::new(),
        };
        let ctx = Context {
            request_id: "r-1".into(),
            route_key: "GET /".into(),
            stage: "$default".into(),
            path_parameters: Vec::new(),
            source_ip: "127.0.0.1".into(),
            principal_id: None,
            authorizer_context: Vec::new(),
        };
        rt.block_on(async {
            for _ in 0..3 {
                plugin.map_request(&req, &ctx).await.unwrap();
            }
        });
        let metrics = host.engine.pooling_allocator_metrics().unwrap();
        let resident = metrics.unused_memory_bytes_resident();
        assert!(
            resident < 256 << 10,
            "{resident} bytes of linear memory kept resident (and zeroed) after a call of a \
             mapper that only appends a header"
        );
    }
}
