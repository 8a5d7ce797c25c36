//! The WebAssembly plugin host: the only module that touches wasmtime.
//!
//! Each plugin is compiled once at load into an `InstancePre`. Every call gets a fresh
//! `Store` and instance from the pooling allocator, a deadline enforced by epoch
//! interruption and a linear-memory cap, so a broken plugin fails only the call that hit
//! it. Guests are linked against WASI with no capabilities: no files, network,
//! environment or arguments; their stdout and stderr go to the log.

mod bindings;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
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

/// How often the epoch advances; deadlines are measured in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(1);
/// Most bytes of guest stdout/stderr kept per call.
const GUEST_OUTPUT_CAP: usize = 64 * 1024;
/// Longest guest log message kept.
const GUEST_LOG_CAP: usize = 4096;
/// Most plugin instances alive at once (concurrent calls).
const MAX_INSTANCES: u32 = 1000;
/// Upper bound of any plugin's `max_memory`.
pub const MEMORY_CEILING: u64 = 1 << 30;

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
#[derive(Debug, Clone)]
pub struct Limits {
    /// Execution deadline of one call.
    pub deadline: Duration,
    /// Linear-memory cap of one instance, in bytes.
    pub max_memory: usize,
}

/// The engine shared by every plugin, plus the thread that drives its epoch.
pub struct PluginHost {
    engine: Engine,
    linkers: [Linker<State>; 3],
    ticker: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl PluginHost {
    /// Creates the engine (pooling allocator, epoch interruption) and its linkers.
    pub fn new() -> anyhow::Result<Self> {
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
            .pagemap_scan(Enabled::Auto);
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| anyhow::anyhow!("plugin engine: {e}"))?;

        let linker = |world| {
            linker_for(&engine, world)
                .map_err(|e| anyhow::anyhow!("linking the `{}` world: {e}", world.name()))
        };
        let linkers = [
            linker(World::Mapper)?,
            linker(World::Authorizer)?,
            linker(World::Cors)?,
        ];

        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("weir-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })?
        };
        Ok(Self {
            engine,
            linkers,
            ticker: Some(ticker),
            stop,
        })
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
        let started = Instant::now();
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| invalid(format!("compiling {origin}: {e:#}")))?;
        let compiled_in = started.elapsed();
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
        tracing::info!(
            plugin = name,
            world = world.name(),
            compile_ms = compiled_in.as_millis() as u64,
            "plugin loaded"
        );
        Ok(Plugin {
            inner: Arc::new(Loaded {
                name: name.into(),
                world,
                limits,
                config_json: config_json.into(),
                pre,
            }),
            engine: self.engine.clone(),
        })
    }
}

impl Drop for PluginHost {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
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
    pre: Pre,
}

/// A loaded plugin; cheap to clone, callable from any task.
#[derive(Clone)]
pub struct Plugin {
    inner: Arc<Loaded>,
    engine: Engine,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.inner.name)
            .field("world", &self.inner.world)
            .finish()
    }
}

/// The store data of one call.
struct State {
    plugin: Arc<Loaded>,
    wasi: WasiCtx,
    table: ResourceTable,
    memory: MemoryCap,
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
        if message.len() > GUEST_LOG_CAP {
            let mut end = GUEST_LOG_CAP;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        let plugin = &*self.plugin.name;
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
        self.plugin.config_json.to_string()
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

/// One call's sandbox: a fresh store whose guest output is captured for the log.
struct Call {
    store: Store<State>,
    output: MemoryOutputPipe,
    started: Instant,
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

    fn call(&self) -> Call {
        let output = MemoryOutputPipe::new(GUEST_OUTPUT_CAP);
        let wasi = WasiCtxBuilder::new()
            .stdout(output.clone())
            .stderr(output.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .build();
        let mut store = Store::new(
            &self.engine,
            State {
                plugin: self.inner.clone(),
                wasi,
                table: ResourceTable::new(),
                memory: MemoryCap {
                    limit: self.inner.limits.max_memory,
                    hit: false,
                },
            },
        );
        store.limiter(|s| &mut s.memory);
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
            output,
            started,
        }
    }

    fn finish<T>(&self, call: Call, result: wasmtime::Result<T>) -> Result<T, PluginError> {
        let output = call.output.contents();
        if !output.is_empty() {
            let text = String::from_utf8_lossy(&output);
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                tracing::info!(target: "weir::plugin", plugin = &*self.inner.name, stream = "stdio", "{line}");
            }
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
        let outcome = match &result {
            Ok(_) => "ok",
            Err(PluginError::Deadline { .. }) => "timeout",
            Err(PluginError::Memory { .. }) => "memory",
            Err(PluginError::Trap { .. }) => "trap",
        };
        let plugin = metrics::SharedString::from(self.inner.name.clone());
        metrics::counter!("weir_plugin_calls_total", "plugin" => plugin.clone(), "outcome" => outcome)
            .increment(1);
        metrics::histogram!("weir_plugin_call_duration_seconds", "plugin" => plugin)
            .record(call.started.elapsed().as_secs_f64());
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
        let Pre::Mapper(pre) = &self.inner.pre else {
            return Err(self.wrong_world(World::Mapper));
        };
        let mut call = self.call();
        let result = async {
            let guest = pre.instantiate_async(&mut call.store).await?;
            guest.call_map_request(&mut call.store, req, ctx).await
        }
        .await;
        self.finish(call, result)
    }

    /// `mapper.map-response`.
    pub async fn map_response(
        &self,
        resp: &Response,
        ctx: &Context,
    ) -> Result<Response, PluginError> {
        let Pre::Mapper(pre) = &self.inner.pre else {
            return Err(self.wrong_world(World::Mapper));
        };
        let mut call = self.call();
        let result = async {
            let guest = pre.instantiate_async(&mut call.store).await?;
            guest.call_map_response(&mut call.store, resp, ctx).await
        }
        .await;
        self.finish(call, result)
    }

    /// `authorizer.authorize`.
    pub async fn authorize(
        &self,
        req: &AuthorizationRequest,
        ctx: &Context,
    ) -> Result<Decision, PluginError> {
        let Pre::Authorizer(pre) = &self.inner.pre else {
            return Err(self.wrong_world(World::Authorizer));
        };
        let mut call = self.call();
        let result = async {
            let guest = pre.instantiate_async(&mut call.store).await?;
            guest.call_authorize(&mut call.store, req, ctx).await
        }
        .await;
        self.finish(call, result)
    }

    /// `cors.preflight`.
    pub async fn preflight(&self, req: &RequestHead) -> Result<Response, PluginError> {
        let Pre::Cors(pre) = &self.inner.pre else {
            return Err(self.wrong_world(World::Cors));
        };
        let mut call = self.call();
        let result = async {
            let guest = pre.instantiate_async(&mut call.store).await?;
            guest.call_preflight(&mut call.store, req).await
        }
        .await;
        self.finish(call, result)
    }

    /// `cors.decorate`.
    pub async fn decorate(
        &self,
        req: &RequestHead,
        headers: &[(String, String)],
    ) -> Result<Vec<(String, String)>, PluginError> {
        let Pre::Cors(pre) = &self.inner.pre else {
            return Err(self.wrong_world(World::Cors));
        };
        let mut call = self.call();
        let result = async {
            let guest = pre.instantiate_async(&mut call.store).await?;
            guest.call_decorate(&mut call.store, req, headers).await
        }
        .await;
        self.finish(call, result)
    }
}
