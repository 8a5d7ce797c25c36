//! The WebAssembly plugin host: the only module that touches wasmtime.
//!
//! Each plugin is compiled once at load into an `InstancePre` checked against its world
//! ([`engine`]), and handed out as a handle typed by that world ([`Plugin`]`<W>`,
//! [`world`]), so a call into the wrong world cannot be written. Every call gets a
//! fresh `Store` and instance from the pooling allocator (or, with `reuse = N`, an idle
//! instance that has served fewer than N calls), a deadline enforced by epoch
//! interruption and in wall-clock time, and a linear-memory cap, so a broken plugin
//! fails only the call that hit it ([`call`]). Guests are linked against WASI with no
//! capabilities: no files, network, environment or arguments; their stdout and stderr
//! go to the log ([`state`]).
//!
//! `weir serve` compiles in a child process (`compiler`), so Cranelift's memory never
//! lands in the gateway's heap. Compiled code is kept in an on-disk cache (`cache`)
//! keyed by the component's SHA-256 and the engine's settings. Every version is checked
//! against its world and, unless its config says otherwise, called once with a
//! synthetic input before it may serve ([`Plugin::smoke_test`]).

mod answers;
mod bindings;
mod cache;
mod call;
mod compiler;
mod counts;
mod engine;
mod fit;
mod http;
pub(crate) mod json;
mod kept;
pub mod outbound;
mod output;
mod reuse;
mod signatures;
mod source;
mod state;
mod turns;
mod world;

use std::sync::Arc;
use std::time::Duration;

use crate::client_cert::ClientCert;
pub use crate::config::World;
pub use bindings::{
    Allow, AuthorizationRequest, Context, Decision, Deny, Request, RequestHead, RequestOutcome,
    Response,
};
pub use call::{AnyPlugin, Plugin};
pub use compiler::{Compiler, precompile_stdio};
pub use counts::{CallCounts, CallTotals};
pub use engine::{Compiled, PluginHost, return_freed_memory, versions_alive};
pub use fit::{WIT, wit_version};
pub use outbound::Allowed;
pub use output::GuestOutput;
pub use source::read_component;
pub use state::escape_controls;
pub use world::{AuthorizerWorld, CorsWorld, FunctionWorld, MapperWorld, WorldKind};

/// What a mapper or authorizer call is told about its request: the `context` record
/// every call receives, and the client's certificate, which the guest asks for with
/// `host.client-cert` (made into WIT values only then).
#[derive(Debug, Clone)]
pub struct CallContext {
    /// The `context` argument.
    pub context: Context,
    /// The certificate the client presented (mutual TLS).
    pub client_cert: Option<Arc<ClientCert>>,
}

impl From<Context> for CallContext {
    fn from(context: Context) -> Self {
        Self {
            context,
            client_cert: None,
        }
    }
}

/// A mapper plugin.
pub type MapperPlugin = Plugin<MapperWorld>;
/// An authorizer plugin.
pub type AuthorizerPlugin = Plugin<AuthorizerWorld>;
/// A CORS policy plugin.
pub type CorsPlugin = Plugin<CorsWorld>;
/// A `wasi:http` component (`type = "function"`).
pub type FunctionPlugin = Plugin<FunctionWorld>;

/// Most plugin instances alive at once (concurrent calls).
const MAX_INSTANCES: u32 = 1000;
/// Upper bound of any plugin's `max_memory`.
pub const MEMORY_CEILING: u64 = 1 << 30;
/// Largest component file read unless `limits.max_plugin_size` says otherwise.
pub const DEFAULT_MAX_PLUGIN_SIZE: u64 = crate::config::DEFAULT_MAX_PLUGIN_SIZE;
/// Upper bound of any plugin's `reuse`.
pub const MAX_REUSE: u32 = 1_000_000;
/// Calls of one plugin running at once, unless its `concurrency` says otherwise. A route
/// uses at most four plugins (authorizer, request and response mapper, CORS policy), so
/// with the default no one route can hold more than 400 of the [`MAX_INSTANCES`] slots.
pub const DEFAULT_CONCURRENCY: u32 = crate::config::DEFAULT_CONCURRENCY;
/// Upper bound of any plugin's `concurrency`: the instance pool.
pub const MAX_CONCURRENCY: u32 = MAX_INSTANCES;

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
    #[error("plugin `{plugin}` exceeded its {deadline:?} deadline{output}")]
    Deadline {
        /// Plugin name.
        plugin: Arc<str>,
        /// The configured deadline.
        deadline: Duration,
        /// What the guest wrote during the call.
        output: Box<GuestOutput>,
    },
    /// The guest tried to grow its memory past the cap.
    #[error("plugin `{plugin}` exceeded its memory limit of {limit} bytes{output}")]
    Memory {
        /// Plugin name.
        plugin: Arc<str>,
        /// The cap.
        limit: usize,
        /// What the guest wrote during the call.
        output: Box<GuestOutput>,
    },
    /// Every one of the plugin's `concurrency` slots stayed taken for the whole
    /// deadline.
    #[error(
        "plugin `{plugin}` is busy: its {limit} concurrent calls did not free a slot within {deadline:?}"
    )]
    Busy {
        /// Plugin name.
        plugin: Arc<str>,
        /// Its `concurrency`.
        limit: u32,
        /// The configured deadline.
        deadline: Duration,
    },
    /// The guest trapped (panic, `unreachable`, out of bounds, ...) or could not start.
    #[error("plugin `{plugin}` failed: {message}{output}")]
    Trap {
        /// Plugin name.
        plugin: Arc<str>,
        /// The trap (or what the host refused) and the guest's backtrace.
        message: String,
        /// What the guest wrote during the call: its log lines, and its stdout and
        /// stderr, where a panic or an uncaught exception is reported.
        output: Box<GuestOutput>,
    },
}

impl PluginError {
    /// What the guest wrote during the failed call (empty for [`PluginError::Busy`]).
    pub fn guest_output(&self) -> Option<&GuestOutput> {
        match self {
            PluginError::Deadline { output, .. }
            | PluginError::Memory { output, .. }
            | PluginError::Trap { output, .. } => Some(output),
            PluginError::Busy { .. } => None,
        }
    }
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
    /// Calls of this plugin running at once; past it, a call waits (within its
    /// deadline) for one to end. Bounds the share of the instance pool one plugin can
    /// hold.
    pub concurrency: u32,
    /// Origins its outbound HTTP requests may reach (`allow_outbound`; none by default).
    pub allowed: Allowed,
}

impl Limits {
    /// The defaults of a `[plugins.NAME]` table: 100 ms, 64 MiB, a fresh instance per
    /// call, [`DEFAULT_CONCURRENCY`] calls at once.
    pub fn new() -> Self {
        Self {
            deadline: Duration::from_millis(100),
            max_memory: 64 << 20,
            reuse: 0,
            concurrency: DEFAULT_CONCURRENCY,
            allowed: Allowed::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::new()
    }
}
