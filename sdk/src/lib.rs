//! Write Weir gateway plugins (mappers, authorizers, CORS policies) in Rust.
//!
//! A plugin is a `cdylib` crate built for `wasm32-wasip2`. It implements the trait of its
//! world ([`Mapper`], [`Authorizer`] or [`Cors`]) and exports it with one macro
//! ([`export_mapper!`], [`export_authorizer!`] or [`export_cors!`]):
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! weir-sdk = { path = "../../sdk" }
//! ```
//!
//! ```
//! use weir_sdk::{Context, Mapper, Request, Response};
//!
//! /// Requires an API version header and tells the upstream which route matched.
//! struct Versioned;
//!
//! impl Mapper for Versioned {
//!     fn map_request(mut req: Request, ctx: &Context) -> Result<Request, Response> {
//!         if req.headers.get("x-api-version").is_none() {
//!             return Err(Response::json(400, &serde_json::json!({"message": "x-api-version is required"})));
//!         }
//!         req.headers.insert("x-route-key", &ctx.route_key);
//!         Ok(req)
//!     }
//! }
//!
//! weir_sdk::export_mapper!(Versioned);
//!
//! // The logic is plain Rust, so it can be tested on the host:
//! let req = Request::new("GET", "/pets");
//! let ctx = Context { route_key: "GET /pets".into(), ..Context::default() };
//! assert_eq!(Versioned::map_request(req, &ctx).unwrap_err().status, 400);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2` and name the `.wasm` file in
//! `weir.toml` with `world = "mapper"`. The gateway creates a fresh instance for every
//! call, so nothing in its memory survives a request; what later calls should see it
//! keeps with [`keep`] and reads with [`kept`]. Read the plugin's `config` table with
//! [`config`] and log with [`log`].
//!
//! # Worlds and component types
//!
//! The SDK runs `wit_bindgen::generate!` once per world, each in its own module
//! ([`mapper`], [`authorizer`], [`cors`]), so every plugin can use any of them and no
//! cargo features are involved. What makes this safe: the SDK's bindings describe only
//! the worlds' *imports* (wit-bindgen embeds `<world>-with-all-of-its-exports-removed`
//! when the export macro is public), and the component type with the exports is
//! embedded by the `export_*!` macro in the plugin crate itself. A component therefore
//! exports exactly the world it exports, imports only the `host` functions it calls,
//! and a cargo workspace of plugins of different worlds builds in one invocation.
//!
//! The logic of a plugin can be unit-tested on the host (`cargo test --target
//! x86_64-unknown-linux-gnu`) as long as it does not call [`config`], [`log`],
//! [`client_cert`], [`kept`], [`keep`] or [`signatures::verify`]: outside a wasm32 build
//! those host functions panic (the JWT authorizer checks signatures itself there).

extern crate self as weir_sdk;

mod types;

pub use types::*;

mod host;

pub use host::{ClientCert, cacheable, client_cert, config, config_json, keep, kept, log};

pub mod http;
pub mod json;
pub mod signatures;

pub mod authorizer;
pub mod cors;
pub mod mapper;

/// Implementation details used by the export macros.
#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;
}

/// Rewrites requests on their way to the integration, and responses on their way back.
pub trait Mapper {
    /// Returns the request to forward (possibly rewritten), or `Err` with a response to
    /// answer the client directly (the integration is then not called).
    fn map_request(req: Request, ctx: &Context) -> Result<Request, Response>;

    /// Rewrites the integration's response. The default returns it unchanged.
    fn map_response(resp: Response, ctx: &Context) -> Response {
        let _ = ctx;
        resp
    }
}

/// Decides whether a request may proceed.
pub trait Authorizer {
    /// Allows or denies; the gateway caches the decision per identity for the route's TTL.
    fn authorize(req: AuthorizationRequest, ctx: &Context) -> Decision;
}

/// A CORS policy.
pub trait Cors {
    /// Answers a preflight request (`OPTIONS` with `Origin` and
    /// `Access-Control-Request-Method`).
    fn preflight(req: RequestHead) -> Response;

    /// Returns the response headers with the policy's CORS headers applied.
    fn decorate(req: RequestHead, headers: Headers) -> Headers;
}
