//! Test mapper that panics (traps) on every request.

use weir_sdk::{Context, Mapper, Request, Response};

struct Trap;

impl Mapper for Trap {
    fn map_request(req: Request, _ctx: &Context) -> Result<Request, Response> {
        panic!("trap plugin was asked to map {}", req.path);
    }
}

weir_sdk::export_mapper!(Trap);
