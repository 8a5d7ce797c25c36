//! Keys from the issuer: `{issuer}/.well-known/openid-configuration` names the
//! `jwks_uri` (or the config does), and the key set is read from there — through the
//! gateway, whose host keeps answers for every instance and worker (this plugin is
//! fresh on every call). The requests say what the plugin accepts, as HTTP caching does:
//! `max-stale` (a kept answer past its `max-age`: lifetimes are clamped to [5 min, 1 h],
//! 1 h without `max-age`, so a kept answer older than that is asked for again with
//! `no-cache`), `stale-if-error` (the last good answer when the issuer cannot be
//! reached), and `no-cache` for a token whose key id is not in the set (the gateway
//! asks the issuer at most once per 30 s per URL).

use crate::keys::{Jwk, parse_jwks};

/// How long a discovery or JWKS request may take.
pub const TIMEOUT_MS: u64 = 1_500;
/// Largest discovery document or JWKS accepted.
pub const MAX_DOCUMENT: usize = 150_000;
/// Shortest and longest a key set is used before it is asked for again, and the
/// lifetime of one whose answer has no `max-age`.
pub const MIN_LIFETIME: u64 = 300;
/// See [`MIN_LIFETIME`].
pub const MAX_LIFETIME: u64 = 3_600;
/// How long past its lifetime the last good answer serves while the issuer cannot be
/// reached (the gateway keeps answers at most 24 h).
pub const STALE_IF_ERROR: u64 = 86_400;

/// One answer, as much of it as matters here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    /// Its status.
    pub status: u16,
    /// `Cache-Control: max-age`, when given.
    pub max_age: Option<u64>,
    /// `Age`: how long ago it was fetched (0 when fresh from the issuer).
    pub age: u64,
    /// Its body.
    pub body: Vec<u8>,
}

/// `GET url` with a `Cache-Control` request header, through the gateway.
pub trait Http {
    /// The answer, or why there is none.
    fn get(&mut self, url: &str, cache_control: &str) -> Result<Answer, String>;
}

/// How long an answer's keys are used: its `max-age` within [5 min, 1 h], else 1 h.
pub fn lifetime(max_age: Option<u64>) -> u64 {
    max_age
        .unwrap_or(MAX_LIFETIME)
        .clamp(MIN_LIFETIME, MAX_LIFETIME)
}

/// A document: the kept one unless it outlived its [`lifetime`], then a fresh one (or,
/// the issuer failing, the kept one again). `refresh` asks the issuer straight away.
fn document(http: &mut dyn Http, url: &str, refresh: bool) -> Result<Vec<u8>, String> {
    let again = format!("no-cache, stale-if-error={STALE_IF_ERROR}");
    let mut answer = if refresh {
        http.get(url, &again)?
    } else {
        http.get(
            url,
            &format!("max-stale={MAX_LIFETIME}, stale-if-error={STALE_IF_ERROR}"),
        )?
    };
    if !refresh && answer.status == 200 && answer.age > lifetime(answer.max_age) {
        answer = http.get(url, &again)?;
    }
    if answer.status != 200 {
        return Err(format!("{url} answered {}", answer.status));
    }
    if answer.body.len() > MAX_DOCUMENT {
        return Err(format!(
            "{url}: {} bytes, over the {MAX_DOCUMENT} allowed",
            answer.body.len()
        ));
    }
    Ok(answer.body)
}

/// Where an issuer's keys are.
pub struct Remote<'a> {
    /// The configured `iss`.
    pub issuer: &'a str,
    /// A `jwks_uri` from the config (then there is no discovery).
    pub jwks_uri: Option<&'a str>,
    /// The way out.
    pub http: &'a mut dyn Http,
}

impl Remote<'_> {
    /// The URL of the issuer's discovery document.
    pub fn discovery_url(issuer: &str) -> String {
        format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        )
    }

    /// The key set's URL: from the config, or from discovery (whose `issuer` must be
    /// the configured one, as OpenID Connect Discovery §4.3 requires).
    fn jwks_uri(&mut self) -> Result<String, String> {
        if let Some(uri) = self.jwks_uri {
            return Ok(uri.to_owned());
        }
        #[derive(serde::Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: String,
        }
        let url = Self::discovery_url(self.issuer);
        let doc: Discovery = serde_json::from_slice(&document(self.http, &url, false)?)
            .map_err(|e| format!("{url} is not an OpenID configuration: {e}"))?;
        if doc.issuer != self.issuer {
            return Err(format!(
                "{url} names issuer {:?}, not {:?}",
                doc.issuer, self.issuer
            ));
        }
        Ok(doc.jwks_uri)
    }

    /// The issuer's keys; `refresh` asks the issuer for the key set again (still at
    /// most once per 30 s per URL: more often the gateway answers with what it keeps).
    pub fn keys(&mut self, refresh: bool) -> Result<Vec<Jwk>, String> {
        let uri = self.jwks_uri()?;
        let body = document(self.http, &uri, refresh)?;
        parse_jwks(&body).map_err(|e| format!("{uri}: {e}"))
    }
}

/// [`Http`] through `wasi:http/outgoing-handler`: the gateway lets the request out
/// only to origins in the plugin's `allow_outbound`.
pub struct WasiHttp;

impl Http for WasiHttp {
    fn get(&mut self, url: &str, cache_control: &str) -> Result<Answer, String> {
        use wasip2::http::outgoing_handler;
        use wasip2::http::types::{
            Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
        };

        let (scheme, rest) = match url.split_once("://") {
            Some(("https", rest)) => (Scheme::Https, rest),
            Some(("http", rest)) => (Scheme::Http, rest),
            _ => return Err(format!("{url} is not an http(s) URL")),
        };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let headers = Fields::from_list(&[
            ("accept".into(), b"application/json".to_vec()),
            ("cache-control".into(), cache_control.as_bytes().to_vec()),
        ])
        .map_err(|e| format!("{e:?}"))?;
        let req = OutgoingRequest::new(headers);
        let _ = req.set_method(&Method::Get);
        let _ = req.set_scheme(Some(&scheme));
        req.set_authority(Some(authority))
            .map_err(|()| format!("{url}: bad authority"))?;
        req.set_path_with_query(Some(if path.is_empty() { "/" } else { path }))
            .map_err(|()| format!("{url}: bad path"))?;
        let options = RequestOptions::new();
        let timeout = TIMEOUT_MS * 1_000_000;
        let _ = options.set_connect_timeout(Some(timeout));
        let _ = options.set_first_byte_timeout(Some(timeout));
        let _ = options.set_between_bytes_timeout(Some(timeout));
        let outgoing = req.body().map_err(|()| "no request body")?;
        let future =
            outgoing_handler::handle(req, Some(options)).map_err(|e| format!("{url}: {e:?}"))?;
        OutgoingBody::finish(outgoing, None).map_err(|e| format!("{e:?}"))?;
        future.subscribe().block();
        let resp = future
            .get()
            .ok_or("no answer")?
            .map_err(|()| "answer taken twice")?
            .map_err(|e| format!("{url}: {e:?}"))?;
        let header = |name: &str| -> Vec<String> {
            resp.headers()
                .get(name)
                .iter()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .collect()
        };
        let max_age = header("cache-control")
            .iter()
            .flat_map(|v| v.split(','))
            .filter_map(|d| {
                d.trim()
                    .to_ascii_lowercase()
                    .strip_prefix("max-age=")
                    .map(str::to_owned)
            })
            .find_map(|v| v.trim_matches('"').parse().ok());
        let age = header("age")
            .first()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let status = resp.status();
        let incoming = resp.consume().map_err(|()| "no answer body")?;
        let stream = incoming.stream().map_err(|()| "no answer stream")?;
        let mut body = Vec::new();
        while let Ok(chunk) = stream.blocking_read(64 * 1024) {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_DOCUMENT {
                break;
            }
        }
        Ok(Answer {
            status,
            max_age,
            age,
            body,
        })
    }
}

#[cfg(test)]
mod tests;
