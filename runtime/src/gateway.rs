//! Compiles a [`Config`] into the [`Gateway`] the server runs: parsed route keys in a
//! route table, loaded plugins bound to routes, parsed upstream templates. Every
//! semantic check of `weir validate` happens here (plugins are loaded by
//! [`crate::reload`]), and each error names the key it is about.
//!
//! A `Gateway` is one immutable snapshot: a reload compiles a new one and swaps it in.
//! Limit state (buckets, quota counters) is not part of it; it comes from the
//! long-lived [`UsageState`] by name.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytesize::ByteSize;
use http::{HeaderName, HeaderValue, StatusCode};

use crate::access_log::AccessLogFormat;
use crate::authorize::{AuthorizerCache, IdentitySource, RouteAuthorizer};
use crate::config::{self, Config, FailurePolicy, World};
use crate::cors::CorsCache;
use crate::integrate::{HttpTarget, Integration, MockResponse};
use crate::map::Mapper;
use crate::plugin::{self, Plugin};
use crate::route::{RouteKey, RouteTable};
use crate::throttle;
use crate::usage::{self, Usage, UsageState};
use crate::websocket::{self, Selection, WebSocketApi, WsRoute};

/// Shortest integration timeout AWS allows.
const MIN_TIMEOUT: Duration = Duration::from_millis(50);
/// Longest authorizer cache TTL.
const MAX_AUTH_TTL: Duration = Duration::from_secs(3600);
/// Longest timeout or grace period: timers are armed as `now + duration`, which must
/// not overflow the clock (a duration near `u64::MAX` seconds would panic there).
const MAX_TIMER: Duration = Duration::from_secs(365 * 24 * 3600);

/// Refuses a timer setting above [`MAX_TIMER`].
fn check_timer(key: &str, d: Duration, errors: &mut Vec<String>) {
    if d > MAX_TIMER {
        errors.push(format!(
            "{key}: {} is above the 365-day maximum",
            humantime::format_duration(d)
        ));
    }
}

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
    pub cors: Option<Plugin>,
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
    /// Throttle levels, API keys, usage plans and quotas.
    pub usage: Usage,
    /// WebSocket APIs.
    pub websockets: WebSockets,
    /// Every plugin loaded, by name, whether a route uses it or not.
    pub plugins: BTreeMap<String, Plugin>,
}

impl Gateway {
    /// Where `plugin` is used: `api.cors`, route keys and WebSocket routes.
    pub fn uses_of(&self, plugin: &str) -> Vec<String> {
        let named = |p: Option<&Plugin>| p.is_some_and(|p| &**p.name() == plugin);
        let mut uses = Vec::new();
        if named(self.cors.as_ref()) {
            uses.push("api.cors".to_owned());
        }
        for r in &self.routes {
            if named(r.authorizer.as_ref().map(|a| &a.plugin))
                || named(r.request_mapping.as_ref().map(|m| &m.plugin))
                || named(r.response_mapping.as_ref().map(|m| &m.plugin))
            {
                uses.push(r.key.to_string());
            }
        }
        for api in &self.websockets.apis {
            let routes = [&api.connect, &api.disconnect, &api.default]
                .into_iter()
                .flatten()
                .chain(api.routes.values());
            for r in routes {
                if named(r.authorizer.as_ref().map(|a| &a.plugin))
                    || named(r.request_mapping.as_ref().map(|m| &m.plugin))
                {
                    uses.push(format!("websocket.{} {}", api.name, r.key));
                }
            }
        }
        uses
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
                        deadline: spec.deadline,
                        max_memory: max_memory as usize,
                        reuse: spec.reuse,
                        concurrency: spec.concurrency,
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
/// plus any loaded through the admin API), with limit state from `state`. `errors`
/// holds problems found while loading, reported with the rest.
pub fn assemble(
    config: &Config,
    plugins: BTreeMap<String, Plugin>,
    base_dir: &Path,
    state: &UsageState,
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
    let plugins = Plugins {
        config,
        loaded: plugins,
    };
    let cors = config
        .api
        .cors
        .as_deref()
        .and_then(|name| plugins.get(name, World::Cors, "api.cors", &mut errors));

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
        if let Some(t) = r.timeout {
            check_timer(&format!("{at}.timeout"), t, &mut errors);
        }
        let authorizer = r.authorizer.as_ref().and_then(|a| {
            compile_authorizer(a, &format!("{at}.authorizer"), &plugins, &mut errors)
        });
        let request_mapping = r
            .request_mapping
            .as_deref()
            .and_then(|name| plugins.mapper(name, &format!("{at}.request_mapping"), &mut errors));
        let response_mapping = r
            .response_mapping
            .as_deref()
            .and_then(|name| plugins.mapper(name, &format!("{at}.response_mapping"), &mut errors));
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
    let usage = usage::compile(config, &canonical_keys, base_dir, state, &mut errors);
    let websockets = compile_websockets(config, &plugins, state, &mut errors);
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
        usage,
        websockets,
        plugins: plugins.loaded,
    })
}

/// The plugins of a config, loaded, looked up by the keys that name them.
struct Plugins<'a> {
    config: &'a Config,
    loaded: BTreeMap<String, Plugin>,
}

impl Plugins<'_> {
    /// The plugin `name` for `key`, which needs a `world` plugin.
    fn get(&self, name: &str, world: World, key: &str, errors: &mut Vec<String>) -> Option<Plugin> {
        let defined = self
            .config
            .plugins
            .get(name)
            .map(|spec| spec.world)
            .or_else(|| self.loaded.get(name).map(Plugin::world));
        match defined {
            None => {
                errors.push(format!(
                    "{key}: plugin `{name}` is not defined in [plugins]"
                ));
                None
            }
            Some(defined) if defined != world => {
                errors.push(format!(
                    "{key}: plugin `{name}` implements the `{}` world, but a `{}` plugin is needed here",
                    defined.name(),
                    world.name()
                ));
                None
            }
            // `None` here means it failed to load, which is already reported.
            Some(_) => self.loaded.get(name).cloned(),
        }
    }

    /// The mapper `name` for `key`, with its failure policy.
    fn mapper(&self, name: &str, key: &str, errors: &mut Vec<String>) -> Option<Mapper> {
        let plugin = self.get(name, World::Mapper, key, errors)?;
        Some(Mapper {
            plugin,
            fail_open: self
                .config
                .plugins
                .get(name)
                .is_some_and(|p| p.failure == FailurePolicy::FailOpen),
            max_body: self.config.limits.max_body.as_u64(),
            max_response_body: self.config.limits.max_response_body.as_u64(),
        })
    }
}

fn compile_authorizer(
    a: &config::RouteAuthorizer,
    at: &str,
    plugins: &Plugins<'_>,
    errors: &mut Vec<String>,
) -> Option<RouteAuthorizer> {
    let plugin = plugins.get(&a.plugin, World::Authorizer, at, errors);
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
}

/// Compiles `[websocket.NAME]` tables.
fn compile_websockets(
    config: &Config,
    plugins: &Plugins<'_>,
    state: &UsageState,
    errors: &mut Vec<String>,
) -> WebSockets {
    let mut apis = Vec::new();
    let mut by_path = HashMap::new();
    let mut paths = HashMap::new();
    // Authorizer cache slots after the HTTP routes' ones.
    let mut auth_slot = config.routes.len();
    for (name, api) in &config.websocket {
        let at = format!("websocket.{name}");
        let mut ok = true;
        if !api.path.starts_with('/') || api.path.contains(['?', '#', ' ']) {
            errors.push(format!("{at}.path: `{}` is not a path", api.path));
            ok = false;
        } else if let Some(other) = paths.insert(api.path.clone(), name.clone()) {
            errors.push(format!(
                "{at}.path: `{}` is already the path of websocket.{other}",
                api.path
            ));
            ok = false;
        }
        let selection = match api.route_selection.parse::<Selection>() {
            Ok(s) => Some(s),
            Err(e) => {
                errors.push(format!("{at}.route_selection: {e}"));
                None
            }
        };
        let l = &api.limits;
        let connect_burst = l.connect_burst.unwrap_or(l.connect_rate);
        let connect = throttle::Limit {
            rate: f64::from(l.connect_rate),
            burst: connect_burst,
        };
        if l.connect_rate == 0 {
            errors.push(format!("{at}.limits.connect_rate: must be at least 1"));
        }
        if l.connect_burst == Some(0) {
            errors.push(format!("{at}.limits.connect_burst: must be at least 1"));
        }
        for (key, d) in [
            ("max_duration", l.max_duration),
            ("idle_timeout", l.idle_timeout),
            ("send_timeout", l.send_timeout),
        ] {
            if d < Duration::from_secs(1) {
                errors.push(format!("{at}.limits.{key}: must be at least 1s"));
            }
            check_timer(&format!("{at}.limits.{key}"), d, errors);
        }
        let max_message = l.max_message.as_u64();
        let max_frame = l.max_frame.as_u64();
        if !(128..=(16 << 20)).contains(&max_message) {
            errors.push(format!(
                "{at}.limits.max_message: must be between 128B and 16MiB"
            ));
        }
        if max_frame < 128 || max_frame > max_message {
            errors.push(format!(
                "{at}.limits.max_frame: must be at least 128B and at most limits.max_message"
            ));
        }
        if !(1..=65_536).contains(&l.outbound_queue) {
            errors.push(format!(
                "{at}.limits.outbound_queue: must be between 1 and 65536"
            ));
        }

        let mut routes = HashMap::new();
        let (mut on_connect, mut on_disconnect, mut on_default) = (None, None, None);
        for (i, r) in api.routes.iter().enumerate() {
            let at = format!("{at}.routes[{i}] (`{}`)", r.key);
            let special = r.key.starts_with('$');
            if special && !matches!(r.key.as_str(), "$connect" | "$disconnect" | "$default") {
                errors.push(format!(
                    "{at}.key: `$`-keys are `$connect`, `$disconnect` and `$default`"
                ));
                continue;
            }
            if r.key.is_empty() {
                errors.push(format!("{at}.key: must not be empty"));
                continue;
            }
            let is_message = !matches!(r.key.as_str(), "$connect" | "$disconnect");
            if r.authorizer.is_some() && r.key != "$connect" {
                errors.push(format!(
                    "{at}.authorizer: only `$connect` has an authorizer"
                ));
            }
            if !is_message && (r.request_mapping.is_some() || r.route_response) {
                errors.push(format!(
                    "{at}: request_mapping and route_response apply to message routes only"
                ));
            }
            let integration = compile_integration(&r.integration, &[])
                .map_err(|e| errors.push(format!("{at}.integration: {e}")))
                .ok();
            let timeout = r.timeout.unwrap_or(config.limits.integration_timeout);
            if timeout < MIN_TIMEOUT {
                errors.push(format!("{at}.timeout: below the 50ms minimum"));
            }
            if let Some(t) = r.timeout {
                check_timer(&format!("{at}.timeout"), t, errors);
            }
            let authorizer = r
                .authorizer
                .as_ref()
                .filter(|_| r.key == "$connect")
                .and_then(|a| compile_authorizer(a, &format!("{at}.authorizer"), plugins, errors));
            let request_mapping = r
                .request_mapping
                .as_deref()
                .and_then(|name| plugins.mapper(name, &format!("{at}.request_mapping"), errors));
            let Some(integration) = integration else {
                continue;
            };
            let route = WsRoute {
                key: r.key.as_str().into(),
                integration,
                authorizer,
                auth_slot,
                request_mapping,
                route_response: r.route_response,
                timeout,
            };
            auth_slot += 1;
            let slot = match r.key.as_str() {
                "$connect" => &mut on_connect,
                "$disconnect" => &mut on_disconnect,
                "$default" => &mut on_default,
                key => {
                    if routes.insert(key.to_owned(), route).is_some() {
                        errors.push(format!("{at}.key: route `{key}` is defined twice"));
                    }
                    continue;
                }
            };
            if slot.replace(route).is_some() {
                errors.push(format!("{at}.key: route `{}` is defined twice", r.key));
            }
        }
        let (true, Some(selection)) = (ok, selection) else {
            continue;
        };
        by_path.insert(api.path.clone(), apis.len());
        apis.push(WebSocketApi {
            name: name.as_str().into(),
            path: api.path.clone(),
            selection,
            connect: on_connect,
            disconnect: on_disconnect,
            default: on_default,
            routes,
            limits: websocket::Limits {
                max_duration: l.max_duration,
                idle_timeout: l.idle_timeout,
                max_message: max_message as usize,
                max_frame: max_frame as usize,
                outbound_queue: l.outbound_queue,
                send_timeout: l.send_timeout,
            },
            // Kept across reloads by name, like the request buckets.
            connect_bucket: throttle::Bucket::named(
                state.buckets(),
                &format!("websocket {name} connect"),
                connect,
            ),
        });
    }
    WebSockets { apis, by_path }
}

/// The compiled WebSocket APIs, found by path or by name.
#[derive(Default)]
pub struct WebSockets {
    apis: Vec<WebSocketApi>,
    by_path: HashMap<String, usize>,
}

impl Gateway {
    /// The WebSocket API on `path`, if one is there.
    pub fn websocket_at(&self, path: &str) -> Option<&WebSocketApi> {
        if self.websockets.apis.is_empty() {
            return None;
        }
        self.websockets
            .by_path
            .get(path)
            .map(|&i| &self.websockets.apis[i])
    }

    /// The WebSocket API named `name`.
    pub fn websocket(&self, name: &str) -> Option<&WebSocketApi> {
        self.websockets.apis.iter().find(|a| &*a.name == name)
    }
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
                if n == http::header::CONTENT_LENGTH || n == http::header::TRANSFER_ENCODING {
                    return Err(format!(
                        "header `{name}` is set by the gateway from the body"
                    ));
                }
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
