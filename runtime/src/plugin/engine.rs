//! The engine every plugin shares (pooling allocator, epoch interruption), the thread
//! that drives its epoch, and loading: bytes → compiled code (a child process or the
//! disk cache) → a component checked against its world and pre-instantiated.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::call::{AnyPlugin, Plugin};
use super::counts::CallCounts;
use super::state::State;
use super::world::{AuthorizerWorld, CorsWorld, FunctionWorld, MapperWorld, WorldKind};
use super::{
    Compiler, DEFAULT_MAX_PLUGIN_SIZE, Limits, LoadError, MAX_INSTANCES, MEMORY_CEILING, World,
    bindings, cache, read_component,
};

/// How often the epoch advances; deadlines are measured in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(1);
/// Free pool slots that may keep a plugin's pages resident (`linear_memory_keep_resident`)
/// while no instance uses them. A slot freed by a call stays tied to its plugin, so the
/// next call of that plugin reuses it without a page fault; a new plugin version (a swap)
/// starts with no such slots. With wasmtime's default of 100, every swap took fresh
/// slots until 100 sat warm, and RSS rose by ~1 MiB in the first swaps and stayed there.
/// 32 still covers the slots a few busy plugins keep at their usual concurrency; past
/// it, a version without a free slot of its own takes the least recently used one.
const WARM_SLOTS: u32 = 32;

/// The engine shared by every plugin, plus the thread that drives its epoch.
pub struct PluginHost {
    engine: Engine,
    linkers: [Linker<State>; 4],
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
pub(super) struct Epoch {
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
    pub(super) fn enter(self: &Arc<Self>) -> InCall {
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
pub(super) struct InCall(Arc<Epoch>);

impl Drop for InCall {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How many plugin versions are in memory (compiled code plus `InstancePre`): the
/// serving ones and those still finishing in-flight requests.
pub(super) const VERSIONS_ALIVE: &str = "weir_plugin_versions_alive";
pub(super) static ALIVE: AtomicU64 = AtomicU64::new(0);

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
            linker(World::Function)?,
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

    /// Compiles a component file, checks it implements `W`, and pre-instantiates it.
    pub fn load<W: WorldKind>(
        &self,
        name: &str,
        path: &Path,
        limits: Limits,
        config_json: String,
    ) -> Result<Plugin<W>, LoadError>
    where
        Plugin<W>: TryFrom<AnyPlugin, Error = World>,
    {
        let bytes =
            read_component(path, DEFAULT_MAX_PLUGIN_SIZE).map_err(|source| LoadError::Read {
                plugin: name.to_owned(),
                path: path.display().to_string(),
                source,
            })?;
        let origin = path.display().to_string();
        let compiled = self.compile(name, &origin, &bytes, W::WORLD)?;
        let any = compiled.plugin(name, limits, config_json, Arc::default());
        Plugin::<W>::try_from(any).map_err(|world| LoadError::Invalid {
            plugin: name.to_owned(),
            message: format!("loaded as a `{}` plugin", world.name()),
        })
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
            let e = format!("{e:#}");
            let hint = super::fit::hint(world, &e).map_or_else(String::new, |h| format!("; {h}"));
            invalid(format!(
                "component does not fit the `{}` world: {e}{hint}",
                world.name()
            ))
        })?;
        let pre = match world {
            World::Mapper => MapperWorld::pre(pre).map(|p| Pre::Mapper(Arc::new(p))),
            World::Authorizer => AuthorizerWorld::pre(pre).map(|p| Pre::Authorizer(Arc::new(p))),
            World::Cors => CorsWorld::pre(pre).map(|p| Pre::Cors(Arc::new(p))),
            World::Function => FunctionWorld::pre(pre).map(|p| Pre::Function(Arc::new(p))),
        }
        .map_err(|e| {
            invalid(format!(
                "component does not implement the `{}` world: {e:#}",
                world.name()
            ))
        })?;
        Ok(Compiled {
            pre,
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
    pre: Pre,
    sha256: Arc<str>,
    engine: Engine,
    epoch: Arc<Epoch>,
}

/// A pre-instantiated component of one of the worlds.
#[derive(Clone)]
enum Pre {
    Mapper(Arc<<MapperWorld as WorldKind>::Pre>),
    Authorizer(Arc<<AuthorizerWorld as WorldKind>::Pre>),
    Cors(Arc<<CorsWorld as WorldKind>::Pre>),
    Function(Arc<<FunctionWorld as WorldKind>::Pre>),
}

impl Compiled {
    /// SHA-256 of the component's bytes, lowercase hex.
    pub fn sha256(&self) -> &Arc<str> {
        &self.sha256
    }

    /// The world it implements.
    pub fn world(&self) -> World {
        match self.pre {
            Pre::Mapper(_) => World::Mapper,
            Pre::Authorizer(_) => World::Authorizer,
            Pre::Cors(_) => World::Cors,
            Pre::Function(_) => World::Function,
        }
    }

    /// The plugin `name` with these settings; `counts` collects its calls (share one
    /// across versions to count per name).
    pub fn plugin(
        &self,
        name: &str,
        limits: Limits,
        config_json: String,
        counts: Arc<CallCounts>,
    ) -> AnyPlugin {
        let alive = ALIVE.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::gauge!(VERSIONS_ALIVE).set(alive as f64);
        let (engine, epoch, sha256) =
            (self.engine.clone(), self.epoch.clone(), self.sha256.clone());
        macro_rules! bind {
            ($variant:ident, $pre:expr) => {
                AnyPlugin::$variant(Plugin::new(
                    name,
                    limits,
                    config_json,
                    counts,
                    $pre.clone(),
                    sha256,
                    engine,
                    epoch,
                ))
            };
        }
        match &self.pre {
            Pre::Mapper(pre) => bind!(Mapper, pre),
            Pre::Authorizer(pre) => bind!(Authorizer, pre),
            Pre::Cors(pre) => bind!(Cors, pre),
            Pre::Function(pre) => bind!(Function, pre),
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
pub(super) fn compile_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true).epoch_interruption(true);
    config
}

/// The gateway's engine: [`compile_config`] with the instance pool.
pub(super) fn engine_config() -> Config {
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
        // Authorizers may also ask a service (token introspection, a key set):
        // wasi:http's outgoing handler, refused unless `allow_outbound` lists the origin.
        World::Authorizer => {
            wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
                .map_err(|e| e.to_string())?;
            bindings::authorizer::Authorizer::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
        }
        World::Cors => bindings::cors::Cors::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s),
        // wasi:http's types and outgoing handler; the rest of the proxy world is WASI.
        World::Function => wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker),
    }
    .map_err(|e| e.to_string())?;
    Ok(linker)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::{Context, Request};
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
            ..Limits::new()
        };
        let plugin = host
            .load::<MapperWorld>("stamp", Path::new(STAMP_V1), limits, "{}".into())
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
                plugin.map_request(&req, &ctx.clone().into()).await.unwrap();
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
