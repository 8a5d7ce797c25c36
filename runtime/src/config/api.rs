//! The API: `[plugins.NAME]`, `[api]`, `[throttle]`, usage plans, API keys and routes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use serde::Deserialize;

use super::server::default_true;
use super::{DEFAULT_CONCURRENCY, PayloadFormat, World};

/// `[plugins.NAME]`: one WebAssembly component.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plugin {
    /// The component file, relative to the config file.
    pub file: PathBuf,
    /// The world the component must implement.
    pub world: World,
    /// Execution deadline of one call (default 100 ms; for `function` components 30 s,
    /// their served calls being bounded by the route's timeout instead): see
    /// [`Plugin::deadline`].
    #[serde(default, with = "humantime_serde")]
    pub deadline: Option<Duration>,
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
    /// Origins (`scheme://host[:port]`, a leading `*.` label allowed) the plugin may
    /// send HTTP requests to; none by default. Only `function` components make
    /// outbound requests today.
    #[serde(default)]
    pub allow_outbound: Vec<String>,
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

fn default_concurrency() -> u32 {
    DEFAULT_CONCURRENCY
}
impl Plugin {
    /// The deadline of one call, and of the smoke call: as set, or 100 ms for policies,
    /// 4 s for policies that call out (`allow_outbound`: room for two fetches of 1.5 s,
    /// such as an issuer's discovery document and keys) and 30 s for `function`
    /// components (an interpreter's start-up fits in it; their served calls run within
    /// the route's timeout).
    pub fn deadline(&self) -> Duration {
        self.deadline.unwrap_or(match self.world {
            World::Function => Duration::from_secs(30),
            _ if !self.allow_outbound.is_empty() => Duration::from_secs(4),
            _ => Duration::from_millis(100),
        })
    }
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
    /// Client addresses (or CIDR blocks) that may call the API; empty: all.
    #[serde(default)]
    pub ip_allow: Vec<String>,
    /// Client addresses (or CIDR blocks) that may not; checked before `ip_allow`.
    #[serde(default)]
    pub ip_deny: Vec<String>,
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
    /// Send the upstream's answer on as it arrives instead of reading it whole first
    /// (HTTP integrations without a response mapper).
    #[serde(default)]
    pub stream: bool,
    /// This route's own client allow list, on top of `[api] ip_allow`.
    #[serde(default)]
    pub ip_allow: Vec<String>,
    /// This route's own client deny list, on top of `[api] ip_deny`.
    #[serde(default)]
    pub ip_deny: Vec<String>,
}

/// A route's integration.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Integration {
    /// Proxy to an upstream URL template (`{param}` and `{proxy+}` are substituted).
    Http {
        /// e.g. `http://127.0.0.1:9000/pets/{id}`; or name an `upstream` instead.
        url: Option<String>,
        /// A pool of `[upstreams]` instead of one `url`.
        upstream: Option<String>,
        /// With `upstream`: the path template, e.g. `/pets/{id}` (default: the
        /// client's path).
        path: Option<String>,
        /// With `upstream`: retry `502`/`503` answers for every method, not only
        /// idempotent ones (the upstream must tolerate a request applied twice).
        #[serde(default)]
        retry_any_method: bool,
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
    /// A `wasi:http` component of `[plugins]` (`world = "function"`) answers, in process.
    Function {
        /// The plugin's name in `[plugins]`.
        plugin: String,
    },
    /// Invoke a function of `[functions]` through the Lambda Runtime API.
    Lambda {
        /// The function's name in `[functions]`.
        function: String,
        /// The event format (default 2.0).
        #[serde(default)]
        payload_format: PayloadFormat,
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
