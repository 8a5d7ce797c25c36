//! Test mapper: counts the calls its instance has served and says so in `x-instance-calls`,
//! so tests can see whether instances are fresh or reused. A path ending in `/trap`
//! panics after counting.

use std::sync::atomic::{AtomicU32, Ordering};

use weir_sdk::{Context, Mapper, Request, Response};

static CALLS: AtomicU32 = AtomicU32::new(0);

struct CallCounter;

impl Mapper for CallCounter {
    fn map_request(mut req: Request, _ctx: &Context) -> Result<Request, Response> {
        let calls = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
        if req.path.ends_with("/trap") {
            panic!("trap requested on call {calls}");
        }
        req.headers.append("x-instance-calls", &calls.to_string());
        Ok(req)
    }
}

weir_sdk::export_mapper!(CallCounter);
