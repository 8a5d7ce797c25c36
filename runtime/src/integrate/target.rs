//! Upstream URL templates: `http://host:port/path/{param}/{proxy+}` (or `https://`),
//! parsed once at load and filled in per request.

use http::Uri;
use http::header::HeaderValue;

use crate::error::GatewayError;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Param(String),
}

/// An upstream URL template: `http://host:port/path/{param}/{proxy+}` (or `https://`).
#[derive(Debug, Clone)]
pub struct HttpTarget {
    scheme_authority: String,
    /// `http://`: requests go out on the worker's own HTTP/1.1 connections
    /// ([`crate::pool::h1`]), whose request line carries only path and query.
    plain: bool,
    authority: HeaderValue,
    /// `None`: the template has no path, so the client's path is forwarded as is.
    path: Option<Vec<Part>>,
}

impl HttpTarget {
    /// Parses a template whose `{name}` placeholders must be among `params`.
    pub fn parse(url: &str, params: &[String]) -> Result<Self, String> {
        let (scheme, rest) = if let Some(rest) = url.strip_prefix("http://") {
            ("http", rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            ("https", rest)
        } else {
            return Err(format!(
                "`{url}`: the URL must start with http:// or https://"
            ));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if path.starts_with('?') || path.contains('?') {
            return Err(format!(
                "`{url}`: a query string in the template is not supported"
            ));
        }
        let parsed: http::uri::Authority = authority
            .parse()
            .map_err(|_| format!("`{url}`: invalid host `{authority}`"))?;
        if parsed.as_str().contains('@') {
            return Err(format!("`{url}`: credentials in the URL are not supported"));
        }
        let path = if path.is_empty() {
            None
        } else {
            Some(parse_template(path, params).map_err(|e| format!("`{url}`: {e}"))?)
        };
        Ok(Self {
            scheme_authority: format!("{scheme}://{authority}"),
            plain: scheme == "http",
            authority: HeaderValue::from_str(authority)
                .map_err(|_| format!("`{url}`: invalid host `{authority}`"))?,
            path,
        })
    }

    /// The upstream URI for a request, on `scheme_authority` (this target's own, see
    /// [`HttpTarget::scheme_authority`], or a pool target's `scheme://host:port`), or
    /// in origin form (path and query, as the request line to an origin server carries
    /// them) when it is empty. `path_override` is a path set by a mapper.
    pub fn uri_at(
        &self,
        scheme_authority: &str,
        client_path: &str,
        path_override: Option<&str>,
        params: &[(String, String)],
        query: &str,
    ) -> Result<Uri, GatewayError> {
        let mut uri = String::with_capacity(scheme_authority.len() + 64);
        uri.push_str(scheme_authority);
        match (path_override, &self.path) {
            (Some(p), _) => uri.push_str(p),
            (None, None) => uri.push_str(client_path),
            (None, Some(parts)) => {
                for part in parts {
                    match part {
                        Part::Literal(l) => uri.push_str(l),
                        Part::Param(name) => {
                            let v = params
                                .iter()
                                .find(|(k, _)| k == name)
                                .map(|(_, v)| v.as_str())
                                .unwrap_or("");
                            uri.push_str(v);
                        }
                    }
                }
            }
        }
        if !query.is_empty() {
            uri.push('?');
            uri.push_str(query);
        }
        uri.parse().map_err(|_| {
            GatewayError::BadRequest(format!("cannot build an upstream URI from `{uri}`"))
        })
    }

    /// The upstream's `scheme://host:port`.
    pub fn scheme_authority(&self) -> &str {
        &self.scheme_authority
    }

    /// The upstream's `host:port`.
    pub fn authority(&self) -> &HeaderValue {
        &self.authority
    }

    /// Whether the upstream is plain HTTP (its URIs are in origin form).
    pub fn is_plain(&self) -> bool {
        self.plain
    }
}

fn parse_template(path: &str, params: &[String]) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        let close = rest[open..]
            .find('}')
            .map(|c| open + c)
            .ok_or("unclosed `{` in the path")?;
        if open > 0 {
            parts.push(Part::Literal(rest[..open].to_owned()));
        }
        let name = rest[open + 1..close].trim_end_matches('+');
        if !params.iter().any(|p| p == name) {
            return Err(format!(
                "placeholder `{{{name}}}` is not a parameter of the route key"
            ));
        }
        parts.push(Part::Param(name.to_owned()));
        rest = &rest[close + 1..];
    }
    if rest.contains('}') {
        return Err("unmatched `}` in the path".to_owned());
    }
    if !rest.is_empty() {
        parts.push(Part::Literal(rest.to_owned()));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn substitutes_params_and_greedy_paths() {
        let t = HttpTarget::parse(
            "http://127.0.0.1:9000/pets/{id}/{rest+}",
            &params(&["id", "rest"]),
        )
        .unwrap();
        let p = vec![("id".into(), "7".into()), ("rest".into(), "a/b".into())];
        let uri = t
            .uri_at(t.scheme_authority(), "/ignored", None, &p, "x=1")
            .unwrap();
        assert_eq!(uri, "http://127.0.0.1:9000/pets/7/a/b?x=1");
        let uri = t.uri_at("", "/ignored", None, &p, "x=1").unwrap();
        assert_eq!(uri, "/pets/7/a/b?x=1");
        let uri = t
            .uri_at(t.scheme_authority(), "/ignored", Some("/v2/x"), &p, "")
            .unwrap();
        assert_eq!(uri, "http://127.0.0.1:9000/v2/x");
        assert_eq!(
            t.uri_at("http://10.0.0.2:80", "/ignored", None, &p, "")
                .unwrap(),
            "http://10.0.0.2:80/pets/7/a/b"
        );
    }

    #[test]
    fn template_without_path_forwards_the_client_path() {
        let t = HttpTarget::parse("http://localhost:81", &[]).unwrap();
        assert_eq!(
            t.uri_at(t.scheme_authority(), "/a/b", None, &[], "")
                .unwrap(),
            "http://localhost:81/a/b"
        );
        assert_eq!(t.uri_at("", "/a/b", None, &[], "").unwrap(), "/a/b");
        assert!(t.is_plain());
        assert_eq!(t.authority(), "localhost:81");
        // A path that looks like an authority stays a path.
        let uri = t.uri_at("", "//evil.example/x", None, &[], "").unwrap();
        assert_eq!((uri.authority(), uri.path()), (None, "//evil.example/x"));
        let t = HttpTarget::parse("https://api.example/v1/{proxy}", &["proxy".into()]).unwrap();
        let params = [("proxy".to_owned(), "pets".to_owned())];
        assert_eq!(
            t.uri_at(t.scheme_authority(), "/x", None, &params, "a=1")
                .unwrap(),
            "https://api.example/v1/pets?a=1"
        );
        assert!(!t.is_plain());
        assert_eq!(t.authority(), "api.example");
    }

    #[test]
    fn rejects_bad_templates() {
        for (url, want) in [
            ("ftp://x/", "must start with http:// or https://"),
            ("https://", "invalid host"),
            ("http://x/{id}", "not a parameter of the route key"),
            ("http://x/{id", "unclosed"),
            ("http://x/a}", "unmatched"),
            ("http://x/?a=1", "query string"),
            ("http://u@x/", "credentials"),
        ] {
            let err = HttpTarget::parse(url, &[]).unwrap_err();
            assert!(err.contains(want), "{url}: {err}");
        }
    }
}
