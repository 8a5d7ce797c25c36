//! The example mapper, in Rust: the reference every other language's example follows
//! (see `examples/plugins/README.md` for the behaviour they all share).
//!
//! On the way in it renames and adds headers from its config, sets top-level fields of a
//! JSON body, and answers 400 itself when a JSON body is malformed. On the way out it
//! adds headers.

pub mod json;

use serde_json::{Map, Value};
use weir_sdk::{Context, Headers, Mapper, Request, Response};

/// The plugin's config: four tables of strings, each optional.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Request headers to rename: `old name -> new name` (names compared case-insensitively).
    pub rename_headers: Vec<(String, String)>,
    /// Request headers to append.
    pub add_headers: Vec<(String, String)>,
    /// Top-level fields of a JSON request body to set to a string.
    pub json_fields: Vec<(String, String)>,
    /// Response headers to append.
    pub response_headers: Vec<(String, String)>,
}

impl Config {
    /// Parses the config JSON; `Err` says which key is wrong.
    pub fn parse(text: &str) -> Result<Config, String> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("config is not JSON: {e}"))?;
        let Value::Object(root) = value else {
            return Err("config is not a table".into());
        };
        let table = |key: &str| -> Result<Vec<(String, String)>, String> {
            match root.get(key) {
                None => Ok(Vec::new()),
                Some(Value::Object(m)) => strings(key, m),
                Some(_) => Err(format!("`{key}` must be a table of strings")),
            }
        };
        Ok(Config {
            rename_headers: table("rename_headers")?,
            add_headers: table("add_headers")?,
            json_fields: table("json_fields")?,
            response_headers: table("response_headers")?,
        })
    }
}

fn strings(key: &str, m: &Map<String, Value>) -> Result<Vec<(String, String)>, String> {
    m.iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), s.clone())),
            _ => Err(format!("`{key}.{k}` must be a string")),
        })
        .collect()
}

fn json_message(status: u16, message: &str) -> Response {
    Response::json(status, &serde_json::json!({ "message": message }))
}

/// Whether the first `content-type` is `application/json` (parameters ignored).
pub fn is_json(headers: &Headers) -> bool {
    headers.get("content-type").is_some_and(|v| {
        v.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case("application/json")
    })
}

/// The request side, apart from the host calls.
pub fn map_request_with(
    config: &Config,
    mut req: Request,
    ctx: &Context,
) -> Result<Request, Response> {
    let mut headers = Headers::new();
    for (name, value) in req.headers.iter() {
        let renamed = config
            .rename_headers
            .iter()
            .find(|(from, _)| from.eq_ignore_ascii_case(name))
            .map_or(name, |(_, to)| to.as_str());
        headers.append(renamed, value);
    }
    for (name, value) in &config.add_headers {
        headers.append(name, value);
    }
    if let Some(principal) = &ctx.principal_id {
        headers.append("x-principal", principal);
    }
    headers.append("x-body-bytes", &req.body.len().to_string());

    if !req.body.is_empty() && is_json(&req.headers) {
        req.body = json::set_fields(&req.body, &config.json_fields)
            .ok_or_else(|| json_message(400, "malformed JSON body"))?;
    }
    req.headers = headers;
    Ok(req)
}

/// The exported plugin.
pub struct ExampleMapper;

impl Mapper for ExampleMapper {
    fn map_request(req: Request, ctx: &Context) -> Result<Request, Response> {
        let config = Config::parse(&weir_sdk::config_json()).map_err(|e| {
            weir_sdk::log::error(&format!("bad config: {e}"));
            json_message(500, "plugin misconfigured")
        })?;
        weir_sdk::log::info(&format!(
            "map-request {} {} ({} body bytes)",
            req.method,
            req.path,
            req.body.len()
        ));
        map_request_with(&config, req, ctx).inspect_err(|_| {
            weir_sdk::log::warn("malformed JSON body");
        })
    }

    fn map_response(mut resp: Response, _ctx: &Context) -> Response {
        let config = match Config::parse(&weir_sdk::config_json()) {
            Ok(c) => c,
            Err(e) => {
                weir_sdk::log::error(&format!("bad config: {e}"));
                return json_message(500, "plugin misconfigured");
            }
        };
        for (name, value) in &config.response_headers {
            resp.headers.append(name, value);
        }
        resp
    }
}

weir_sdk::export_mapper!(ExampleMapper);

#[cfg(test)]
mod tests;
