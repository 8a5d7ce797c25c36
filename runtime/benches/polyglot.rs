//! Per-call cost of the example plugins of every language (`examples/plugins/`), on a
//! fresh instance per call (the default) and on a reused one (`reuse = N`): median and
//! p99 of single calls, in µs, as a Markdown table.
//!
//! `cargo bench -p weir --bench polyglot` (add `--profile dev` to skip the release
//! build; the host's dependencies are optimised in that profile too, and guest code is
//! compiled by Cranelift either way). Environment:
//!
//! - `WEIR_BENCH_CALLS`: calls per cell (default 2000);
//! - `WEIR_BENCH_LANGUAGES=zig,c`: only these rows of the built examples;
//! - `WEIR_BENCH_EXTRA=label=mapper.wasm,authorizer.wasm;…`: more rows, for components
//!   built by hand (StarlingMonkey JS: `WEIR_JS_ENGINE=starlingmonkey bash
//!   examples/plugins/javascript/build.sh /tmp/sm`, too slow to build for every test run).

use std::path::Path;
use std::time::{Duration, Instant};

use weir::plugin::{
    AnyPlugin, AuthorizationRequest, AuthorizerWorld, Context, Limits, MapperWorld, Plugin,
    PluginHost, Request, World as PluginWorld, WorldKind,
};
use weir_tests::artifacts::POLYGLOT;

const MAPPER_CONFIG: &str = r#"{"rename_headers":{"x-client-id":"x-user"},"add_headers":{"x-gateway":"weir"},"json_fields":{"source":"gateway"},"response_headers":{"x-mapped-by":"weir-example"}}"#;

fn request() -> Request {
    let headers = [
        ("host", "api.example"),
        ("user-agent", "bench/1.0"),
        ("accept", "application/json"),
        ("content-type", "application/json"),
        ("content-length", "1024"),
        ("authorization", "Bearer x"),
        ("x-client-id", "c-42"),
        ("x-forwarded-for", "10.0.0.1"),
        ("accept-encoding", "gzip"),
        ("origin", "https://app.example"),
    ];
    // A 1 KiB JSON object.
    let mut body = String::from("{\"source\":\"client\",\"items\":[");
    let mut i = 0;
    while body.len() < 1000 {
        body.push_str(&format!("{{\"id\":{i},\"tag\":\"t{i}\"}},"));
        i += 1;
    }
    body.pop();
    body.push_str("]}");
    Request {
        method: "POST".into(),
        path: "/orders/42".into(),
        query: "verbose=true".into(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.into_bytes(),
    }
}

fn context() -> Context {
    Context {
        request_id: "0123456789abcdef".into(),
        route_key: "POST /orders/{id}".into(),
        stage: "$default".into(),
        path_parameters: vec![("id".into(), "42".into())],
        source_ip: "127.0.0.1".into(),
        principal_id: Some("alice".into()),
        authorizer_context: Vec::new(),
    }
}

/// (median, p99) in µs of `calls` sequential calls after a warm-up.
fn measure<F: AsyncFn() -> ()>(rt: &tokio::runtime::Runtime, calls: usize, f: F) -> (f64, f64) {
    rt.block_on(async {
        for _ in 0..calls.div_ceil(20) {
            f().await;
        }
        let mut times = Vec::with_capacity(calls);
        for _ in 0..calls {
            let started = Instant::now();
            f().await;
            times.push(started.elapsed());
        }
        times.sort();
        let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        (us(at(0.5)), us(at(0.99)))
    })
}

fn load<W: WorldKind>(
    host: &PluginHost,
    path: &str,
    reuse: u32,
    config: &str,
) -> (Plugin<W>, Duration)
where
    Plugin<W>: TryFrom<AnyPlugin, Error = PluginWorld>,
{
    let limits = Limits {
        deadline: Duration::from_secs(5),
        max_memory: 256 << 20,
        reuse,
        ..Limits::new()
    };
    let started = Instant::now();
    let plugin = host
        .load::<W>("bench", Path::new(path), limits, config.into())
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    (plugin, started.elapsed())
}

/// The 1-minute load average (Linux), to print beside the numbers it inflates.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// (label, mapper, authorizer): the built examples that `WEIR_BENCH_LANGUAGES` selects
/// (all by default), then the components `WEIR_BENCH_EXTRA` names.
fn rows() -> Vec<(String, String, String)> {
    let only = std::env::var("WEIR_BENCH_LANGUAGES").ok();
    let selected = |lang: &str| {
        only.as_deref()
            .is_none_or(|list| list.split(',').any(|l| l.trim() == lang))
    };
    let mut rows: Vec<(String, String, String)> = POLYGLOT
        .iter()
        .filter(|(lang, _, _)| selected(lang))
        .map(|(lang, m, a)| (lang.to_string(), m.to_string(), a.to_string()))
        .collect();
    let extra = std::env::var("WEIR_BENCH_EXTRA").unwrap_or_default();
    for row in extra.split(';').filter(|r| !r.trim().is_empty()) {
        let parsed = row.split_once('=').and_then(|(label, paths)| {
            let (m, a) = paths.split_once(',')?;
            Some((
                label.trim().to_string(),
                m.trim().to_string(),
                a.trim().to_string(),
            ))
        });
        rows.push(parsed.unwrap_or_else(|| {
            panic!("WEIR_BENCH_EXTRA: `{row}` is not label=mapper.wasm,authorizer.wasm")
        }));
    }
    rows
}

fn main() {
    // `cargo bench` passes `--bench`; criterion-style filters are not supported here.
    let calls: usize = std::env::var("WEIR_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let host = PluginHost::new().unwrap();
    let req: &'static Request = Box::leak(Box::new(request()));
    let ctx = weir::plugin::CallContext::from(context());
    let auth_req = AuthorizationRequest {
        method: "GET".into(),
        path: "/orders/42".into(),
        query: String::new(),
        headers: req.headers.clone(),
        identity: vec!["Bearer tok-alice".into()],
        scopes: Vec::new(),
    };
    let auth_config = r#"{"tokens":{"tok-alice":"alice","tok-bob":"bob"}}"#;

    // The same request with a body the mapper passes through without parsing it.
    let mut passthrough = req.clone();
    let passthrough: &'static Request = {
        for (name, value) in &mut passthrough.headers {
            if name == "content-type" {
                *value = "application/octet-stream".into();
            }
        }
        Box::leak(Box::new(passthrough))
    };

    println!("{calls} calls per cell; 10 headers, 1 KiB body; µs per call, median / p99\n");
    println!(
        "| language | component | compile | authorizer fresh | authorizer reused | mapper, binary body, fresh | mapper, binary body, reused | mapper, JSON rewrite, fresh | mapper, JSON rewrite, reused | load |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (lang, mapper, authorizer) in rows() {
        let (mapper, authorizer) = (mapper.as_str(), authorizer.as_str());
        let size = std::fs::metadata(mapper).map(|m| m.len()).unwrap_or(0);
        let (fresh, compile) = load::<MapperWorld>(&host, mapper, 0, MAPPER_CONFIG);
        let (reused, _) = load::<MapperWorld>(&host, mapper, u32::MAX / 2, MAPPER_CONFIG);
        let (auth_fresh, _) = load::<AuthorizerWorld>(&host, authorizer, 0, auth_config);
        let (auth_reused, _) =
            load::<AuthorizerWorld>(&host, authorizer, u32::MAX / 2, auth_config);
        let map = |p: &Plugin<MapperWorld>, req: &'static Request| {
            let (p, ctx) = (p.clone(), &ctx);
            move || {
                let p = p.clone();
                async move {
                    p.map_request(req, ctx).await.unwrap();
                }
            }
        };
        let auth = |p: &Plugin<AuthorizerWorld>| {
            let (p, req, ctx) = (p.clone(), &auth_req, &ctx);
            move || {
                let p = p.clone();
                async move {
                    p.authorize(req, ctx, None).await.unwrap();
                }
            }
        };
        let cell = |(median, p99): (f64, f64)| format!("{median:.1} / {p99:.1}");
        let load_before = load_average();
        let cells = [
            cell(measure(&rt, calls, auth(&auth_fresh))),
            cell(measure(&rt, calls, auth(&auth_reused))),
            cell(measure(&rt, calls, map(&fresh, passthrough))),
            cell(measure(&rt, calls, map(&reused, passthrough))),
            cell(measure(&rt, calls, map(&fresh, req))),
            cell(measure(&rt, calls, map(&reused, req))),
        ];
        println!(
            "| {lang} | {:.0} KiB | {:.2} s | {} | {load_before}–{} |",
            size as f64 / 1024.0,
            compile.as_secs_f64(),
            cells.join(" | "),
            load_average(),
        );
    }
}
