//! Token verification: plain Rust with an injectable clock, unit-tested on the host.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::keys::{self, Alg, Jwk, Jwks};

/// Most accepted audiences (as Amazon API Gateway allows).
pub const MAX_AUDIENCES: usize = 50;
/// Most scopes a route may list (as Amazon API Gateway allows).
pub const MAX_SCOPES: usize = 10;

/// The plugin's config table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The required `iss`.
    pub issuer: String,
    /// Accepted audiences: the token's `aud` must contain one.
    pub audience: Vec<String>,
    /// Public keys as a JWKS document (an object, or its JSON text); without it the
    /// keys come from the issuer (`jwks_uri`, else OpenID Connect discovery).
    #[serde(default)]
    pub jwks: Option<Jwks>,
    /// Where the issuer publishes its keys (default: its discovery document says).
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Shared secret for HS256 tokens.
    #[serde(default)]
    pub hs256_secret: Option<String>,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
    #[serde(default)]
    pub leeway: i64,
    /// Claims passed on as authorizer context (default: every string, number or bool claim).
    #[serde(default)]
    pub claims_to_context: Option<Vec<String>>,
}

/// Why a token is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Denial {
    /// Invalid, expired, wrongly signed or for someone else: 401.
    Unauthorized(String),
    /// Valid but without a required scope: 403.
    Forbidden(String),
    /// No keys to check it with (the issuer cannot be reached, say): 401, logged as
    /// an error.
    NoKeys(String),
}

impl Config {
    /// Whether the keys come from the issuer rather than the config.
    pub fn remote_keys(&self) -> bool {
        self.jwks.is_none()
            && (self.jwks_uri.is_some()
                || self.issuer.starts_with("https://")
                || self.issuer.starts_with("http://"))
    }

    /// What is wrong with the config, if anything.
    pub fn problem(&self) -> Option<String> {
        if !(1..=MAX_AUDIENCES).contains(&self.audience.len()) {
            return Some(format!("`audience` lists 1 to {MAX_AUDIENCES} audiences"));
        }
        if self.jwks.is_some() && self.jwks_uri.is_some() {
            return Some("set `jwks` or `jwks_uri`, not both".into());
        }
        if self.jwks.is_none() && self.hs256_secret.is_none() && !self.remote_keys() {
            return Some(
                "set `jwks`, `jwks_uri` or `hs256_secret`, or an http(s) `issuer` to discover keys from".into(),
            );
        }
        None
    }
}

/// What a valid token says.
#[derive(Debug, PartialEq, Eq)]
pub struct Verified {
    /// The `sub` claim (empty when absent).
    pub subject: String,
    /// Claims for the authorizer context.
    pub context: Vec<(String, String)>,
}

fn unauthorized<T>(why: impl Into<String>) -> Result<T, Denial> {
    Err(Denial::Unauthorized(why.into()))
}

fn decode_json(part: &str, what: &str) -> Result<Map<String, Value>, Denial> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| Denial::Unauthorized(format!("{what} is not base64url")))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => unauthorized(format!("{what} is not a JSON object")),
    }
}

/// The public keys to check a token with: `keys(false)`, or `keys(true)` to ask their
/// origin again (a token names a key id that is not among them).
pub type KeySource<'a> = dyn FnMut(bool) -> Result<Vec<Jwk>, String> + 'a;

/// Verifies `token` (raw or `Bearer ...`) at time `now` (Unix seconds) for a route that
/// requires `scopes` (any one of them), its signature checked with `keys` (asked only
/// for a token signed with a public-key algorithm).
pub fn verify(
    token: &str,
    config: &Config,
    now: i64,
    scopes: &[String],
    keys: &mut KeySource<'_>,
) -> Result<Verified, Denial> {
    if scopes.len() > MAX_SCOPES {
        return unauthorized(format!("the route lists over {MAX_SCOPES} scopes"));
    }
    let token = token.trim();
    let token = match token.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("bearer ") => token[7..].trim(),
        _ => token,
    };
    let parts: Vec<&str> = token.split('.').collect();
    let [header_b64, payload_b64, sig_b64] = parts[..] else {
        return unauthorized("not a three-part JWT");
    };
    let header = decode_json(header_b64, "header")?;
    let signature = URL_SAFE_NO_PAD
        .decode(sig_b64)
        .map_err(|_| Denial::Unauthorized("signature is not base64url".into()))?;
    let signed = &token[..header_b64.len() + 1 + payload_b64.len()];
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    match Alg::parse(alg) {
        Some(Alg::Hs256) => {
            let Some(secret) = &config.hs256_secret else {
                return unauthorized("HS256 tokens are not accepted");
            };
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
                .map_err(|_| Denial::Unauthorized("unusable HS256 secret".into()))?;
            mac.update(signed.as_bytes());
            mac.verify_slice(&signature)
                .map_err(|_| Denial::Unauthorized("bad HS256 signature".into()))?;
        }
        Some(alg) => {
            let kid = header.get("kid").and_then(Value::as_str);
            let mut set = keys(false).map_err(Denial::NoKeys)?;
            if keys::select(&set, alg, kid).is_none() && kid.is_some() {
                // A key id not seen before: the issuer may have rotated its keys.
                set = keys(true).map_err(Denial::NoKeys)?;
            }
            let key = keys::select(&set, alg, kid).ok_or_else(|| {
                Denial::Unauthorized(format!(
                    "no {} key with kid {kid:?} in the JWKS",
                    alg.name()
                ))
            })?;
            keys::check(alg, key, signed.as_bytes(), &signature).map_err(Denial::Unauthorized)?;
        }
        None => return unauthorized(format!("unsupported alg {alg:?}")),
    }

    let claims = decode_json(payload_b64, "payload")?;
    if claims.get("iss").and_then(Value::as_str) != Some(config.issuer.as_str()) {
        return unauthorized("wrong issuer");
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => config.audience.contains(a),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .any(|a| config.audience.iter().any(|c| c == a)),
        _ => false,
    };
    if !aud_ok {
        return unauthorized("wrong audience");
    }
    let time = |name: &str| claims.get(name).and_then(Value::as_f64).map(|t| t as i64);
    match time("exp") {
        Some(exp) if now < exp + config.leeway => {}
        Some(_) => return unauthorized("expired"),
        None => return unauthorized("no exp claim"),
    }
    if time("nbf").is_some_and(|nbf| now + config.leeway < nbf) {
        return unauthorized("not valid yet (nbf)");
    }
    if time("iat").is_some_and(|iat| now + config.leeway < iat) {
        return unauthorized("issued in the future (iat)");
    }
    if !scopes.is_empty() {
        let mut granted: Vec<&str> = Vec::new();
        if let Some(Value::String(s)) = claims.get("scope") {
            granted.extend(s.split_whitespace());
        }
        match claims.get("scp") {
            Some(Value::String(s)) => granted.extend(s.split_whitespace()),
            Some(Value::Array(list)) => granted.extend(list.iter().filter_map(Value::as_str)),
            _ => {}
        }
        if !scopes.iter().any(|s| granted.contains(&s.as_str())) {
            return Err(Denial::Forbidden(format!("needs one of {scopes:?}")));
        }
    }

    let subject = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let context = claims
        .iter()
        .filter(|(k, _)| {
            config
                .claims_to_context
                .as_ref()
                .is_none_or(|wanted| wanted.iter().any(|w| w == *k))
        })
        .filter_map(|(k, v)| {
            let v = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return None,
            };
            Some((k.clone(), v))
        })
        .collect();
    Ok(Verified { subject, context })
}

#[cfg(test)]
mod tests;
