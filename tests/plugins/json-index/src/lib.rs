//! Test mapper: answers every request with the gateway's `json` index of its body
//! (`weir_sdk::json::index_object`), or 400 when the body is not a JSON object.

use weir_sdk::{Context, Mapper, Request, Response};

struct Index;

impl Mapper for Index {
    fn map_request(req: Request, _ctx: &Context) -> Result<Request, Response> {
        let Some(ix) = weir_sdk::json::index_object(&req.body) else {
            return Err(Response::text(400, "not a JSON object"));
        };
        let text =
            |r: &std::ops::Range<usize>| String::from_utf8_lossy(&req.body[r.clone()]).into_owned();
        let members: Vec<_> = ix
            .members
            .iter()
            .map(|m| serde_json::json!([text(&m.key), text(&m.value)]))
            .collect();
        let body = serde_json::json!({ "members": members, "close": ix.close });
        Err(Response::json(200, &body))
    }

    fn map_response(resp: Response, _ctx: &Context) -> Response {
        resp
    }
}

weir_sdk::export_mapper!(Index);
