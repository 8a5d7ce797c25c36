//! Test authorizer that panics (traps) on every call.

wit_bindgen::generate!({ world: "authorizer", path: "../../../wit" });

struct TrapAuthorizer;

impl Guest for TrapAuthorizer {
    fn authorize(_req: AuthorizationRequest, _ctx: Context) -> Decision {
        panic!("trap-authorizer always fails");
    }
}

export!(TrapAuthorizer);
