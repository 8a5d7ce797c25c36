//! Test mapper: marks requests and responses so tests can see it ran, and answers
//! `/direct` paths itself.

wit_bindgen::generate!({ world: "mapper", path: "../../../wit" });

use weir::plugin::host;

struct Echo;

impl Guest for Echo {
    fn map_request(mut req: Request, ctx: Context) -> RequestOutcome {
        // Guest stdout must reach the gateway's log, tagged with the plugin's name.
        println!("echo-mapper stdout: {}", req.path);
        if req.path.ends_with("/direct") {
            return RequestOutcome::Respond(Response {
                status: 418,
                headers: vec![("content-type".into(), "text/plain".into())],
                body: b"short-circuit".to_vec(),
            });
        }
        let config = host::config();
        // The config is `{"tag":"..."}`; a tiny scan keeps this plugin dependency-free.
        let tag = config
            .split("\"tag\":\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("echo")
            .to_owned();
        req.headers.push(("x-mapped".into(), tag));
        req.headers.push(("x-route-key".into(), ctx.route_key));
        req.headers
            .push(("x-principal".into(), ctx.principal_id.unwrap_or_default()));
        RequestOutcome::Forward(req)
    }

    fn map_response(mut resp: Response, _ctx: Context) -> Response {
        resp.headers
            .push(("x-mapped-response".into(), "yes".into()));
        resp
    }
}

export!(Echo);
