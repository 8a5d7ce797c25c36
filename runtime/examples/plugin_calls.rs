//! Drives one shipped or test plugin through N calls on one thread, for profilers and
//! instruction counters: the same calls as `benches/plugins.rs`, without the harness.
//!
//! ```text
//! plugin_calls stamp|params|jwt|cors CALLS [REUSE]
//! ```
//!
//! `REUSE` is the plugin's `reuse` setting (0, the default: a fresh instance per call).
//! `PLUGIN_CALLS_COMPONENT=path.wasm` loads that component instead of the one built for
//! this test run (to compare hosts on the very same guest bytes);
//! `PLUGIN_CALLS_CONFIG='{...}'` gives it that config (JSON) instead of the bench's.
//! The compile and load happen before the first call, and the calls run in one async
//! block of `main`: a profiler can count only them by collecting inside that block, e.g.
//! `valgrind --tool=callgrind --toggle-collect='plugin_calls::main::{*'` (the difference
//! of two runs with different `CALLS` is the cost per call). valgrind cannot reserve the
//! address space of the full instance pool: lower `MAX_INSTANCES` in `plugin/mod.rs` to 8
//! for such a build.

use std::path::Path;
use std::time::{Duration, Instant};

use weir::config::World;
use weir::plugin::{AnyPlugin, AuthorizationRequest, Limits, PluginHost, Request, RequestHead};
use weir_tests::artifacts::{CORS, JWT_AUTHORIZER, PARAM_MAPPING, STAMP_V1};

#[path = "../benches/sample/mod.rs"]
mod sample;
use sample::{context, headers};

fn usage() -> ! {
    eprintln!("usage: plugin_calls stamp|params|jwt|cors CALLS [REUSE]");
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map(String::as_str).unwrap_or_else(|| usage());
    let calls: u32 = args
        .get(2)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| usage());
    let reuse: u32 = match args.get(3) {
        Some(a) => a.parse().unwrap_or_else(|_| usage()),
        None => 0,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let host = PluginHost::new().unwrap();
    let limits = Limits {
        deadline: Duration::from_secs(1),
        max_memory: 64 << 20,
        reuse,
        ..Limits::new()
    };
    let ctx = weir::plugin::CallContext::from(context());
    let req = Request {
        method: "POST".into(),
        path: "/orders/42".into(),
        query: "verbose=true".into(),
        headers: headers(),
        body: vec![b'x'; 1024],
    };
    let secret = "bench-secret-bench-secret-bench!";
    let (path, world, config) = match which {
        "stamp" => (STAMP_V1, World::Mapper, "{}".to_owned()),
        "params" => (
            PARAM_MAPPING,
            World::Mapper,
            r#"{"request":{"overwrite:header.x-user":"$request.header.user-agent","append:querystring.id":"$request.path.id","remove:header.accept-encoding":"''"}}"#.to_owned(),
        ),
        "jwt" => (
            JWT_AUTHORIZER,
            World::Authorizer,
            format!(r#"{{"issuer":"iss","audience":["aud"],"hs256_secret":"{secret}"}}"#),
        ),
        "cors" => (
            CORS,
            World::Cors,
            r#"{"allow_origins":["https://app.example"],"allow_methods":["GET","POST"]}"#
                .to_owned(),
        ),
        _ => usage(),
    };
    let path = std::env::var("PLUGIN_CALLS_COMPONENT").unwrap_or_else(|_| path.to_owned());
    let config = std::env::var("PLUGIN_CALLS_CONFIG").unwrap_or(config);
    let bytes = weir::plugin::read_component(Path::new(&path), 64 << 20).unwrap();
    let plugin = host.compile(which, &path, &bytes, world).unwrap().plugin(
        which,
        limits,
        config,
        Default::default(),
    );
    let token = weir_tests::jwt::sign_hs256(
        secret.as_bytes(),
        &serde_json::json!({"iss":"iss","aud":"aud","sub":"u","exp": weir_tests::jwt::now() + 3600}),
    );
    let auth_req = AuthorizationRequest {
        method: "GET".into(),
        path: "/orders/42".into(),
        query: String::new(),
        headers: headers(),
        identity: vec![format!("Bearer {token}")],
        scopes: Vec::new(),
    };
    let head = RequestHead {
        method: "GET".into(),
        path: "/orders/42".into(),
        query: String::new(),
        headers: headers(),
    };
    let resp_headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("content-length".to_string(), "36".to_string()),
    ];

    let started = Instant::now();
    rt.block_on(async {
        for _ in 0..calls {
            match &plugin {
                AnyPlugin::Mapper(p) => {
                    p.map_request(&req, &ctx).await.unwrap();
                }
                AnyPlugin::Authorizer(p) => {
                    p.authorize(&auth_req, &ctx, None).await.unwrap();
                }
                AnyPlugin::Cors(p) => {
                    p.decorate(&head, &resp_headers).await.unwrap();
                }
                AnyPlugin::Function(_) => usage(),
            }
        }
    });
    let took = started.elapsed();
    println!(
        "{which}: {calls} calls in {took:?}, {:.2} us/call",
        took.as_secs_f64() * 1e6 / f64::from(calls.max(1))
    );
}
