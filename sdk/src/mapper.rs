//! The `mapper` world: bindings and the glue behind [`export_mapper!`](crate::export_mapper).

#[allow(missing_docs, clippy::all)]
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "mapper",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_mapper",
        default_bindings_module: "weir_sdk::mapper::bindings",
        runtime_path: "weir_sdk::__private::wit_bindgen::rt",
    });
}

use crate::{Context, Headers, Mapper, Request, Response};
use bindings::weir::plugin::outcomes::RequestOutcome;
use bindings::weir::plugin::types as wit;

impl From<wit::Context> for Context {
    fn from(c: wit::Context) -> Self {
        Context {
            request_id: c.request_id,
            route_key: c.route_key,
            stage: c.stage,
            path_parameters: c.path_parameters,
            source_ip: c.source_ip,
            principal_id: c.principal_id,
            authorizer_context: c.authorizer_context,
        }
    }
}

fn to_wit_response(r: Response) -> wit::Response {
    wit::Response {
        status: r.status,
        headers: r.headers.into_pairs(),
        body: r.body,
    }
}

/// Runs `M::map_request` on WIT values.
#[doc(hidden)]
pub fn map_request<M: Mapper>(req: wit::Request, ctx: wit::Context) -> RequestOutcome {
    let req = Request {
        method: req.method,
        path: req.path,
        query: req.query,
        headers: Headers::from(req.headers),
        body: req.body,
    };
    match M::map_request(req, &ctx.into()) {
        Ok(r) => RequestOutcome::Forward(wit::Request {
            method: r.method,
            path: r.path,
            query: r.query,
            headers: r.headers.into_pairs(),
            body: r.body,
        }),
        Err(resp) => RequestOutcome::Respond(to_wit_response(resp)),
    }
}

/// Runs `M::map_response` on WIT values.
#[doc(hidden)]
pub fn map_response<M: Mapper>(resp: wit::Response, ctx: wit::Context) -> wit::Response {
    let resp = Response {
        status: resp.status,
        headers: Headers::from(resp.headers),
        body: resp.body,
    };
    to_wit_response(M::map_response(resp, &ctx.into()))
}

/// Exports a [`Mapper`] implementation as the plugin's `mapper` world.
#[macro_export]
macro_rules! export_mapper {
    ($ty:ty) => {
        const _: () = {
            struct WeirMapperExport;
            impl $crate::mapper::bindings::Guest for WeirMapperExport {
                fn map_request(
                    req: $crate::mapper::bindings::Request,
                    ctx: $crate::mapper::bindings::Context,
                ) -> $crate::mapper::bindings::RequestOutcome {
                    $crate::mapper::map_request::<$ty>(req, ctx)
                }
                fn map_response(
                    resp: $crate::mapper::bindings::Response,
                    ctx: $crate::mapper::bindings::Context,
                ) -> $crate::mapper::bindings::Response {
                    $crate::mapper::map_response::<$ty>(resp, ctx)
                }
            }
            $crate::mapper::bindings::__export_mapper!(WeirMapperExport with_types_in $crate::mapper::bindings);
        };
    };
}
