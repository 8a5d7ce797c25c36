//! Test mapper, version 2 of two (`stamp-v1`, `stamp-v2`): stamps `x-stamp: v2` on
//! requests and responses, so tests can tell which version served a request.

use weir_sdk::{Context, Mapper, Request, Response};

struct Stamp;

impl Mapper for Stamp {
    fn map_request(mut req: Request, _ctx: &Context) -> Result<Request, Response> {
        req.headers.append("x-stamp", "v2");
        Ok(req)
    }

    fn map_response(mut resp: Response, _ctx: &Context) -> Response {
        resp.headers.append("x-stamp", "v2");
        resp
    }
}

weir_sdk::export_mapper!(Stamp);
