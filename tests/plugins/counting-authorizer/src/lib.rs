//! Test authorizer: logs every call (so tests can count them) and decides by token.

use weir_sdk::{AuthorizationRequest, Authorizer, Context, Decision};

struct Counting;

impl Authorizer for Counting {
    fn authorize(req: AuthorizationRequest, _ctx: &Context) -> Decision {
        weir_sdk::log::info("authorize called");
        match req.identity.first().map(String::as_str) {
            Some("let-me-in") => Decision::allow("tester").with_context("role", "admin"),
            Some("forbidden") => Decision::forbidden("Forbidden"),
            _ => Decision::unauthorized("Unauthorized"),
        }
    }
}

weir_sdk::export_authorizer!(Counting);
