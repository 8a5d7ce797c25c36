//! {{name}}: a Weir CORS policy. Origins listed in the config's `allow_origins`
//! (default `["https://app.example"]`) may call with GET and POST.

use weir_sdk::{Cors, Headers, RequestHead, Response};

struct Plugin;

impl Cors for Plugin {
    fn preflight(req: RequestHead) -> Response {
        match allowed_origin(&req, &origins()) {
            Some(origin) => Response::new(204)
                .with_header("access-control-allow-origin", &origin)
                .with_header("access-control-allow-methods", "GET, POST")
                .with_header("access-control-max-age", "600")
                .with_header("vary", "Origin"),
            None => Response::new(403),
        }
    }

    fn decorate(req: RequestHead, mut headers: Headers) -> Headers {
        if let Some(origin) = allowed_origin(&req, &origins()) {
            headers.insert("access-control-allow-origin", &origin);
            headers.append("vary", "Origin");
        }
        headers
    }
}

fn origins() -> Vec<String> {
    let config: serde_json::Value = weir_sdk::config().unwrap_or_default();
    match config["allow_origins"].as_array() {
        Some(list) => list.iter().filter_map(|o| o.as_str().map(str::to_owned)).collect(),
        None => vec!["https://app.example".to_owned()],
    }
}

/// The request's `Origin` when it is allowed: the logic, free of host calls, so that
/// it can be tested on this machine.
fn allowed_origin(req: &RequestHead, allowed: &[String]) -> Option<String> {
    let origin = req.headers.get("origin")?;
    allowed.iter().any(|a| a == origin).then(|| origin.to_owned())
}

weir_sdk::export_cors!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_listed_origins_only() {
        let allowed = vec!["https://app.example".to_owned()];
        let mut req = RequestHead::default();
        assert_eq!(allowed_origin(&req, &allowed), None);
        req.headers.insert("origin", "https://app.example");
        assert_eq!(allowed_origin(&req, &allowed).as_deref(), Some("https://app.example"));
        req.headers.insert("origin", "https://evil.example");
        assert_eq!(allowed_origin(&req, &allowed), None);
    }
}
