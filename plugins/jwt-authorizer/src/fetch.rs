//! Keys from the issuer: `{issuer}/.well-known/openid-configuration` names the
//! `jwks_uri` (or the config does), and the key set is read from there — through the
//! gateway, whose host keeps answers for every instance and worker (this plugin is
//! fresh on every call). The requests say what the plugin accepts, as HTTP caching does:
//! `max-stale` (a kept answer past its `max-age`: lifetimes are clamped to [5 min, 1 h],
//! 1 h without `max-age`, so a kept answer older than that is asked for again with
//! `no-cache`), `stale-if-error` (the last good answer when the issuer cannot be
//! reached), and `no-cache` for a token whose key id is not in the set (the gateway
//! asks the issuer at most once per 30 s per URL).
//!
//! The key set a call fetched is kept with `host.keep` for what is left of its
//! lifetime (and its discovery document's), so later calls read it with one
//! `host.kept` instead of two requests through the gateway.

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

/// The gateway, as this module uses it: `GET url` with a `Cache-Control` request
/// header, and values kept between calls.
pub trait Http {
    /// The answer, or why there is none.
    fn get(&mut self, url: &str, cache_control: &str) -> Result<Answer, String>;
    /// What an earlier call kept under `key`, unless its time is up.
    fn kept(&mut self, key: &str) -> Option<Vec<u8>>;
    /// Keeps `value` under `key` for `seconds`.
    fn keep(&mut self, key: &str, value: &[u8], seconds: u64);
}

/// The key under which the key set is kept. The kept values are this plugin
/// version's, whose config names one issuer: one key serves.
pub const KEPT_JWKS: &str = "jwks";

/// How long an answer's keys are used: its `max-age` within [5 min, 1 h], else 1 h.
pub fn lifetime(max_age: Option<u64>) -> u64 {
    max_age
        .unwrap_or(MAX_LIFETIME)
        .clamp(MIN_LIFETIME, MAX_LIFETIME)
}

/// A document: the kept one unless it outlived its [`lifetime`], then a fresh one (or,
/// the issuer failing, the kept one again). `refresh` asks the issuer straight away.
/// With it, the seconds it is still fresh for.
fn document(http: &mut dyn Http, url: &str, refresh: bool) -> Result<(Vec<u8>, u64), String> {
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
    let fresh_for = lifetime(answer.max_age).saturating_sub(answer.age);
    Ok((answer.body, fresh_for))
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
    /// the configured one, as OpenID Connect Discovery §4.3 requires); with the
    /// seconds the discovery document is still fresh for.
    fn jwks_uri(&mut self) -> Result<(String, u64), String> {
        if let Some(uri) = self.jwks_uri {
            return Ok((uri.to_owned(), u64::MAX));
        }
        #[derive(serde::Deserialize)]
        struct Discovery {
            issuer: String,
            jwks_uri: String,
        }
        let url = Self::discovery_url(self.issuer);
        let (body, fresh_for) = document(self.http, &url, false)?;
        let doc: Discovery = serde_json::from_slice(&body)
            .map_err(|e| format!("{url} is not an OpenID configuration: {e}"))?;
        if doc.issuer != self.issuer {
            return Err(format!(
                "{url} names issuer {:?}, not {:?}",
                doc.issuer, self.issuer
            ));
        }
        Ok((doc.jwks_uri, fresh_for))
    }

    /// The issuer's keys: the key set an earlier call kept, or the one the gateway
    /// answers with (then kept for the rest of its lifetime); `refresh` asks the
    /// issuer for it again (still at most once per 30 s per URL: more often the gateway
    /// answers with what it keeps).
    pub fn keys(&mut self, refresh: bool) -> Result<Vec<Jwk>, String> {
        if !refresh
            && let Some(keys) = self
                .http
                .kept(KEPT_JWKS)
                .and_then(|body| parse_jwks(&body).ok())
        {
            return Ok(keys);
        }
        let (uri, discovery_fresh_for) = self.jwks_uri()?;
        let (body, fresh_for) = document(self.http, &uri, refresh)?;
        let keys = parse_jwks(&body).map_err(|e| format!("{uri}: {e}"))?;
        let fresh_for = fresh_for.min(discovery_fresh_for);
        if fresh_for > 0 {
            self.http.keep(KEPT_JWKS, &body, fresh_for);
        }
        Ok(keys)
    }
}

/// [`Http`] through the gateway: `weir_sdk::http` (out only to origins in the plugin's
/// `allow_outbound`) and `host.kept`/`host.keep`.
pub struct WasiHttp;

impl Http for WasiHttp {
    fn kept(&mut self, key: &str) -> Option<Vec<u8>> {
        weir_sdk::kept(key)
    }

    fn keep(&mut self, key: &str, value: &[u8], seconds: u64) {
        // A set over the gateway's bound is not kept: later calls fetch it again.
        weir_sdk::keep(key, value, u32::try_from(seconds).unwrap_or(u32::MAX));
    }

    fn get(&mut self, url: &str, cache_control: &str) -> Result<Answer, String> {
        let answer = weir_sdk::http::Request::get(url)
            .header("accept", "application/json")
            .header("cache-control", cache_control)
            .timeout(std::time::Duration::from_millis(TIMEOUT_MS))
            .max_body(MAX_DOCUMENT)
            .send()
            .map_err(|e| match e {
                weir_sdk::http::Error::TooLarge(_) => {
                    format!("{url}: over the {MAX_DOCUMENT} allowed")
                }
                e => e.to_string(),
            })?;
        let max_age = answer
            .values("cache-control")
            .flat_map(|v| {
                v.split(',')
                    .map(|d| d.trim().to_ascii_lowercase())
                    .collect::<Vec<_>>()
            })
            .find_map(|d| d.strip_prefix("max-age=")?.trim_matches('"').parse().ok());
        let age = answer
            .header("age")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        Ok(Answer {
            status: answer.status,
            max_age,
            age,
            body: answer.body,
        })
    }
}

#[cfg(test)]
mod tests;
