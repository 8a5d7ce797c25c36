//! Test mapper that misbehaves on purpose, chosen by the request path's last segment:
//! deep recursion, huge bodies, huge header lists, header injection, invalid UTF-8
//! and impossible status codes; and, on the way in only, sleeping, burning CPU, flooding
//! the log, forging log lines, indexing a huge JSON document and sending the request
//! somewhere else with `..`. The gateway must turn each into a clean error or bound it.

use weir_sdk::{Context, Headers, Mapper, Request, Response};

struct Hostile;

#[inline(never)]
fn recurse(depth: u64, pad: [u8; 256]) -> u64 {
    let pad = std::hint::black_box(pad);
    if depth == u64::MAX {
        return pad[0] as u64;
    }
    recurse(depth + 1, pad) + pad[(depth % 256) as usize] as u64
}

fn misbehave(kind: &str) -> Option<Response> {
    let mut resp = Response::text(200, "ok");
    match kind {
        "recurse" => {
            let n = recurse(0, [7; 256]);
            resp = Response::text(200, &n.to_string());
        }
        "huge-body" => resp.body = vec![b'h'; 20 << 20],
        "many-headers" => {
            let mut h = Headers::default();
            for i in 0..20_000 {
                h.append(&format!("x-h{i}"), "v");
            }
            resp.headers = h;
        }
        "crlf" => resp.headers.append("x-a", "ok\r\nx-injected: yes"),
        "bad-name" => resp.headers.append("bad name", "v"),
        "bad-utf8" => {
            // SAFETY: deliberately not UTF-8, to prove the host refuses such strings;
            // the guest only hands the bytes on.
            let value = unsafe { String::from_utf8_unchecked(vec![0xff, 0xfe, b'a']) };
            resp.headers.append("x-a", &value);
        }
        "bad-length" => {
            resp = Response::text(200, "0123456789");
            resp.headers.append("content-length", "2");
            resp.headers.append("transfer-encoding", "chunked");
        }
        "hop-by-hop" => {
            resp.headers.append("connection", "x-drop");
            resp.headers.append("x-drop", "1");
            resp.headers.append("upgrade", "h2c");
            resp.headers.append("keep-alive", "timeout=1");
            resp.headers.append("x-kept", "1");
        }
        "status-99" => resp.status = 99,
        "status-600" => resp.status = 600,
        _ => return None,
    }
    Some(resp)
}

/// Misbehaviour that only makes sense on the way in; `true` when `kind` is one.
fn misbehave_in(kind: &str, req: &mut Request) -> bool {
    match kind {
        // Waits in a host call (a clock pollable), where no epoch deadline can reach.
        "sleep" => std::thread::sleep(std::time::Duration::from_secs(5)),
        // Burns 90 ms of CPU, within a deadline of 100 ms.
        "busy" => {
            let started = std::time::Instant::now();
            let mut n = 0u64;
            while started.elapsed() < std::time::Duration::from_millis(90) {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "log-flood" => {
            for _ in 0..10_000 {
                weir_sdk::log::info(&"x".repeat(4000));
            }
        }
        "log-forge" => weir_sdk::log::info(
            "ok\n2026-01-01T00:00:00Z  INFO weir::admin: FORGED admin token accepted",
        ),
        "json-huge" => {
            let mut doc = Vec::with_capacity(20 << 20);
            doc.push(b'{');
            let mut i = 0u32;
            while doc.len() < (20 << 20) - 32 {
                if i > 0 {
                    doc.push(b',');
                }
                doc.extend_from_slice(format!("\"{i}\":1").as_bytes());
                i += 1;
            }
            doc.push(b'}');
            let members = weir_sdk::json::index_object(&doc).map_or(0, |ix| ix.members.len());
            req.headers.append("x-members", &members.to_string());
        }
        "dot-dot" => req.path = "/v2/../../admin/secret".to_owned(),
        "encoded-dot" => req.path = "/v2/%2e%2e/admin".to_owned(),
        _ => return false,
    }
    true
}

impl Mapper for Hostile {
    fn map_request(mut req: Request, _ctx: &Context) -> Result<Request, Response> {
        // With `config = { sleep_always = true }` every call sleeps, the smoke test's too.
        if weir_sdk::config_json().contains("\"sleep_always\":true") {
            std::thread::sleep(std::time::Duration::from_secs(5));
        }
        let last = req.path.rsplit('/').next().unwrap_or("").to_owned();
        if misbehave_in(&last, &mut req) {
            return Ok(req);
        }
        match misbehave(&last) {
            Some(resp) => Err(resp),
            None => Ok(req),
        }
    }

    fn map_response(resp: Response, _ctx: &Context) -> Response {
        // On the way out, the test upstream's JSON answer names the request path; its
        // last segment is the kind.
        let body = String::from_utf8_lossy(&resp.body);
        let kind = body
            .split("\"path\":\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .and_then(|path| path.rsplit('/').next())
            .unwrap_or("")
            .to_owned();
        misbehave(&kind).unwrap_or(resp)
    }
}

weir_sdk::export_mapper!(Hostile);
