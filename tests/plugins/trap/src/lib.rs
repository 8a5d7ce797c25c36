//! Test mapper that panics (traps) on every request.

wit_bindgen::generate!({ world: "mapper", path: "../../../wit" });

struct Trap;

impl Guest for Trap {
    fn map_request(req: Request, _ctx: Context) -> RequestOutcome {
        panic!("trap plugin was asked to map {}", req.path);
    }

    fn map_response(resp: Response, _ctx: Context) -> Response {
        resp
    }
}

export!(Trap);
