//! JWT authorizer with Amazon API Gateway's JWT authorizer semantics: the token comes
//! from the route's first identity source (raw or `Bearer `), its RS256 (JWKS) or HS256
//! signature is checked, then `iss`, `aud`, `exp`, `nbf`, `iat` and the route's scopes.
//! The `sub` claim becomes the principal id and the other simple claims the authorizer
//! context.

mod verify;

pub use verify::{Config, Denial, verify};
use weir_sdk::{AuthorizationRequest, Authorizer, Context, Decision};

/// The exported plugin.
pub struct JwtAuthorizer;

impl Authorizer for JwtAuthorizer {
    fn authorize(req: AuthorizationRequest, _ctx: &Context) -> Decision {
        let config: Config = match weir_sdk::config() {
            Ok(c) => c,
            Err(e) => {
                weir_sdk::log::error(&e);
                return Decision::unauthorized("Unauthorized");
            }
        };
        if config.jwks.is_none() && config.hs256_secret.is_none() {
            weir_sdk::log::error("invalid plugin config: set `jwks`, `hs256_secret` or both");
            return Decision::unauthorized("Unauthorized");
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let token = req.identity.first().map(String::as_str).unwrap_or("");
        match verify(token, &config, now, &req.scopes) {
            Ok(claims) => {
                let mut decision = Decision::allow(claims.subject);
                for (k, v) in claims.context {
                    decision = decision.with_context(k, v);
                }
                decision
            }
            Err(Denial::Unauthorized(why)) => {
                weir_sdk::log::debug(&format!("token refused: {why}"));
                Decision::unauthorized("Unauthorized")
            }
            Err(Denial::Forbidden(why)) => {
                weir_sdk::log::debug(&format!("token lacks scope: {why}"));
                Decision::forbidden("Forbidden")
            }
        }
    }
}

weir_sdk::export_authorizer!(JwtAuthorizer);
