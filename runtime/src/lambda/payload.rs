//! Amazon API Gateway's Lambda proxy payloads, field for field: the event a function
//! receives for an HTTP request (payload format 2.0 or 1.0), and how its answer becomes
//! an HTTP response. Pure functions: nothing here runs a process or knows the gateway.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use http::StatusCode;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value, json};

use crate::config::PayloadFormat;

/// The account id events carry (`requestContext.accountId`).
pub const ACCOUNT_ID: &str = "000000000000";
/// The API id events carry (`requestContext.apiId`).
pub const API_ID: &str = "weir";

/// What the event of one request is made from.
pub struct HttpEvent<'a> {
    /// The request method.
    pub method: &'a str,
    /// The path as the client sent it (percent-encoding kept).
    pub path: &'a str,
    /// The query string without `?`.
    pub query: &'a str,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The request body.
    pub body: &'a [u8],
    /// The matched route key, e.g. `ANY /orders/{proxy+}` or `$default`.
    pub route_key: &'a str,
    /// The route's path parameters.
    pub path_parameters: &'a [(String, String)],
    /// `$context.stage`.
    pub stage: &'a str,
    /// `$context.requestId`.
    pub request_id: &'a str,
    /// The client's address.
    pub source_ip: &'a str,
    /// The client's `User-Agent`.
    pub user_agent: &'a str,
    /// `HTTP/1.1`, `HTTP/2.0`…
    pub protocol: &'a str,
    /// The host the client asked for (`Host`).
    pub domain_name: &'a str,
    /// When the request arrived.
    pub time: SystemTime,
    /// The authorizer's principal, when one allowed the request.
    pub principal_id: Option<&'a str>,
    /// The authorizer's context.
    pub authorizer_context: &'a [(String, String)],
    /// The client's certificate (mutual TLS), as `clientCert` is written.
    pub client_cert: Option<Value>,
}

/// The event for `format`, as JSON text.
pub fn event(format: PayloadFormat, e: &HttpEvent<'_>) -> Vec<u8> {
    let value = match format {
        PayloadFormat::V2 => event_v2(e),
        PayloadFormat::V1 => event_v1(e),
    };
    serde_json::to_vec(&value).unwrap_or_else(|_| b"{}".to_vec())
}

fn event_v2(e: &HttpEvent<'_>) -> Value {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    let mut cookies = Vec::new();
    for (name, value) in e.headers {
        let value = lossy(value);
        if *name == header::COOKIE {
            cookies.extend(
                value
                    .split(';')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned),
            );
            continue;
        }
        headers
            .entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let mut query: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in query_pairs(e.query) {
        query
            .entry(k)
            .and_modify(|joined| {
                joined.push(',');
                joined.push_str(&v);
            })
            .or_insert(v);
    }
    let (time, epoch) = times(e.time);
    let mut context = json!({
        "accountId": ACCOUNT_ID,
        "apiId": API_ID,
        "domainName": e.domain_name,
        "domainPrefix": domain_prefix(e.domain_name),
        "http": {
            "method": e.method,
            "path": e.path,
            "protocol": e.protocol,
            "sourceIp": e.source_ip,
            "userAgent": e.user_agent,
        },
        "requestId": e.request_id,
        "routeKey": e.route_key,
        "stage": e.stage,
        "time": time,
        "timeEpoch": epoch,
    });
    if let Some(authorizer) = authorizer_v2(e) {
        context["authorizer"] = authorizer;
    }
    if let Some(cert) = &e.client_cert {
        context["authentication"] = json!({ "clientCert": cert });
    }
    let mut event = Map::new();
    event.insert("version".into(), "2.0".into());
    event.insert("routeKey".into(), e.route_key.into());
    event.insert("rawPath".into(), e.path.into());
    event.insert("rawQueryString".into(), e.query.into());
    if !cookies.is_empty() {
        event.insert("cookies".into(), cookies.into());
    }
    event.insert("headers".into(), json!(headers));
    if !query.is_empty() {
        event.insert("queryStringParameters".into(), json!(query));
    }
    if !e.path_parameters.is_empty() {
        event.insert("pathParameters".into(), pairs_object(e.path_parameters));
    }
    event.insert("requestContext".into(), context);
    let (body, base64) = body_field(e.body);
    if let Some(body) = body {
        event.insert("body".into(), body.into());
    }
    event.insert("isBase64Encoded".into(), base64.into());
    Value::Object(event)
}

/// `requestContext.authorizer` of a 2.0 event: the authorizer's context under `lambda`
/// (with `principalId`), its `scope`/`scopes` claim under `jwt` when it passed one.
fn authorizer_v2(e: &HttpEvent<'_>) -> Option<Value> {
    let principal = e.principal_id?;
    let mut lambda = Map::new();
    lambda.insert("principalId".into(), principal.into());
    for (k, v) in e.authorizer_context {
        lambda.insert(k.clone(), v.as_str().into());
    }
    let mut claims = lambda.clone();
    claims.remove("principalId");
    claims.entry("sub").or_insert_with(|| principal.into());
    let scopes: Vec<&str> = e
        .authorizer_context
        .iter()
        .filter(|(k, _)| k == "scope" || k == "scp")
        .flat_map(|(_, v)| v.split_whitespace())
        .collect();
    Some(json!({
        "jwt": { "claims": claims, "scopes": if scopes.is_empty() { Value::Null } else { json!(scopes) } },
        "lambda": lambda,
    }))
}

fn event_v1(e: &HttpEvent<'_>) -> Value {
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    let mut multi_headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in e.headers {
        let value = lossy(value);
        headers.insert(name.as_str().to_owned(), value.clone());
        multi_headers
            .entry(name.as_str().to_owned())
            .or_default()
            .push(value);
    }
    let mut query: BTreeMap<String, String> = BTreeMap::new();
    let mut multi_query: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in query_pairs(e.query) {
        query.insert(k.clone(), v.clone());
        multi_query.entry(k).or_default().push(v);
    }
    let resource = match e.route_key.split_once(' ') {
        Some((_, path)) => path,
        None => e.route_key,
    };
    let (time, epoch) = times(e.time);
    let mut authorizer = Value::Null;
    if let Some(principal) = e.principal_id {
        let mut a = Map::new();
        a.insert("principalId".into(), principal.into());
        a.insert("integrationLatency".into(), 0.into());
        for (k, v) in e.authorizer_context {
            a.insert(k.clone(), v.as_str().into());
        }
        authorizer = Value::Object(a);
    }
    let null_if_empty = |v: Value, empty: bool| if empty { Value::Null } else { v };
    let (body, base64) = body_field(e.body);
    let mut event = json!({
        "version": "1.0",
        "resource": resource,
        "path": e.path,
        "httpMethod": e.method,
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": null_if_empty(json!(query), query.is_empty()),
        "multiValueQueryStringParameters": null_if_empty(json!(multi_query), multi_query.is_empty()),
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": API_ID,
            "authorizer": authorizer,
            "domainName": e.domain_name,
            "domainPrefix": domain_prefix(e.domain_name),
            "extendedRequestId": e.request_id,
            "httpMethod": e.method,
            "identity": {
                "accessKey": null,
                "accountId": null,
                "caller": null,
                "cognitoAuthenticationProvider": null,
                "cognitoAuthenticationType": null,
                "cognitoIdentityId": null,
                "cognitoIdentityPoolId": null,
                "principalOrgId": null,
                "sourceIp": e.source_ip,
                "user": null,
                "userAgent": e.user_agent,
                "userArn": null,
            },
            "path": e.path,
            "protocol": e.protocol,
            "requestId": e.request_id,
            "requestTime": time,
            "requestTimeEpoch": epoch,
            "resourceId": e.route_key,
            "resourcePath": resource,
            "stage": e.stage,
        },
        "pathParameters": null_if_empty(pairs_object(e.path_parameters), e.path_parameters.is_empty()),
        "stageVariables": null,
        "body": body,
        "isBase64Encoded": base64,
    });
    if let Some(cert) = &e.client_cert {
        event["requestContext"]["identity"]["clientCert"] = cert.clone();
    }
    event
}

/// A body as the event carries it: text when it is UTF-8, else base64 (and `true`).
/// An empty body is absent (`null`).
fn body_field(body: &[u8]) -> (Option<String>, bool) {
    if body.is_empty() {
        return (None, false);
    }
    match std::str::from_utf8(body) {
        Ok(text) => (Some(text.to_owned()), false),
        Err(_) => (Some(BASE64.encode(body)), true),
    }
}

fn lossy(v: &HeaderValue) -> String {
    String::from_utf8_lossy(v.as_bytes()).into_owned()
}

fn pairs_object(pairs: &[(String, String)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect(),
    )
}

/// The first label of the domain name (`domainPrefix`).
fn domain_prefix(domain: &str) -> &str {
    domain.split('.').next().unwrap_or(domain)
}

/// Query string pairs, percent-decoded (`+` is a space), in order.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// `requestContext.time` (`12/Mar/2020:19:03:58 +0000`) and `timeEpoch` (ms).
fn times(t: SystemTime) -> (String, u64) {
    let epoch = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    // 2020-03-12T19:03:58Z
    let rfc = humantime::format_rfc3339_seconds(t).to_string();
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = rfc[5..7].parse::<usize>().unwrap_or(1);
    let time = format!(
        "{}/{}/{}:{} +0000",
        &rfc[8..10],
        MONTHS[month.clamp(1, 12) - 1],
        &rfc[0..4],
        &rfc[11..19]
    );
    (time, epoch)
}

/// A function answer that is not a valid proxy response.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed Lambda proxy response: {0}")]
pub struct Malformed(pub String);

/// The HTTP response a function's answer stands for.
#[derive(Debug)]
pub struct HttpAnswer {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// Interprets a function's answer as Amazon API Gateway does for `format`.
///
/// 2.0: an object with `statusCode` is a response (`headers`, `cookies` → one
/// `set-cookie` each, `body`, `isBase64Encoded`); any other JSON is the body of a `200`
/// (`application/json`), a JSON string unquoted. 1.0: an object with `statusCode`
/// (`headers`, `multiValueHeaders`, `body`, `isBase64Encoded`), nothing else.
pub fn answer(format: PayloadFormat, raw: &[u8]) -> Result<HttpAnswer, Malformed> {
    let value: Value = serde_json::from_slice(raw)
        .map_err(|e| Malformed(format!("the answer is not JSON ({e})")))?;
    let structured = value
        .as_object()
        .filter(|o| o.contains_key("statusCode"))
        .cloned();
    match (format, structured) {
        (_, Some(object)) => structured_answer(format, object),
        (PayloadFormat::V1, None) => Err(Malformed("no statusCode".into())),
        (PayloadFormat::V2, None) => {
            let body = match value {
                Value::String(s) => Bytes::from(s),
                other => Bytes::from(raw_json(raw, &other)),
            };
            Ok(json_answer(body))
        }
    }
}

/// A `200` with `body` as `application/json`: a bare 2.0 answer, and what a response
/// mapper sees of a function's answer.
pub fn json_answer(body: Bytes) -> HttpAnswer {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    HttpAnswer {
        status: StatusCode::OK,
        headers,
        body,
    }
}

/// The answer's JSON text as the function wrote it (trimmed), or re-serialized.
fn raw_json(raw: &[u8], value: &Value) -> Vec<u8> {
    match std::str::from_utf8(raw) {
        Ok(text) => text.trim().as_bytes().to_vec(),
        Err(_) => value.to_string().into_bytes(),
    }
}

fn structured_answer(
    format: PayloadFormat,
    o: Map<String, Value>,
) -> Result<HttpAnswer, Malformed> {
    let code = match &o["statusCode"] {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    let status = code
        .and_then(|c| u16::try_from(c).ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .filter(|s| (200..=599).contains(&s.as_u16()))
        .ok_or_else(|| Malformed(format!("statusCode {} is not 200 to 599", o["statusCode"])))?;
    let mut headers = HeaderMap::new();
    let add = |name: &str, value: &Value, headers: &mut HeaderMap| -> Result<(), Malformed> {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(_) | Value::Bool(_) => value.to_string(),
            Value::Null => return Ok(()),
            _ => return Err(Malformed(format!("header `{name}` is not a string"))),
        };
        let n = HeaderName::try_from(name)
            .map_err(|_| Malformed(format!("invalid header name {name:?}")))?;
        // Framing is the gateway's, from the body it sends.
        if n == header::CONTENT_LENGTH || n == header::TRANSFER_ENCODING {
            return Ok(());
        }
        let v = HeaderValue::try_from(text)
            .map_err(|_| Malformed(format!("invalid value for header `{name}`")))?;
        headers.append(n, v);
        Ok(())
    };
    let object = |key: &str| -> Result<Option<&Map<String, Value>>, Malformed> {
        match o.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => Ok(Some(m)),
            Some(_) => Err(Malformed(format!("{key} is not an object"))),
        }
    };
    let multi = if format == PayloadFormat::V1 {
        object("multiValueHeaders")?
    } else {
        None
    };
    if let Some(h) = object("headers")? {
        for (name, value) in h {
            // A name in multiValueHeaders takes its values from there (AWS merges both).
            if multi.is_some_and(|m| m.keys().any(|k| k.eq_ignore_ascii_case(name))) {
                continue;
            }
            add(name, value, &mut headers)?;
        }
    }
    if let Some(m) = multi {
        for (name, values) in m {
            match values {
                Value::Array(list) => {
                    for v in list {
                        add(name, v, &mut headers)?;
                    }
                }
                other => add(name, other, &mut headers)?,
            }
        }
    }
    if format == PayloadFormat::V2 {
        match o.get("cookies") {
            None | Some(Value::Null) => {}
            Some(Value::Array(list)) => {
                for c in list {
                    let Value::String(c) = c else {
                        return Err(Malformed(
                            "cookies holds a value that is not a string".into(),
                        ));
                    };
                    add("set-cookie", &Value::String(c.clone()), &mut headers)?;
                }
            }
            Some(_) => return Err(Malformed("cookies is not an array".into())),
        }
    }
    let base64 = match o.get("isBase64Encoded") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(Malformed("isBase64Encoded is not a boolean".into())),
    };
    let body = match o.get("body") {
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(s)) if base64 => Bytes::from(
            BASE64
                .decode(s.trim())
                .map_err(|e| Malformed(format!("body is not base64 ({e})")))?,
        ),
        Some(Value::String(s)) => Bytes::from(s.clone()),
        Some(_) => return Err(Malformed("body is not a string".into())),
    };
    Ok(HttpAnswer {
        status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests;
