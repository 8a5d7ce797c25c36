//! Test mapper that says why it fails: it logs through `host.log`, prints to stdout,
//! then panics with a message taken from its config (`{"reason": "..."}`), unless the
//! config says `{"reason": null}`: then it forwards the request with `x-loud: calm`.
//! Built with its function names kept (see tests/plugins/Cargo.toml), so a trap's
//! backtrace names them.

use weir_sdk::{Context, Mapper, Request, Response};

struct LoudTrap;

impl Mapper for LoudTrap {
    fn map_request(mut req: Request, _ctx: &Context) -> Result<Request, Response> {
        let config: serde_json::Value = weir_sdk::config().unwrap_or_default();
        weir_sdk::log::info(&format!("loud-trap config: {config}"));
        let reason = match config.get("reason") {
            Some(serde_json::Value::Null) => {
                req.headers.append("x-loud", "calm");
                return Ok(req);
            }
            Some(serde_json::Value::String(r)) => r.clone(),
            _ => "no reason configured".to_owned(),
        };
        println!("loud-trap stdout: mapping {}", req.path);
        refuse(&reason)
    }
}

#[inline(never)]
fn refuse(reason: &str) -> ! {
    panic!("loud-trap refuses: {reason}");
}

weir_sdk::export_mapper!(LoudTrap);
