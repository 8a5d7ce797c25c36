//! Test authorizer: logs every call (so tests can count them) and decides by token.
//! `key:VALUE` is allowed with `VALUE` as its usage-plan API key.

use weir_sdk::{AuthorizationRequest, Authorizer, Context, Decision};

struct Counting;

impl Authorizer for Counting {
    fn authorize(req: AuthorizationRequest, _ctx: &Context) -> Decision {
        weir_sdk::log::info("authorize called");
        match req.identity.first().map(String::as_str) {
            Some("let-me-in") => Decision::allow("tester").with_context("role", "admin"),
            Some(token) if token.starts_with("key:") => {
                Decision::allow("keyholder").with_usage_key(&token["key:".len()..])
            }
            Some("forbidden") => Decision::forbidden("Forbidden"),
            _ => Decision::unauthorized("Unauthorized"),
        }
    }
}

weir_sdk::export_authorizer!(Counting);
