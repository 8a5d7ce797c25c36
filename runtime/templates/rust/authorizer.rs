//! {{name}}: a Weir authorizer. It allows `Authorization: Bearer <token>` when the token
//! is the config's `token` (default "let-me-in"), as the principal "user"; anything
//! else is 401.

use weir_sdk::{AuthorizationRequest, Authorizer, Context, Decision};

struct Plugin;

impl Authorizer for Plugin {
    fn authorize(req: AuthorizationRequest, _ctx: &Context) -> Decision {
        let config: serde_json::Value = weir_sdk::config().unwrap_or_default();
        let decision = decide(&req.identity, config["token"].as_str().unwrap_or("let-me-in"));
        weir_sdk::log::info(&format!("authorize {} {}: {decision:?}", req.method, req.path));
        decision
    }
}

/// The decision for the route's identity-source values (by default the
/// `Authorization` header): the logic, free of host calls, so that it can be tested
/// on this machine.
fn decide(identity: &[String], token: &str) -> Decision {
    let presented = identity
        .first()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if presented == Some(token) {
        Decision::allow("user").with_context("scheme", "bearer")
    } else {
        Decision::unauthorized("Unauthorized")
    }
}

weir_sdk::export_authorizer!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_configured_token_only() {
        let ok = decide(&["Bearer let-me-in".to_owned()], "let-me-in");
        assert!(matches!(ok, Decision::Allow { .. }), "{ok:?}");
        let no = decide(&["Bearer other".to_owned()], "let-me-in");
        assert!(matches!(no, Decision::Deny { status: 401, .. }), "{no:?}");
        assert!(matches!(decide(&[], "let-me-in"), Decision::Deny { .. }));
    }
}
