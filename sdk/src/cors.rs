//! The `cors` world: bindings and the glue behind [`export_cors!`](crate::export_cors).

#[allow(missing_docs, clippy::all)]
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "cors",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_cors",
        default_bindings_module: "weir_sdk::cors::bindings",
        runtime_path: "weir_sdk::__private::wit_bindgen::rt",
    });
}

use crate::{Cors, Headers, RequestHead};
use bindings::weir::plugin::types as wit;

fn head(h: wit::RequestHead) -> RequestHead {
    RequestHead {
        method: h.method,
        path: h.path,
        query: h.query,
        headers: Headers::from(h.headers),
    }
}

/// Runs `C::preflight` on WIT values.
#[doc(hidden)]
pub fn preflight<C: Cors>(req: wit::RequestHead) -> wit::Response {
    let r = C::preflight(head(req));
    wit::Response {
        status: r.status,
        headers: r.headers.into_pairs(),
        body: r.body,
    }
}

/// Runs `C::decorate` on WIT values.
#[doc(hidden)]
pub fn decorate<C: Cors>(
    req: wit::RequestHead,
    headers: Vec<(String, String)>,
) -> Vec<(String, String)> {
    C::decorate(head(req), Headers::from(headers)).into_pairs()
}

/// Exports a [`Cors`] implementation as the plugin's `cors` world.
#[macro_export]
macro_rules! export_cors {
    ($ty:ty) => {
        const _: () = {
            struct WeirCorsExport;
            impl $crate::cors::bindings::Guest for WeirCorsExport {
                fn preflight(
                    req: $crate::cors::bindings::RequestHead,
                ) -> $crate::cors::bindings::Response {
                    $crate::cors::preflight::<$ty>(req)
                }
                fn decorate(
                    req: $crate::cors::bindings::RequestHead,
                    headers: Vec<(String, String)>,
                ) -> Vec<(String, String)> {
                    $crate::cors::decorate::<$ty>(req, headers)
                }
            }
            $crate::cors::bindings::__export_cors!(WeirCorsExport with_types_in $crate::cors::bindings);
        };
    };
}
