//! The authorize stage: identity sources, the authorizer call and its decision cache;
//! and the compilation of a route's `authorizer = {...}` table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::HeaderName;
use http::request::Parts;

use crate::catalog::Catalog;
use crate::client_cert::ClientCert;
use crate::config;
use crate::context::RequestContext;
use crate::error::GatewayError;
use crate::integrate::Upstream;
use crate::plugin::{AuthorizationRequest, AuthorizerPlugin, Decision};
use crate::ttl_cache::TtlCache;

/// Longest authorizer cache TTL.
const MAX_TTL: Duration = Duration::from_secs(3600);
/// Most scopes a route may require (as Amazon API Gateway allows).
const MAX_SCOPES: usize = 10;

/// Where an authorizer's identity comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    /// `$request.header.NAME`
    Header(HeaderName),
    /// `$request.querystring.NAME`
    Query(String),
}

impl std::str::FromStr for IdentitySource {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(name) = s.strip_prefix("$request.header.") {
            return HeaderName::try_from(name)
                .map(IdentitySource::Header)
                .map_err(|_| format!("`{s}`: invalid header name `{name}`"));
        }
        if let Some(name) = s.strip_prefix("$request.querystring.")
            && !name.is_empty()
        {
            return Ok(IdentitySource::Query(name.to_owned()));
        }
        Err(format!(
            "`{s}`: expected `$request.header.NAME` or `$request.querystring.NAME`"
        ))
    }
}

impl std::fmt::Display for IdentitySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdentitySource::Header(h) => write!(f, "$request.header.{h}"),
            IdentitySource::Query(q) => write!(f, "$request.querystring.{q}"),
        }
    }
}

impl IdentitySource {
    fn value(&self, head: &Parts) -> Option<String> {
        match self {
            IdentitySource::Header(name) => head
                .headers
                .get(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
            IdentitySource::Query(name) => query_param(head.uri.query().unwrap_or(""), name),
        }
        .filter(|v| !v.is_empty())
    }
}

/// The first value of `name` in a query string, percent-decoded.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k) == name).then(|| percent_decode(v))
    })
}

/// Decodes `%XX` escapes and `+` (as space), keeping invalid escapes as they are.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A route's authorizer, compiled.
pub struct RouteAuthorizer {
    /// The plugin.
    pub plugin: AuthorizerPlugin,
    /// Identity sources, in order.
    pub identity: Vec<IdentitySource>,
    /// Cache lifetime of a decision (zero: no caching).
    pub ttl: Duration,
    /// Scopes the route requires.
    pub scopes: Vec<String>,
}

impl RouteAuthorizer {
    /// Compiles the `authorizer` table at `at`; errors name its keys.
    pub fn compile(
        spec: &config::RouteAuthorizer,
        at: &str,
        catalog: &Catalog<'_>,
        errors: &mut Vec<String>,
    ) -> Option<Self> {
        let plugin = catalog.authorizer(&spec.plugin, at, errors);
        if spec.ttl > MAX_TTL {
            errors.push(format!("{at}.ttl: at most 3600s"));
        }
        if spec.identity_source.is_empty() {
            errors.push(format!("{at}.identity_source: needs at least one source"));
        }
        let mut identity = Vec::new();
        for s in &spec.identity_source {
            match s.parse::<IdentitySource>() {
                Ok(src) => identity.push(src),
                Err(e) => errors.push(format!("{at}.identity_source: {e}")),
            }
        }
        if spec.scopes.len() > MAX_SCOPES {
            errors.push(format!("{at}.scopes: at most {MAX_SCOPES} per route"));
        }
        Some(Self {
            plugin: plugin?,
            identity,
            ttl: spec.ttl,
            scopes: spec.scopes.clone(),
        })
    }
}

/// A cached decision's key. With mutual TLS the client's certificate is part of it: an
/// authorizer may decide by it (`host.client-cert`), so a decision made for one
/// certificate never answers a request that came with another, or with none.
#[derive(Hash, PartialEq, Eq)]
pub struct CacheKey {
    route: usize,
    identity: Vec<String>,
    client_cert: Option<Arc<ClientCert>>,
}

/// Authorizer decisions cached per route, identity-source values and client certificate.
pub type AuthorizerCache = TtlCache<CacheKey, Decision>;

/// What an allowed request carries on: the principal and context for later stages.
pub struct Authorized {
    /// `$context.authorizer.principalId`.
    pub principal_id: String,
    /// `$context.authorizer.*`.
    pub context: Vec<(String, String)>,
    /// The API key for the usage plan, when `api_key_source = "authorizer"`.
    pub usage_identifier_key: Option<String>,
}

/// Runs the route's authorizer (or its cached decision) for a request; `slot` is the
/// route's place in the cache.
pub async fn authorize(
    auth: &RouteAuthorizer,
    cache: &AuthorizerCache,
    slot: usize,
    head: &Parts,
    ctx: &RequestContext,
    upstream: &Upstream,
) -> Result<Authorized, GatewayError> {
    let mut identity = Vec::with_capacity(auth.identity.len());
    for source in &auth.identity {
        match source.value(head) {
            Some(v) => identity.push(v),
            None => return Err(GatewayError::MissingIdentity(source.to_string())),
        }
    }
    let key = CacheKey {
        route: slot,
        identity,
        client_cert: ctx.client_cert.clone(),
    };
    let now = Instant::now();
    let cached = if auth.ttl.is_zero() {
        None
    } else {
        cache.get(&key, now)
    };
    let decision = match cached {
        Some(d) => d,
        None => {
            let req = AuthorizationRequest {
                method: head.method.as_str().to_owned(),
                path: head.uri.path().to_owned(),
                query: head.uri.query().unwrap_or("").to_owned(),
                headers: crate::map::headers_to_pairs(&head.headers),
                identity: key.identity.clone(),
                scopes: auth.scopes.clone(),
            };
            let sender = auth
                .plugin
                .makes_outbound()
                .then(|| Arc::new(upstream.clone()) as Arc<dyn crate::plugin::outbound::Sender>);
            let d = auth
                .plugin
                .authorize(&req, &ctx.plugin_context(), sender)
                .await
                .map_err(GatewayError::AuthorizerFailed)?;
            if !auth.ttl.is_zero() {
                cache.put(key, d.clone(), now + auth.ttl);
            }
            d
        }
    };
    match decision {
        Decision::Allow(a) => Ok(Authorized {
            principal_id: a.principal_id,
            context: a.context,
            usage_identifier_key: a.usage_identifier_key,
        }),
        Decision::Deny(d) => Err(GatewayError::Denied {
            status: d.status,
            message: d.message,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_identity_sources() {
        assert_eq!(
            "$request.header.Authorization"
                .parse::<IdentitySource>()
                .unwrap(),
            IdentitySource::Header(HeaderName::from_static("authorization"))
        );
        assert_eq!(
            "$request.querystring.token"
                .parse::<IdentitySource>()
                .unwrap(),
            IdentitySource::Query("token".into())
        );
        assert!("$request.body.x".parse::<IdentitySource>().is_err());
        assert!(
            "$request.header.bad name"
                .parse::<IdentitySource>()
                .is_err()
        );
    }

    #[test]
    fn reads_query_parameters() {
        assert_eq!(
            query_param("a=1&token=x%20y&b", "token").as_deref(),
            Some("x y")
        );
        assert_eq!(query_param("b", "b").as_deref(), Some(""));
        assert_eq!(query_param("a=1", "token"), None);
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%41+b"), "A b");
    }
}
