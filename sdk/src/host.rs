//! The gateway's `host` interface: the plugin's config, structured logging, reuse
//! declarations, the client's certificate and values kept between calls.

// Every world imports the same `weir:plugin/host@0.1.4`; the mapper world's bindings of
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

/// A client certificate from a mutual TLS handshake, in the parts Amazon API Gateway
/// names (`$context.identity.clientCert.*`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientCert {
    /// The certificate, PEM (`clientCertPem`).
    pub pem: String,
    /// Its subject's distinguished name (`subjectDN`), e.g. `CN=alice, O=Example`.
    pub subject_dn: String,
    /// Its issuer's distinguished name (`issuerDN`).
    pub issuer_dn: String,
    /// Its serial number (`serialNumber`): hex pairs joined by `:`.
    pub serial_number: String,
    /// The start of its validity (`validity.notBefore`), e.g. `May 28 12:30:02 2019 GMT`.
    pub not_before: String,
    /// The end of its validity (`validity.notAfter`).
    pub not_after: String,
}

/// The certificate the client of this call's request presented, verified against the
/// listener's `client_ca_file`: `None` without mutual TLS, when the client sent none
/// (`client_auth = "optional"`), and in a CORS policy. Needs a gateway that serves WIT
/// 0.1.3.
pub fn client_cert() -> Option<ClientCert> {
    imports::client_cert().map(|c| ClientCert {
        pem: c.client_cert_pem,
        subject_dn: c.subject_dn,
        issuer_dn: c.issuer_dn,
        serial_number: c.serial_number,
        not_before: c.not_before,
        not_after: c.not_after,
    })
}

/// The value this plugin kept under `key` with [`keep`], unless its time is up. Kept
/// values outlive the call and the instance: every later call of the plugin on this
/// gateway process sees them (a fresh instance too), until their time is up or the
/// plugin is reloaded. No other plugin sees them; other gateway nodes have their own.
/// Needs a gateway that serves WIT 0.1.4.
pub fn kept(key: &str) -> Option<Vec<u8>> {
    imports::kept(key)
}

/// Keeps `value` under `key` for `seconds` (at most 86400; 0 removes it), for later
/// calls to read with [`kept`]. Per plugin: keys of at most 256 bytes, values of at
/// most 1 MiB, 1024 keys and 8 MiB in all (the values closest to their end make room
/// for a new one). False when a key or value is over its bound. Needs a gateway that
/// serves WIT 0.1.4.
pub fn keep(key: &str, value: &[u8], seconds: u32) -> bool {
    imports::keep(key, value, seconds)
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
