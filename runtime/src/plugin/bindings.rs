//! Host bindings generated from `wit/` — the only place the ABI is spelled out.

#![allow(missing_docs)]

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
}

pub use mapper::weir::plugin::host::{ClientCertificate, LogLevel};
pub use mapper::weir::plugin::outcomes::{
    Allow, AuthorizationRequest, Decision, Deny, RequestOutcome,
};
pub use mapper::weir::plugin::types::{Context, Request, RequestHead, Response};
