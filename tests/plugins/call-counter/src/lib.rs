//! Test mapper: counts the calls its instance has served and says so in `x-instance-calls`,
//! so tests can see whether instances are fresh or reused; and counts the calls of the
//! plugin through `host.kept`/`host.keep` in `x-plugin-calls`, so tests can see what
//! survives an instance. A path ending in `/trap` panics after counting; one ending in
//! `/big` tries to keep a value over the gateway's bound and says in `x-kept-big`
//! whether it was kept.

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
        let plugin_calls = weir_sdk::kept("calls")
            .and_then(|v| String::from_utf8(v).ok()?.parse::<u32>().ok())
            .unwrap_or(0)
            + 1;
        weir_sdk::keep("calls", plugin_calls.to_string().as_bytes(), 60);
        req.headers
            .append("x-plugin-calls", &plugin_calls.to_string());
        if req.path.ends_with("/big") {
            let kept = weir_sdk::keep("big", &vec![0; 1024 * 1024 + 1], 60);
            req.headers.append("x-kept-big", &kept.to_string());
        }
        Ok(req)
    }
}

weir_sdk::export_mapper!(CallCounter);
