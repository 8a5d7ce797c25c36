//! A `wasi:http/proxy` component in Rust, served by Weir's `type = "function"` routes.
//! One fresh instance per request: nothing is kept between requests.
//!
//! - `GET /rs/hello?name=NAME`: `{"message": "hello, NAME", ...}` with what the request
//!   carried.
//! - `POST /rs/words`: counts the words of the body, `{"words": N}`.
//! - `GET /rs/upstream`: fetches `http://127.0.0.1:9000/` (an origin the plugin's
//!   `allow_outbound` lists) and answers with its status and size.
//! - anything else: `404 {"message": "Not Found"}`.

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};

wasip2::http::proxy::export!(Hello);

struct Hello;

/// `s` as a JSON string.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn respond(out: ResponseOutparam, status: u16, json: &str) {
    let headers = Fields::from_list(&[("content-type".into(), b"application/json".to_vec())])
        .expect("a valid header");
    let resp = OutgoingResponse::new(headers);
    let _ = resp.set_status_code(status);
    let body = resp.body().expect("the body, taken once");
    ResponseOutparam::set(out, Ok(resp));
    let stream = body.write().expect("the stream, taken once");
    // One write carries at most 4096 bytes.
    for chunk in json.as_bytes().chunks(4096) {
        stream
            .blocking_write_and_flush(chunk)
            .expect("the gateway reads the answer");
    }
    drop(stream);
    OutgoingBody::finish(body, None).expect("the answer is complete");
}

fn read_body(req: &IncomingRequest) -> Vec<u8> {
    let mut out = Vec::new();
    let body = req.consume().expect("the body, taken once");
    let stream = body.stream().expect("the stream, taken once");
    // Reading ends when the stream is closed.
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        out.extend_from_slice(&chunk);
    }
    out
}

/// The first value of query parameter `name` (no percent-decoding, for brevity).
fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// `GET http://127.0.0.1:9000/`: the status and the body's size, or the error code.
fn fetch_upstream() -> Result<(u16, usize), String> {
    let req = OutgoingRequest::new(Fields::new());
    let _ = req.set_method(&Method::Get);
    let _ = req.set_scheme(Some(&Scheme::Http));
    let _ = req.set_authority(Some("127.0.0.1:9000"));
    let _ = req.set_path_with_query(Some("/"));
    let answer = outgoing_handler::handle(req, None).map_err(|e| format!("{e:?}"))?;
    answer.subscribe().block();
    let resp = answer
        .get()
        .ok_or("no answer")?
        .map_err(|()| "the answer was taken twice")?
        .map_err(|e| format!("{e:?}"))?;
    let status = resp.status();
    let body = resp.consume().map_err(|()| "no body")?;
    let stream = body.stream().map_err(|()| "no stream")?;
    let mut size = 0;
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        size += chunk.len();
    }
    Ok((status, size))
}

impl wasip2::exports::http::incoming_handler::Guest for Hello {
    fn handle(req: IncomingRequest, out: ResponseOutparam) {
        let path_query = req.path_with_query().unwrap_or_default();
        let (path, query) = path_query.split_once('?').unwrap_or((&path_query, ""));
        let header = |name: &str| {
            req.headers()
                .get(name)
                .first()
                .map(|v| json_string(&String::from_utf8_lossy(v)))
                .unwrap_or_else(|| "null".to_owned())
        };
        match (req.method(), path) {
            (Method::Get, "/rs/hello") => {
                let name = param(query, "name").unwrap_or("world");
                let json = format!(
                    r#"{{"message":{},"language":"rust","forwardedFor":{},"requestId":{}}}"#,
                    json_string(&format!("hello, {name}")),
                    header("x-forwarded-for"),
                    header("x-request-id"),
                );
                respond(out, 200, &json);
            }
            (Method::Post, "/rs/words") => {
                let body = read_body(&req);
                let words = String::from_utf8_lossy(&body).split_whitespace().count();
                respond(out, 200, &format!(r#"{{"words":{words}}}"#));
            }
            (Method::Get, "/rs/upstream") => match fetch_upstream() {
                Ok((status, size)) => respond(
                    out,
                    200,
                    &format!(r#"{{"upstreamStatus":{status},"bytes":{size}}}"#),
                ),
                Err(e) => {
                    // Printed lines go to the gateway's log, tagged with the plugin.
                    eprintln!("hello-rust: the upstream did not answer: {e}");
                    respond(out, 502, &format!(r#"{{"message":{}}}"#, json_string(&e)));
                }
            },
            _ => respond(out, 404, r#"{"message":"Not Found"}"#),
        }
    }
}
