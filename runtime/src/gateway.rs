//! Compiles a [`Config`] into the [`Gateway`] the server runs: parsed route keys in a
//! route table, loaded plugins bound to routes, parsed upstream templates. Every
//! semantic check of `weir validate` happens here (plugins are loaded by
//! [`crate::reload`]), and each error names the key it is about.
//!
//! A `Gateway` is one immutable snapshot: a reload compiles a new one and swaps it in.
//! Limit state (buckets, quota counters) is not part of it; it comes from the
//! long-lived [`UsageState`] by name.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytesize::ByteSize;

use crate::access_log::AccessLogFormat;
use crate::authorize::{AuthorizerCache, RouteAuthorizer};
use crate::catalog::Catalog;
use crate::config::{Config, FailurePolicy, MIN_TIMEOUT, World, check_timer};
use crate::cors::CorsCache;
use crate::integrate::{Integration, RouteContext};
use crate::ip_policy::{IpPolicy, TrustedProxies};
use crate::lambda::{self, FunctionSet, Functions};
use crate::map::Mapper;
use crate::plugin::{self, AnyPlugin, CorsPlugin};
use crate::pool::{PoolSet, Pools};
use crate::route::{RouteKey, RouteTable};
use crate::usage::{self, Usage, UsageState};
use crate::websocket::api::{self as websocket_api, WebSocketApi, WebSockets};

/// The snapshot the request path reads; a reload swaps it whole.
pub type LiveGateway = Arc<ArcSwap<Gateway>>;

/// Everything wrong with a config, one line per problem, each naming its key.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            f.write_str(e)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// One route, ready to serve.
pub struct Route {
    /// The key as written in canonical form, e.g. `GET /pets/{id}`.
    pub key: Arc<str>,
    /// Where requests go.
    pub integration: Integration,
    /// The authorizer, if any.
    pub authorizer: Option<RouteAuthorizer>,
    /// The request mapper, if any.
    pub request_mapping: Option<Mapper>,
    /// The response mapper, if any.
    pub response_mapping: Option<Mapper>,
    /// The integration timeout.
    pub timeout: Duration,
    /// Whether the answer is passed on as it arrives (`stream = true`).
    pub stream: bool,
    /// The route's own address lists, checked after the API's.
    pub ip_policy: Option<IpPolicy>,
}

/// Request limits in force.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body, bytes.
    pub max_body: u64,
    /// Largest response body, bytes.
    pub max_response_body: u64,
    /// Largest request line plus headers, bytes.
    pub max_header_bytes: usize,
    /// Time a client has to send the body.
    pub body_read_timeout: Duration,
}

/// The compiled gateway: what the request path reads, never writes (but for caches).
pub struct Gateway {
    /// The route table.
    pub table: RouteTable,
    /// Routes by the table's indices.
    pub routes: Vec<Route>,
    /// The API-wide CORS policy.
    pub cors: Option<CorsPlugin>,
    /// Limits.
    pub limits: Limits,
    /// `$context.stage`.
    pub stage: Arc<str>,
    /// Cached authorizer decisions.
    pub auth_cache: AuthorizerCache,
    /// Cached CORS headers (`[api] cors_cache`).
    pub cors_cache: CorsCache,
    /// Which access-log fields to write.
    pub access_log: AccessLogFormat,
    /// Who may call the API at all (`[api] ip_allow`, `ip_deny`).
    pub ip_policy: Option<IpPolicy>,
    /// Whose `X-Forwarded-For` names the client (`[server] trusted_proxies`).
    pub trusted_proxies: TrustedProxies,
    /// Throttle levels, API keys, usage plans and quotas.
    pub usage: Usage,
    /// WebSocket APIs.
    pub websockets: WebSockets,
    /// Every plugin loaded, by name, whether a route uses it or not.
    pub plugins: BTreeMap<String, AnyPlugin>,
    /// The functions of `[functions]` (their processes live in [`Functions`]).
    pub functions: FunctionSet,
    /// The pools of `[upstreams]` (their health lives in [`Pools`]).
    pub pools: PoolSet,
}

impl Gateway {
    /// Where `plugin` is used: `api.cors`, route keys and WebSocket routes.
    pub fn uses_of(&self, plugin: &str) -> Vec<String> {
        let named = |p: Option<&Arc<str>>| p.is_some_and(|p| &**p == plugin);
        let mapper = |m: &Option<Mapper>| named(m.as_ref().map(|m| m.plugin.name()));
        let authorizer = |a: &Option<RouteAuthorizer>| named(a.as_ref().map(|a| a.plugin.name()));
        let mut uses = Vec::new();
        if named(self.cors.as_ref().map(|p| p.name())) {
            uses.push("api.cors".to_owned());
        }
        for r in &self.routes {
            if authorizer(&r.authorizer)
                || mapper(&r.request_mapping)
                || mapper(&r.response_mapping)
            {
                uses.push(r.key.to_string());
            }
        }
        for api in self.websockets.iter() {
            let routes = [&api.connect, &api.disconnect, &api.default]
                .into_iter()
                .flatten()
                .chain(api.routes.values());
            for r in routes {
                if authorizer(&r.authorizer) || mapper(&r.request_mapping) {
                    uses.push(format!("websocket.{} {}", api.name, r.key));
                }
            }
        }
        uses
    }

    /// The WebSocket API on `path`, if one is there.
    pub fn websocket_at(&self, path: &str) -> Option<&WebSocketApi> {
        self.websockets.at(path)
    }

    /// The WebSocket API named `name`.
    pub fn websocket(&self, name: &str) -> Option<&WebSocketApi> {
        self.websockets.named(name)
    }
}

/// A plugin's checked settings from `[plugins.NAME]`.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginSettings {
    /// The component file, relative to the config file.
    pub file: std::path::PathBuf,
    /// Its world.
    pub world: World,
    /// Deadline and memory cap.
    pub limits: plugin::Limits,
    /// Its `config` table as JSON.
    pub config_json: String,
    /// Whether a new version is called once before it serves.
    pub smoke_test: bool,
}

/// Checks every `[plugins.NAME]` table (but loads nothing); errors go to `errors`.
pub fn plugin_settings(
    config: &Config,
    errors: &mut Vec<String>,
) -> BTreeMap<String, PluginSettings> {
    let mut settings = BTreeMap::new();
    for (name, spec) in &config.plugins {
        let at = format!("plugins.{name}");
        let mut ok = true;
        if spec.deadline().is_zero() || spec.deadline() > Duration::from_secs(60) {
            errors.push(format!("{at}.deadline: must be between 1ms and 60s"));
            ok = false;
        }
        let max_memory = spec.max_memory.as_u64();
        if !(64 * 1024..=plugin::MEMORY_CEILING).contains(&max_memory) {
            errors.push(format!("{at}.max_memory: must be between 64KiB and 1GiB"));
            ok = false;
        }
        if spec.reuse > plugin::MAX_REUSE {
            errors.push(format!(
                "{at}.reuse: must be at most {} calls per instance",
                plugin::MAX_REUSE
            ));
            ok = false;
        }
        if !(1..=plugin::MAX_CONCURRENCY).contains(&spec.concurrency) {
            errors.push(format!(
                "{at}.concurrency: must be between 1 and {} calls at once",
                plugin::MAX_CONCURRENCY
            ));
            ok = false;
        }
        if spec.failure == FailurePolicy::FailOpen && spec.world != World::Mapper {
            errors.push(format!(
                "{at}.failure: only mappers may fail open; {} plugins always fail closed",
                spec.world.name()
            ));
            ok = false;
        }
        let allowed = match plugin::Allowed::parse(&spec.allow_outbound) {
            Ok(a) => a,
            Err(e) => {
                errors.push(format!("{at}.allow_outbound: {e}"));
                ok = false;
                plugin::Allowed::default()
            }
        };
        if !allowed.is_empty() && !matches!(spec.world, World::Function | World::Authorizer) {
            errors.push(format!(
                "{at}.allow_outbound: only `function` and `authorizer` plugins make outbound requests"
            ));
            ok = false;
        }
        let config_json = match serde_json::to_string(&spec.config) {
            Ok(json) => json,
            Err(e) => {
                errors.push(format!("{at}.config: cannot be expressed as JSON: {e}"));
                ok = false;
                String::new()
            }
        };
        if ok {
            settings.insert(
                name.clone(),
                PluginSettings {
                    file: spec.file.clone(),
                    world: spec.world,
                    limits: plugin::Limits {
                        deadline: spec.deadline(),
                        max_memory: max_memory as usize,
                        reuse: spec.reuse,
                        concurrency: spec.concurrency,
                        allowed,
                    },
                    config_json,
                    smoke_test: spec.smoke_test,
                },
            );
        }
    }
    settings
}

/// Compiles `config` around already loaded `plugins` (those of `[plugins]` that loaded,
/// plus any loaded through the admin API), with limit state from `state`, the
/// running functions of `functions` (new ones are made, not started) and the serving
/// pools of `pools` (likewise). `errors` holds problems found while loading, reported
/// with the rest.
pub fn assemble(
    config: &Config,
    plugins: BTreeMap<String, AnyPlugin>,
    base_dir: &Path,
    state: &UsageState,
    (functions, pools): (&Functions, &Pools),
    load_errors: Vec<String>,
) -> Result<Gateway, ConfigErrors> {
    let mut errors = Vec::new();
    let limits = &config.limits;
    if limits.integration_timeout < MIN_TIMEOUT {
        errors.push(format!(
            "limits.integration_timeout: {} is below the 50ms minimum",
            humantime::format_duration(limits.integration_timeout)
        ));
    }
    check_timer(
        "limits.integration_timeout",
        limits.integration_timeout,
        &mut errors,
    );
    for (key, d) in [
        ("header_read_timeout", config.server.header_read_timeout),
        ("body_read_timeout", config.server.body_read_timeout),
        ("shutdown_grace", config.server.shutdown_grace),
    ] {
        check_timer(&format!("server.{key}"), d, &mut errors);
    }
    if config.server.body_read_timeout < Duration::from_millis(100) {
        errors.push("server.body_read_timeout: must be at least 100ms".to_owned());
    }
    if config.server.max_connections == 0 {
        errors.push("server.max_connections: must be at least 1".to_owned());
    }
    if limits.compile_memory < ByteSize::mib(16) {
        errors.push("limits.compile_memory: must be at least 16MiB".to_owned());
    }
    if limits.max_header_bytes < 256 {
        errors.push("limits.max_header_bytes: must be at least 256".to_owned());
    }

    let access_log = AccessLogFormat::new(
        config.access_log.enabled,
        config.access_log.fields.as_deref(),
    )
    .unwrap_or_else(|e| {
        errors.push(format!("access_log.fields: {e}"));
        AccessLogFormat::default()
    });
    errors.extend(load_errors);
    if let Some(admin) = &config.admin
        && let Err(e) = admin.token()
    {
        errors.push(e);
    }
    if let Some(cluster) = &config.cluster {
        cluster.check(&mut errors);
    }
    let function_set = functions.prepare(lambda::specs(config, base_dir, &mut errors));
    let pool_set = pools.prepare(config, base_dir, &mut errors);
    let catalog = Catalog::new(config, plugins);
    let cors = config
        .api
        .cors
        .as_deref()
        .and_then(|name| catalog.cors(name, "api.cors", &mut errors));

    let mut keys = Vec::new();
    let mut routes = Vec::new();
    let mut canonical_keys = Vec::new();
    for (i, r) in config.routes.iter().enumerate() {
        let at = format!("routes[{i}]");
        let key: RouteKey = match r.key.parse() {
            Ok(k) => k,
            Err(e) => {
                errors.push(format!("{at}.key: invalid route key `{}`: {e}", r.key));
                canonical_keys.push(None);
                continue;
            }
        };
        canonical_keys.push(Some(key.to_string()));
        let at = format!("{at} (`{key}`)");
        let params = route_params(&key);
        let compile = RouteContext {
            params: &params,
            functions: &function_set,
            pools: &pool_set,
            upstream_tables: &config.upstreams,
            request_mapped: r.request_mapping.is_some(),
            response_mapped: r.response_mapping.is_some(),
            catalog: &catalog,
            at: &at,
        };
        let integration = match Integration::compile_route(&r.integration, &compile) {
            Ok(i) => Some(i),
            Err(e) => {
                errors.push(format!("{at}.integration: {e}"));
                None
            }
        };
        let timeout = r.timeout.unwrap_or(limits.integration_timeout);
        if timeout < MIN_TIMEOUT {
            errors.push(format!(
                "{at}.timeout: {} is below the 50ms minimum",
                humantime::format_duration(timeout)
            ));
        }
        if let Some(t) = r.timeout {
            check_timer(&format!("{at}.timeout"), t, &mut errors);
        }
        let authorizer = r.authorizer.as_ref().and_then(|a| {
            RouteAuthorizer::compile(a, &format!("{at}.authorizer"), &catalog, &mut errors)
        });
        let mapper = |name: &str, key: &str, errors: &mut Vec<String>| {
            Mapper::compile(name, &format!("{at}.{key}"), &catalog, errors)
        };
        let request_mapping = r
            .request_mapping
            .as_deref()
            .and_then(|name| mapper(name, "request_mapping", &mut errors));
        let response_mapping = r
            .response_mapping
            .as_deref()
            .and_then(|name| mapper(name, "response_mapping", &mut errors));
        if r.stream && r.response_mapping.is_some() {
            errors.push(format!(
                "{at}.stream: a response mapper needs the whole answer; set `stream` or `response_mapping`, not both"
            ));
        }
        if r.stream
            && !matches!(
                integration,
                None | Some(Integration::Http(_) | Integration::Pool(_))
            )
        {
            errors.push(format!("{at}.stream: only http integrations stream"));
        }
        let ip_policy = IpPolicy::new(&r.ip_allow, &r.ip_deny).unwrap_or_else(|e| {
            errors.push(format!("{at}.{e}"));
            None
        });
        if let Some(integration) = integration {
            routes.push(Route {
                key: key.to_string().into(),
                integration,
                authorizer,
                request_mapping,
                response_mapping,
                timeout,
                stream: r.stream,
                ip_policy,
            });
            keys.push(key);
        }
    }
    let usage = usage::compile(config, &canonical_keys, base_dir, state, &mut errors);
    let ip_policy = IpPolicy::new(&config.api.ip_allow, &config.api.ip_deny).unwrap_or_else(|e| {
        errors.push(format!("api.{e}"));
        None
    });
    let trusted_proxies =
        TrustedProxies::parse(&config.server.trusted_proxies).unwrap_or_else(|e| {
            errors.push(format!("server.{e}"));
            TrustedProxies::default()
        });
    let websockets = websocket_api::compile(config, &catalog, state, &mut errors);
    let table = match RouteTable::new(&keys) {
        Ok(t) => t,
        Err(e) => {
            errors.push(format!("routes: {e}"));
            RouteTable::default()
        }
    };
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    Ok(Gateway {
        table,
        routes,
        cors,
        limits: Limits {
            max_body: limits.max_body.as_u64(),
            max_response_body: limits.max_response_body.as_u64(),
            max_header_bytes: limits.max_header_bytes,
            body_read_timeout: config.server.body_read_timeout,
        },
        stage: config.server.stage.as_str().into(),
        auth_cache: AuthorizerCache::default(),
        cors_cache: CorsCache::new(config.api.cors_cache.unwrap_or_default()),
        access_log,
        ip_policy,
        trusted_proxies,
        usage,
        websockets,
        plugins: catalog.into_loaded(),
        functions: function_set,
        pools: pool_set,
    })
}

fn route_params(key: &RouteKey) -> Vec<String> {
    match key {
        RouteKey::Default => Vec::new(),
        RouteKey::Route { segments, .. } => segments
            .iter()
            .filter_map(|s| match s {
                crate::route::Segment::Param(p) | crate::route::Segment::Greedy(p) => {
                    Some(p.clone())
                }
                crate::route::Segment::Literal(_) => None,
            })
            .collect(),
    }
}
