//! The example token authorizer, in Rust: the reference every other language's example
//! follows (see `examples/plugins/README.md`).
//!
//! The first identity source must be `Bearer <token>`; a token listed in the config's
//! `tokens` table (`token -> principal`) is allowed as that principal, anything else is
//! denied: 401 without a bearer token, 403 for an unknown one.

use serde_json::Value;
use weir_sdk::{AuthorizationRequest, Authorizer, Context, Decision};

/// `tokens` from the config, in order: `(token, principal)`.
pub fn parse_tokens(text: &str) -> Result<Vec<(String, String)>, String> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("config is not JSON: {e}"))?;
    let Value::Object(root) = value else {
        return Err("config is not a table".into());
    };
    match root.get("tokens") {
        None => Ok(Vec::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(format!("`tokens.{k}` must be a string")),
            })
            .collect(),
        Some(_) => Err("`tokens` must be a table of strings".into()),
    }
}

/// The decision for `identity` (the first identity source's value).
pub fn decide(tokens: &[(String, String)], identity: Option<&str>) -> Decision {
    let Some(value) = identity else {
        return Decision::unauthorized("missing token");
    };
    let token = match value.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case("bearer ") => value[7..].trim_matches(' '),
        _ => return Decision::unauthorized("expected a bearer token"),
    };
    if token.is_empty() {
        return Decision::unauthorized("expected a bearer token");
    }
    match tokens.iter().find(|(t, _)| t == token) {
        Some((_, principal)) => Decision::allow(principal).with_context("scheme", "bearer"),
        None => Decision::forbidden("unknown token"),
    }
}

/// The exported plugin.
pub struct ExampleAuthorizer;

impl Authorizer for ExampleAuthorizer {
    fn authorize(req: AuthorizationRequest, _ctx: &Context) -> Decision {
        let tokens = match parse_tokens(&weir_sdk::config_json()) {
            Ok(t) => t,
            Err(e) => {
                weir_sdk::log::error(&format!("bad config: {e}"));
                return Decision::forbidden("authorizer misconfigured");
            }
        };
        let decision = decide(&tokens, req.identity.first().map(String::as_str));
        match &decision {
            Decision::Allow { principal_id, .. } => {
                weir_sdk::log::info(&format!("allow {principal_id}"));
            }
            Decision::Deny { status, message } => {
                weir_sdk::log::warn(&format!("deny {status}: {message}"));
            }
        }
        decision
    }
}

weir_sdk::export_authorizer!(ExampleAuthorizer);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decides_on_the_bearer_token() {
        let tokens = parse_tokens(r#"{"tokens":{"t-1":"alice"}}"#).unwrap();
        let status = |d: Decision| match d {
            Decision::Allow { principal_id, .. } => principal_id,
            Decision::Deny { status, .. } => status.to_string(),
        };
        assert_eq!(status(decide(&tokens, Some("Bearer t-1"))), "alice");
        assert_eq!(status(decide(&tokens, Some("bEARER  t-1 "))), "alice");
        assert_eq!(status(decide(&tokens, Some("Bearer t-2"))), "403");
        assert_eq!(status(decide(&tokens, Some("Basic t-1"))), "401");
        assert_eq!(status(decide(&tokens, Some("Bearer "))), "401");
        assert_eq!(status(decide(&tokens, Some("Bearé"))), "401");
        assert_eq!(status(decide(&tokens, None)), "401");
        assert!(parse_tokens(r#"{"tokens":{"t":1}}"#).is_err());
        assert!(parse_tokens(r#"{"tokens":[]}"#).is_err());
    }
}
