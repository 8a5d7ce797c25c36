//! Test `wasi:http/proxy` component (`type = "function"`), chosen by path: `/hello`
//! answers and echoes what it got, `/fetch?URL` sends a GET to `URL` (outbound) and
//! answers with what came back, `/sleep` sleeps 5 s, `/trap` panics, `/big` answers
//! 2 MiB, `/silent` returns without an answer.

use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingRequest, OutgoingResponse,
    ResponseOutparam, Scheme,
};

wasip2::http::proxy::export!(Hello);

struct Hello;

fn answer(out: ResponseOutparam, status: u16, headers: &[(&str, &str)], body: &[u8]) {
    let fields = Fields::new();
    for (n, v) in headers {
        let _ = fields.append(n, v.as_bytes());
    }
    let resp = OutgoingResponse::new(fields);
    let _ = resp.set_status_code(status);
    let outgoing = resp.body().expect("a body");
    ResponseOutparam::set(out, Ok(resp));
    let stream = outgoing.write().expect("a stream");
    for chunk in body.chunks(4096) {
        stream.blocking_write_and_flush(chunk).expect("written");
    }
    drop(stream);
    OutgoingBody::finish(outgoing, None).expect("finished");
}

fn read_body(req: &IncomingRequest) -> Vec<u8> {
    let mut out = Vec::new();
    let body = req.consume().expect("a body");
    let stream = body.stream().expect("a stream");
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        out.extend_from_slice(&chunk);
    }
    out
}

/// GET `url`: the status and body, or the error code's words.
fn fetch(url: &str) -> Result<(u16, Vec<u8>), String> {
    let (scheme, rest) = match url.split_once("://") {
        Some(("http", rest)) => (Scheme::Http, rest),
        Some(("https", rest)) => (Scheme::Https, rest),
        _ => return Err(format!("not a URL: {url}")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let req = OutgoingRequest::new(Fields::new());
    let _ = req.set_method(&Method::Get);
    let _ = req.set_scheme(Some(&scheme));
    let _ = req.set_authority(Some(authority));
    let _ = req.set_path_with_query(Some(path));
    let future = outgoing_handler::handle(req, None).map_err(|e| format!("{e:?}"))?;
    future.subscribe().block();
    let resp = future
        .get()
        .ok_or("no answer")?
        .map_err(|_| "answer taken twice")?
        .map_err(|e| format!("{e:?}"))?;
    let status = resp.status();
    let body = resp.consume().map_err(|_| "no body")?;
    let stream = body.stream().map_err(|_| "no stream")?;
    let mut out = Vec::new();
    while let Ok(chunk) = stream.blocking_read(64 * 1024) {
        out.extend_from_slice(&chunk);
    }
    Ok((status, out))
}

impl wasip2::exports::http::incoming_handler::Guest for Hello {
    fn handle(req: IncomingRequest, out: ResponseOutparam) {
        let path_query = req.path_with_query().unwrap_or_default();
        let (path, query) = path_query.split_once('?').unwrap_or((&path_query, ""));
        match path.rsplit('/').next().unwrap_or("") {
            "fetch" => match fetch(query) {
                Ok((status, body)) => answer(
                    out,
                    200,
                    &[("x-fetched-status", &status.to_string())],
                    &body,
                ),
                Err(e) => answer(out, 502, &[("x-fetch-error", "yes")], e.as_bytes()),
            },
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(5));
                answer(out, 200, &[], b"woke");
            }
            "trap" => panic!("the function was asked to trap"),
            "big" => answer(out, 200, &[], &vec![b'b'; 2 << 20]),
            "silent" => {}
            _ => {
                let method = format!("{:?}", req.method());
                let body = read_body(&req);
                let text = format!(
                    "hello from a function: {method} {path} query={query} body={}",
                    body.len()
                );
                println!("hello-function served {path}");
                answer(
                    out,
                    200,
                    &[("content-type", "text/plain"), ("x-function", "hello")],
                    text.as_bytes(),
                );
            }
        }
    }
}
