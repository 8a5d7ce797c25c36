//! Weir: a self-hosted API gateway whose policies are sandboxed WebAssembly components.
//!
//! The request path is [`pipeline::handle`]; each stage has its own module, and HTTP
//! requests and WebSocket events share the core below it: one [`context`] per request,
//! one [`integrate`] stage, one place that builds responses ([`respond`]). Config
//! parsing ([`config`]) and route matching ([`route`]) know nothing of hyper or
//! wasmtime; [`plugin`] is the only module that touches wasmtime. `ARCHITECTURE.md`
//! lists the layers; no module imports one above its own.

// Layer 0: pure — config, paths, ids, caches.
pub mod client_cert;
pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod ip_policy;
pub mod route;
pub mod trace;
pub mod ttl_cache;
// Layer 1: the plugin host (wasmtime), the function processes and the limit state.
pub mod lambda;
pub mod plugin;
pub mod quota;
pub mod throttle;
// Layer 2: what every request shares.
pub mod catalog;
pub mod cluster;
pub mod connections;
pub mod context;
pub mod error;
pub mod guarded;
pub mod listener_tls;
pub mod pool;
pub mod respond;
pub mod tls;
pub mod usage;
// Layer 3: the stages.
pub mod access_log;
pub mod authorize;
pub mod cors;
pub mod integrate;
pub mod map;
// Layer 4: the compiled gateway and the state a worker shares.
pub mod gateway;
pub mod worker;
// Layer 5: the protocols.
pub mod pipeline;
pub mod websocket;
// Layer 6: loading, listening, operating.
pub mod admin;
pub mod idle;
pub mod reload;
pub mod scaffold;
pub mod server;
