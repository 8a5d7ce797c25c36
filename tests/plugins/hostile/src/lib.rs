//! Test mapper that misbehaves on purpose, chosen by the request path's last segment:
//! deep recursion, huge bodies, huge header lists, header injection, invalid UTF-8
//! and impossible status codes. The gateway must turn each into a clean error.

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
        "status-99" => resp.status = 99,
        "status-600" => resp.status = 600,
        _ => return None,
    }
    Some(resp)
}

impl Mapper for Hostile {
    fn map_request(req: Request, _ctx: &Context) -> Result<Request, Response> {
        let last = req.path.rsplit('/').next().unwrap_or("").to_owned();
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
