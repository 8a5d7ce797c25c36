//! Weir: a self-hosted API gateway whose policies are sandboxed WebAssembly components.
//!
//! The request path is [`pipeline::handle`]; each stage has its own module. Config
//! parsing ([`config`]) and route matching ([`route`]) know nothing of hyper or
//! wasmtime; [`plugin`] is the only module that touches wasmtime.

pub mod access_log;
pub mod admin;
pub mod authorize;
pub mod config;
pub mod cors;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod idle;
pub mod integrate;
pub mod map;
pub mod pipeline;
pub mod plugin;
pub mod quota;
pub mod reload;
pub mod route;
pub mod server;
pub mod throttle;
pub mod tls;
pub mod trace;
pub mod ttl_cache;
pub mod usage;
pub mod websocket;
