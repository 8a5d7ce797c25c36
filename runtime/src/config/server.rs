//! The process: `[server]`, `[admin]`, `[reload]`, `[plugin_cache]`, `[access_log]`
//! and `[limits]`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

use super::DEFAULT_MAX_PLUGIN_SIZE;

/// `[server]`: where and how the public listener runs.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Address to listen on; port 0 picks a free port (printed at start).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The stage name exposed to plugins as `$context.stage`.
    #[serde(default = "default_stage")]
    pub stage: String,
    /// Time a client has to send the request line and headers.
    #[serde(default = "default_header_read_timeout", with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Time a client has to send a request body once the headers are in (else 408).
    #[serde(default = "default_body_read_timeout", with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// Time in-flight requests get to finish after SIGTERM/SIGINT.
    #[serde(default = "default_shutdown_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Most client connections open at once (HTTP, before any WebSocket upgrade); past
    /// it, new connections wait in the listen backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Worker threads, each with its own event loop and listener socket
    /// (`SO_REUSEPORT`); default: one per CPU core.
    pub workers: Option<usize>,
    /// A PEM file of certificates to trust for `https://` integrations besides the
    /// system's (a private CA, say); relative to the config file.
    pub upstream_ca_file: Option<PathBuf>,
    /// A PEM certificate chain to present to `https://` upstreams that ask for one
    /// (with `upstream_client_key`), so a backend can tell the gateway's calls apart.
    pub upstream_client_cert: Option<PathBuf>,
    /// The private key of `upstream_client_cert` (PEM).
    pub upstream_client_key: Option<PathBuf>,
    /// Serve HTTPS with this certificate chain (PEM, with `tls_key`) instead of plain
    /// HTTP; relative to the config file.
    pub tls_cert: Option<PathBuf>,
    /// The private key of `tls_cert` (PEM).
    pub tls_key: Option<PathBuf>,
    /// Proxies (addresses or CIDR blocks) whose `X-Forwarded-For` is believed: the
    /// client of a request from one is the rightmost address in that header that is
    /// not itself a trusted proxy. Empty (the default): the client is the peer.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Mutual TLS: a PEM file of the authorities client certificates must chain to
    /// (with `tls_cert`); relative to the config file, read again when it changes.
    pub client_ca_file: Option<PathBuf>,
    /// With `client_ca_file`: whether a client without a certificate is turned away
    /// (`required`, the default) or served without an identity (`optional`).
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// A hosts-format file (`ADDRESS NAME...` per line, `#` comments) that upstream
    /// pools with `resolve` consult before the system resolver, read again at every
    /// resolution: names can be pointed or moved without touching `/etc/hosts`;
    /// relative to the config file.
    pub hosts_file: Option<PathBuf>,
}

/// Whether the listener requires client certificates.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// A handshake without a valid certificate fails.
    #[default]
    Required,
    /// A client may come without one; one it sends must verify.
    Optional,
}

impl Default for Server {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            stage: default_stage(),
            header_read_timeout: default_header_read_timeout(),
            body_read_timeout: default_body_read_timeout(),
            shutdown_grace: default_shutdown_grace(),
            max_connections: default_max_connections(),
            workers: None,
            upstream_ca_file: None,
            upstream_client_cert: None,
            upstream_client_key: None,
            tls_cert: None,
            tls_key: None,
            trusted_proxies: Vec::new(),
            client_ca_file: None,
            client_auth: ClientAuth::default(),
            hosts_file: None,
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_stage() -> String {
    "$default".to_owned()
}
fn default_header_read_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_body_read_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_max_connections() -> usize {
    10_000
}
fn default_shutdown_grace() -> Duration {
    Duration::from_secs(30)
}

/// `[admin]`: the admin listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Admin {
    /// Address to listen on; keep it private (loopback or an internal network).
    pub listen: SocketAddr,
    /// The bearer token `/admin/*` requires (at least 16 characters); prefer `token_env`.
    pub token: Option<String>,
    /// The environment variable holding that token.
    pub token_env: Option<String>,
}

/// Shortest admin token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

impl Admin {
    /// The admin API's bearer token: `token`, or the value of `token_env`; `None` when
    /// neither is set (the admin API is then off). Errors name the key.
    pub fn token(&self) -> Result<Option<String>, String> {
        let token = match (&self.token, &self.token_env) {
            (Some(_), Some(_)) => {
                return Err("admin.token: set `token` or `token_env`, not both".to_owned());
            }
            (Some(t), None) => t.clone(),
            (None, Some(var)) => match std::env::var(var) {
                Ok(t) => t,
                Err(_) => {
                    return Err(format!(
                        "admin.token_env: the environment variable `{var}` is not set"
                    ));
                }
            },
            (None, None) => return Ok(None),
        };
        let token = token.trim().to_owned();
        if token.chars().count() < MIN_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "admin.token: must be at least {MIN_TOKEN_LEN} visible ASCII characters"
            ));
        }
        Ok(Some(token))
    }
}

/// `[reload]`: reloading while serving.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reload {
    /// Watch the config file and plugin files, and reload when they change (default true).
    #[serde(default = "default_true")]
    pub watch: bool,
    /// How long a changed file must stay quiet before it is loaded (default 200ms).
    #[serde(default = "default_debounce", with = "humantime_serde")]
    pub debounce: Duration,
}

impl Default for Reload {
    fn default() -> Self {
        Self {
            watch: true,
            debounce: default_debounce(),
        }
    }
}

fn default_debounce() -> Duration {
    Duration::from_millis(200)
}

/// `[plugin_cache]`: compiled plugins kept on disk, so a restart does not recompile.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginCache {
    /// Whether to use it (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The directory, relative to the config file (default `.weir-cache`).
    #[serde(default = "default_cache_dir")]
    pub dir: PathBuf,
    /// Largest size of the directory; past it the least recently used entries go
    /// (default 1 GiB).
    #[serde(default = "default_cache_size")]
    pub max_size: ByteSize,
}

impl Default for PluginCache {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: default_cache_dir(),
            max_size: default_cache_size(),
        }
    }
}

fn default_cache_size() -> ByteSize {
    ByteSize::gib(1)
}

fn default_cache_dir() -> PathBuf {
    PathBuf::from(".weir-cache")
}

/// `[access_log]`: one record per request on the `weir::access` log target.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLog {
    /// Whether to write it (default true).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The fields to write, by their AWS `$context` names (default: all).
    pub fields: Option<Vec<String>>,
}

impl Default for AccessLog {
    fn default() -> Self {
        Self {
            enabled: true,
            fields: None,
        }
    }
}

pub(super) fn default_true() -> bool {
    true
}

/// `[limits]`: request limits, defaulting to AWS's quotas.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Time the integration has to answer (default 29 s, at least 50 ms).
    #[serde(default = "default_integration_timeout", with = "humantime_serde")]
    pub integration_timeout: Duration,
    /// Largest request body accepted (default 10 MB); larger gets 413.
    #[serde(default = "default_max_body")]
    pub max_body: ByteSize,
    /// Largest request line plus headers (default 10,240 bytes); larger gets 431.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Largest response body from an integration or a plugin (default 10 MB); larger
    /// gets 502 (integration) or 500 (plugin).
    #[serde(default = "default_max_body")]
    pub max_response_body: ByteSize,
    /// Most memory the process that compiles plugins may allocate (its data limit,
    /// default 2 GiB; at least 16 MiB); a component whose compile needs more is refused.
    /// An 18 MB Python component needs 400–600 MiB.
    #[serde(default = "default_compile_memory")]
    pub compile_memory: ByteSize,
    /// Largest component file or upload read (default 64 MiB); a larger one is refused
    /// unread.
    #[serde(default = "default_max_plugin_size")]
    pub max_plugin_size: ByteSize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            integration_timeout: default_integration_timeout(),
            max_body: default_max_body(),
            max_header_bytes: default_max_header_bytes(),
            max_response_body: default_max_body(),
            compile_memory: default_compile_memory(),
            max_plugin_size: default_max_plugin_size(),
        }
    }
}

fn default_integration_timeout() -> Duration {
    Duration::from_secs(29)
}
fn default_max_body() -> ByteSize {
    ByteSize::mb(10)
}
fn default_max_plugin_size() -> ByteSize {
    ByteSize::b(DEFAULT_MAX_PLUGIN_SIZE)
}
fn default_compile_memory() -> ByteSize {
    ByteSize::gib(2)
}
fn default_max_header_bytes() -> usize {
    10_240
}
