//! Test mapper: marks requests and responses so tests can see it ran, and answers
//! `/direct` paths itself.

use weir_sdk::{Context, Mapper, Request, Response};

struct Echo;

impl Mapper for Echo {
    fn map_request(mut req: Request, ctx: &Context) -> Result<Request, Response> {
        // Guest stdout must reach the gateway's log, tagged with the plugin's name.
        println!("echo-mapper stdout: {}", req.path);
        if req.path.ends_with("/direct") {
            return Err(Response::text(418, "short-circuit"));
        }
        // The config is `{"tag": "..."}`; anything else gives the default tag.
        let config: serde_json::Value = weir_sdk::config().unwrap_or_default();
        let tag = config.get("tag").and_then(|t| t.as_str()).unwrap_or("echo");
        req.headers.append("x-mapped", tag);
        req.headers.append("x-route-key", &ctx.route_key);
        req.headers
            .append("x-principal", ctx.principal_id.as_deref().unwrap_or(""));
        Ok(req)
    }

    fn map_response(mut resp: Response, _ctx: &Context) -> Response {
        resp.headers.append("x-mapped-response", "yes");
        resp
    }
}

weir_sdk::export_mapper!(Echo);
