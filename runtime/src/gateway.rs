//! Compiles a [`Config`] once into the [`Gateway`] the server runs: parsed route keys in a
//! route table, loaded plugins, parsed upstream templates. Every semantic check of
//! `weir validate` happens here, and each error names the key it is about.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, StatusCode};

use crate::access_log::AccessLogFormat;
use crate::authorize::{AuthorizerCache, IdentitySource, RouteAuthorizer};
use crate::config::{self, Config, World};
use crate::integrate::{HttpTarget, Integration, MockResponse};
use crate::plugin::{self, Plugin, PluginHost};
use crate::route::{RouteKey, RouteTable};
use crate::usage::{self, Usage};

/// Shortest integration timeout AWS allows.
const MIN_TIMEOUT: Duration = Duration::from_millis(50);
/// Longest authorizer cache TTL.
const MAX_AUTH_TTL: Duration = Duration::from_secs(3600);

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
    pub request_mapping: Option<Plugin>,
    /// The response mapper, if any.
    pub response_mapping: Option<Plugin>,
    /// The integration timeout.
    pub timeout: Duration,
}

/// Request limits in force.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest body, bytes.
    pub max_body: u64,
    /// Largest request line plus headers, bytes.
    pub max_header_bytes: usize,
}

/// The compiled gateway: what the request path reads, never writes (but for caches).
pub struct Gateway {
    /// The route table.
    pub table: RouteTable,
    /// Routes by the table's indices.
    pub routes: Vec<Route>,
    /// The API-wide CORS policy.
    pub cors: Option<Plugin>,
    /// Limits.
    pub limits: Limits,
    /// `$context.stage`.
    pub stage: Arc<str>,
    /// Cached authorizer decisions.
    pub auth_cache: AuthorizerCache,
    /// Which access-log fields to write.
    pub access_log: AccessLogFormat,
    /// Throttle levels, API keys, usage plans and quotas.
    pub usage: Usage,
}

/// Compiles `config`; plugin files are resolved against `base_dir` and loaded by `host`.
pub fn compile(
    config: &Config,
    base_dir: &Path,
    host: &PluginHost,
) -> Result<Gateway, ConfigErrors> {
    let mut errors = Vec::new();
    let limits = &config.limits;
    if limits.integration_timeout < MIN_TIMEOUT {
        errors.push(format!(
            "limits.integration_timeout: {} is below the 50ms minimum",
            humantime::format_duration(limits.integration_timeout)
        ));
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
    let plugins = load_plugins(config, base_dir, host, &mut errors);
    let plugin_of = |name: &str, world: World, key: &str, errors: &mut Vec<String>| {
        match config.plugins.get(name) {
            None => {
                errors.push(format!(
                    "{key}: plugin `{name}` is not defined in [plugins]"
                ));
                None
            }
            Some(spec) if spec.world != world => {
                errors.push(format!(
                    "{key}: plugin `{name}` implements the `{}` world, but a `{}` plugin is needed here",
                    spec.world.name(),
                    world.name()
                ));
                None
            }
            // `None` here means it failed to load, which is already reported.
            Some(_) => plugins.get(name).cloned(),
        }
    };

    let cors = config
        .api
        .cors
        .as_deref()
        .and_then(|name| plugin_of(name, World::Cors, "api.cors", &mut errors));

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
        let integration = match compile_integration(&r.integration, &params) {
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
        let authorizer = r.authorizer.as_ref().and_then(|a| {
            let at = format!("{at}.authorizer");
            let plugin = plugin_of(&a.plugin, World::Authorizer, &at, &mut errors);
            if a.ttl > MAX_AUTH_TTL {
                errors.push(format!("{at}.ttl: at most 3600s"));
            }
            if a.identity_source.is_empty() {
                errors.push(format!("{at}.identity_source: needs at least one source"));
            }
            let mut sources = Vec::new();
            for s in &a.identity_source {
                match s.parse::<IdentitySource>() {
                    Ok(src) => sources.push(src),
                    Err(e) => errors.push(format!("{at}.identity_source: {e}")),
                }
            }
            Some(RouteAuthorizer {
                plugin: plugin?,
                identity: sources,
                ttl: a.ttl,
                scopes: a.scopes.clone(),
            })
        });
        let request_mapping = r.request_mapping.as_deref().and_then(|name| {
            plugin_of(
                name,
                World::Mapper,
                &format!("{at}.request_mapping"),
                &mut errors,
            )
        });
        let response_mapping = r.response_mapping.as_deref().and_then(|name| {
            plugin_of(
                name,
                World::Mapper,
                &format!("{at}.response_mapping"),
                &mut errors,
            )
        });
        if let Some(integration) = integration {
            routes.push(Route {
                key: key.to_string().into(),
                integration,
                authorizer,
                request_mapping,
                response_mapping,
                timeout,
            });
            keys.push(key);
        }
    }
    let usage = usage::compile(config, &canonical_keys, base_dir, &mut errors);
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
            max_header_bytes: limits.max_header_bytes,
        },
        stage: config.server.stage.as_str().into(),
        auth_cache: AuthorizerCache::default(),
        access_log,
        usage,
    })
}

fn load_plugins(
    config: &Config,
    base_dir: &Path,
    host: &PluginHost,
    errors: &mut Vec<String>,
) -> BTreeMap<String, Plugin> {
    let mut plugins = BTreeMap::new();
    for (name, spec) in &config.plugins {
        let at = format!("plugins.{name}");
        let mut ok = true;
        if spec.deadline.is_zero() || spec.deadline > Duration::from_secs(60) {
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
        let config_json = match serde_json::to_string(&spec.config) {
            Ok(json) => json,
            Err(e) => {
                errors.push(format!("{at}.config: cannot be expressed as JSON: {e}"));
                ok = false;
                String::new()
            }
        };
        if !ok {
            continue;
        }
        let limits = plugin::Limits {
            deadline: spec.deadline,
            max_memory: max_memory as usize,
            reuse: spec.reuse,
        };
        match host.load(
            name,
            &base_dir.join(&spec.file),
            spec.world,
            limits,
            config_json,
        ) {
            Ok(p) => {
                plugins.insert(name.clone(), p);
            }
            Err(e) => errors.push(format!("{at}.file: {e}")),
        }
    }
    plugins
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

fn compile_integration(
    integration: &config::Integration,
    params: &[String],
) -> Result<Integration, String> {
    match integration {
        config::Integration::Http { url } => HttpTarget::parse(url, params).map(Integration::Http),
        config::Integration::Mock {
            status,
            headers,
            body,
        } => {
            let status = StatusCode::from_u16(*status)
                .ok()
                .filter(|s| (200..=599).contains(&s.as_u16()))
                .ok_or_else(|| format!("status {status} is not between 200 and 599"))?;
            let mut compiled = Vec::new();
            for (name, value) in headers {
                let n = HeaderName::try_from(name.as_str())
                    .map_err(|_| format!("invalid header name `{name}`"))?;
                let v = HeaderValue::try_from(value.as_str())
                    .map_err(|_| format!("invalid value for header `{name}`"))?;
                compiled.push((n, v));
            }
            Ok(Integration::Mock(Arc::new(MockResponse {
                status,
                headers: compiled,
                body: bytes::Bytes::from(body.clone()),
            })))
        }
    }
}
