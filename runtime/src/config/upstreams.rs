//! `[upstreams.NAME]`: a pool of targets that routes name instead of one URL, with
//! balancing, active health checks, passive ejection and retries.

use std::time::Duration;

use serde::Deserialize;

/// `[upstreams.NAME]`: the targets of one service and how requests are spread over
/// them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamPool {
    /// The targets: `{ url = "http://10.0.0.1:9000", weight = 3 }` (weight 1 unless set).
    pub targets: Vec<PoolTarget>,
    /// `round_robin` (smooth weighted, the default), `least_request` (power of two
    /// choices) or `hash:$request.header.NAME` (the same header value, the same target).
    #[serde(default = "default_balance")]
    pub balance: String,
    /// How targets are spoken to (default `http1`).
    #[serde(default)]
    pub protocol: Protocol,
    /// Active health checks (none unless set).
    pub health: Option<HealthCheck>,
    /// Passive ejection of targets whose requests fail.
    #[serde(default)]
    pub passive: Passive,
    /// Retries of failed attempts on another target.
    #[serde(default)]
    pub retries: Retries,
    /// Resolve the targets' host names this often (e.g. `"30s"`): each address is a
    /// target of its own, new addresses join, gone ones drain. Unset: a name is
    /// resolved by the system at each new connection.
    #[serde(default, with = "humantime_serde")]
    pub resolve: Option<Duration>,
}

fn default_balance() -> String {
    "round_robin".to_owned()
}

/// One target of a pool.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolTarget {
    /// `http://host:port` or `https://host:port` (no path: the route's `path` is used).
    pub url: String,
    /// Share of requests relative to the other targets (default 1).
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

/// How a pool's targets are spoken to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1 (`http://` or `https://` targets).
    #[default]
    Http1,
    /// HTTP/2 over TLS, negotiated by ALPN (`https://` targets).
    Http2,
    /// HTTP/2 over plain TCP with prior knowledge (`http://` targets).
    H2c,
}

/// `health = { path, interval, timeout, unhealthy, healthy }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// The path asked for with `GET`; a `2xx` answer is a good check.
    pub path: String,
    /// Time between checks of one target (default 5 s).
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Time one check may take (default 1 s).
    #[serde(default = "default_check_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Failed checks in a row that take a target out (default 3).
    #[serde(default = "default_unhealthy")]
    pub unhealthy: u32,
    /// Good checks in a row that bring it back (default 2).
    #[serde(default = "default_healthy")]
    pub healthy: u32,
}

fn default_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_check_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_unhealthy() -> u32 {
    3
}
fn default_healthy() -> u32 {
    2
}

/// `passive = { consecutive_failures, eject, max_ejected }`: a target whose requests
/// fail (connect errors, resets, timeouts, `502`/`503`/`504` answers) that many times in
/// a row is left out for `eject`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Passive {
    /// Failures in a row that eject a target (default 5; 0 turns ejection off).
    #[serde(default = "default_consecutive")]
    pub consecutive_failures: u32,
    /// How long an ejected target is left out (default 30 s).
    #[serde(default = "default_eject", with = "humantime_serde")]
    pub eject: Duration,
    /// Largest share of the pool ejected at once, e.g. `"50%"` (default).
    #[serde(default = "default_max_ejected")]
    pub max_ejected: String,
}

impl Default for Passive {
    fn default() -> Self {
        Self {
            consecutive_failures: default_consecutive(),
            eject: default_eject(),
            max_ejected: default_max_ejected(),
        }
    }
}

fn default_consecutive() -> u32 {
    5
}
fn default_eject() -> Duration {
    Duration::from_secs(30)
}
fn default_max_ejected() -> String {
    "50%".to_owned()
}

/// `retries = { attempts, on, budget }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retries {
    /// Retries after the first attempt (default 2; 0 turns retries off).
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// What is retried: `connect` (the connection could not be opened), `reset` (it
    /// closed before any byte of the answer), `502`, `503` (answers, retried for
    /// idempotent methods only unless the route says `retry_any_method`). Default all
    /// four.
    #[serde(default = "default_on")]
    pub on: Vec<String>,
    /// Retries as a share of first attempts, e.g. `"20%"` (default).
    #[serde(default = "default_budget")]
    pub budget: String,
}

impl Default for Retries {
    fn default() -> Self {
        Self {
            attempts: default_attempts(),
            on: default_on(),
            budget: default_budget(),
        }
    }
}

fn default_attempts() -> u32 {
    2
}
fn default_on() -> Vec<String> {
    ["connect", "reset", "502", "503"]
        .map(str::to_owned)
        .to_vec()
}
fn default_budget() -> String {
    "20%".to_owned()
}

/// Parses `"50%"` (0 to 100) as a fraction.
pub fn percent(text: &str) -> Option<f64> {
    let n: f64 = text.strip_suffix('%')?.trim().parse().ok()?;
    (0.0..=100.0).contains(&n).then_some(n / 100.0)
}
