//! Test mapper that allocates (and touches) memory without bound.

use weir_sdk::{Context, Mapper, Request, Response};

struct Hog;

impl Mapper for Hog {
    fn map_request(req: Request, _ctx: &Context) -> Result<Request, Response> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            // A non-zero fill writes every page, so the memory is really used.
            hoard.push(vec![0xa5; 1 << 20]);
            if std::hint::black_box(hoard.len()) == usize::MAX {
                return Ok(req);
            }
        }
    }
}

weir_sdk::export_mapper!(Hog);
