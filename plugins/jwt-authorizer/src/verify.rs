//! Token verification: plain Rust with an injectable clock, unit-tested on the host.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::signature::Verifier;
use rsa::{BigUint, RsaPublicKey};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::Sha256;

/// The plugin's config table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The required `iss`.
    pub issuer: String,
    /// Accepted audiences: the token's `aud` must contain one.
    pub audience: Vec<String>,
    /// RS256 keys as a JWKS document (an object, or its JSON text).
    #[serde(default)]
    pub jwks: Option<Jwks>,
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

/// A JWKS document.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Jwks {
    /// `{"keys": [...]}`.
    Object {
        /// The keys.
        keys: Vec<Jwk>,
    },
    /// The same as JSON text.
    Text(String),
}

/// One key of a JWKS.
#[derive(Debug, Deserialize)]
pub struct Jwk {
    /// Key type; only `RSA` is used.
    pub kty: String,
    /// Key id.
    #[serde(default)]
    pub kid: Option<String>,
    /// Modulus, base64url.
    #[serde(default)]
    pub n: Option<String>,
    /// Exponent, base64url.
    #[serde(default)]
    pub e: Option<String>,
}

/// Why a token is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Denial {
    /// Invalid, expired, wrongly signed or for someone else: 401.
    Unauthorized(String),
    /// Valid but without a required scope: 403.
    Forbidden(String),
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

/// Verifies `token` (raw or `Bearer ...`) at time `now` (Unix seconds) for a route that
/// requires `scopes` (any one of them).
pub fn verify(
    token: &str,
    config: &Config,
    now: i64,
    scopes: &[String],
) -> Result<Verified, Denial> {
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
    match header.get("alg").and_then(Value::as_str) {
        Some("RS256") => {
            let kid = header.get("kid").and_then(Value::as_str);
            let key = rsa_key(config, kid)?;
            let sig = Signature::try_from(signature.as_slice())
                .map_err(|_| Denial::Unauthorized("malformed RS256 signature".into()))?;
            VerifyingKey::<Sha256>::new(key)
                .verify(signed.as_bytes(), &sig)
                .map_err(|_| Denial::Unauthorized("bad RS256 signature".into()))?;
        }
        Some("HS256") => {
            let Some(secret) = &config.hs256_secret else {
                return unauthorized("HS256 tokens are not accepted");
            };
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
                .map_err(|_| Denial::Unauthorized("unusable HS256 secret".into()))?;
            mac.update(signed.as_bytes());
            mac.verify_slice(&signature)
                .map_err(|_| Denial::Unauthorized("bad HS256 signature".into()))?;
        }
        other => return unauthorized(format!("unsupported alg {other:?}")),
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

fn rsa_key(config: &Config, kid: Option<&str>) -> Result<RsaPublicKey, Denial> {
    let parsed;
    let keys: &[Jwk] = match &config.jwks {
        None => return unauthorized("RS256 tokens are not accepted (no jwks)"),
        Some(Jwks::Object { keys }) => keys,
        Some(Jwks::Text(text)) => {
            parsed = serde_json::from_str::<Jwks>(text)
                .ok()
                .and_then(|j| match j {
                    Jwks::Object { keys } => Some(keys),
                    Jwks::Text(_) => None,
                })
                .ok_or_else(|| Denial::Unauthorized("jwks is not a JWKS document".into()))?;
            &parsed
        }
    };
    let rsa: Vec<&Jwk> = keys.iter().filter(|k| k.kty == "RSA").collect();
    let key = match kid {
        Some(kid) => rsa.iter().find(|k| k.kid.as_deref() == Some(kid)),
        None if rsa.len() == 1 => rsa.first(),
        None => None,
    }
    .ok_or_else(|| Denial::Unauthorized("no matching key in the JWKS".into()))?;
    let number = |v: &Option<String>| {
        v.as_deref()
            .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
            .map(|b| BigUint::from_bytes_be(&b))
    };
    match (number(&key.n), number(&key.e)) {
        (Some(n), Some(e)) => RsaPublicKey::new(n, e)
            .map_err(|_| Denial::Unauthorized("unusable RSA key in the JWKS".into())),
        _ => unauthorized("RSA key without n/e"),
    }
}

#[cfg(test)]
mod tests;
