//! Plain Rust types for requests, responses and decisions, independent of the bindings
//! so that plugin logic can be unit-tested on the host.

use serde::Serialize;

/// HTTP headers: an ordered list of `(name, value)` pairs, looked up case-insensitively.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Sets `name` to `value`, replacing every existing value.
    pub fn insert(&mut self, name: &str, value: &str) {
        self.remove(name);
        self.append(name, value);
    }

    /// Adds a value for `name`, keeping existing ones.
    pub fn append(&mut self, name: &str, value: &str) {
        self.0.push((name.to_ascii_lowercase(), value.to_owned()));
    }

    /// Removes every value of `name`; returns whether there was one.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.0.len();
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.0.len() != before
    }

    /// Keeps only the headers for which `keep(name, value)` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        self.0.retain(|(n, v)| keep(n, v));
    }

    /// The headers in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// How many header lines there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The pairs, for the bindings.
    pub fn into_pairs(self) -> Vec<(String, String)> {
        self.0
    }
}

impl From<Vec<(String, String)>> for Headers {
    fn from(pairs: Vec<(String, String)>) -> Self {
        Headers(pairs)
    }
}

impl<'a> FromIterator<(&'a str, &'a str)> for Headers {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(iter: I) -> Self {
        let mut h = Headers::new();
        for (n, v) in iter {
            h.append(n, v);
        }
        h
    }
}

/// A whole request, as a mapper sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// Upper-case method.
    pub method: String,
    /// The path as sent (percent-encoding kept).
    pub path: String,
    /// The raw query string without `?`.
    pub query: String,
    /// Headers.
    pub headers: Headers,
    /// Body.
    pub body: Vec<u8>,
}

impl Request {
    /// A request with no query, headers or body.
    pub fn new(method: &str, path: &str) -> Self {
        Request {
            method: method.to_owned(),
            path: path.to_owned(),
            ..Request::default()
        }
    }

    /// The first value of a query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        query_pairs(&self.query)
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// The body parsed as JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_slice(&self.body).map_err(|e| e.to_string())
    }
}

/// A query string as decoded `(name, value)` pairs, in order.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Builds a query string from pairs, percent-encoding names and values.
pub fn query_string<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        percent_encode_into(k, &mut out);
        out.push('=');
        percent_encode_into(v, &mut out);
    }
    out
}

/// Decodes `%XX` escapes and `+`; invalid escapes are kept as they are.
pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn percent_encode_into(s: &str, out: &mut String) {
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~') {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
}

/// A whole response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    /// Status code, 200–599 for a final response.
    pub status: u16,
    /// Headers.
    pub headers: Headers,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// An empty response with `status`.
    pub fn new(status: u16) -> Self {
        Response {
            status,
            ..Response::default()
        }
    }

    /// A `text/plain` response.
    pub fn text(status: u16, body: &str) -> Self {
        let mut r = Response::new(status);
        r.headers
            .insert("content-type", "text/plain; charset=utf-8");
        r.body = body.as_bytes().to_vec();
        r
    }

    /// An `application/json` response.
    pub fn json(status: u16, value: &impl Serialize) -> Self {
        let mut r = Response::new(status);
        r.headers.insert("content-type", "application/json");
        r.body = serde_json::to_vec(value).unwrap_or_default();
        r
    }

    /// Adds a header (builder style).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.append(name, value);
        self
    }
}

/// The head of a request (no body), as CORS policies see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestHead {
    /// Upper-case method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// Headers.
    pub headers: Headers,
}

/// What the gateway knows about a request: AWS's `$context`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// `$context.requestId`.
    pub request_id: String,
    /// `$context.routeKey`, e.g. `GET /pets/{id}`.
    pub route_key: String,
    /// `$context.stage`.
    pub stage: String,
    /// Path parameters captured by the route.
    pub path_parameters: Vec<(String, String)>,
    /// The client's IP address.
    pub source_ip: String,
    /// `$context.authorizer.principalId`, if an authorizer ran.
    pub principal_id: Option<String>,
    /// `$context.authorizer.<key>` values.
    pub authorizer_context: Vec<(String, String)>,
}

impl Context {
    /// A path parameter's value.
    pub fn path_param(&self, name: &str) -> Option<&str> {
        self.path_parameters
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// An authorizer context value (`principalId` gives the principal).
    pub fn authorizer(&self, key: &str) -> Option<&str> {
        if key == "principalId" {
            return self.principal_id.as_deref();
        }
        self.authorizer_context
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The input of an authorizer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthorizationRequest {
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// Headers.
    pub headers: Headers,
    /// The route's identity-source values, in configured order (never empty strings).
    pub identity: Vec<String>,
    /// Scopes the route requires (empty when none).
    pub scopes: Vec<String>,
}

/// An authorizer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Let the request through.
    Allow {
        /// `$context.authorizer.principalId`.
        principal_id: String,
        /// `$context.authorizer.<key>` values.
        context: Vec<(String, String)>,
        /// The API key of the caller's usage plan, when the authorizer is the key source.
        usage_identifier_key: Option<String>,
    },
    /// Refuse it.
    Deny {
        /// 401 or 403.
        status: u16,
        /// Sent to the client as `{"message": ...}`.
        message: String,
    },
}

impl Decision {
    /// Allows the request as `principal_id`.
    pub fn allow(principal_id: impl Into<String>) -> Self {
        Decision::Allow {
            principal_id: principal_id.into(),
            context: Vec::new(),
            usage_identifier_key: None,
        }
    }

    /// Adds an authorizer context value (no effect on a denial).
    pub fn with_context(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        if let Decision::Allow { context, .. } = &mut self {
            context.push((key.into(), value.into()));
        }
        self
    }

    /// Sets the usage-plan API key (no effect on a denial).
    pub fn with_usage_key(mut self, key: impl Into<String>) -> Self {
        if let Decision::Allow {
            usage_identifier_key,
            ..
        } = &mut self
        {
            *usage_identifier_key = Some(key.into());
        }
        self
    }

    /// Denies with 401 (not authenticated).
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Decision::Deny {
            status: 401,
            message: message.into(),
        }
    }

    /// Denies with 403 (authenticated, not allowed).
    pub fn forbidden(message: impl Into<String>) -> Self {
        Decision::Deny {
            status: 403,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_case_insensitive() {
        let mut h: Headers = [("Content-Type", "a"), ("x-a", "1"), ("X-A", "2")]
            .into_iter()
            .collect();
        assert_eq!(h.get("content-type"), Some("a"));
        assert_eq!(h.get_all("x-a").collect::<Vec<_>>(), ["1", "2"]);
        h.insert("x-a", "3");
        assert_eq!(h.get_all("X-A").collect::<Vec<_>>(), ["3"]);
        assert!(h.remove("CONTENT-TYPE"));
        assert!(!h.remove("content-type"));
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn query_strings_round_trip() {
        let pairs = query_pairs("a=1&b=x%20y&c&d=%zz+q");
        assert_eq!(
            pairs,
            [
                ("a".into(), "1".into()),
                ("b".into(), "x y".into()),
                ("c".into(), "".into()),
                ("d".into(), "%zz q".into())
            ]
        );
        assert_eq!(
            query_string([("a b", "c&d"), ("e", "é")]),
            "a%20b=c%26d&e=%C3%A9"
        );
    }

    #[test]
    fn decisions_build_fluently() {
        let d = Decision::allow("u")
            .with_context("k", "v")
            .with_usage_key("key");
        assert_eq!(
            d,
            Decision::Allow {
                principal_id: "u".into(),
                context: vec![("k".into(), "v".into())],
                usage_identifier_key: Some("key".into())
            }
        );
        assert!(matches!(
            Decision::forbidden("no"),
            Decision::Deny { status: 403, .. }
        ));
    }
}
