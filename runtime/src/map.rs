//! The map stages, and the conversion of requests and responses between hyper and the
//! WIT records plugins see. Whatever a plugin returns is validated here before it can
//! reach a client or an upstream: header names and values (no CR/LF), status codes.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};

use crate::catalog::Catalog;
use crate::error::GatewayError;
use crate::integrate::UpstreamRequest;
use crate::plugin::{CallContext, MapperPlugin, Request, RequestOutcome, Response};

/// Most headers a plugin may return.
pub const MAX_PLUGIN_HEADERS: usize = 1000;
/// Most bytes of header names and values a plugin may return.
pub const MAX_PLUGIN_HEADER_BYTES: usize = 64 * 1024;

/// A mapper plugin as a route uses it.
#[derive(Clone)]
pub struct Mapper {
    /// The plugin.
    pub plugin: MapperPlugin,
    /// On failure, go on unmapped instead of answering 500.
    pub fail_open: bool,
    /// Largest request body the mapper may produce (`limits.max_body`).
    pub max_body: u64,
    /// Largest response body the mapper may produce (`limits.max_response_body`).
    pub max_response_body: u64,
}

impl Mapper {
    /// The mapper `name` at `key`, with its failure policy and the body limits of
    /// `limits`.
    pub fn compile(
        name: &str,
        key: &str,
        catalog: &Catalog<'_>,
        errors: &mut Vec<String>,
    ) -> Option<Self> {
        let plugin = catalog.mapper(name, key, errors)?;
        let limits = &catalog.config().limits;
        Some(Mapper {
            plugin,
            fail_open: catalog.fails_open(name),
            max_body: limits.max_body.as_u64(),
            max_response_body: limits.max_response_body.as_u64(),
        })
    }

    /// Whether a failed call is passed over; logs and counts it when so.
    fn passes_over(&self, e: &GatewayError) -> bool {
        if self.fail_open {
            tracing::warn!(plugin = %self.plugin.name(), error = %e, "optional mapper failed; going on unmapped");
            metrics::counter!("weir_plugin_failed_open_total", "plugin" => self.plugin.name().to_string())
                .increment(1);
        }
        self.fail_open
    }
}

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

/// Puts back the bytes of header values that are not UTF-8. A plugin sees such a value
/// lossily (U+FFFD for each bad sequence); when it returns that string unchanged under
/// the same name, the original bytes go on rather than the replacement characters.
pub fn restore_raw_values(out: &mut HeaderMap, original: &HeaderMap) {
    for (name, raw) in original {
        if raw.to_str().is_ok() {
            continue;
        }
        let lossy = String::from_utf8_lossy(raw.as_bytes());
        if let http::header::Entry::Occupied(mut e) = out.entry(name) {
            for v in e.iter_mut() {
                if v.as_bytes() == lossy.as_bytes() {
                    *v = raw.clone();
                }
            }
        }
    }
}

/// Pairs from a plugin as a header map; an invalid name or value fails the request.
pub fn pairs_to_headers(
    pairs: &[(String, String)],
    plugin: &str,
) -> Result<HeaderMap, GatewayError> {
    let bytes: usize = pairs.iter().map(|(n, v)| n.len() + v.len()).sum();
    if pairs.len() > MAX_PLUGIN_HEADERS || bytes > MAX_PLUGIN_HEADER_BYTES {
        return Err(GatewayError::PluginOutput {
            plugin: plugin.to_owned(),
            what: format!(
                "header list ({} headers, {bytes} bytes; at most {MAX_PLUGIN_HEADERS} and {MAX_PLUGIN_HEADER_BYTES})",
                pairs.len()
            ),
        });
    }
    let mut headers = HeaderMap::with_capacity(pairs.len());
    for (name, value) in pairs {
        // Framing is the gateway's: the length comes from the body the plugin returned,
        // never from a header it copied or made up (a wrong one would desync the peer).
        if name.eq_ignore_ascii_case("content-length")
            || name.eq_ignore_ascii_case("transfer-encoding")
        {
            continue;
        }
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
    /// Validates a WIT response from `plugin`, whose body may hold `max_body` bytes.
    pub fn from_wit(resp: Response, plugin: &str, max_body: u64) -> Result<Self, GatewayError> {
        check_body(resp.body.len(), plugin, max_body)?;
        let mut headers = pairs_to_headers(&resp.headers, plugin)?;
        // Connection management is the gateway's, not the plugin's.
        crate::integrate::strip_hop_by_hop(&mut headers);
        Ok(Self {
            status: status_from_plugin(resp.status, plugin)?,
            headers,
            body: Bytes::from(resp.body),
        })
    }
}

fn check_body(len: usize, plugin: &str, max_body: u64) -> Result<(), GatewayError> {
    if len as u64 > max_body {
        return Err(GatewayError::PluginOutput {
            plugin: plugin.to_owned(),
            what: format!("body of {len} bytes (the limit is {max_body})"),
        });
    }
    Ok(())
}

/// What the request mapper decided.
pub enum Mapped {
    /// Go on to the integration with this request.
    Forward(UpstreamRequest),
    /// Answer directly.
    Respond(PluginResponse),
}

/// Runs `map-request` on a buffered request.
pub async fn map_request(
    mapper: &Mapper,
    req: UpstreamRequest,
    path: &str,
    ctx: &CallContext,
) -> Result<Mapped, GatewayError> {
    let kept = mapper.fail_open.then(|| UpstreamRequest {
        method: req.method.clone(),
        path_override: req.path_override.clone(),
        query: req.query.clone(),
        headers: req.headers.clone(),
        body: req.body.clone(),
        upload: None,
    });
    match call_map_request(mapper, req, path, ctx).await {
        Err(e) if mapper.passes_over(&e) => Ok(Mapped::Forward(kept.expect("kept when fail_open"))),
        other => other,
    }
}

async fn call_map_request(
    mapper: &Mapper,
    req: UpstreamRequest,
    path: &str,
    ctx: &CallContext,
) -> Result<Mapped, GatewayError> {
    let wit = Request {
        method: req.method.as_str().to_owned(),
        path: path.to_owned(),
        query: req.query,
        headers: headers_to_pairs(&req.headers),
        body: req.body.into(),
    };
    let original = req.headers;
    let outcome = mapper
        .plugin
        .map_request(&wit, ctx)
        .await
        .map_err(GatewayError::PluginFailed)?;
    let name = mapper.plugin.name();
    match outcome {
        RequestOutcome::Forward(r) => {
            let method = Method::from_bytes(r.method.as_bytes()).map_err(|_| {
                GatewayError::PluginOutput {
                    plugin: name.to_string(),
                    what: format!("method {:?}", r.method),
                }
            })?;
            // A mapper's path meets the checks a client's path does (the accept stage):
            // no `.` or `..` segments, however written, and ASCII only.
            let path_override = if r.path == path {
                None
            } else if r.path.starts_with('/')
                && r.path.is_ascii()
                && !crate::route::has_dot_segment(&r.path)
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
            check_body(r.body.len(), name, mapper.max_body)?;
            let mut headers = pairs_to_headers(&r.headers, name)?;
            restore_raw_values(&mut headers, &original);
            Ok(Mapped::Forward(UpstreamRequest {
                method,
                path_override,
                query: r.query,
                headers,
                body: Bytes::from(r.body),
                upload: None,
            }))
        }
        RequestOutcome::Respond(resp) => Ok(Mapped::Respond(PluginResponse::from_wit(
            resp,
            name,
            mapper.max_response_body,
        )?)),
    }
}

/// Runs `map-response` on a buffered response.
pub async fn map_response(
    mapper: &Mapper,
    status: StatusCode,
    headers: &HeaderMap,
    body: Bytes,
    ctx: &CallContext,
) -> Result<PluginResponse, GatewayError> {
    let kept = mapper.fail_open.then(|| body.clone());
    let wit = Response {
        status: status.as_u16(),
        headers: headers_to_pairs(headers),
        body: body.into(),
    };
    let out = mapper
        .plugin
        .map_response(&wit, ctx)
        .await
        .map_err(GatewayError::PluginFailed)
        .and_then(|out| {
            let mut resp =
                PluginResponse::from_wit(out, mapper.plugin.name(), mapper.max_response_body)?;
            restore_raw_values(&mut resp.headers, headers);
            Ok(resp)
        });
    match out {
        Err(e) if mapper.passes_over(&e) => Ok(PluginResponse {
            status,
            headers: headers.clone(),
            body: kept.expect("kept when fail_open"),
        }),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let framing = [
            ("Content-Length".to_owned(), "2".to_owned()),
            ("transfer-encoding".to_owned(), "chunked".to_owned()),
        ];
        assert!(pairs_to_headers(&framing, "p").unwrap().is_empty());
        // Beyond ASCII is HTTP's obs-text and passes; control characters do not.
        let utf8 = [("x-a".to_owned(), "café".to_owned())];
        assert_eq!(
            pairs_to_headers(&utf8, "p").unwrap()["x-a"].as_bytes(),
            "café".as_bytes()
        );
        for bad in ["\u{0}", "a\u{1}b", "\u{7f}", "\r"] {
            let pair = [("x-a".to_owned(), bad.to_owned())];
            assert!(pairs_to_headers(&pair, "p").is_err(), "{bad:?}");
        }
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

    #[test]
    fn restores_untouched_raw_values_only() {
        let mut original = HeaderMap::new();
        original.insert("b", HeaderValue::from_bytes(b"caf\xe9").unwrap());
        original.insert("c", HeaderValue::from_bytes(b"\xff").unwrap());
        let pairs = [
            ("b".to_owned(), "caf\u{fffd}".to_owned()),
            ("b".to_owned(), "other".to_owned()),
            ("c".to_owned(), "changed \u{fffd}".to_owned()),
            ("d".to_owned(), "caf\u{fffd}".to_owned()),
        ];
        let mut out = pairs_to_headers(&pairs, "p").unwrap();
        restore_raw_values(&mut out, &original);
        let b: Vec<_> = out.get_all("b").iter().map(|v| v.as_bytes()).collect();
        assert_eq!(b, [&b"caf\xe9"[..], b"other"]);
        assert_eq!(out["c"].as_bytes(), "changed \u{fffd}".as_bytes());
        assert_eq!(
            out["d"].as_bytes(),
            "caf\u{fffd}".as_bytes(),
            "only under its own name"
        );
    }
}
