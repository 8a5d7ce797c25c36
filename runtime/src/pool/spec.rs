//! `[upstreams.NAME]` checked and compiled into the settings a [`super::Pool`] runs
//! with; every error names its key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};

use crate::config::{self, Protocol, UpstreamPool, percent};

/// Most targets in one pool.
pub const MAX_TARGETS: usize = 256;
/// Largest weight of one target.
pub const MAX_WEIGHT: u32 = 10_000;
/// Most retries of one request.
pub const MAX_ATTEMPTS: u32 = 10;
/// Shortest time between health checks.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// How a pool picks a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Balance {
    /// Smooth weighted round robin (nginx's): weights hold over every window of
    /// `sum(weights)` requests, without bursts to one target.
    RoundRobin,
    /// Power of two choices: the one of two random targets with fewer requests in
    /// flight per unit of weight.
    LeastRequest,
    /// Weighted rendezvous hashing of this header's value: the same value goes to the
    /// same target while it is available, and only the values of a target that leaves
    /// move. Requests without the header are spread round robin.
    Hash(HeaderName),
}

/// A target's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpec {
    /// `http://host:port` as written (without a trailing `/`).
    pub base: String,
    /// `host:port`, for the `Host` header.
    pub authority: HeaderValue,
    /// Relative share of requests.
    pub weight: u32,
    /// The host name to resolve (`None`: the host is an IP address).
    pub name: Option<String>,
    /// The port (the scheme's when none is written).
    pub port: u16,
}

impl TargetSpec {
    /// The id of the target at `address`, one its name resolved to:
    /// `scheme://ADDRESS:port`.
    pub fn at(&self, address: SocketAddr) -> String {
        let scheme = self.base.split("://").next().unwrap_or("http");
        format!("{scheme}://{address}")
    }
}

/// Periodic resolution of the targets' names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveSpec {
    /// Between resolutions.
    pub every: Duration,
    /// `[server] hosts_file`, consulted before the system resolver.
    pub hosts_file: Option<PathBuf>,
}

/// Shortest time between resolutions.
pub const MIN_RESOLVE: Duration = Duration::from_millis(100);

/// Active health checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSpec {
    /// Path and query asked for.
    pub path: String,
    /// Between checks.
    pub interval: Duration,
    /// Per check.
    pub timeout: Duration,
    /// Failed checks in a row that take a target out.
    pub unhealthy: u32,
    /// Good checks in a row that bring it back.
    pub healthy: u32,
}

/// Passive ejection.
#[derive(Debug, Clone, PartialEq)]
pub struct PassiveSpec {
    /// Failures in a row that eject (0: never).
    pub consecutive_failures: u32,
    /// How long.
    pub eject: Duration,
    /// Largest share ejected at once (at least one target may always be).
    pub max_ejected: f64,
}

/// Retries.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySpec {
    /// Retries after the first attempt.
    pub attempts: u32,
    /// After a refused or failed connect.
    pub connect: bool,
    /// After the connection closed before any byte of the answer.
    pub reset: bool,
    /// After a `502` answer (idempotent methods, or the route's opt-in).
    pub bad_gateway: bool,
    /// After a `503` answer (idempotent methods, or the route's opt-in).
    pub unavailable: bool,
    /// Retries as a share of first attempts.
    pub budget: f64,
}

/// A pool's checked settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolSpec {
    /// Targets.
    pub targets: Vec<TargetSpec>,
    /// Balancing.
    pub balance: Balance,
    /// Protocol.
    pub protocol: Protocol,
    /// Active checks.
    pub health: Option<HealthSpec>,
    /// Passive ejection.
    pub passive: PassiveSpec,
    /// Retries.
    pub retries: RetrySpec,
    /// Name resolution (`None`: names are resolved at each new connection).
    pub resolve: Option<ResolveSpec>,
}

impl PoolSpec {
    /// Checks `[upstreams.NAME]`; problems go to `errors`, each naming its key.
    pub fn compile(
        name: &str,
        pool: &UpstreamPool,
        hosts_file: Option<&Path>,
        errors: &mut Vec<String>,
    ) -> Option<Self> {
        let at = format!("upstreams.{name}");
        let before = errors.len();
        if pool.targets.is_empty() {
            errors.push(format!("{at}.targets: a pool needs at least one target"));
        }
        if pool.targets.len() > MAX_TARGETS {
            errors.push(format!("{at}.targets: at most {MAX_TARGETS} targets"));
        }
        let mut targets = Vec::new();
        for (i, t) in pool.targets.iter().enumerate() {
            let at = format!("{at}.targets[{i}]");
            match target(&t.url, pool.protocol) {
                Ok((base, authority, name, port)) => {
                    if targets.iter().any(|o: &TargetSpec| o.base == base) {
                        errors.push(format!("{at}.url: `{base}` is listed twice"));
                    }
                    targets.push(TargetSpec {
                        base,
                        authority,
                        weight: t.weight,
                        name,
                        port,
                    })
                }
                Err(e) => errors.push(format!("{at}.url: {e}")),
            }
            if !(1..=MAX_WEIGHT).contains(&t.weight) {
                errors.push(format!("{at}.weight: must be between 1 and {MAX_WEIGHT}"));
            }
        }
        let balance = balance(&pool.balance)
            .map_err(|e| errors.push(format!("{at}.balance: {e}")))
            .ok();
        let health = pool.health.as_ref().and_then(|h| {
            let at = format!("{at}.health");
            let before = errors.len();
            if !h.path.starts_with('/') || h.path.parse::<http::uri::PathAndQuery>().is_err() {
                errors.push(format!("{at}.path: `{}` is not a path", h.path));
            }
            if h.interval < MIN_INTERVAL {
                errors.push(format!("{at}.interval: must be at least 100ms"));
            }
            config::check_timer(&format!("{at}.interval"), h.interval, errors);
            if h.timeout.is_zero() || h.timeout > h.interval.max(MIN_INTERVAL) {
                errors.push(format!(
                    "{at}.timeout: must be more than 0 and at most the interval"
                ));
            }
            if h.unhealthy == 0 || h.healthy == 0 {
                errors.push(format!(
                    "{at}: `unhealthy` and `healthy` must be at least 1"
                ));
            }
            (errors.len() == before).then(|| HealthSpec {
                path: h.path.clone(),
                interval: h.interval,
                timeout: h.timeout,
                unhealthy: h.unhealthy,
                healthy: h.healthy,
            })
        });
        let max_ejected = percent(&pool.passive.max_ejected).unwrap_or_else(|| {
            errors.push(format!(
                "{at}.passive.max_ejected: `{}` is not a percentage like \"50%\"",
                pool.passive.max_ejected
            ));
            0.0
        });
        config::check_timer(&format!("{at}.passive.eject"), pool.passive.eject, errors);
        if pool.passive.consecutive_failures > 0 && pool.passive.eject.is_zero() {
            errors.push(format!("{at}.passive.eject: must be more than 0"));
        }
        let r = &pool.retries;
        if r.attempts > MAX_ATTEMPTS {
            errors.push(format!(
                "{at}.retries.attempts: at most {MAX_ATTEMPTS} retries"
            ));
        }
        let budget = percent(&r.budget).unwrap_or_else(|| {
            errors.push(format!(
                "{at}.retries.budget: `{}` is not a percentage like \"20%\"",
                r.budget
            ));
            0.0
        });
        for on in &r.on {
            if !matches!(on.as_str(), "connect" | "reset" | "502" | "503") {
                errors.push(format!(
                    "{at}.retries.on: `{on}` is not one of connect, reset, 502, 503"
                ));
            }
        }
        let has = |s: &str| r.on.iter().any(|o| o == s);
        let resolve = pool.resolve.map(|every| {
            if every < MIN_RESOLVE {
                errors.push(format!("{at}.resolve: must be at least 100ms"));
            }
            config::check_timer(&format!("{at}.resolve"), every, errors);
            ResolveSpec {
                every,
                hosts_file: hosts_file.map(Path::to_path_buf),
            }
        });
        if errors.len() > before {
            return None;
        }
        Some(PoolSpec {
            targets,
            balance: balance?,
            protocol: pool.protocol,
            health,
            passive: PassiveSpec {
                consecutive_failures: pool.passive.consecutive_failures,
                eject: pool.passive.eject,
                max_ejected,
            },
            retries: RetrySpec {
                attempts: r.attempts,
                connect: has("connect"),
                reset: has("reset"),
                bad_gateway: has("502"),
                unavailable: has("503"),
                budget,
            },
            resolve,
        })
    }
}

/// A target's `scheme://authority`, `Host`, name (unless an address) and port,
/// checked against the protocol.
fn target(
    url: &str,
    protocol: Protocol,
) -> Result<(String, HeaderValue, Option<String>, u16), String> {
    let url = url.trim_end_matches('/');
    let (scheme, authority) = url
        .split_once("://")
        .ok_or_else(|| format!("`{url}` must start with http:// or https://"))?;
    match (scheme, protocol) {
        ("http", Protocol::Http1 | Protocol::H2c)
        | ("https", Protocol::Http1 | Protocol::Http2) => {}
        ("http" | "https", _) => {
            return Err(format!(
                "`{url}`: protocol {} needs {} targets",
                match protocol {
                    Protocol::Http2 => "http2",
                    _ => "h2c",
                },
                match protocol {
                    Protocol::Http2 => "https://",
                    _ => "http://",
                }
            ));
        }
        _ => return Err(format!("`{url}` must start with http:// or https://")),
    }
    if authority.contains(['/', '?', '#']) {
        return Err(format!(
            "`{url}`: a target is scheme://host:port only; the route's `path` says where"
        ));
    }
    let parsed: http::uri::Authority = authority
        .parse()
        .map_err(|_| format!("`{url}`: invalid host `{authority}`"))?;
    if parsed.as_str().contains('@') || authority.is_empty() {
        return Err(format!("`{url}`: invalid host `{authority}`"));
    }
    let value = HeaderValue::from_str(authority)
        .map_err(|_| format!("`{url}`: invalid host `{authority}`"))?;
    let host = parsed.host();
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let name = bare
        .parse::<std::net::IpAddr>()
        .is_err()
        .then(|| host.to_owned());
    let port = parsed
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    Ok((url.to_owned(), value, name, port))
}

/// `round_robin`, `least_request` or `hash:$request.header.NAME`.
fn balance(text: &str) -> Result<Balance, String> {
    match text {
        "round_robin" => Ok(Balance::RoundRobin),
        "least_request" => Ok(Balance::LeastRequest),
        _ => {
            let header = text.strip_prefix("hash:$request.header.").ok_or_else(|| {
                format!(
                    "`{text}`: expected round_robin, least_request or hash:$request.header.NAME"
                )
            })?;
            HeaderName::try_from(header)
                .map(Balance::Hash)
                .map_err(|_| format!("`{header}` is not a header name"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<PoolSpec, Vec<String>> {
        #[derive(serde::Deserialize)]
        struct One {
            upstreams: std::collections::BTreeMap<String, UpstreamPool>,
        }
        let one: One = toml::from_str(toml_text).unwrap();
        let mut errors = Vec::new();
        PoolSpec::compile("p", &one.upstreams["p"], None, &mut errors).ok_or(errors)
    }

    #[test]
    fn compiles_a_full_pool() {
        let spec = parse(
            r#"
            [upstreams.p]
            targets = [{ url = "http://10.0.0.1:9000/", weight = 3 }, { url = "http://b.internal:9000" }]
            balance = "hash:$request.header.x-user"
            protocol = "h2c"
            health = { path = "/health", interval = "5s", timeout = "1s" }
            passive = { consecutive_failures = 5, eject = "30s", max_ejected = "50%" }
            retries = { attempts = 2, on = ["connect", "503"], budget = "20%" }
            "#,
        )
        .unwrap();
        assert_eq!(spec.targets[0].base, "http://10.0.0.1:9000");
        assert_eq!(spec.targets[0].weight, 3);
        assert_eq!(spec.targets[1].weight, 1);
        assert_eq!(
            spec.balance,
            Balance::Hash(HeaderName::from_static("x-user"))
        );
        let h = spec.health.unwrap();
        assert_eq!((h.unhealthy, h.healthy), (3, 2));
        assert!(spec.retries.connect && spec.retries.unavailable);
        assert!(!spec.retries.reset && !spec.retries.bad_gateway);
        assert_eq!(spec.passive.max_ejected, 0.5);
    }

    #[test]
    fn refuses_bad_pools_naming_the_key() {
        for (body, want) in [
            (
                "targets = []",
                "upstreams.p.targets: a pool needs at least one target",
            ),
            (
                r#"targets = [{ url = "http://a:1/x" }]"#,
                "upstreams.p.targets[0].url: `http://a:1/x`: a target is scheme://host:port only",
            ),
            (
                r#"targets = [{ url = "http://a:1", weight = 0 }]"#,
                "upstreams.p.targets[0].weight",
            ),
            (
                r#"targets = [{ url = "http://a:1" }]
                protocol = "http2""#,
                "protocol http2 needs https:// targets",
            ),
            (
                r#"targets = [{ url = "http://a:1" }]
                balance = "random""#,
                "upstreams.p.balance",
            ),
            (
                r#"targets = [{ url = "http://a:1" }]
                retries = { on = ["500"] }"#,
                "`500` is not one of",
            ),
            (
                r#"targets = [{ url = "http://a:1" }]
                passive = { max_ejected = "half" }"#,
                "upstreams.p.passive.max_ejected",
            ),
            (
                r#"targets = [{ url = "http://a:1" }]
                health = { path = "health", interval = "10ms" }"#,
                "upstreams.p.health.path",
            ),
        ] {
            let errors = parse(&format!("[upstreams.p]\n{body}")).unwrap_err();
            assert!(
                errors.iter().any(|e| e.contains(want)),
                "{body}: {errors:?}"
            );
        }
    }
}
