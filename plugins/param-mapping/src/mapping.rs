//! Parameter mapping operations (`append|overwrite|remove:header.NAME`, ...), parsed from
//! config once per call and applied to a request or a response.

use std::collections::BTreeMap;

use serde_json::Value;
use weir_sdk::{ClientCert, Context, Request, Response, query_pairs, query_string};

use crate::expr::{Env, Template};

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Add a value, keeping existing ones.
    Append,
    /// Replace every value.
    Overwrite,
    /// Remove every value.
    Remove,
}

/// What an operation changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A header.
    Header(String),
    /// A query-string parameter (requests only).
    Query(String),
    /// The path (requests only, overwrite only).
    Path,
    /// The status code (responses only, overwrite only).
    StatusCode,
}

/// One `"action:target" = "value"` entry.
#[derive(Debug, Clone)]
pub struct Op {
    action: Action,
    target: Target,
    value: Template,
}

impl Op {
    /// Whether its value reads the client's certificate.
    pub fn reads_client_cert(&self) -> bool {
        self.value.reads_client_cert()
    }
}

/// Which side a set of operations applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `request = { ... }`
    Request,
    /// `response = { ... }`
    Response,
}

/// Parses one side's table.
pub fn parse_ops(table: &BTreeMap<String, String>, side: Side) -> Result<Vec<Op>, String> {
    table.iter().map(|(k, v)| parse_op(k, v, side)).collect()
}

fn parse_op(key: &str, value: &str, side: Side) -> Result<Op, String> {
    let (action, target) = key
        .split_once(':')
        .ok_or_else(|| format!("`{key}`: expected `action:target`"))?;
    let action = match action {
        "append" => Action::Append,
        "overwrite" => Action::Overwrite,
        "remove" => Action::Remove,
        other => return Err(format!("`{key}`: unknown action `{other}`")),
    };
    let target = if let Some(name) = target.strip_prefix("header.") {
        Target::Header(name.to_ascii_lowercase())
    } else if let Some(name) = target.strip_prefix("querystring.") {
        Target::Query(name.to_owned())
    } else if target == "path" {
        Target::Path
    } else if target == "statuscode" {
        Target::StatusCode
    } else {
        return Err(format!("`{key}`: unknown target `{target}`"));
    };
    let name_ok = match &target {
        Target::Header(n) | Target::Query(n) => !n.is_empty(),
        _ => true,
    };
    let allowed = match (&target, side) {
        (Target::Header(_), _) => true,
        (Target::Query(_), Side::Request) => true,
        (Target::Path, Side::Request) | (Target::StatusCode, Side::Response) => {
            action == Action::Overwrite
        }
        _ => false,
    };
    if !name_ok || !allowed {
        return Err(format!("`{key}` is not allowed in {side:?} mappings"));
    }
    let value = Template::parse(value).map_err(|e| format!("`{key}`: {e}"))?;
    if side == Side::Request && value.reads_response() {
        return Err(format!(
            "`{key}`: $response is not available in request mappings"
        ));
    }
    if side == Side::Response && value.reads_request() {
        // `map-response` is not given the request; refuse rather than map to "".
        return Err(format!(
            "`{key}`: $request is not available in response mappings"
        ));
    }
    Ok(Op {
        action,
        target,
        value,
    })
}

fn json_body(body: &[u8], needed: bool) -> Option<Value> {
    if needed {
        serde_json::from_slice(body).ok()
    } else {
        None
    }
}

/// Applies request operations. Every value is computed from the original request.
pub fn apply_request(
    ops: &[Op],
    mut req: Request,
    ctx: &Context,
    client_cert: Option<&ClientCert>,
) -> Result<Request, String> {
    let body = json_body(&req.body, ops.iter().any(|o| o.value.reads_request_body()));
    let values: Vec<String> = {
        let env = Env {
            request_headers: &req.headers,
            request_query: &req.query,
            request_path: &req.path,
            request_body: body.as_ref(),
            response_headers: None,
            response_body: None,
            ctx,
            client_cert,
        };
        ops.iter().map(|o| o.value.eval(&env)).collect()
    };
    let mut query: Option<Vec<(String, String)>> = None;
    for (op, value) in ops.iter().zip(values) {
        match &op.target {
            Target::Header(name) => header_op(&mut req.headers, op.action, name, &value)?,
            Target::Query(name) => {
                let q = query.get_or_insert_with(|| query_pairs(&req.query));
                match op.action {
                    Action::Append => q.push((name.clone(), value)),
                    Action::Overwrite => {
                        q.retain(|(k, _)| k != name);
                        q.push((name.clone(), value));
                    }
                    Action::Remove => q.retain(|(k, _)| k != name),
                }
            }
            Target::Path => {
                if !value.starts_with('/') || value.contains(['?', '#', ' ']) {
                    return Err(format!("mapped path {value:?} is not a valid path"));
                }
                req.path = value;
            }
            Target::StatusCode => unreachable!("rejected when parsing"),
        }
    }
    if let Some(q) = query {
        req.query = query_string(q.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    }
    Ok(req)
}

/// Applies response operations. Values read the response and the context (the
/// request is not available when mapping a response).
pub fn apply_response(
    ops: &[Op],
    mut resp: Response,
    ctx: &Context,
    client_cert: Option<&ClientCert>,
) -> Result<Response, String> {
    let body = json_body(
        &resp.body,
        ops.iter().any(|o| o.value.reads_response_body()),
    );
    let no_headers = weir_sdk::Headers::new();
    let values: Vec<String> = {
        let env = Env {
            request_headers: &no_headers,
            request_query: "",
            request_path: "",
            request_body: None,
            response_headers: Some(&resp.headers),
            response_body: body.as_ref(),
            ctx,
            client_cert,
        };
        ops.iter().map(|o| o.value.eval(&env)).collect()
    };
    for (op, value) in ops.iter().zip(values) {
        match &op.target {
            Target::Header(name) => header_op(&mut resp.headers, op.action, name, &value)?,
            Target::StatusCode => {
                resp.status = value
                    .trim()
                    .parse::<u16>()
                    .ok()
                    .filter(|s| (200..=599).contains(s))
                    .ok_or_else(|| format!("mapped status code {value:?} is not 200-599"))?;
            }
            Target::Query(_) | Target::Path => unreachable!("rejected when parsing"),
        }
    }
    Ok(resp)
}

fn header_op(
    headers: &mut weir_sdk::Headers,
    action: Action,
    name: &str,
    value: &str,
) -> Result<(), String> {
    if value.contains(['\r', '\n', '\0']) {
        return Err(format!(
            "mapped value for header `{name}` contains a line break"
        ));
    }
    match action {
        Action::Append => headers.append(name, value),
        Action::Overwrite => headers.insert(name, value),
        Action::Remove => {
            headers.remove(name);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(pairs: &[(&str, &str)], side: Side) -> Result<Vec<Op>, String> {
        let t: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse_ops(&t, side)
    }

    #[test]
    fn rejects_misplaced_operations() {
        for (k, side) in [
            ("append:path", Side::Request),
            ("overwrite:statuscode", Side::Request),
            ("overwrite:querystring.a", Side::Response),
            ("overwrite:path", Side::Response),
            ("rename:header.a", Side::Request),
            ("overwrite:cookie.a", Side::Request),
            ("overwrite:header.", Side::Request),
            ("overwrite", Side::Request),
        ] {
            assert!(ops(&[(k, "v")], side).is_err(), "{k}");
        }
        assert!(
            ops(
                &[("overwrite:header.a", "$response.header.b")],
                Side::Request
            )
            .is_err()
        );
        assert!(
            ops(
                &[("overwrite:header.a", "x $request.header.b")],
                Side::Response
            )
            .is_err()
        );
    }

    #[test]
    fn request_operations() {
        let o = ops(
            &[
                ("append:header.x-tags", "two"),
                ("overwrite:header.x-user", "$request.header.x-id"),
                ("remove:header.x-secret", "''"),
                ("overwrite:querystring.page", "$request.querystring.p"),
                ("append:querystring.id", "$request.path.id"),
                ("remove:querystring.debug", "''"),
                ("overwrite:path", "/v2/$request.path.id"),
            ],
            Side::Request,
        )
        .unwrap();
        let mut req = Request::new("GET", "/x/7");
        req.query = "p=2&debug=1&keep=a%26b".into();
        req.headers = [("x-tags", "one"), ("x-id", "u"), ("x-secret", "s")]
            .into_iter()
            .collect();
        let ctx = Context {
            path_parameters: vec![("id".into(), "7".into())],
            ..Context::default()
        };
        let out = apply_request(&o, req, &ctx, None).unwrap();
        assert_eq!(
            out.headers.get_all("x-tags").collect::<Vec<_>>(),
            ["one", "two"]
        );
        assert_eq!(out.headers.get("x-user"), Some("u"));
        assert!(!out.headers.contains("x-secret"));
        assert_eq!(
            out.query, "p=2&keep=a%26b&id=7&page=2",
            "operations run in key order"
        );
        assert_eq!(out.path, "/v2/7");
    }

    #[test]
    fn response_operations_and_bad_values() {
        let o = ops(
            &[
                ("overwrite:statuscode", "$response.body.code"),
                ("remove:header.server", "''"),
            ],
            Side::Response,
        )
        .unwrap();
        let resp =
            Response::json(200, &serde_json::json!({"code": 202})).with_header("server", "x");
        let out = apply_response(&o, resp, &Context::default(), None).unwrap();
        assert_eq!(out.status, 202);
        assert!(!out.headers.contains("server"));
        let bad = Response::json(200, &serde_json::json!({"code": 42}));
        assert!(apply_response(&o, bad, &Context::default(), None).is_err());
        let o = ops(
            &[("overwrite:header.x", "$request.header.evil")],
            Side::Request,
        )
        .unwrap();
        let mut req = Request::new("GET", "/");
        req.headers.insert("evil", "a\r\nb");
        assert!(apply_request(&o, req, &Context::default(), None).is_err());
    }
}
