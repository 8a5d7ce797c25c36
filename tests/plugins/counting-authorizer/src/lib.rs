//! Test authorizer: logs every call (so tests can count them) and decides by token.
//! `key:VALUE` is allowed with `VALUE` as its usage-plan API key.

wit_bindgen::generate!({ world: "authorizer", path: "../../../wit" });

use weir::plugin::host::{self, LogLevel};
use weir::plugin::outcomes::{Allow, Deny};

struct Counting;

impl Guest for Counting {
    fn authorize(req: AuthorizationRequest, _ctx: Context) -> Decision {
        host::log(LogLevel::Info, "authorize called");
        match req.identity.first().map(String::as_str) {
            Some("let-me-in") => Decision::Allow(Allow {
                principal_id: "tester".into(),
                context: vec![("role".into(), "admin".into())],
                usage_identifier_key: None,
            }),
            Some(token) if token.starts_with("key:") => Decision::Allow(Allow {
                principal_id: "keyholder".into(),
                context: Vec::new(),
                usage_identifier_key: Some(token["key:".len()..].into()),
            }),
            Some("forbidden") => Decision::Deny(Deny {
                status: 403,
                message: "Forbidden".into(),
            }),
            _ => Decision::Deny(Deny {
                status: 401,
                message: "Unauthorized".into(),
            }),
        }
    }
}

export!(Counting);
