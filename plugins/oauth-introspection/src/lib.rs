//! OAuth 2.0 token introspection (RFC 7662) as a Weir authorizer, for opaque access
//! tokens: the token from the route's first identity source (raw or `Bearer `) is
//! POSTed to the issuer's introspection endpoint with the client's credentials; an
//! `active` token that has not expired is allowed, `sub` (else `client_id`) becoming
//! the principal and `scope`, `client_id`, `username` and `exp` the authorizer context.
//! A route's scopes need at least one of them in the token's `scope`, as Amazon API
//! Gateway's JWT authorizers do.
//!
//! The plugin's table must list the endpoint's origin in `allow_outbound`. The
//! gateway's decision cache (`ttl` on the route) bounds how often it is asked. An
//! endpoint that cannot be reached or answers other than 200 fails the call: the
//! request is a `500`, never allowed, and the decision is not cached.
//!
//! ```toml
//! [plugins.introspect]
//! file = "plugins/oauth_introspection.wasm"
//! world = "authorizer"
//! allow_outbound = ["https://idp.example.com"]
//! config = { endpoint = "https://idp.example.com/oauth2/introspect", client_id = "gateway", client_secret = "…" }
//! ```

use base64::Engine;
use serde::Deserialize;
use weir_sdk::{AuthorizationRequest, Authorizer, Context, Decision};

/// The plugin's config.
#[derive(Deserialize)]
struct Config {
    /// The introspection endpoint, `https://host[:port]/path`.
    endpoint: String,
    /// The gateway's client id at the issuer.
    client_id: String,
    /// Its secret (HTTP Basic, as RFC 7662 and RFC 6749 §2.3.1 describe).
    client_secret: String,
}

/// What the endpoint says about a token.
#[derive(Deserialize)]
struct Introspection {
    active: bool,
    scope: Option<String>,
    sub: Option<String>,
    client_id: Option<String>,
    username: Option<String>,
    exp: Option<i64>,
}

/// The exported plugin.
pub struct OAuthIntrospection;

impl Authorizer for OAuthIntrospection {
    fn authorize(req: AuthorizationRequest, _ctx: &Context) -> Decision {
        let config: Config = match weir_sdk::config() {
            Ok(c) => c,
            Err(e) => {
                weir_sdk::log::error(&e);
                return Decision::unauthorized("Unauthorized");
            }
        };
        let raw = req.identity.first().map(String::as_str).unwrap_or("");
        let token = raw.strip_prefix("Bearer ").unwrap_or(raw).trim();
        if token.is_empty() {
            return Decision::unauthorized("Unauthorized");
        }
        let answer = match introspect(&config, token) {
            Ok(a) => a,
            // Failing the call (a trap) makes the request a 500 that is not cached: an
            // outage of the endpoint must not become cached 401s, nor ever an allow.
            Err(e) => panic!("introspection endpoint {}: {e}", config.endpoint),
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        if !answer.active || answer.exp.is_some_and(|exp| exp <= now) {
            return Decision::unauthorized("Unauthorized");
        }
        let scope = answer.scope.unwrap_or_default();
        if !req.scopes.is_empty() && !scope.split(' ').any(|s| req.scopes.iter().any(|r| r == s)) {
            return Decision::forbidden("Forbidden");
        }
        let principal = answer
            .sub
            .clone()
            .or_else(|| answer.client_id.clone())
            .unwrap_or_default();
        let mut decision = Decision::allow(principal).with_context("scope", scope);
        for (key, value) in [
            ("client_id", answer.client_id),
            ("username", answer.username),
        ] {
            if let Some(v) = value {
                decision = decision.with_context(key, v);
            }
        }
        if let Some(exp) = answer.exp {
            decision = decision.with_context("exp", exp.to_string());
        }
        decision
    }
}

weir_sdk::export_authorizer!(OAuthIntrospection);

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// POSTs the token to the endpoint and reads its answer.
fn introspect(config: &Config, token: &str) -> Result<Introspection, String> {
    let credentials = format!(
        "{}:{}",
        form_encode(&config.client_id),
        form_encode(&config.client_secret)
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(credentials);
    let answer = weir_sdk::http::Request::post(&config.endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("accept", "application/json")
        .header("authorization", format!("Basic {basic}"))
        .body(format!(
            "token={}&token_type_hint=access_token",
            form_encode(token)
        ))
        .max_body(1 << 20)
        .send()
        .map_err(|e| e.to_string())?;
    if answer.status != 200 {
        return Err(format!("answered {}", answer.status));
    }
    serde_json::from_slice(&answer.body)
        .map_err(|e| format!("answer is not introspection JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::form_encode;

    #[test]
    fn values_are_form_encoded() {
        assert_eq!(form_encode("abc-._*XYZ09"), "abc-._*XYZ09");
        assert_eq!(form_encode("a b+c&d=e/é"), "a+b%2Bc%26d%3De%2F%C3%A9");
    }
}
