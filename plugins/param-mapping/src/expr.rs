//! Mapping values: static text mixed with references such as `$request.header.x-user`,
//! `$request.body.item.name` or `${context.requestId}`. Parsing is separate from
//! evaluation so that a config is checked before it is used.

use serde_json::Value;
use weir_sdk::{ClientCert, Context, Headers, query_pairs};

/// A parsed value: literal text and references, concatenated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Part>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Ref(Ref),
}

/// Something a value can refer to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ref {
    /// `$request.header.NAME`
    RequestHeader(String),
    /// `$request.querystring.NAME` (decoded)
    RequestQuery(String),
    /// `$request.path.NAME` (a path parameter)
    RequestPath(String),
    /// `$request.path` alone: the request path
    RequestPathWhole,
    /// `$request.body.a.b.0` (JSON body)
    RequestBody(Vec<String>),
    /// `$response.header.NAME`
    ResponseHeader(String),
    /// `$response.body.a.b` (JSON body)
    ResponseBody(Vec<String>),
    /// `$context.requestId`, `$context.routeKey`, `$context.stage`, `$context.sourceIp`
    Context(String),
    /// `$context.authorizer.KEY` (`principalId` included)
    Authorizer(String),
    /// `$context.identity.clientCert.FIELD`: `clientCertPem`, `subjectDN`, `issuerDN`,
    /// `serialNumber`, `validity.notBefore`, `validity.notAfter` (mutual TLS)
    ClientCert(String),
}

const CLIENT_CERT_FIELDS: [&str; 6] = [
    "clientCertPem",
    "subjectDN",
    "issuerDN",
    "serialNumber",
    "validity.notBefore",
    "validity.notAfter",
];

const CONTEXT_VARS: [&str; 4] = ["requestId", "routeKey", "stage", "sourceIp"];

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

impl Template {
    /// Parses a value. `''` (AWS's way to write an empty value) is the empty string.
    pub fn parse(s: &str) -> Result<Template, String> {
        if s == "''" {
            return Ok(Template(Vec::new()));
        }
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = s;
        while let Some(i) = rest.find('$') {
            let after = &rest[i + 1..];
            let (reference, consumed) = if let Some(braced) = after.strip_prefix('{') {
                let end = braced
                    .find('}')
                    .ok_or_else(|| format!("unclosed `${{` in {s:?}"))?;
                (&braced[..end], end + 2)
            } else if after.starts_with("request.")
                || after.starts_with("response.")
                || after.starts_with("context.")
            {
                let end = after.find(|c| !is_name_char(c)).unwrap_or(after.len());
                let name = after[..end].trim_end_matches('.');
                (name, name.len())
            } else {
                // A `$` that starts no reference is plain text.
                text.push_str(&rest[..=i]);
                rest = after;
                continue;
            };
            text.push_str(&rest[..i]);
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(Part::Ref(parse_ref(reference)?));
            rest = &after[consumed..];
        }
        text.push_str(rest);
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Template(parts))
    }

    /// Whether any part reads the request (`$request.*`).
    pub fn reads_request(&self) -> bool {
        self.refs().any(|r| {
            matches!(
                r,
                Ref::RequestHeader(_)
                    | Ref::RequestQuery(_)
                    | Ref::RequestPath(_)
                    | Ref::RequestPathWhole
                    | Ref::RequestBody(_)
            )
        })
    }

    /// Whether any part reads the response (`$response.*`).
    pub fn reads_response(&self) -> bool {
        self.refs()
            .any(|r| matches!(r, Ref::ResponseHeader(_) | Ref::ResponseBody(_)))
    }

    /// Whether any part reads the client's certificate.
    pub fn reads_client_cert(&self) -> bool {
        self.refs().any(|r| matches!(r, Ref::ClientCert(_)))
    }

    /// Whether any part reads the request body.
    pub fn reads_request_body(&self) -> bool {
        self.refs().any(|r| matches!(r, Ref::RequestBody(_)))
    }

    /// Whether any part reads the response body.
    pub fn reads_response_body(&self) -> bool {
        self.refs().any(|r| matches!(r, Ref::ResponseBody(_)))
    }

    /// Every reference.
    pub fn refs(&self) -> impl Iterator<Item = &Ref> {
        self.0.iter().filter_map(|p| match p {
            Part::Ref(r) => Some(r),
            Part::Text(_) => None,
        })
    }

    /// The value in `env`. A reference that resolves to nothing is the empty string.
    pub fn eval(&self, env: &Env<'_>) -> String {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Ref(r) => out.push_str(&env.resolve(r)),
            }
        }
        out
    }
}

fn parse_ref(r: &str) -> Result<Ref, String> {
    let bad = || format!("unknown reference `${r}`");
    let (scope, rest) = r.split_once('.').ok_or_else(bad)?;
    let (kind, name) = rest.split_once('.').unwrap_or((rest, ""));
    let path = |name: &str| -> Result<Vec<String>, String> {
        if name.is_empty() || name.split('.').any(str::is_empty) {
            return Err(bad());
        }
        Ok(name.split('.').map(str::to_owned).collect())
    };
    let named = |name: &str| -> Result<String, String> {
        if name.is_empty() {
            Err(bad())
        } else {
            Ok(name.to_owned())
        }
    };
    Ok(match (scope, kind) {
        ("request", "header") => Ref::RequestHeader(named(name)?),
        ("request", "querystring") => Ref::RequestQuery(named(name)?),
        ("request", "path") if name.is_empty() => Ref::RequestPathWhole,
        ("request", "path") => Ref::RequestPath(named(name)?),
        ("request", "body") => Ref::RequestBody(path(name)?),
        ("response", "header") => Ref::ResponseHeader(named(name)?),
        ("response", "body") => Ref::ResponseBody(path(name)?),
        ("context", "authorizer") => Ref::Authorizer(named(name)?),
        ("context", "identity") if name == "sourceIp" => Ref::Context(name.to_owned()),
        ("context", "identity") => match name.strip_prefix("clientCert.") {
            Some(field) if CLIENT_CERT_FIELDS.contains(&field) => Ref::ClientCert(field.to_owned()),
            _ => return Err(bad()),
        },
        ("context", var) if name.is_empty() && CONTEXT_VARS.contains(&var) => {
            Ref::Context(var.to_owned())
        }
        _ => return Err(bad()),
    })
}

/// What references are resolved against.
pub struct Env<'a> {
    /// The request's headers.
    pub request_headers: &'a Headers,
    /// The request's raw query string.
    pub request_query: &'a str,
    /// The request's path.
    pub request_path: &'a str,
    /// The request body as JSON, when some template reads it.
    pub request_body: Option<&'a Value>,
    /// The response's headers (response mapping only).
    pub response_headers: Option<&'a Headers>,
    /// The response body as JSON, when some template reads it.
    pub response_body: Option<&'a Value>,
    /// The gateway's context.
    pub ctx: &'a Context,
    /// The client's certificate, when the request came with one and a value reads it.
    pub client_cert: Option<&'a ClientCert>,
}

impl Env<'_> {
    fn resolve(&self, r: &Ref) -> String {
        match r {
            Ref::RequestHeader(n) => self.request_headers.get(n).unwrap_or("").to_owned(),
            Ref::RequestQuery(n) => query_pairs(self.request_query)
                .into_iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v)
                .unwrap_or_default(),
            Ref::RequestPath(n) => self.ctx.path_param(n).unwrap_or("").to_owned(),
            Ref::RequestPathWhole => self.request_path.to_owned(),
            Ref::RequestBody(p) => json_at(self.request_body, p),
            Ref::ResponseHeader(n) => self
                .response_headers
                .and_then(|h| h.get(n))
                .unwrap_or("")
                .to_owned(),
            Ref::ResponseBody(p) => json_at(self.response_body, p),
            Ref::Context(var) => match var.as_str() {
                "requestId" => self.ctx.request_id.clone(),
                "routeKey" => self.ctx.route_key.clone(),
                "stage" => self.ctx.stage.clone(),
                "sourceIp" => self.ctx.source_ip.clone(),
                _ => String::new(),
            },
            Ref::ClientCert(field) => self
                .client_cert
                .map(|c| match field.as_str() {
                    "clientCertPem" => c.pem.clone(),
                    "subjectDN" => c.subject_dn.clone(),
                    "issuerDN" => c.issuer_dn.clone(),
                    "serialNumber" => c.serial_number.clone(),
                    "validity.notBefore" => c.not_before.clone(),
                    "validity.notAfter" => c.not_after.clone(),
                    _ => String::new(),
                })
                .unwrap_or_default(),
            // AWS names JWT claims `$context.authorizer.claims.NAME`; the JWT authorizer
            // passes them as plain keys, so both spellings work.
            Ref::Authorizer(k) => self
                .ctx
                .authorizer(k)
                .or_else(|| {
                    k.strip_prefix("claims.")
                        .and_then(|c| self.ctx.authorizer(c))
                })
                .unwrap_or("")
                .to_owned(),
        }
    }
}

/// The value at a dotted path (`a.b.0`) as text: strings as they are, other scalars
/// and containers as JSON, missing and null as empty.
fn json_at(root: Option<&Value>, path: &[String]) -> String {
    let mut v = match root {
        Some(v) => v,
        None => return String::new(),
    };
    for seg in path {
        let next = match v {
            Value::Object(m) => m.get(seg),
            Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        };
        match next {
            Some(n) => v = n,
            None => return String::new(),
        }
    }
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests;
