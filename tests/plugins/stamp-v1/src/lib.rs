//! Test mapper, version 1 of two (`stamp-v1`, `stamp-v2`): stamps `x-stamp: v1` on
//! requests and responses, so tests can tell which version served a request.

use weir_sdk::{Context, Mapper, Request, Response};

struct Stamp;

impl Mapper for Stamp {
    fn map_request(mut req: Request, _ctx: &Context) -> Result<Request, Response> {
        req.headers.append("x-stamp", "v1");
        Ok(req)
    }

    fn map_response(mut resp: Response, _ctx: &Context) -> Response {
        resp.headers.append("x-stamp", "v1");
        resp
    }
}

weir_sdk::export_mapper!(Stamp);
