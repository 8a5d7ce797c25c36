//! The `weir.toml` file as plain serde structs; defaults are Amazon API Gateway's quotas.
//!
//! Nothing here knows about hyper or wasmtime: [`crate::gateway`] compiles these structs
//! into the form the server runs.

mod api;
mod cluster;
mod functions;
mod server;
mod upstreams;
mod websocket;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use api::*;
pub use cluster::*;
pub use functions::*;
pub use server::*;
pub use upstreams::*;
pub use websocket::*;

/// Shortest integration timeout AWS allows.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(50);
/// Longest timeout or grace period: timers are armed as `now + duration`, which must
/// not overflow the clock (a duration near `u64::MAX` seconds would panic there).
pub const MAX_TIMER: Duration = Duration::from_secs(365 * 24 * 3600);

/// The directory relative paths in the config file `path` are resolved against: its
/// own (`.` for a bare file name).
pub fn base_dir(path: &std::path::Path) -> std::path::PathBuf {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."))
        .to_path_buf()
}

/// Refuses a timer setting above [`MAX_TIMER`].
pub fn check_timer(key: &str, d: Duration, errors: &mut Vec<String>) {
    if d > MAX_TIMER {
        errors.push(format!(
            "{key}: {} is above the 365-day maximum",
            humantime::format_duration(d)
        ));
    }
}

/// Calls of one plugin running at once unless its `concurrency` says otherwise.
pub const DEFAULT_CONCURRENCY: u32 = 100;
/// Largest component file or upload unless `limits.max_plugin_size` says otherwise.
pub const DEFAULT_MAX_PLUGIN_SIZE: u64 = 64 << 20;

/// The whole configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The public listener.
    #[serde(default)]
    pub server: Server,
    /// The admin listener (health, readiness, metrics, admin API); off when absent.
    pub admin: Option<Admin>,
    /// Reloading on file changes.
    #[serde(default)]
    pub reload: Reload,
    /// The on-disk cache of compiled plugins.
    #[serde(default)]
    pub plugin_cache: PluginCache,
    /// Request limits.
    #[serde(default)]
    pub limits: Limits,
    /// The access log.
    #[serde(default)]
    pub access_log: AccessLog,
    /// Plugins by name.
    #[serde(default)]
    pub plugins: BTreeMap<String, Plugin>,
    /// API-wide settings.
    #[serde(default)]
    pub api: Api,
    /// The account-level token bucket.
    #[serde(default)]
    pub throttle: AccountThrottle,
    /// Usage plans by name.
    #[serde(default)]
    pub usage_plans: BTreeMap<String, UsagePlan>,
    /// API keys.
    #[serde(default)]
    pub api_keys: Vec<ApiKey>,
    /// The HTTP API's routes.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// WebSocket APIs by name.
    #[serde(default)]
    pub websocket: BTreeMap<String, WebSocketApi>,
    /// Lambda functions by name (processes the gateway runs).
    #[serde(default)]
    pub functions: BTreeMap<String, Function>,
    /// Pools of upstream targets by name, for `integration = { upstream = NAME }`.
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamPool>,
    /// Several nodes as one gateway, through a shared store; off when absent.
    pub cluster: Option<Cluster>,
}

/// The kind of plugin, i.e. the WIT world it implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum World {
    /// `weir:plugin/mapper`
    Mapper,
    /// `weir:plugin/authorizer`
    Authorizer,
    /// `weir:plugin/cors`
    Cors,
    /// `wasi:http/proxy`: a component that answers requests (`type = "function"`).
    Function,
}

impl World {
    /// The world's name in the WIT package.
    pub fn name(self) -> &'static str {
        match self {
            World::Mapper => "mapper",
            World::Authorizer => "authorizer",
            World::Cors => "cors",
            World::Function => "function",
        }
    }
}

/// A config file that could not be read or parsed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML did not match the schema.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What toml/serde said, naming the key.
        message: String,
    },
}

impl Config {
    /// Reads and parses a config file (no semantic checks: `gateway::assemble` and the stages make those).
    pub fn load(path: &Path) -> Result<Self, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|message| LoadError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses config text.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
    }
}

#[cfg(test)]
mod tests;
