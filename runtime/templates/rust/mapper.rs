//! {{name}}: a Weir mapper. It adds `x-hello` to each request (the config's
//! `greeting`, or "hello from {{name}}") and `x-mapped-by` to each response.

use weir_sdk::{Context, Mapper, Request, Response};

struct Plugin;

impl Mapper for Plugin {
    fn map_request(req: Request, ctx: &Context) -> Result<Request, Response> {
        // The config table from weir.toml, as JSON (`{}` when there is none).
        let config: serde_json::Value = weir_sdk::config().unwrap_or_default();
        weir_sdk::log::info(&format!("map-request {} {} ({})", req.method, req.path, ctx.route_key));
        Ok(greet(req, config["greeting"].as_str()))
    }

    fn map_response(mut resp: Response, _ctx: &Context) -> Response {
        resp.headers.append("x-mapped-by", "{{name}}");
        resp
    }
}

/// The request with `x-hello` added: the logic, free of host calls, so that it can be
/// tested on this machine.
fn greet(mut req: Request, greeting: Option<&str>) -> Request {
    req.headers.append("x-hello", greeting.unwrap_or("hello from {{name}}"));
    req
}

weir_sdk::export_mapper!(Plugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_the_greeting() {
        let req = greet(Request::new("GET", "/pets"), None);
        assert_eq!(req.headers.get("x-hello"), Some("hello from {{name}}"));
        let req = greet(Request::new("GET", "/pets"), Some("hi"));
        assert_eq!(req.headers.get("x-hello"), Some("hi"));
    }
}
