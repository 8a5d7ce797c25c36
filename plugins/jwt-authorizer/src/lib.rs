//! JWT authorizer with Amazon API Gateway's JWT authorizer semantics: the token comes
//! from the route's first identity source (raw or `Bearer `), its signature is checked
//! (RS256/384/512, PS256/384/512, ES256/384/512 with the issuer's public keys, or HS256
//! with a shared secret), then `iss`, `aud`, `exp`, `nbf`, `iat` and the route's scopes.
//! The `sub` claim becomes the principal id and the other simple claims the authorizer
//! context.
//!
//! Public keys are inline (`jwks`) or the issuer's: its OpenID Connect discovery
//! document names its `jwks_uri` (or the config does), fetched through the gateway
//! (the plugin's `allow_outbound` must list the origin) and kept by the gateway's host
//! for every instance and worker; see [`fetch`].

pub mod fetch;
pub mod keys;
mod verify;

use std::sync::OnceLock;
pub use verify::{Config, Denial, KeySource, MAX_AUDIENCES, MAX_SCOPES, Verified, verify};

use weir_sdk::{AuthorizationRequest, Authorizer, Context, Decision};

/// The exported plugin.
pub struct JwtAuthorizer;

/// The config and its inline keys, read once per instance: a fresh instance (the
/// default) reads them on its one call, a reused one (`reuse = N`) keeps them.
struct Setup {
    config: Config,
    /// The parsed `jwks`, when the config has one.
    inline_keys: Option<Result<Vec<keys::Jwk>, String>>,
}

fn setup() -> Result<&'static Setup, &'static str> {
    static SETUP: OnceLock<Result<Setup, String>> = OnceLock::new();
    SETUP
        .get_or_init(|| {
            let config: Config = weir_sdk::config()?;
            if let Some(problem) = config.problem() {
                return Err(format!("invalid plugin config: {problem}"));
            }
            let inline_keys = config.jwks.as_ref().map(|j| j.keys());
            Ok(Setup {
                config,
                inline_keys,
            })
        })
        .as_ref()
        .map_err(String::as_str)
}

impl Authorizer for JwtAuthorizer {
    fn authorize(req: AuthorizationRequest, _ctx: &Context) -> Decision {
        let Setup {
            config,
            inline_keys,
        } = match setup() {
            Ok(s) => s,
            Err(e) => {
                weir_sdk::log::error(e);
                return Decision::unauthorized("Unauthorized");
            }
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let token = req.identity.first().map(String::as_str).unwrap_or("");
        let mut http = fetch::WasiHttp;
        let mut keys = |refresh: bool| match inline_keys {
            Some(keys) => keys.clone(),
            None if config.remote_keys() => fetch::Remote {
                issuer: &config.issuer,
                jwks_uri: config.jwks_uri.as_deref(),
                http: &mut http,
            }
            .keys(refresh),
            None => Err("no `jwks`, `jwks_uri` or http(s) issuer to take keys from".into()),
        };
        match verify(token, config, now, &req.scopes, &mut keys) {
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
            Err(Denial::NoKeys(why)) => {
                weir_sdk::log::error(&format!(
                    "no signing keys for issuer {}; token refused: {why}",
                    config.issuer
                ));
                Decision::unauthorized("Unauthorized")
            }
        }
    }
}

weir_sdk::export_authorizer!(JwtAuthorizer);
