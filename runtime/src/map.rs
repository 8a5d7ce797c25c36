//! The map stages, and the conversion of requests and responses between hyper and the
//! WIT records plugins see. Whatever a plugin returns is validated here before it can
//! reach a client or an upstream: header names and values (no CR/LF), status codes.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};

use crate::error::GatewayError;
use crate::plugin::{Context, Plugin, Request, RequestOutcome, Response};

/// Headers as `(name, value)` pairs; values that are not UTF-8 are converted lossily.
pub fn headers_to_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(n, v)| {
            let value = match v.to_str() {
                Ok(s) => s.to_owned(),
                Err(_) => String::from_utf8_lossy(v.as_bytes()).into_owned(),
            };
            (n.as_str().to_owned(), value)
        })
        .collect()
}

/// Pairs from a plugin as a header map; an invalid name or value fails the request.
pub fn pairs_to_headers(
    pairs: &[(String, String)],
    plugin: &str,
) -> Result<HeaderMap, GatewayError> {
    let mut headers = HeaderMap::with_capacity(pairs.len());
    for (name, value) in pairs {
        let n = HeaderName::try_from(name.as_str()).map_err(|_| GatewayError::PluginOutput {
            plugin: plugin.to_owned(),
            what: format!("header name {name:?}"),
        })?;
        let v = HeaderValue::try_from(value.as_str()).map_err(|_| GatewayError::PluginOutput {
            plugin: plugin.to_owned(),
            what: format!("value for header `{name}`"),
        })?;
        headers.append(n, v);
    }
    Ok(headers)
}

/// A mapper that rewrote a body usually passes the old `content-length` on with the
/// other headers; the body is sent whole, so the header must say its real length.
fn sync_content_length(headers: &mut HeaderMap, len: usize) {
    if headers.contains_key(http::header::CONTENT_LENGTH) {
        headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
    }
}

/// A status code from a plugin: a final status, 200 to 599.
pub fn status_from_plugin(status: u16, plugin: &str) -> Result<StatusCode, GatewayError> {
    StatusCode::from_u16(status)
        .ok()
        .filter(|s| (200..=599).contains(&s.as_u16()))
        .ok_or_else(|| GatewayError::PluginOutput {
            plugin: plugin.to_owned(),
            what: format!("status code {status}"),
        })
}

/// A response a plugin produced, validated.
pub struct PluginResponse {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl PluginResponse {
    /// Validates a WIT response from `plugin`.
    pub fn from_wit(resp: Response, plugin: &str) -> Result<Self, GatewayError> {
        let mut headers = pairs_to_headers(&resp.headers, plugin)?;
        sync_content_length(&mut headers, resp.body.len());
        Ok(Self {
            status: status_from_plugin(resp.status, plugin)?,
            headers,
            body: Bytes::from(resp.body),
        })
    }
}

/// The request after mapping, as the integration receives it.
pub struct MappedRequest {
    /// Method.
    pub method: Method,
    /// A new path, when the mapper changed it.
    pub path_override: Option<String>,
    /// The query string (no `?`).
    pub query: String,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

/// What the request mapper decided.
pub enum Mapped {
    /// Go on to the integration with this request.
    Forward(MappedRequest),
    /// Answer directly.
    Respond(PluginResponse),
}

/// Runs `map-request` on a buffered request.
pub async fn map_request(
    mapper: &Plugin,
    req: MappedRequest,
    path: &str,
    ctx: &Context,
) -> Result<Mapped, GatewayError> {
    let wit = Request {
        method: req.method.as_str().to_owned(),
        path: path.to_owned(),
        query: req.query,
        headers: headers_to_pairs(&req.headers),
        body: req.body.into(),
    };
    let outcome = mapper
        .map_request(&wit, ctx)
        .await
        .map_err(GatewayError::PluginFailed)?;
    let name = mapper.name();
    match outcome {
        RequestOutcome::Forward(r) => {
            let method = Method::from_bytes(r.method.as_bytes()).map_err(|_| {
                GatewayError::PluginOutput {
                    plugin: name.to_string(),
                    what: format!("method {:?}", r.method),
                }
            })?;
            let path_override = if r.path == path {
                None
            } else if r.path.starts_with('/')
                && r.path.parse::<http::uri::PathAndQuery>().is_ok()
                && !r.path.contains('?')
            {
                Some(r.path)
            } else {
                return Err(GatewayError::PluginOutput {
                    plugin: name.to_string(),
                    what: format!("path {:?}", r.path),
                });
            };
            if r.query.contains(['#', ' '])
                || http::uri::PathAndQuery::try_from(format!("/?{}", r.query)).is_err()
            {
                return Err(GatewayError::PluginOutput {
                    plugin: name.to_string(),
                    what: format!("query {:?}", r.query),
                });
            }
            let mut headers = pairs_to_headers(&r.headers, name)?;
            sync_content_length(&mut headers, r.body.len());
            Ok(Mapped::Forward(MappedRequest {
                method,
                path_override,
                query: r.query,
                headers,
                body: Bytes::from(r.body),
            }))
        }
        RequestOutcome::Respond(resp) => Ok(Mapped::Respond(PluginResponse::from_wit(resp, name)?)),
    }
}

/// Runs `map-response` on a buffered response.
pub async fn map_response(
    mapper: &Plugin,
    status: StatusCode,
    headers: &HeaderMap,
    body: Bytes,
    ctx: &Context,
) -> Result<PluginResponse, GatewayError> {
    let wit = Response {
        status: status.as_u16(),
        headers: headers_to_pairs(headers),
        body: body.into(),
    };
    let out = mapper
        .map_response(&wit, ctx)
        .await
        .map_err(GatewayError::PluginFailed)?;
    PluginResponse::from_wit(out, mapper.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_follows_a_rewritten_body() {
        let resp = Response {
            status: 200,
            headers: vec![("content-length".into(), "3".into())],
            body: b"longer".to_vec(),
        };
        let out = PluginResponse::from_wit(resp, "p").unwrap();
        assert_eq!(out.headers["content-length"], "6");
        let resp = Response {
            status: 200,
            headers: Vec::new(),
            body: b"x".to_vec(),
        };
        let out = PluginResponse::from_wit(resp, "p").unwrap();
        assert!(!out.headers.contains_key("content-length"), "not added");
    }

    #[test]
    fn refuses_header_injection_and_bad_statuses() {
        let bad = [("x-a".to_owned(), "ok\r\nset-cookie: evil".to_owned())];
        assert!(pairs_to_headers(&bad, "p").is_err());
        let bad = [("bad name".to_owned(), "v".to_owned())];
        assert!(pairs_to_headers(&bad, "p").is_err());
        let good = [
            ("X-A".to_owned(), "1".to_owned()),
            ("x-a".to_owned(), "2".to_owned()),
        ];
        let h = pairs_to_headers(&good, "p").unwrap();
        assert_eq!(h.get_all("x-a").iter().count(), 2);
        for s in [0, 99, 100, 199, 600, 1000] {
            assert!(status_from_plugin(s, "p").is_err(), "{s}");
        }
        assert_eq!(
            status_from_plugin(418, "p").unwrap(),
            StatusCode::IM_A_TEAPOT
        );
    }

    #[test]
    fn round_trips_headers() {
        let mut h = HeaderMap::new();
        h.append("a", "1".parse().unwrap());
        h.append("a", "2".parse().unwrap());
        h.insert("b", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        let pairs = headers_to_pairs(&h);
        assert_eq!(pairs[0], ("a".into(), "1".into()));
        assert_eq!(pairs[1], ("a".into(), "2".into()));
        assert_eq!(pairs[2], ("b".into(), "caf\u{fffd}".into()));
    }
}
