//! Outbound HTTP through the gateway (`wasi:http/outgoing-handler`), blocking as a plugin
//! call is. The gateway lets a request out only to an origin in the plugin's
//! `allow_outbound`, bounds it by what is left of the call's deadline, sends it with its
//! own client (TLS verified, connections pooled) and keeps answers to credential-free
//! `GET`s as their `Cache-Control` allows (see `docs/plugin-authoring.md`).
//!
//! ```no_run
//! use std::time::Duration;
//!
//! let answer = weir_sdk::http::Request::get("https://idp.example.com/keys")
//!     .header("accept", "application/json")
//!     .timeout(Duration::from_millis(1500))
//!     .max_body(150_000)
//!     .send()?;
//! if answer.status == 200 {
//!     let max_age = answer.header("cache-control");
//!     # let _ = max_age;
//! }
//! # Ok::<(), weir_sdk::http::Error>(())
//! ```

use std::time::Duration;

/// The largest answer body read unless [`Request::max_body`] says otherwise.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The URL is not `http(s)://authority[/path]`.
    BadUrl(String),
    /// The answer's body is over the request's [`Request::max_body`].
    TooLarge(usize),
    /// The gateway or the network refused or failed it: the `wasi:http` error code, e.g.
    /// `HttpRequestDenied` (an origin not in `allow_outbound`), `ConnectionRefused`,
    /// `ConnectionReadTimeout`.
    Failed(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::BadUrl(url) => write!(f, "{url} is not an http(s) URL"),
            Error::TooLarge(limit) => write!(f, "answer over the {limit} bytes allowed"),
            Error::Failed(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for Error {}

/// One outbound request, built then [`sent`](Request::send).
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    url: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    timeout: Option<Duration>,
    max_body: usize,
}

/// An answer, its body read whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    /// Its status.
    pub status: u16,
    /// Its headers, names lower-case, in order.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Its body.
    pub body: Vec<u8>,
}

impl Answer {
    /// Every value of the header `name` (lower-case), in order, as text.
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = String> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// The first value of the header `name` (lower-case), as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.values(name).next()
    }
}

impl Request {
    /// A request with `method` (e.g. `GET`, `POST`) to `url`.
    pub fn new(method: &str, url: &str) -> Self {
        Request {
            method: method.to_owned(),
            url: url.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: None,
            max_body: DEFAULT_MAX_BODY,
        }
    }

    /// A `GET` of `url`.
    pub fn get(url: &str) -> Self {
        Self::new("GET", url)
    }

    /// A `POST` to `url`.
    pub fn post(url: &str) -> Self {
        Self::new("POST", url)
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.as_ref().to_vec()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Bounds connecting, the first byte and each gap between bytes by `timeout` (the
    /// call's deadline bounds the whole exchange in any case).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The largest answer body read (default [`DEFAULT_MAX_BODY`]): past it the request
    /// fails with [`Error::TooLarge`].
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// `scheme`, `authority` and `path?query` of the URL.
    fn parts(&self) -> Result<(bool, &str, &str), Error> {
        let (https, rest) = match self.url.split_once("://") {
            Some(("https", rest)) => (true, rest),
            Some(("http", rest)) => (false, rest),
            _ => return Err(Error::BadUrl(self.url.clone())),
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.is_empty() {
            return Err(Error::BadUrl(self.url.clone()));
        }
        Ok((https, authority, if path.is_empty() { "/" } else { path }))
    }

    /// Sends it through the gateway and reads the answer.
    #[cfg(target_arch = "wasm32")]
    pub fn send(self) -> Result<Answer, Error> {
        use wasip2::http::outgoing_handler;
        use wasip2::http::types::{
            Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
        };

        let failed = |e: &dyn std::fmt::Debug| Error::Failed(format!("{}: {e:?}", self.url));
        let (https, authority, path) = self.parts()?;
        let headers = Fields::from_list(&self.headers).map_err(|e| failed(&e))?;
        let req = OutgoingRequest::new(headers);
        let method = match self.method.as_str() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_owned()),
        };
        req.set_method(&method)
            .map_err(|()| failed(&"bad method"))?;
        req.set_scheme(Some(if https { &Scheme::Https } else { &Scheme::Http }))
            .map_err(|()| failed(&"bad scheme"))?;
        req.set_authority(Some(authority))
            .map_err(|()| Error::BadUrl(self.url.clone()))?;
        req.set_path_with_query(Some(path))
            .map_err(|()| Error::BadUrl(self.url.clone()))?;
        let options = self.timeout.map(|t| {
            let options = RequestOptions::new();
            let nanos = u64::try_from(t.as_nanos()).unwrap_or(u64::MAX);
            let _ = options.set_connect_timeout(Some(nanos));
            let _ = options.set_first_byte_timeout(Some(nanos));
            let _ = options.set_between_bytes_timeout(Some(nanos));
            options
        });
        let outgoing = req.body().map_err(|()| failed(&"no request body"))?;
        // Sent before its body is written, so a body larger than the gateway buffers
        // flows out as it is written instead of waiting for room that never comes.
        let future = outgoing_handler::handle(req, options).map_err(|e| failed(&e))?;
        if !self.body.is_empty() {
            let stream = outgoing
                .write()
                .map_err(|()| failed(&"no request stream"))?;
            // `blocking-write-and-flush` takes at most 4096 bytes at a time.
            for chunk in self.body.chunks(4096) {
                stream
                    .blocking_write_and_flush(chunk)
                    .map_err(|e| failed(&e))?;
            }
        }
        OutgoingBody::finish(outgoing, None).map_err(|e| failed(&e))?;
        future.subscribe().block();
        let resp = future
            .get()
            .ok_or_else(|| failed(&"no answer"))?
            .map_err(|()| failed(&"answer taken twice"))?
            .map_err(|e| failed(&e))?;
        let headers = resp.headers().entries();
        let status = resp.status();
        let incoming = resp.consume().map_err(|()| failed(&"no answer body"))?;
        let stream = incoming
            .stream()
            .map_err(|()| failed(&"no answer stream"))?;
        let mut body = Vec::new();
        while let Ok(chunk) = stream.blocking_read(64 * 1024) {
            body.extend_from_slice(&chunk);
            if body.len() > self.max_body {
                return Err(Error::TooLarge(self.max_body));
            }
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    /// Outside a wasm32 build there is no gateway to send through.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn send(self) -> Result<Answer, Error> {
        self.parts()?;
        Err(Error::Failed(format!(
            "{} {}: outbound HTTP needs the gateway (a wasm32 build)",
            self.method, self.url
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_scheme_authority_and_path() {
        let parts = |url: &str| {
            Request::get(url)
                .parts()
                .map(|(h, a, p)| (h, a.to_owned(), p.to_owned()))
        };
        assert_eq!(
            parts("https://idp.example:8443/a/b?c=d"),
            Ok((true, "idp.example:8443".into(), "/a/b?c=d".into()))
        );
        assert_eq!(parts("http://h"), Ok((false, "h".into(), "/".into())));
        for bad in ["ftp://h/x", "h/x", "https:///x", ""] {
            assert_eq!(parts(bad), Err(Error::BadUrl(bad.into())), "{bad}");
        }
    }

    #[test]
    fn headers_are_lower_case_and_answers_read_them() {
        let r = Request::post("http://h/x")
            .header("Content-Type", "text/plain")
            .body("x=1");
        assert_eq!(r.headers, [("content-type".into(), b"text/plain".to_vec())]);
        assert_eq!(r.body, b"x=1");
        let answer = Answer {
            status: 200,
            headers: vec![
                ("age".into(), b"12".to_vec()),
                ("age".into(), b"13".to_vec()),
            ],
            body: Vec::new(),
        };
        assert_eq!(answer.header("age").as_deref(), Some("12"));
        assert_eq!(answer.values("age").collect::<Vec<_>>(), ["12", "13"]);
        assert_eq!(answer.header("etag"), None);
        assert_eq!(
            Error::TooLarge(10).to_string(),
            "answer over the 10 bytes allowed"
        );
    }
}
