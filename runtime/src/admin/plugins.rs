//! The plugin and reload API on the admin listener: every `/admin/*` call needs
//! `Authorization: Bearer <token>` (`[admin] token` or `token_env`).
//!
//! | call | answer |
//! | --- | --- |
//! | `GET /admin/plugins` | 200 `{"plugins": [...]}`: name, world, sha256, source, loaded_at, used_by, calls |
//! | `GET /admin/plugins/{name}` | 200 one of those, 404 |
//! | `PUT /admin/plugins/{name}[?world=W]` | component bytes in the body: 201 created, 200 replaced; 400 not a component or a bad request, 413 too large, 422 refused by a check |
//! | `DELETE /admin/plugins/{name}` | 204; 404 unknown; 409 while a route uses it |
//! | `POST /admin/reload` | re-read the config file: 200 `{"routes", "changed", "removed"}`, 422 with every problem |
//!
//! No `Authorization` header (or not a bearer token): 401 with `WWW-Authenticate:
//! Bearer`. A wrong token: 403. The token is compared in constant time. Errors are
//! `{"message": ...}`. With no token configured the admin API is off (404).

use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use sha2::{Digest, Sha256};
use std::sync::Arc;

use crate::config::World;
use crate::reload::{Refused, Reloader};
use crate::respond::{self, Body};

/// The admin API's state: the reloader and the token calls must present.
pub struct AdminApi {
    reloader: Arc<Reloader>,
    /// SHA-256 of the token (compared digest to digest, in constant time).
    token_digest: Option<[u8; 32]>,
}

impl AdminApi {
    /// The API over `reloader`; `None` as the token turns it off.
    pub fn new(reloader: Arc<Reloader>, token: Option<&str>) -> Self {
        Self {
            reloader,
            token_digest: token.map(|t| Sha256::digest(t.as_bytes()).into()),
        }
    }

    /// The refusal for a request without the right token, if it is one.
    fn refusal(&self, req: &Request<Incoming>) -> Option<Response<Body>> {
        let Some(want) = &self.token_digest else {
            return Some(error(
                StatusCode::NOT_FOUND,
                "the admin API is off: set admin.token or admin.token_env",
            ));
        };
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            });
        let Some(presented) = presented else {
            let mut resp = error(StatusCode::UNAUTHORIZED, "Unauthorized");
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return Some(resp);
        };
        let got: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        (!constant_time_eq(&got, want)).then(|| error(StatusCode::FORBIDDEN, "Forbidden"))
    }
}

/// For admin endpoints outside `/admin/` (the WebSocket `@connections` API): with a
/// token configured they need it too; the refusal, or `None` when the call may go on.
pub fn refusal_if_token_set(
    api: Option<&AdminApi>,
    req: &Request<Incoming>,
) -> Option<Response<Body>> {
    let api = api?;
    api.token_digest.as_ref()?;
    let mut resp = api.refusal(req)?;
    resp.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    Some(resp)
}

/// Whether `a == b`, taking the same time whatever the bytes are.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Answers one `/admin/*` request.
pub async fn answer(api: Option<&AdminApi>, req: Request<Incoming>) -> Response<Body> {
    let Some(api) = api else {
        return error(
            StatusCode::NOT_FOUND,
            "the admin API is off: set admin.token or admin.token_env",
        );
    };
    if let Some(mut resp) = api.refusal(&req) {
        // The body of a refused call is not read: say that the connection ends, so a
        // client does not send its next request on it.
        resp.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        return resp;
    }
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let reloader = &api.reloader;
    match (req.method().clone(), segments.as_slice()) {
        (Method::GET, ["admin", "plugins"]) => {
            let plugins = reloader.list();
            json(StatusCode::OK, &serde_json::json!({ "plugins": plugins }))
        }
        (Method::GET, ["admin", "plugins", name]) => {
            match reloader.list().into_iter().find(|p| p.name == *name) {
                Some(p) => json(StatusCode::OK, &p),
                None => error(StatusCode::NOT_FOUND, &format!("no plugin named `{name}`")),
            }
        }
        (Method::PUT, ["admin", "plugins", name]) => {
            let name = (*name).to_owned();
            let world = match query_world(req.uri().query()) {
                Ok(w) => w,
                Err(e) => return error(StatusCode::BAD_REQUEST, &e),
            };
            let max = reloader.max_plugin_size();
            let too_large = || {
                let mut resp = error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!("a component may be at most {max} bytes (limits.max_plugin_size)"),
                );
                // The rest of the body is not read.
                resp.headers_mut().insert(
                    header::CONNECTION,
                    header::HeaderValue::from_static("close"),
                );
                resp
            };
            let declared = req
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            if declared.is_some_and(|len| len > max) {
                return too_large();
            }
            let limit = usize::try_from(max).unwrap_or(usize::MAX);
            let body = match Limited::new(req.into_body(), limit).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
                Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
            };
            match reloader.put_plugin(&name, world, body.to_vec()).await {
                Ok((created, info)) => {
                    let status = if created {
                        StatusCode::CREATED
                    } else {
                        StatusCode::OK
                    };
                    json(status, &info)
                }
                Err(e) => refused(&e),
            }
        }
        (Method::DELETE, ["admin", "plugins", name]) => match reloader.delete_plugin(name).await {
            Ok(()) => {
                let mut resp = Response::new(respond::empty_body());
                *resp.status_mut() = StatusCode::NO_CONTENT;
                resp
            }
            Err(e) => refused(&e),
        },
        (Method::POST, ["admin", "reload"]) => match reloader.reload_config("admin API").await {
            Ok(outcome) => json(StatusCode::OK, &outcome),
            Err(e) => refused(&e),
        },
        (_, ["admin", "plugins"] | ["admin", "plugins", _] | ["admin", "reload"]) => {
            error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
        }
        _ => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

fn query_world(query: Option<&str>) -> Result<Option<World>, String> {
    let Some(value) = query.and_then(|q| crate::authorize::query_param(q, "world")) else {
        return Ok(None);
    };
    match value.as_str() {
        "mapper" => Ok(Some(World::Mapper)),
        "authorizer" => Ok(Some(World::Authorizer)),
        "cors" => Ok(Some(World::Cors)),
        "function" => Ok(Some(World::Function)),
        other => Err(format!(
            "unknown world `{other}`: expected mapper, authorizer, cors or function"
        )),
    }
}

fn refused(e: &Refused) -> Response<Body> {
    let status = match e {
        Refused::BadRequest(_) | Refused::NotAComponent(_) => StatusCode::BAD_REQUEST,
        Refused::Invalid(_) | Refused::Config(_) => StatusCode::UNPROCESSABLE_ENTITY,
        Refused::NotFound(_) => StatusCode::NOT_FOUND,
        Refused::InUse(_) => StatusCode::CONFLICT,
    };
    match e {
        Refused::Config(errors) => json(
            status,
            &serde_json::json!({ "message": errors.to_string(), "errors": errors.0 }),
        ),
        e => error(status, &e.to_string()),
    }
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    respond::message(status, message)
}

fn json(status: StatusCode, body: &impl serde::Serialize) -> Response<Body> {
    respond::json(status, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_by_digest() {
        let a: [u8; 32] = Sha256::digest(b"a-token-of-some-length").into();
        let b: [u8; 32] = Sha256::digest(b"a-token-of-some-lengtH").into();
        assert!(constant_time_eq(&a, &a));
        assert!(!constant_time_eq(&a, &b));
    }

    #[test]
    fn world_comes_from_the_query() {
        assert_eq!(query_world(None), Ok(None));
        assert_eq!(query_world(Some("world=cors")), Ok(Some(World::Cors)));
        assert!(query_world(Some("world=nope")).is_err());
    }
}
