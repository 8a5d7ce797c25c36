//! The gateway's `host` interface: the plugin's config and structured logging.

// Every world imports the same `weir:plugin/host@0.1.2`; the mapper world's bindings of
// it serve plugins of all worlds (the import names are identical).
use crate::mapper::bindings::weir::plugin::host as imports;

/// The plugin's `config` table from `weir.toml`, as JSON text (`{}` when absent).
pub fn config_json() -> String {
    imports::config()
}

/// Declares that this call's answer may be reused for `seconds` (at most 3600) for
/// requests alike in what it depends on. A CORS policy calls it in `decorate` when the
/// headers it adds depend only on the request's origin, method and path; the gateway
/// then asks it once per origin, method and path for that long. Elsewhere it is
/// ignored. Needs a gateway that serves WIT 0.1.2.
pub fn cacheable(seconds: u32) {
    imports::cacheable(seconds);
}

/// The plugin's `config` table from `weir.toml`, deserialized.
pub fn config<T: serde::de::DeserializeOwned>() -> Result<T, String> {
    serde_json::from_str(&config_json()).map_err(|e| format!("invalid plugin config: {e}"))
}

/// Structured logging through the gateway; records are tagged with the plugin's name.
pub mod log {
    use super::imports::{LogLevel, log};

    /// Logs at trace level.
    pub fn trace(message: &str) {
        log(LogLevel::Trace, message);
    }
    /// Logs at debug level.
    pub fn debug(message: &str) {
        log(LogLevel::Debug, message);
    }
    /// Logs at info level.
    pub fn info(message: &str) {
        log(LogLevel::Info, message);
    }
    /// Logs at warn level.
    pub fn warn(message: &str) {
        log(LogLevel::Warn, message);
    }
    /// Logs at error level.
    pub fn error(message: &str) {
        log(LogLevel::Error, message);
    }
}
