//! Test authorizer that panics (traps) on every call.

use weir_sdk::{AuthorizationRequest, Authorizer, Context, Decision};

struct TrapAuthorizer;

impl Authorizer for TrapAuthorizer {
    fn authorize(_req: AuthorizationRequest, _ctx: &Context) -> Decision {
        panic!("trap-authorizer always fails");
    }
}

weir_sdk::export_authorizer!(TrapAuthorizer);
