//! `[cluster]`: several nodes sharing their limits and WebSocket connections through
//! Redis (or a Redis-protocol server such as Valkey).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// `[cluster]`: absent, a node keeps its limits and connections in memory.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// `redis://` or `rediss://` URL; a list of them for Redis Cluster.
    pub redis: Option<RedisUrls>,
    /// The environment variable holding that URL (or a comma-separated list).
    pub redis_env: Option<String>,
    /// This node's name in the shared store (default: host name and process id).
    pub node_id: Option<String>,
    /// What a node does while the store cannot answer.
    #[serde(default)]
    pub on_store_error: OnStoreError,
    /// How limits are taken from the store.
    #[serde(default)]
    pub mode: ClusterMode,
    /// Longest a request waits for the store (default 5ms); past it, `on_store_error`.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// In `lease` mode: how much of its own demand a node takes at once (default 50ms).
    #[serde(default = "default_lease", with = "humantime_serde")]
    pub lease: Duration,
    /// Prefix of every key and channel (default `weir`), so gateways can share a store.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// How long a node's connections stay registered after it stops refreshing them
    /// (default 30s; refreshed every third of it).
    #[serde(default = "default_connection_ttl", with = "humantime_serde")]
    pub connection_ttl: Duration,
    /// With `rediss://`: the authorities (PEM) the store's certificate must chain to,
    /// instead of the system's (relative to the config file).
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// With `rediss://`: the certificate (PEM) this node presents to a store that asks
    /// for one (Redis does by default: `tls-auth-clients yes`).
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// The key of `tls_cert` (PEM).
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
}

/// One URL, or several (Redis Cluster seed nodes).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum RedisUrls {
    /// One server (or a cluster reached through one seed).
    One(String),
    /// Redis Cluster seed nodes.
    Many(Vec<String>),
}

/// What a node does while the shared store cannot answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnStoreError {
    /// Decide on this node's own buckets and counters (each node then allows the full
    /// limits by itself).
    #[default]
    Local,
    /// Refuse with `503`.
    Deny,
}

/// How limits are taken from the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterMode {
    /// A node takes tokens in batches sized to its demand and hands them out locally.
    #[default]
    Lease,
    /// Every request asks the store (requests in flight share one pipelined connection).
    Exact,
}

/// Shortest and longest `timeout`.
const TIMEOUTS: (Duration, Duration) = (Duration::from_millis(1), Duration::from_secs(10));
/// Shortest and longest `lease`.
const LEASES: (Duration, Duration) = (Duration::from_millis(1), Duration::from_secs(1));
/// Shortest and longest `connection_ttl`.
const CONNECTION_TTLS: (Duration, Duration) = (Duration::from_secs(3), Duration::from_secs(3600));

fn default_timeout() -> Duration {
    Duration::from_millis(5)
}
fn default_lease() -> Duration {
    Duration::from_millis(50)
}
fn default_prefix() -> String {
    "weir".to_owned()
}
fn default_connection_ttl() -> Duration {
    Duration::from_secs(30)
}

/// A name usable in keys and channels: 1 to 64 characters, none a space, a control
/// character or a brace (braces are Redis Cluster hash tags).
fn check_name(key: &str, name: &str, errors: &mut Vec<String>) {
    let ok = (1..=64).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '{' && c != '}');
    if !ok {
        errors.push(format!(
            "cluster.{key}: must be 1 to 64 characters without spaces, control characters or braces"
        ));
    }
}

impl Cluster {
    /// The store's URLs: `redis`, or the value of `redis_env` (commas separate several).
    /// Errors name the key; a URL is never echoed (it may hold a password).
    pub fn urls(&self) -> Result<Vec<String>, String> {
        let urls = match (&self.redis, &self.redis_env) {
            (Some(_), Some(_)) => {
                return Err("cluster.redis: set `redis` or `redis_env`, not both".to_owned());
            }
            (None, None) => return Err("cluster.redis: `redis` or `redis_env` is required".into()),
            (Some(RedisUrls::One(u)), None) => vec![u.clone()],
            (Some(RedisUrls::Many(u)), None) => u.clone(),
            (None, Some(var)) => match std::env::var(var) {
                Ok(v) => v.split(',').map(|u| u.trim().to_owned()).collect(),
                Err(_) => {
                    return Err(format!(
                        "cluster.redis_env: the environment variable `{var}` is not set"
                    ));
                }
            },
        };
        let key = if self.redis.is_some() {
            "redis"
        } else {
            "redis_env"
        };
        if urls.is_empty() || urls.iter().all(|u| u.is_empty()) {
            return Err(format!("cluster.{key}: no URL given"));
        }
        for (i, u) in urls.iter().enumerate() {
            let at = if urls.len() > 1 {
                format!("cluster.{key}[{i}]")
            } else {
                format!("cluster.{key}")
            };
            let Some((scheme, rest)) = u.split_once("://") else {
                return Err(format!("{at}: not a redis:// or rediss:// URL"));
            };
            if !matches!(scheme, "redis" | "rediss") {
                return Err(format!(
                    "{at}: the scheme must be redis:// or rediss://, not {scheme}://"
                ));
            }
            let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
            if host.is_empty() || host.starts_with('/') {
                return Err(format!("{at}: the URL names no host"));
            }
        }
        Ok(urls)
    }

    /// Every problem with the table, each naming its key (the URL's environment
    /// variable is read).
    pub fn check(&self, errors: &mut Vec<String>) {
        match self.urls() {
            Err(e) => errors.push(e),
            Ok(urls) => {
                let tls = self.tls_ca_file.is_some() || self.tls_cert.is_some();
                if tls && !urls.iter().all(|u| u.starts_with("rediss://")) {
                    errors.push(
                        "cluster.tls_ca_file, tls_cert: need rediss:// URLs (TLS to the store)"
                            .to_owned(),
                    );
                }
            }
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => errors.push("cluster.tls_cert needs tls_key".to_owned()),
            (None, Some(_)) => errors.push("cluster.tls_key needs tls_cert".to_owned()),
            _ => {}
        }
        if let Some(node) = &self.node_id {
            check_name("node_id", node, errors);
        }
        check_name("prefix", &self.prefix, errors);
        let within =
            |key: &str, d: Duration, (lo, hi): (Duration, Duration), errors: &mut Vec<String>| {
                if d < lo || d > hi {
                    errors.push(format!(
                        "cluster.{key}: {} is not between {} and {}",
                        humantime::format_duration(d),
                        humantime::format_duration(lo),
                        humantime::format_duration(hi)
                    ));
                }
            };
        within("timeout", self.timeout, TIMEOUTS, errors);
        within("lease", self.lease, LEASES, errors);
        within(
            "connection_ttl",
            self.connection_ttl,
            CONNECTION_TTLS,
            errors,
        );
    }

    /// `node_id`, or this host's name and the process id.
    pub fn node_id(&self) -> String {
        if let Some(id) = &self.node_id {
            return id.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| {
                h.trim()
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
                    .take(40)
                    .collect::<String>()
            })
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "weir".to_owned());
        format!("{host}-{}", std::process::id())
    }
}
