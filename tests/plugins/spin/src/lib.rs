//! Test mapper that never returns.

use weir_sdk::{Context, Mapper, Request, Response};

struct Spin;

impl Mapper for Spin {
    fn map_request(req: Request, _ctx: &Context) -> Result<Request, Response> {
        // `black_box` keeps the optimizer from proving the loop endless (and removing it).
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
            if std::hint::black_box(n) == 0 {
                return Ok(req);
            }
        }
    }
}

weir_sdk::export_mapper!(Spin);
