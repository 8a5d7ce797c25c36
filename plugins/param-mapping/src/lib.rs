//! Parameter mapping with Amazon API Gateway HTTP API semantics: add, overwrite or
//! remove headers and query-string parameters, overwrite the path on the way in, and
//! the status code and headers on the way out, with values taken from the request,
//! the response, the context and the authorizer.

pub mod expr;
#[doc(hidden)]
pub mod fuzzing;
pub mod mapping;

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;
use weir_sdk::{Context, Mapper, Request, Response};

use mapping::{Side, apply_request, apply_response, parse_ops};

/// The plugin's config table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Operations on the request: `"append:header.x-a" = "value"`.
    #[serde(default)]
    pub request: BTreeMap<String, String>,
    /// Operations on the response.
    #[serde(default)]
    pub response: BTreeMap<String, String>,
}

/// The exported plugin.
pub struct ParamMapping;

fn internal_error(why: &str) -> Response {
    weir_sdk::log::error(why);
    Response::json(
        500,
        &serde_json::json!({"message": "Internal Server Error"}),
    )
}

/// The client's certificate, asked of the gateway only when a value reads it.
fn client_cert(ops: &[mapping::Op]) -> Option<weir_sdk::ClientCert> {
    ops.iter()
        .any(|o| o.reads_client_cert())
        .then(weir_sdk::client_cert)
        .flatten()
}

/// The operations of one side, parsed from the config once per instance: a fresh
/// instance (the default) parses them on its one call, a reused one (`reuse = N`)
/// keeps them for every call after.
fn ops(side: Side) -> Result<&'static [mapping::Op], String> {
    static CONFIG: OnceLock<Result<Config, String>> = OnceLock::new();
    static REQUEST: OnceLock<Result<Vec<mapping::Op>, String>> = OnceLock::new();
    static RESPONSE: OnceLock<Result<Vec<mapping::Op>, String>> = OnceLock::new();
    let cell = match side {
        Side::Request => &REQUEST,
        Side::Response => &RESPONSE,
    };
    cell.get_or_init(|| {
        let config = CONFIG.get_or_init(weir_sdk::config).as_ref()?;
        match side {
            Side::Request => parse_ops(&config.request, side),
            Side::Response => parse_ops(&config.response, side),
        }
    })
    .as_deref()
    .map_err(Clone::clone)
}

impl Mapper for ParamMapping {
    fn map_request(req: Request, ctx: &Context) -> Result<Request, Response> {
        let ops = ops(Side::Request).map_err(|e| internal_error(&e))?;
        let cert = client_cert(ops);
        apply_request(ops, req, ctx, cert.as_ref()).map_err(|e| internal_error(&e))
    }

    fn map_response(resp: Response, ctx: &Context) -> Response {
        let result = ops(Side::Response)
            .and_then(|ops| apply_response(ops, resp, ctx, client_cert(ops).as_ref()));
        result.unwrap_or_else(|e| internal_error(&e))
    }
}

weir_sdk::export_mapper!(ParamMapping);
