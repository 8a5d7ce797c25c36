//! CORS policy with Amazon API Gateway HTTP API semantics: answers preflights, adds
//! the policy's headers to every response for an allowed origin, and replaces whatever
//! CORS headers the backend set.

mod policy;

use std::sync::OnceLock;

pub use policy::Policy;
use weir_sdk::{Cors, Headers, RequestHead, Response};

/// The exported plugin.
pub struct CorsPlugin;

/// The policy, read from the config once per instance: a fresh instance (the default)
/// reads it on its one call, a reused one (`reuse = N`) keeps it.
fn policy() -> Option<&'static Policy> {
    static POLICY: OnceLock<Result<Policy, String>> = OnceLock::new();
    match POLICY.get_or_init(weir_sdk::config::<Policy>) {
        Ok(p) => Some(p),
        Err(e) => {
            weir_sdk::log::error(e);
            None
        }
    }
}

impl Cors for CorsPlugin {
    fn preflight(req: RequestHead) -> Response {
        match policy() {
            Some(p) => p.preflight(&req),
            None => Response::json(
                500,
                &serde_json::json!({"message": "Internal Server Error"}),
            ),
        }
    }

    fn decorate(req: RequestHead, headers: Headers) -> Headers {
        match policy() {
            Some(p) => {
                // The headers added depend on the origin alone: the gateway may reuse
                // them for this origin, method and path.
                let secs = p.cache_seconds();
                if secs > 0 {
                    weir_sdk::cacheable(secs);
                }
                p.decorate(&req, headers)
            }
            None => policy::strip_cors(headers),
        }
    }
}

weir_sdk::export_cors!(CorsPlugin);
