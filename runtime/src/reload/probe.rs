//! `weir plugin check --request FILE`: a sample request written by hand (JSON or
//! TOML), the call it makes into the plugin's world, and what the plugin answered, as
//! JSON — the gateway's "test" button for a mapper, an authorizer or a CORS policy.
//!
//! ```toml
//! method = "POST"                  # default GET
//! path = "/pets/7"                 # default /
//! query = "verbose=1"              # raw, without `?`
//! headers = { authorization = "Bearer tok-alice", "content-type" = "application/json" }
//! body = '{"name":"Rex"}'          # or body_base64 = "..."
//! identity = ["Bearer tok-alice"]  # authorizer: the identity-source values (default:
//!                                  # the `authorization` header, when there is one)
//! scopes = ["pets:read"]           # authorizer: the route's scopes
//! [context]                        # every key optional
//! route_key = "POST /pets/{id}"
//! path_parameters = { id = "7" }
//! principal_id = "alice"
//! authorizer_context = { role = "admin" }
//! [response]                       # mapper: also call map-response with this;
//! status = 200                     # cors: decorate these headers
//! headers = { "content-type" = "application/json" }
//! body = '{"ok":true}'
//! ```
//!
//! A CORS policy gets `preflight` for an `OPTIONS` request with `origin` and
//! `access-control-request-method` headers, and `decorate` otherwise.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::plugin::outbound::Sender;
use crate::plugin::{
    AnyPlugin, AuthorizationRequest, CallContext, Context, Decision, PluginError, Request,
    RequestHead, RequestOutcome, Response,
};

/// A sample request, as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    #[serde(default = "get")]
    method: String,
    #[serde(default = "root")]
    path: String,
    #[serde(default)]
    query: String,
    #[serde(default)]
    headers: Headers,
    body: Option<String>,
    body_base64: Option<String>,
    identity: Option<Vec<String>>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    context: SampleContext,
    response: Option<SampleResponse>,
}

fn get() -> String {
    "GET".to_owned()
}

fn root() -> String {
    "/".to_owned()
}

/// Headers as a table (`{ name = "value" }`) or as a list of pairs, for repeated names.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Headers {
    Table(BTreeMap<String, String>),
    Pairs(Vec<(String, String)>),
}

impl Default for Headers {
    fn default() -> Self {
        Headers::Pairs(Vec::new())
    }
}

impl Headers {
    /// The pairs, names lower-cased as the gateway hands them to plugins.
    fn pairs(&self) -> Vec<(String, String)> {
        let pairs: Vec<(String, String)> = match self {
            Headers::Table(t) => t.iter().map(|(n, v)| (n.clone(), v.clone())).collect(),
            Headers::Pairs(p) => p.clone(),
        };
        pairs
            .into_iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v))
            .collect()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SampleContext {
    request_id: Option<String>,
    route_key: Option<String>,
    stage: Option<String>,
    #[serde(default)]
    path_parameters: BTreeMap<String, String>,
    source_ip: Option<String>,
    principal_id: Option<String>,
    #[serde(default)]
    authorizer_context: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SampleResponse {
    #[serde(default = "ok")]
    status: u16,
    #[serde(default)]
    headers: Headers,
    body: Option<String>,
    body_base64: Option<String>,
}

fn ok() -> u16 {
    200
}

fn body(text: &Option<String>, b64: &Option<String>) -> Result<Vec<u8>, String> {
    match (text, b64) {
        (Some(_), Some(_)) => Err("give `body` or `body_base64`, not both".to_owned()),
        (Some(t), None) => Ok(t.as_bytes().to_vec()),
        (None, Some(b)) => BASE64
            .decode(b.trim())
            .map_err(|e| format!("body_base64: {e}")),
        (None, None) => Ok(Vec::new()),
    }
}

impl Sample {
    /// Reads a sample from a `.toml` file, or JSON (any other name).
    pub fn read(path: &Path) -> Result<Sample, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let sample: Sample = if path.extension().is_some_and(|e| e == "toml") {
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
        } else {
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?
        };
        // Bodies are checked now, so that a bad one is a usage error, not a call.
        body(&sample.body, &sample.body_base64).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some(r) = &sample.response {
            body(&r.body, &r.body_base64)
                .map_err(|e| format!("{}: response.{e}", path.display()))?;
        }
        Ok(sample)
    }

    fn request(&self) -> Request {
        Request {
            method: self.method.clone(),
            path: self.path.clone(),
            query: self.query.clone(),
            headers: self.headers.pairs(),
            body: body(&self.body, &self.body_base64).unwrap_or_default(),
        }
    }

    fn head(&self) -> RequestHead {
        RequestHead {
            method: self.method.clone(),
            path: self.path.clone(),
            query: self.query.clone(),
            headers: self.headers.pairs(),
        }
    }

    fn context(&self) -> Context {
        let c = &self.context;
        Context {
            request_id: c
                .request_id
                .clone()
                .unwrap_or_else(|| "plugin-check".into()),
            route_key: c
                .route_key
                .clone()
                .unwrap_or_else(|| format!("{} {}", self.method, self.path)),
            stage: c.stage.clone().unwrap_or_else(|| "$default".into()),
            path_parameters: c.path_parameters.clone().into_iter().collect(),
            source_ip: c.source_ip.clone().unwrap_or_else(|| "127.0.0.1".into()),
            principal_id: c.principal_id.clone(),
            authorizer_context: c.authorizer_context.clone().into_iter().collect(),
        }
    }
}

/// Calls the plugin with the sample as its world says, and returns what it answered
/// (or why the call failed).
/// An authorizer's outbound requests go through `sender`.
pub async fn run(
    plugin: &AnyPlugin,
    sample: &Sample,
    sender: Option<Arc<dyn Sender>>,
) -> Result<Value, String> {
    call(plugin, sample, sender).await.map_err(|e| match e {
        Unsupported::Plugin(e) => e.to_string(),
        Unsupported::World(world) => {
            format!("--request does not know how to call a `{world}` component")
        }
    })
}

/// Why [`call`] has no answer.
enum Unsupported {
    Plugin(PluginError),
    /// A world without sample calls.
    World(&'static str),
}

impl From<PluginError> for Unsupported {
    fn from(e: PluginError) -> Self {
        Unsupported::Plugin(e)
    }
}

async fn call(
    plugin: &AnyPlugin,
    sample: &Sample,
    sender: Option<Arc<dyn Sender>>,
) -> Result<Value, Unsupported> {
    // A world added to the gateway has no sample call until it gets one here.
    #[allow(unreachable_patterns)]
    match plugin {
        AnyPlugin::Mapper(p) => {
            let ctx = CallContext::from(sample.context());
            let outcome = match p.map_request(&sample.request(), &ctx).await? {
                RequestOutcome::Forward(r) => json!({ "forward": request_json(&r) }),
                RequestOutcome::Respond(r) => json!({ "respond": response_json(&r) }),
            };
            let mut out = json!({ "map_request": outcome });
            if let Some(r) = &sample.response {
                let resp = Response {
                    status: r.status,
                    headers: r.headers.pairs(),
                    body: body(&r.body, &r.body_base64).unwrap_or_default(),
                };
                let mapped = p.map_response(&resp, &ctx).await?;
                out["map_response"] = response_json(&mapped);
            }
            Ok(out)
        }
        AnyPlugin::Authorizer(p) => {
            let headers = sample.headers.pairs();
            let identity = sample.identity.clone().unwrap_or_else(|| {
                headers
                    .iter()
                    .filter(|(n, _)| n == "authorization")
                    .map(|(_, v)| v.clone())
                    .take(1)
                    .collect()
            });
            let req = AuthorizationRequest {
                method: sample.method.clone(),
                path: sample.path.clone(),
                query: sample.query.clone(),
                headers,
                identity,
                scopes: sample.scopes.clone(),
            };
            let decision = match p.authorize(&req, &sample.context().into(), sender).await? {
                Decision::Allow(a) => json!({ "allow": {
                    "principal_id": a.principal_id,
                    "context": pairs_json(&a.context),
                    "usage_identifier_key": a.usage_identifier_key,
                }}),
                Decision::Deny(d) => json!({ "deny": {
                    "status": d.status,
                    "message": d.message,
                }}),
            };
            Ok(json!({ "authorize": decision }))
        }
        AnyPlugin::Cors(p) => {
            let head = sample.head();
            let has = |name: &str| head.headers.iter().any(|(n, _)| n == name);
            if head.method == "OPTIONS" && has("origin") && has("access-control-request-method") {
                let resp = p.preflight(&head).await?;
                return Ok(json!({ "preflight": response_json(&resp) }));
            }
            let given = sample
                .response
                .as_ref()
                .map(|r| r.headers.pairs())
                .unwrap_or_default();
            let (headers, cacheable) = p.decorate(&head, &given).await?;
            Ok(json!({ "decorate": {
                "headers": pairs_json(&headers),
                "cacheable_seconds": cacheable.map(|d| d.as_secs()),
            }}))
        }
        other => Err(Unsupported::World(other.world().name())),
    }
}

/// Headers and other string pairs as a list of `[name, value]`, order and repeats kept.
fn pairs_json(pairs: &[(String, String)]) -> Value {
    Value::Array(pairs.iter().map(|(n, v)| json!([n, v])).collect())
}

/// A body as text when it is UTF-8 (`body`), else as base64 (`body_base64`).
fn put_body(out: &mut Value, body: &[u8]) {
    match std::str::from_utf8(body) {
        Ok(text) => out["body"] = json!(text),
        Err(_) => out["body_base64"] = json!(BASE64.encode(body)),
    }
}

fn request_json(r: &Request) -> Value {
    let mut out = json!({
        "method": r.method,
        "path": r.path,
        "query": r.query,
        "headers": pairs_json(&r.headers),
    });
    put_body(&mut out, &r.body);
    out
}

fn response_json(r: &Response) -> Value {
    let mut out = json!({ "status": r.status, "headers": pairs_json(&r.headers) });
    put_body(&mut out, &r.body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_read_from_toml_and_json_alike() {
        let dir = std::env::temp_dir().join(format!("weir-probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let toml_file = dir.join("req.toml");
        std::fs::write(
            &toml_file,
            "method = \"POST\"\nheaders = { Authorization = \"Bearer x\" }\nbody = \"hi\"\n[context]\npath_parameters = { id = \"7\" }\n",
        )
        .unwrap();
        let json_file = dir.join("req.json");
        std::fs::write(
            &json_file,
            r#"{"method":"POST","headers":[["Authorization","Bearer x"]],"body_base64":"aGk=","context":{"path_parameters":{"id":"7"}}}"#,
        )
        .unwrap();
        for file in [&toml_file, &json_file] {
            let s = Sample::read(file).unwrap();
            let r = s.request();
            assert_eq!(r.method, "POST");
            assert_eq!(r.path, "/");
            assert_eq!(r.headers, [("authorization".into(), "Bearer x".into())]);
            assert_eq!(r.body, b"hi");
            let c = s.context();
            assert_eq!(c.route_key, "POST /");
            assert_eq!(c.path_parameters, [("id".into(), "7".into())]);
            assert_eq!(c.principal_id, None);
        }
        std::fs::write(&json_file, r#"{"methd":"GET"}"#).unwrap();
        assert!(Sample::read(&json_file).unwrap_err().contains("methd"));
        std::fs::write(&json_file, r#"{"body":"a","body_base64":"YQ=="}"#).unwrap();
        assert!(Sample::read(&json_file).unwrap_err().contains("not both"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bodies_print_as_text_or_base64() {
        let mut v = json!({});
        put_body(&mut v, b"plain");
        assert_eq!(v, json!({ "body": "plain" }));
        let mut v = json!({});
        put_body(&mut v, &[0xff, 0x00]);
        assert_eq!(v, json!({ "body_base64": "/wA=" }));
    }
}
