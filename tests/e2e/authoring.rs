//! A plugin author's path: refusals that say why (the guest's own output, the trap and
//! its backtrace), `weir plugin check` with the real config and a sample request, and
//! `weir validate` on the compiled cache `serve` uses.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use weir_tests::artifacts::{
    CORS, COUNTING_AUTHORIZER, ECHO_MAPPER, JWT_AUTHORIZER, LOUD_TRAP, TRAP,
};
use weir_tests::{Client, Weir};

/// `loud-trap` is used here.
pub const USES_LOUD_TRAP: bool = true;

const TOKEN: &str = "test-admin-token-0123456789";

/// Runs `weir ARGS`, returning (exit code, stdout, stderr).
fn weir(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A config with the admin API on and `extra` after it, written in a fresh directory.
fn start(extra: &str) -> Weir {
    let dir = weir_tests::test_dir();
    let path = dir.join("weir.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n{extra}"
        ),
    )
    .unwrap();
    Weir::start_file(env!("CARGO_BIN_EXE_weir"), &path, &[])
}

#[tokio::test]
async fn a_smoke_test_refusal_carries_the_guests_own_output() {
    // `loud` serves the echo mapper; its config is the one a new version gets.
    let gw = start(&format!(
        r#"
[plugins.loud]
file = {ECHO_MAPPER:?}
world = "mapper"
config = {{ reason = "the upstream URL is missing" }}
[[routes]]
key = "GET /x"
integration = {{ type = "mock" }}
request_mapping = "loud"
"#
    ));
    let c = Client::default();
    let auth = format!("Bearer {TOKEN}");
    let put = async |name: &str, file: &str| {
        c.send(
            "PUT",
            &gw.admin_url(&format!("/admin/plugins/{name}?world=mapper")),
            &[("authorization", &auth)],
            std::fs::read(file).unwrap(),
        )
        .await
    };

    // An upload is smoke-tested with the plugin's real config, and the 422 says what
    // the guest said: its log line, its stdout, its panic message, and a backtrace
    // that names its functions (it keeps its name section).
    let r = put("loud", LOUD_TRAP).await;
    assert_eq!(r.status, 422, "{}", r.text());
    let body = r.json();
    let message = body["message"].as_str().unwrap();
    for want in [
        "refused by the smoke test",
        "wasm trap: wasm `unreachable` instruction executed",
        "backtrace:",
        "loud_trap::refuse",
        "[info] loud-trap config: {\"reason\":\"the upstream URL is missing\"}",
        "[stdio] loud-trap stdout: mapping /",
        "loud-trap refuses: the upstream URL is missing",
    ] {
        assert!(message.contains(want), "no {want:?} in:\n{message}");
    }
    let output: Vec<&str> = body["guest_output"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(
        output[0],
        "[info] loud-trap config: {\"reason\":\"the upstream URL is missing\"}"
    );
    assert_eq!(output[1], "[stdio] loud-trap stdout: mapping /");
    assert!(
        output
            .iter()
            .any(|l| l.contains("loud-trap refuses: the upstream URL is missing")),
        "{output:?}"
    );
    assert!(message.len() < 16 * 1024, "{} bytes", message.len());

    // A stripped component still shows its panic message, and says why its backtrace
    // has no names.
    let r = put("plain", TRAP).await;
    assert_eq!(r.status, 422);
    let message = r.json()["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("trap plugin was asked to map /"),
        "{message}"
    );
    assert!(message.contains("no function names"), "{message}");

    // A reload that meets the same component says it in the log.
    let config = std::fs::read_to_string(gw.dir.join("weir.toml")).unwrap();
    std::fs::write(
        gw.dir.join("weir.toml"),
        config.replace(&format!("{ECHO_MAPPER:?}"), &format!("{LOUD_TRAP:?}")),
    )
    .unwrap();
    let r = c
        .send(
            "POST",
            &gw.admin_url("/admin/reload"),
            &[("authorization", &auth)],
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(
        r.text()
            .contains("loud-trap refuses: the upstream URL is missing"),
        "{}",
        r.text()
    );
    let logs = gw.wait_for_logs("reload refused", 1).await;
    assert!(
        logs.contains("loud-trap refuses: the upstream URL is missing"),
        "{logs}"
    );
}

#[tokio::test]
async fn a_served_trap_logs_the_guests_output_with_the_failure() {
    let config = format!(
        r#"
[plugins.loud]
file = {file:?}
world = "mapper"
smoke_test = false
config = {{ reason = "served and failed" }}
[[routes]]
key = "GET /x"
integration = {{ type = "mock" }}
request_mapping = "loud"
"#,
        file = LOUD_TRAP
    );
    let gw = crate::weir(&config);
    let r = Client::default().get(&gw.url("/x")).await;
    assert_eq!(r.status, 500);
    let logs = gw.wait_for_logs("request failed", 1).await;
    let failure = logs
        .lines()
        .skip_while(|l| !l.contains("request failed"))
        .take(40)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        failure.contains("guest output of this call")
            && failure.contains("loud-trap refuses: served and failed")
            && failure.contains("[stdio] loud-trap stdout: mapping /x"),
        "{failure}"
    );
}

#[test]
fn a_component_of_another_world_is_told_which_world_its_imports_belong_to() {
    // The JWT authorizer imports `signatures`, which only authorizers get.
    for world in ["mapper", "cors"] {
        let (code, _, stderr) = weir(&["plugin", "check", JWT_AUTHORIZER, "--world", world]);
        assert_eq!(code, 1, "{stderr}");
        assert!(
            stderr.contains(&format!("component does not fit the `{world}` world"))
                && stderr.contains(&format!(
                    "`weir:plugin/signatures` is imported only by the `authorizer` world, not by `{world}`"
                )),
            "{stderr}"
        );
    }
    let (code, stdout, stderr) = weir(&[
        "plugin",
        "check",
        JWT_AUTHORIZER,
        "--world",
        "authorizer",
        "--config",
        r#"{"issuer": "https://issuer.example", "audience": ["a"], "hs256_secret": "s"}"#,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(": ok (world authorizer, sha256 "),
        "{stdout}"
    );
}

#[test]
fn plugin_check_smoke_tests_with_the_real_config() {
    // Without a config the plugin panics, and says why on stderr.
    let (code, _, stderr) = weir(&["plugin", "check", LOUD_TRAP, "--world", "mapper"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("loud-trap refuses: no reason configured")
            && stderr.contains("[info] loud-trap config: {}"),
        "{stderr}"
    );
    // With the config it will get, it passes; with another, it fails saying so.
    let (code, stdout, stderr) = weir(&[
        "plugin",
        "check",
        LOUD_TRAP,
        "--world",
        "mapper",
        "--config",
        r#"{"reason": null}"#,
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains(": ok (world mapper, sha256 "), "{stdout}");
    assert!(
        stderr.contains("[info] loud-trap config: {\"reason\":null}"),
        "the smoke test's guest output is shown: {stderr}"
    );
    let (code, _, stderr) = weir(&[
        "plugin",
        "check",
        LOUD_TRAP,
        "--world",
        "mapper",
        "--config",
        r#"{"reason": "bad key"}"#,
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("loud-trap refuses: bad key"), "{stderr}");
    // Usage errors are exit 2.
    let (code, _, stderr) = weir(&[
        "plugin", "check", LOUD_TRAP, "--world", "mapper", "--config", "{nope",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("--config is not JSON"), "{stderr}");

    // --from takes the file, world, limits and config from a weir.toml.
    let dir = weir_tests::test_dir();
    let toml = dir.join("weir.toml");
    std::fs::write(
        &toml,
        format!(
            "[plugins.calm]\nfile = {LOUD_TRAP:?}\nworld = \"mapper\"\nconfig = {{ reason = \"from the file\" }}\n"
        ),
    )
    .unwrap();
    let toml = toml.to_str().unwrap();
    let (code, _, stderr) = weir(&["plugin", "check", "--from", toml, "--plugin", "calm"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("loud-trap refuses: from the file"),
        "{stderr}"
    );
    let (code, _, stderr) = weir(&["plugin", "check", "--from", toml, "--plugin", "nope"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("defines no plugin `nope` (it defines: calm)"),
        "{stderr}"
    );
    let (code, _, stderr) = weir(&[
        "plugin", "check", "--from", toml, "--plugin", "calm", "--world", "cors",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("is a `mapper` plugin"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `weir plugin check FILE --world W [--config C] --request SAMPLE`: exit code and the
/// JSON answer on stdout.
fn answer(file: &str, world: &str, config: Option<&str>, sample: &str, ext: &str) -> Value {
    let dir = weir_tests::test_dir();
    let req = dir.join(format!("req.{ext}"));
    std::fs::write(&req, sample).unwrap();
    let mut args = vec!["plugin", "check", file, "--world", world];
    if let Some(c) = config {
        args.extend(["--config", c]);
    }
    args.extend(["--request", req.to_str().unwrap()]);
    let (code, stdout, stderr) = weir(&args);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[test]
fn plugin_check_request_prints_what_a_mapper_returns() {
    let sample = r#"
method = "POST"
path = "/pets/7"
headers = { "Content-Type" = "application/json" }
body = '{"name":"Rex"}'
[context]
route_key = "POST /pets/{id}"
principal_id = "alice"
[response]
status = 201
body = "created"
"#;
    let out = answer(
        ECHO_MAPPER,
        "mapper",
        Some(r#"{"tag":"checked"}"#),
        sample,
        "toml",
    );
    let fwd = &out["map_request"]["forward"];
    assert_eq!(fwd["method"], "POST");
    assert_eq!(fwd["path"], "/pets/7");
    assert_eq!(fwd["body"], r#"{"name":"Rex"}"#);
    assert_eq!(
        fwd["headers"],
        json!([
            ["content-type", "application/json"],
            ["x-mapped", "checked"],
            ["x-route-key", "POST /pets/{id}"],
            ["x-principal", "alice"]
        ])
    );
    assert_eq!(
        out["map_response"],
        json!({ "status": 201, "headers": [["x-mapped-response", "yes"]], "body": "created" })
    );
    // A direct answer, from a JSON sample.
    let out = answer(
        ECHO_MAPPER,
        "mapper",
        None,
        r#"{"path": "/a/direct"}"#,
        "json",
    );
    assert_eq!(out["map_request"]["respond"]["status"], 418);
    assert_eq!(out["map_request"]["respond"]["body"], "short-circuit");
    assert!(out.get("map_response").is_none());

    // A sample that fails is exit 1 with the guest's output; a bad sample is exit 2.
    let dir = weir_tests::test_dir();
    let req = dir.join("req.json");
    std::fs::write(&req, r#"{"path": "/boom"}"#).unwrap();
    let req = req.to_str().unwrap();
    let (code, stdout, stderr) = weir(&[
        "plugin",
        "check",
        LOUD_TRAP,
        "--world",
        "mapper",
        "--config",
        r#"{"reason": null}"#,
        "--request",
        req,
    ]);
    assert_eq!(code, 0, "{stderr}");
    let out: Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        out["map_request"]["forward"]["headers"]
            .as_array()
            .unwrap()
            .contains(&json!(["x-loud", "calm"]))
    );
    let (code, _, _) = weir(&[
        "plugin",
        "check",
        LOUD_TRAP,
        "--world",
        "mapper",
        "--request",
        req,
    ]);
    assert_eq!(code, 1, "the smoke test refuses it first");
    std::fs::write(dir.join("bad.json"), r#"{"methd": "GET"}"#).unwrap();
    let (code, _, stderr) = weir(&[
        "plugin",
        "check",
        ECHO_MAPPER,
        "--world",
        "mapper",
        "--request",
        dir.join("bad.json").to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("methd"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn plugin_check_request_prints_an_authorizers_decision() {
    let out = answer(
        COUNTING_AUTHORIZER,
        "authorizer",
        None,
        r#"{"headers": {"Authorization": "let-me-in"}}"#,
        "json",
    );
    assert_eq!(
        out,
        json!({ "authorize": { "allow": {
            "principal_id": "tester",
            "context": [["role", "admin"]],
            "usage_identifier_key": null
        }}})
    );
    let out = answer(
        COUNTING_AUTHORIZER,
        "authorizer",
        None,
        "identity = [\"forbidden\"]\n",
        "toml",
    );
    assert_eq!(
        out,
        json!({ "authorize": { "deny": { "status": 403, "message": "Forbidden" } } })
    );
}

#[test]
fn plugin_check_request_prints_cors_headers() {
    let config = r#"{"allow_origins": ["https://app.example"], "allow_methods": ["GET", "POST"], "max_age": 600}"#;
    let preflight = r#"
method = "OPTIONS"
path = "/pets"
headers = { origin = "https://app.example", "access-control-request-method" = "POST" }
"#;
    let out = answer(CORS, "cors", Some(config), preflight, "toml");
    let headers = out["preflight"]["headers"].as_array().unwrap();
    assert!(
        headers.contains(&json!([
            "access-control-allow-origin",
            "https://app.example"
        ])),
        "{out}"
    );
    let decorate = r#"{"path": "/pets", "headers": {"origin": "https://app.example"},
        "response": {"headers": [["content-type", "application/json"]]}}"#;
    let out = answer(CORS, "cors", Some(config), decorate, "json");
    let headers = out["decorate"]["headers"].as_array().unwrap();
    assert!(
        headers.contains(&json!(["content-type", "application/json"])),
        "{out}"
    );
    assert!(
        headers.contains(&json!([
            "access-control-allow-origin",
            "https://app.example"
        ])),
        "{out}"
    );
    assert!(out["decorate"]["cacheable_seconds"].is_u64(), "{out}");
}

#[test]
fn validate_reuses_the_compiled_cache() {
    let dir = weir_tests::test_dir();
    let toml = dir.join("weir.toml");
    std::fs::write(
        &toml,
        format!(
            "[plugins.echo]\nfile = {ECHO_MAPPER:?}\nworld = \"mapper\"\n[[routes]]\nkey = \"GET /x\"\nintegration = {{ type = \"mock\" }}\nrequest_mapping = \"echo\"\n"
        ),
    )
    .unwrap();
    let toml = toml.to_str().unwrap();
    let (code, _, first) = weir(&["validate", toml]);
    assert_eq!(code, 0, "{first}");
    assert!(first.contains("plugin compiled"), "{first}");
    assert!(
        std::fs::read_dir(dir.join(".weir-cache")).unwrap().count() > 0,
        "validate wrote the cache serve reads"
    );
    let (code, _, second) = weir(&["validate", toml]);
    assert_eq!(code, 0, "{second}");
    assert!(!second.contains("plugin compiled"), "{second}");
    std::fs::remove_dir_all(Path::new(&dir)).unwrap();
}
