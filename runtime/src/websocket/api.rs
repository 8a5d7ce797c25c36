//! A WebSocket API as the gateway runs it, compiled from its `[websocket.NAME]` table:
//! path, route selection expression, routes (`$connect`, `$disconnect`, `$default` and
//! custom keys) with their integrations, authorizer and mappers, and AWS's limits.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::authorize::RouteAuthorizer;
use crate::catalog::Catalog;
use crate::config::{Config, MIN_TIMEOUT, check_timer};
use crate::integrate::Integration;
use crate::map::Mapper;
use crate::throttle::{self, Bucket};
use crate::usage::UsageState;

use super::select::Selection;

/// A compiled WebSocket API.
pub struct WebSocketApi {
    /// Its name in `[websocket.NAME]`.
    pub name: Arc<str>,
    /// The path clients upgrade on.
    pub path: String,
    /// The route selection expression.
    pub selection: Selection,
    /// `$connect`.
    pub connect: Option<WsRoute>,
    /// `$disconnect`.
    pub disconnect: Option<WsRoute>,
    /// `$default`.
    pub default: Option<WsRoute>,
    /// Custom route keys.
    pub routes: HashMap<String, WsRoute>,
    /// Limits.
    pub limits: Limits,
    /// The new-connection bucket.
    pub connect_bucket: Bucket,
}

/// A WebSocket API's limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest a connection stays open.
    pub max_duration: Duration,
    /// Longest a connection may be silent both ways.
    pub idle_timeout: Duration,
    /// Largest message.
    pub max_message: usize,
    /// Largest frame.
    pub max_frame: usize,
    /// Outbound messages queued per connection.
    pub outbound_queue: usize,
    /// Longest a send may wait for the client to read.
    pub send_timeout: Duration,
}

/// One route of a WebSocket API.
pub struct WsRoute {
    /// Its key.
    pub key: Arc<str>,
    /// Where its events go.
    pub integration: Integration,
    /// The authorizer (`$connect` only).
    pub authorizer: Option<RouteAuthorizer>,
    /// The slot of this route in the gateway's authorizer cache.
    pub auth_slot: usize,
    /// The message mapper.
    pub request_mapping: Option<Mapper>,
    /// Whether the integration's answer goes back to the client.
    pub route_response: bool,
    /// The integration timeout.
    pub timeout: Duration,
}

/// Compiles `[websocket.NAME]` tables.
pub fn compile(
    config: &Config,
    catalog: &Catalog<'_>,
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
            let integration = Integration::compile(&r.integration, &[])
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
                .and_then(|a| {
                    RouteAuthorizer::compile(a, &format!("{at}.authorizer"), catalog, errors)
                });
            let request_mapping = r.request_mapping.as_deref().and_then(|name| {
                Mapper::compile(name, &format!("{at}.request_mapping"), catalog, errors)
            });
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
            limits: Limits {
                max_duration: l.max_duration,
                idle_timeout: l.idle_timeout,
                max_message: max_message as usize,
                max_frame: max_frame as usize,
                outbound_queue: l.outbound_queue,
                send_timeout: l.send_timeout,
            },
            // Kept across reloads by name, like the request buckets.
            connect_bucket: state.bucket(&format!("websocket {name} connect"), connect),
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

impl WebSockets {
    /// The API on `path`, if one is there.
    pub fn at(&self, path: &str) -> Option<&WebSocketApi> {
        if self.apis.is_empty() {
            return None;
        }
        self.by_path.get(path).map(|&i| &self.apis[i])
    }

    /// The API named `name`.
    pub fn named(&self, name: &str) -> Option<&WebSocketApi> {
        self.apis.iter().find(|a| &*a.name == name)
    }

    /// Every API.
    pub fn iter(&self) -> impl Iterator<Item = &WebSocketApi> {
        self.apis.iter()
    }
}
