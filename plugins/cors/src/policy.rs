//! The policy itself: plain Rust over SDK types, unit-tested on the host.

use serde::{Deserialize, Deserializer};
use weir_sdk::{Headers, RequestHead, Response};

/// Accepts a list of strings or a single string (`"*"` or one value).
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

/// The plugin's config table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Allowed origins: exact values, or `*` for any.
    #[serde(default, deserialize_with = "one_or_many")]
    pub allow_origins: Vec<String>,
    /// Allowed methods, or `*`.
    #[serde(default, deserialize_with = "one_or_many")]
    pub allow_methods: Vec<String>,
    /// Allowed request headers, or `*`.
    #[serde(default, deserialize_with = "one_or_many")]
    pub allow_headers: Vec<String>,
    /// Response headers the browser may read.
    #[serde(default, deserialize_with = "one_or_many")]
    pub expose_headers: Vec<String>,
    /// Seconds a preflight may be cached.
    pub max_age: Option<u64>,
    /// Whether credentials are allowed.
    #[serde(default)]
    pub allow_credentials: bool,
    /// How long the gateway may reuse the headers `decorate` adds for one origin,
    /// method and path, in seconds (default 300; 0: ask the policy every time).
    pub cache_seconds: Option<u32>,
}

fn any(list: &[String]) -> bool {
    list.iter().any(|v| v == "*")
}

impl Policy {
    /// Seconds the gateway may reuse `decorate`'s answer (see `cache_seconds`).
    pub fn cache_seconds(&self) -> u32 {
        self.cache_seconds.unwrap_or(300).min(3600)
    }

    /// The value of `access-control-allow-origin` for `origin`, if it is allowed.
    fn allow_origin(&self, origin: &str) -> Option<String> {
        if self
            .allow_origins
            .iter()
            .any(|o| o.eq_ignore_ascii_case(origin))
        {
            return Some(origin.to_owned());
        }
        if any(&self.allow_origins) {
            // With credentials, browsers refuse `*`: echo the origin instead.
            return Some(if self.allow_credentials {
                origin.to_owned()
            } else {
                "*".to_owned()
            });
        }
        None
    }

    fn method_allowed(&self, method: &str) -> bool {
        any(&self.allow_methods)
            || self
                .allow_methods
                .iter()
                .any(|m| m.eq_ignore_ascii_case(method))
    }

    /// Answers a preflight. A disallowed origin or method gets 204 with no
    /// `access-control-allow-*` headers, so the browser refuses the real request.
    pub fn preflight(&self, req: &RequestHead) -> Response {
        let mut resp = Response::new(204);
        resp.headers.insert("vary", "origin");
        let origin = req.headers.get("origin").unwrap_or("");
        let method = req
            .headers
            .get("access-control-request-method")
            .unwrap_or("");
        let Some(allow_origin) = self.allow_origin(origin) else {
            return resp;
        };
        if !self.method_allowed(method) {
            return resp;
        }
        let requested: Vec<&str> = req
            .headers
            .get("access-control-request-headers")
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .collect();
        let allowed_headers: Vec<String> = if any(&self.allow_headers) {
            requested.iter().map(|h| h.to_ascii_lowercase()).collect()
        } else {
            requested
                .iter()
                .filter(|h| self.allow_headers.iter().any(|a| a.eq_ignore_ascii_case(h)))
                .map(|h| h.to_ascii_lowercase())
                .collect()
        };
        if allowed_headers.len() != requested.len() {
            return resp;
        }
        resp.headers
            .insert("access-control-allow-origin", &allow_origin);
        let methods = if any(&self.allow_methods) {
            method.to_owned()
        } else {
            self.allow_methods.join(",")
        };
        resp.headers
            .insert("access-control-allow-methods", &methods);
        if !allowed_headers.is_empty() {
            resp.headers
                .insert("access-control-allow-headers", &allowed_headers.join(","));
        }
        if let Some(age) = self.max_age {
            resp.headers
                .insert("access-control-max-age", &age.to_string());
        }
        if self.allow_credentials {
            resp.headers
                .insert("access-control-allow-credentials", "true");
        }
        resp
    }

    /// Replaces the backend's CORS headers with the policy's for an allowed origin.
    pub fn decorate(&self, req: &RequestHead, headers: Headers) -> Headers {
        let mut headers = strip_cors(headers);
        if let Some(origin) = req.headers.get("origin").and_then(|o| self.allow_origin(o)) {
            headers.insert("access-control-allow-origin", &origin);
            if !self.expose_headers.is_empty() {
                headers.insert(
                    "access-control-expose-headers",
                    &self.expose_headers.join(","),
                );
            }
            if self.allow_credentials {
                headers.insert("access-control-allow-credentials", "true");
            }
        }
        headers
    }
}

/// Removes every `access-control-*` header and makes sure `Vary` names `Origin`: it is
/// appended to an existing `Vary` value (`accept-encoding, origin`), or added as
/// `vary: origin`; nothing changes when `Vary` already lists `Origin` or `*`.
pub fn strip_cors(mut headers: Headers) -> Headers {
    headers.retain(|n, _| !n.to_ascii_lowercase().starts_with("access-control-"));
    let values: Vec<String> = headers.get_all("vary").map(str::to_owned).collect();
    let varies = values
        .iter()
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case("origin") || v.trim() == "*");
    if varies {
        return headers;
    }
    let merged = values
        .iter()
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .chain(["origin"])
        .collect::<Vec<_>>()
        .join(", ");
    headers.insert("vary", &merged);
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            allow_origins: vec!["https://app.example".into()],
            allow_methods: vec!["GET".into(), "POST".into()],
            allow_headers: vec!["content-type".into()],
            expose_headers: vec!["x-request-id".into()],
            max_age: Some(600),
            allow_credentials: false,
            cache_seconds: None,
        }
    }

    #[test]
    fn answers_are_reusable_for_five_minutes_unless_configured_otherwise() {
        assert_eq!(policy().cache_seconds(), 300);
        let never = Policy {
            cache_seconds: Some(0),
            ..policy()
        };
        assert_eq!(never.cache_seconds(), 0);
        let long = Policy {
            cache_seconds: Some(86_400),
            ..policy()
        };
        assert_eq!(long.cache_seconds(), 3600);
    }

    fn head(pairs: &[(&str, &str)]) -> RequestHead {
        RequestHead {
            method: "OPTIONS".into(),
            headers: pairs.iter().copied().collect(),
            ..RequestHead::default()
        }
    }

    #[test]
    fn preflight_for_an_allowed_origin() {
        let r = policy().preflight(&head(&[
            ("origin", "https://app.example"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "Content-Type"),
        ]));
        assert_eq!(r.status, 204);
        assert_eq!(
            r.headers.get("access-control-allow-origin"),
            Some("https://app.example")
        );
        assert_eq!(
            r.headers.get("access-control-allow-methods"),
            Some("GET,POST")
        );
        assert_eq!(
            r.headers.get("access-control-allow-headers"),
            Some("content-type")
        );
        assert_eq!(r.headers.get("access-control-max-age"), Some("600"));
        assert_eq!(r.headers.get("vary"), Some("origin"));
    }

    #[test]
    fn preflight_refusals_carry_no_allow_headers() {
        for pairs in [
            vec![
                ("origin", "https://evil.example"),
                ("access-control-request-method", "GET"),
            ],
            vec![
                ("origin", "https://app.example"),
                ("access-control-request-method", "DELETE"),
            ],
            vec![
                ("origin", "https://app.example"),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "x-secret"),
            ],
        ] {
            let r = policy().preflight(&head(&pairs));
            assert!(
                r.headers.get("access-control-allow-origin").is_none(),
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn wildcard_origin_and_credentials() {
        let mut p = policy();
        p.allow_origins = vec!["*".into()];
        let req = head(&[("origin", "https://x.example")]);
        let h = p.decorate(&req, Headers::new());
        assert_eq!(h.get("access-control-allow-origin"), Some("*"));
        p.allow_credentials = true;
        let h = p.decorate(&req, Headers::new());
        assert_eq!(
            h.get("access-control-allow-origin"),
            Some("https://x.example")
        );
        assert_eq!(h.get("access-control-allow-credentials"), Some("true"));
    }

    #[test]
    fn decorate_replaces_backend_headers() {
        let backend: Headers = [
            ("access-control-allow-origin", "*"),
            ("Access-Control-Allow-Methods", "PUT"),
            ("vary", "accept-encoding"),
            ("content-type", "text/plain"),
        ]
        .into_iter()
        .collect();
        let h = policy().decorate(&head(&[("origin", "https://app.example")]), backend.clone());
        assert_eq!(
            h.get("access-control-allow-origin"),
            Some("https://app.example")
        );
        assert!(h.get("access-control-allow-methods").is_none());
        assert_eq!(
            h.get_all("vary").collect::<Vec<_>>(),
            ["accept-encoding, origin"]
        );
        let h = policy().decorate(&head(&[("origin", "https://evil.example")]), backend);
        assert!(h.get("access-control-allow-origin").is_none());
        assert_eq!(h.get("content-type"), Some("text/plain"));
    }

    #[test]
    fn vary_is_merged_once() {
        let h: Headers = [("Vary", "Accept-Encoding"), ("vary", "cookie")]
            .into_iter()
            .collect();
        let h = strip_cors(h);
        assert_eq!(
            h.get_all("vary").collect::<Vec<_>>(),
            ["Accept-Encoding, cookie, origin"]
        );
        let again = strip_cors(h.clone());
        assert_eq!(again, h, "no duplicate origin");
        let star: Headers = [("vary", "*")].into_iter().collect();
        assert_eq!(strip_cors(star.clone()), star);
    }

    #[test]
    fn config_accepts_a_single_wildcard() {
        let p: Policy = serde_json::from_str(
            r#"{"allow_origins":"*","allow_methods":"*","allow_headers":["x-a"],"max_age":5}"#,
        )
        .unwrap();
        assert_eq!(p.allow_origins, ["*"]);
        assert_eq!(p.allow_methods, ["*"]);
        let r = p.preflight(&head(&[
            ("origin", "https://x.example"),
            ("access-control-request-method", "PATCH"),
        ]));
        assert_eq!(r.headers.get("access-control-allow-origin"), Some("*"));
        assert_eq!(r.headers.get("access-control-allow-methods"), Some("PATCH"));
        assert!(serde_json::from_str::<Policy>(r#"{"allow_origin":"*"}"#).is_err());
    }
}
