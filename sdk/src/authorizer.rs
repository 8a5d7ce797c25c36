//! The `authorizer` world: bindings and the glue behind
//! [`export_authorizer!`](crate::export_authorizer).

#[allow(missing_docs, clippy::all)]
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "authorizer",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_authorizer",
        default_bindings_module: "weir_sdk::authorizer::bindings",
        runtime_path: "weir_sdk::__private::wit_bindgen::rt",
    });
}

use crate::{AuthorizationRequest, Authorizer, Context, Decision, Headers};
use bindings::weir::plugin::outcomes as wit_out;
use bindings::weir::plugin::types as wit;

/// Runs `A::authorize` on WIT values.
#[doc(hidden)]
pub fn authorize<A: Authorizer>(
    req: wit_out::AuthorizationRequest,
    ctx: wit::Context,
) -> wit_out::Decision {
    let req = AuthorizationRequest {
        method: req.method,
        path: req.path,
        query: req.query,
        headers: Headers::from(req.headers),
        identity: req.identity,
        scopes: req.scopes,
    };
    let ctx = Context {
        request_id: ctx.request_id,
        route_key: ctx.route_key,
        stage: ctx.stage,
        path_parameters: ctx.path_parameters,
        source_ip: ctx.source_ip,
        principal_id: ctx.principal_id,
        authorizer_context: ctx.authorizer_context,
    };
    match A::authorize(req, &ctx) {
        Decision::Allow {
            principal_id,
            context,
            usage_identifier_key,
        } => wit_out::Decision::Allow(wit_out::Allow {
            principal_id,
            context,
            usage_identifier_key,
        }),
        Decision::Deny { status, message } => {
            wit_out::Decision::Deny(wit_out::Deny { status, message })
        }
    }
}

/// Exports an [`Authorizer`] implementation as the plugin's `authorizer` world.
#[macro_export]
macro_rules! export_authorizer {
    ($ty:ty) => {
        const _: () = {
            struct WeirAuthorizerExport;
            impl $crate::authorizer::bindings::Guest for WeirAuthorizerExport {
                fn authorize(
                    req: $crate::authorizer::bindings::AuthorizationRequest,
                    ctx: $crate::authorizer::bindings::Context,
                ) -> $crate::authorizer::bindings::Decision {
                    $crate::authorizer::authorize::<$ty>(req, ctx)
                }
            }
            $crate::authorizer::bindings::__export_authorizer!(WeirAuthorizerExport with_types_in $crate::authorizer::bindings);
        };
    };
}
