//! Host bindings generated from `wit/` — the only place the ABI is spelled out.

#![allow(missing_docs)]

/// `instantiate_async` without the second type check: the generated one checks every
/// export's type again on each instance (`get_typed_func`), which is a twentieth of a
/// fresh call; `…Pre::new` already checked them against the component at load, and an
/// instance of it cannot differ.
macro_rules! instantiate_checked_at_load {
    ($pre:ident, $guest:ident, [$($export:ident),+]) => {
        impl<T: Send + 'static> $pre<T> {
            /// A new instance in `store`, its exports looked up by the indices found
            /// (and type-checked) at load.
            pub async fn instantiate_checked_at_load(
                &self,
                mut store: impl wasmtime::AsContextMut<Data = T>,
            ) -> wasmtime::Result<$guest> {
                let mut store = store.as_context_mut();
                let instance = self.instance_pre.instantiate_async(&mut store).await?;
                Ok($guest {
                    $($export: instance
                        .get_func(&mut store, &self.indices.$export)
                        .ok_or_else(|| {
                            wasmtime::Error::msg(concat!("no export ", stringify!($export)))
                        })?,)+
                })
            }
        }
    };
}

/// The `mapper` world; also the home of the shared `types`, `host`, `json` and `outcomes`
/// interfaces.
pub mod mapper {
    wasmtime::component::bindgen!({
        world: "mapper",
        path: "../wit",
        exports: { default: async },
        // Fails the call when a document or its index is over its bounds.
        imports: { "weir:plugin/json.index-object": trappable },
    });
    instantiate_checked_at_load!(MapperPre, Mapper, [map_request, map_response]);
}

/// The `authorizer` world.
pub mod authorizer {
    wasmtime::component::bindgen!({
        world: "authorizer",
        path: "../wit",
        exports: { default: async },
        with: {
            "weir:plugin/types": super::mapper::weir::plugin::types,
            "weir:plugin/host": super::mapper::weir::plugin::host,
            "weir:plugin/json": super::mapper::weir::plugin::json,
            "weir:plugin/outcomes": super::mapper::weir::plugin::outcomes,
        },
    });
    instantiate_checked_at_load!(AuthorizerPre, Authorizer, [authorize]);
}

/// The `cors` world.
pub mod cors {
    wasmtime::component::bindgen!({
        world: "cors",
        path: "../wit",
        exports: { default: async },
        with: {
            "weir:plugin/types": super::mapper::weir::plugin::types,
            "weir:plugin/host": super::mapper::weir::plugin::host,
            "weir:plugin/json": super::mapper::weir::plugin::json,
        },
    });
    instantiate_checked_at_load!(CorsPre, Cors, [preflight, decorate]);
}

pub use mapper::weir::plugin::host::{ClientCertificate, LogLevel};
pub use mapper::weir::plugin::outcomes::{
    Allow, AuthorizationRequest, Decision, Deny, RequestOutcome,
};
pub use mapper::weir::plugin::types::{Context, Request, RequestHead, Response};
