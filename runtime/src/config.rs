//! The `weir.toml` file as plain serde structs; defaults are Amazon API Gateway's quotas.
//!
//! Nothing here knows about hyper or wasmtime: [`crate::gateway`] compiles these structs
//! into the form the server runs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

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
}

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

fn default_true() -> bool {
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
}

impl World {
    /// The world's name in the WIT package.
    pub fn name(self) -> &'static str {
        match self {
            World::Mapper => "mapper",
            World::Authorizer => "authorizer",
            World::Cors => "cors",
        }
    }
}

/// `[plugins.NAME]`: one WebAssembly component.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plugin {
    /// The component file, relative to the config file.
    pub file: PathBuf,
    /// The world the component must implement.
    pub world: World,
    /// Execution deadline of one call (default 100 ms).
    #[serde(default = "default_deadline", with = "humantime_serde")]
    pub deadline: Duration,
    /// Linear-memory cap of one instance (default 64 MiB).
    #[serde(default = "default_max_memory")]
    pub max_memory: ByteSize,
    /// The plugin's own settings, handed to it as JSON.
    #[serde(default)]
    pub config: toml::Table,
    /// Call every new version once with a synthetic request before it serves, and
    /// refuse it if that traps (default true).
    #[serde(default = "default_true")]
    pub smoke_test: bool,
    /// Calls one instance may serve before it is discarded (default 0: a fresh
    /// instance for every call). State may survive between the requests one instance
    /// serves; an instance is never used by two calls at once and is discarded after
    /// any trap, deadline or memory-cap failure.
    #[serde(default)]
    pub reuse: u32,
    /// Calls of this plugin running at once (default 100); past it, a call waits for a
    /// free slot within its deadline, then fails (`busy`). Keeps one plugin (and so one
    /// route) from taking the whole instance pool.
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// What a failing call (trap, deadline, memory cap, invalid output) does: `fail_closed`
    /// answers 500; `fail_open` (mappers only) goes on as if the mapper were not there.
    #[serde(default)]
    pub failure: FailurePolicy,
}

/// `[plugins.NAME] failure`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// The request fails (500); authorizers always deny.
    #[default]
    FailClosed,
    /// The request goes on unmapped (optional mappers only).
    FailOpen,
}

/// Shortest integration timeout AWS allows.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(50);
/// Longest timeout or grace period: timers are armed as `now + duration`, which must
/// not overflow the clock (a duration near `u64::MAX` seconds would panic there).
pub const MAX_TIMER: Duration = Duration::from_secs(365 * 24 * 3600);

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

fn default_concurrency() -> u32 {
    DEFAULT_CONCURRENCY
}
fn default_deadline() -> Duration {
    Duration::from_millis(100)
}
fn default_max_memory() -> ByteSize {
    ByteSize::mib(64)
}

/// `[api]`: settings for the whole API.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Api {
    /// The CORS policy plugin applied to every route.
    pub cors: Option<String>,
    /// How long the headers the CORS policy adds are kept per origin, method and path
    /// (off by default). Only for a policy that decides from those alone; see
    /// `docs/plugin-authoring.md`.
    #[serde(default, with = "humantime_serde")]
    pub cors_cache: Option<Duration>,
    /// Where the API key of a route with `api_key_required` comes from.
    #[serde(default)]
    pub api_key_source: ApiKeySource,
    /// Add `x-quota-limit`, `x-quota-remaining` and `x-quota-reset` to responses of
    /// requests counted against a quota (off by default, as on AWS).
    #[serde(default)]
    pub quota_headers: bool,
    /// The file quota counters are kept in, relative to the config file
    /// (default `weir-quotas.json`).
    pub quota_file: Option<PathBuf>,
}

/// Where API keys come from.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiKeySource {
    /// The `x-api-key` request header.
    #[default]
    Header,
    /// The `usage-identifier-key` the route's authorizer returns.
    Authorizer,
}

/// A token bucket: `rate` tokens per second, `burst` tokens at most.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleLimit {
    /// Steady requests per second (fractions allowed, e.g. 0.5).
    pub rate: f64,
    /// Requests admitted at once after a quiet spell.
    pub burst: u32,
}

/// `[throttle]`: the account-level bucket (AWS: 10,000 rps, burst 5,000).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountThrottle {
    /// Steady requests per second.
    #[serde(default = "default_account_rate")]
    pub rate: f64,
    /// Bucket size.
    #[serde(default = "default_account_burst")]
    pub burst: u32,
}

impl Default for AccountThrottle {
    fn default() -> Self {
        Self {
            rate: default_account_rate(),
            burst: default_account_burst(),
        }
    }
}

fn default_account_rate() -> f64 {
    10_000.0
}
fn default_account_burst() -> u32 {
    5_000
}

/// `[usage_plans.NAME]`: limits shared by the API keys on the plan.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsagePlan {
    /// Each key's own bucket (none: keys are only limited by route and account).
    pub throttle: Option<ThrottleLimit>,
    /// Requests per key per period.
    pub quota: Option<Quota>,
    /// Per-route buckets that replace `throttle` on those routes, by route key.
    #[serde(default)]
    pub route_throttle: BTreeMap<String, ThrottleLimit>,
}

/// A usage plan's `quota = { limit, period }`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Requests per period.
    pub limit: u64,
    /// `DAY`, `WEEK` or `MONTH` (UTC calendar periods).
    pub period: QuotaPeriod,
}

/// A quota period, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum QuotaPeriod {
    /// From 00:00 UTC.
    Day,
    /// From Monday 00:00 UTC.
    Week,
    /// From the 1st, 00:00 UTC.
    Month,
}

/// `[[api_keys]]`: one API key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// A name for logs and the quota file (unique).
    pub name: String,
    /// The secret the client sends (20 to 128 visible ASCII characters).
    pub value: String,
    /// The usage plan it is on.
    pub plan: String,
    /// A disabled key is refused with 403.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

/// `[[routes]]`: one route of the HTTP API.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// AWS route key: `GET /pets/{id}`, `ANY /files/{path+}` or `$default`.
    pub key: String,
    /// Where matching requests go.
    pub integration: Integration,
    /// The authorizer that must allow the request first.
    pub authorizer: Option<RouteAuthorizer>,
    /// A mapper plugin applied to the request.
    pub request_mapping: Option<String>,
    /// A mapper plugin applied to the response.
    pub response_mapping: Option<String>,
    /// This route's integration timeout (overrides `limits.integration_timeout`).
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// This route's own bucket, on top of the account's.
    pub throttle: Option<ThrottleLimit>,
    /// Requests need a valid, enabled API key (else 403).
    #[serde(default)]
    pub api_key_required: bool,
}

/// A route's integration.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Integration {
    /// Proxy to an upstream URL template (`{param}` and `{proxy+}` are substituted).
    Http {
        /// e.g. `http://127.0.0.1:9000/pets/{id}`.
        url: String,
    },
    /// Answer with a fixed response.
    Mock {
        /// Status code (default 200).
        #[serde(default = "default_mock_status")]
        status: u16,
        /// Response headers.
        #[serde(default)]
        headers: BTreeMap<String, String>,
        /// Response body.
        #[serde(default)]
        body: String,
    },
}

fn default_mock_status() -> u16 {
    200
}

/// A route's `authorizer = { ... }` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteAuthorizer {
    /// The authorizer plugin's name.
    pub plugin: String,
    /// Where the identity comes from: `$request.header.NAME` or `$request.querystring.NAME`.
    #[serde(default = "default_identity_source")]
    pub identity_source: Vec<String>,
    /// How long a decision is cached per identity (default 300 s, max 3600 s, 0 = off).
    #[serde(default = "default_auth_ttl", with = "humantime_serde")]
    pub ttl: Duration,
    /// Authorization scopes the route requires (passed to the authorizer).
    #[serde(default)]
    pub scopes: Vec<String>,
}

fn default_identity_source() -> Vec<String> {
    vec!["$request.header.Authorization".to_owned()]
}
fn default_auth_ttl() -> Duration {
    Duration::from_secs(300)
}

/// `[websocket.NAME]`: a WebSocket API on one path of the public listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSocketApi {
    /// The path clients upgrade on, e.g. `/ws` (a `GET` with `Upgrade: websocket`).
    pub path: String,
    /// Chooses a message's route: `$request.body.action`, or a template such as
    /// `${request.body.type}/${request.body.name}`.
    #[serde(default = "default_route_selection")]
    pub route_selection: String,
    /// Connection and message limits (AWS's defaults).
    #[serde(default)]
    pub limits: WebSocketLimits,
    /// Routes: `$connect`, `$disconnect`, `$default` and custom route keys.
    #[serde(default)]
    pub routes: Vec<WebSocketRoute>,
}

fn default_route_selection() -> String {
    "$request.body.action".to_owned()
}

/// `[websocket.NAME.limits]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSocketLimits {
    /// New connections per second (over: 429 at the handshake).
    #[serde(default = "default_connect_rate")]
    pub connect_rate: u32,
    /// Connections that may open at once before `connect_rate` applies (default: the rate).
    pub connect_burst: Option<u32>,
    /// Longest a connection may stay open (then close 1001).
    #[serde(default = "default_max_duration", with = "humantime_serde")]
    pub max_duration: Duration,
    /// Longest a connection may stay silent in both directions (then close 1001).
    #[serde(default = "default_idle_timeout", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Largest message, all its frames together (over: close 1009).
    #[serde(default = "default_max_message")]
    pub max_message: ByteSize,
    /// Largest frame (over: close 1009).
    #[serde(default = "default_max_frame")]
    pub max_frame: ByteSize,
    /// Messages queued for one client before `POST /@connections/{id}` answers 429.
    #[serde(default = "default_outbound_queue")]
    pub outbound_queue: usize,
    /// Longest a send to the client may wait while the client reads nothing (default
    /// 10 s); past it the connection closes (`send_timeout`).
    #[serde(default = "default_send_timeout", with = "humantime_serde")]
    pub send_timeout: Duration,
}

impl Default for WebSocketLimits {
    fn default() -> Self {
        Self {
            connect_rate: default_connect_rate(),
            connect_burst: None,
            max_duration: default_max_duration(),
            idle_timeout: default_idle_timeout(),
            max_message: default_max_message(),
            max_frame: default_max_frame(),
            outbound_queue: default_outbound_queue(),
            send_timeout: default_send_timeout(),
        }
    }
}

fn default_connect_rate() -> u32 {
    500
}
fn default_max_duration() -> Duration {
    Duration::from_secs(2 * 3600)
}
fn default_idle_timeout() -> Duration {
    Duration::from_secs(600)
}
fn default_max_message() -> ByteSize {
    ByteSize::kib(128)
}
fn default_max_frame() -> ByteSize {
    ByteSize::kib(32)
}
fn default_send_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_outbound_queue() -> usize {
    64
}

/// `[[websocket.NAME.routes]]`: one route of a WebSocket API.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSocketRoute {
    /// `$connect`, `$disconnect`, `$default`, or a value of the route selection expression.
    pub key: String,
    /// Where the event goes: `http` (POSTed with `connectionId`, `routeKey`, `eventType`
    /// and `requestId` headers) or `mock`.
    pub integration: Integration,
    /// The authorizer (only on `$connect`).
    pub authorizer: Option<RouteAuthorizer>,
    /// A mapper plugin applied to each message (the message is the request body).
    pub request_mapping: Option<String>,
    /// Send the integration's response body back to the client (two-way route).
    #[serde(default)]
    pub route_response: bool,
    /// This route's integration timeout (overrides `limits.integration_timeout`).
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
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
    /// Reads and parses a config file (no semantic checks; see `gateway::compile`).
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
mod tests {
    use super::*;

    #[test]
    fn defaults_are_aws_quotas() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.limits.integration_timeout, Duration::from_secs(29));
        assert_eq!(c.limits.max_body, ByteSize::mb(10));
        assert_eq!(c.limits.max_header_bytes, 10_240);
        assert_eq!((c.throttle.rate, c.throttle.burst), (10_000.0, 5_000));
        assert!(c.routes.is_empty());
    }

    #[test]
    fn parses_a_full_route() {
        let c = Config::parse(
            r#"
            [limits]
            integration_timeout = "5s"
            max_body = "1MiB"
            [plugins.jwt]
            file = "jwt.wasm"
            world = "authorizer"
            config = { issuer = "x" }
            [[routes]]
            key = "GET /pets/{id}"
            integration = { type = "http", url = "http://127.0.0.1:9/pets/{id}" }
            authorizer = { plugin = "jwt", ttl = "0s" }
            timeout = "100ms"
            "#,
        )
        .unwrap();
        assert_eq!(c.limits.max_body, ByteSize::mib(1));
        let r = &c.routes[0];
        assert_eq!(r.timeout, Some(Duration::from_millis(100)));
        assert!(matches!(r.integration, Integration::Http { .. }));
        let a = r.authorizer.as_ref().unwrap();
        assert_eq!(a.identity_source, ["$request.header.Authorization"]);
        assert_eq!(a.ttl, Duration::ZERO);
        assert_eq!(c.plugins["jwt"].world, World::Authorizer);
    }

    #[test]
    fn parses_throttles_plans_and_keys() {
        let c = Config::parse(
            r#"
            [api]
            api_key_source = "authorizer"
            [throttle]
            rate = 100
            [usage_plans.gold]
            throttle = { rate = 0.5, burst = 2 }
            quota = { limit = 1000, period = "WEEK" }
            route_throttle = { "GET /pets" = { rate = 1, burst = 1 } }
            [[api_keys]]
            name = "alice"
            value = "0123456789abcdefghij"
            plan = "gold"
            [[routes]]
            key = "GET /pets"
            integration = { type = "mock" }
            throttle = { rate = 10, burst = 5 }
            api_key_required = true
            "#,
        )
        .unwrap();
        assert_eq!(c.api.api_key_source, ApiKeySource::Authorizer);
        assert_eq!((c.throttle.rate, c.throttle.burst), (100.0, 5000));
        let gold = &c.usage_plans["gold"];
        assert_eq!(gold.throttle.unwrap().rate, 0.5);
        assert_eq!(gold.quota.unwrap().period, QuotaPeriod::Week);
        assert_eq!(gold.route_throttle["GET /pets"].burst, 1);
        assert!(c.api_keys[0].enabled);
        assert!(c.routes[0].api_key_required);
        assert_eq!(c.routes[0].throttle.unwrap().burst, 5);
        assert!(
            Config::parse("[usage_plans.x]\nquota = { limit = 1, period = \"HOUR\" }").is_err()
        );
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let err = Config::parse("[limits]\nmax_bodee = 3\n").unwrap_err();
        assert!(err.contains("max_bodee"), "{err}");
    }
}
