//! The CORS stages: answer preflights before anything else, decorate every response.

use http::header::{self, HeaderValue};
use http::request::Parts;
use http::{Method, Response};

use crate::error::GatewayError;
use crate::map::{PluginResponse, headers_to_pairs, pairs_to_headers, restore_raw_values};
use crate::plugin::{Plugin, RequestHead};

/// An `OPTIONS` request with `Origin` and `Access-Control-Request-Method`.
pub fn is_preflight(head: &Parts) -> bool {
    head.method == Method::OPTIONS
        && head.headers.contains_key(header::ORIGIN)
        && head
            .headers
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

fn wit_head(head: &Parts) -> RequestHead {
    RequestHead {
        method: head.method.as_str().to_owned(),
        path: head.uri.path().to_owned(),
        query: head.uri.query().unwrap_or("").to_owned(),
        headers: headers_to_pairs(&head.headers),
    }
}

/// Answers a preflight with the policy plugin.
pub async fn preflight(
    policy: &Plugin,
    head: &Parts,
    max_body: u64,
) -> Result<PluginResponse, GatewayError> {
    let resp = policy
        .preflight(&wit_head(head))
        .await
        .map_err(GatewayError::PluginFailed)?;
    PluginResponse::from_wit(resp, policy.name(), max_body)
}

/// Applies the policy's headers to a response. A request without `Origin` is not a CORS
/// request: the policy is not called and the response only gets `Vary: Origin`. If the
/// plugin fails, the response goes out without CORS headers (browsers then block it).
pub async fn decorate<B>(policy: &Plugin, head: &Parts, resp: &mut Response<B>) {
    if !head.headers.contains_key(header::ORIGIN) {
        resp.headers_mut()
            .append(header::VARY, HeaderValue::from_static("origin"));
        return;
    }
    let pairs = headers_to_pairs(resp.headers());
    let result = policy
        .decorate(&wit_head(head), &pairs)
        .await
        .map_err(GatewayError::PluginFailed)
        .and_then(|out| pairs_to_headers(&out, policy.name()));
    match result {
        Ok(mut headers) => {
            restore_raw_values(&mut headers, resp.headers());
            *resp.headers_mut() = headers;
        }
        Err(e) => {
            tracing::error!(error = %e, "CORS policy failed; response sent without CORS headers");
            remove_access_control(resp.headers_mut());
        }
    }
}

/// Drops every `access-control-*` header (none of the backend's may pass unchecked).
fn remove_access_control(headers: &mut http::HeaderMap) {
    let names: Vec<_> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for n in names {
        headers.remove(n);
    }
}
