//! The plugin ABI across versions: a component built against the first released WIT
//! (0.1.0) runs in today's gateway, and the `json` interface that 0.1.1 added answers
//! plugins through the real server.

use weir_tests::artifacts::{ABI_0_1_0, JSON_INDEX};
use weir_tests::{Client, Upstream};

use crate::{toml_path, weir};

pub const USES_ABI_0_1_0: bool = true;
pub const USES_JSON_INDEX: bool = true;

#[tokio::test]
async fn a_component_built_against_wit_0_1_0_still_runs() {
    let up = Upstream::start().await;
    let gw = weir(&format!(
        r#"
[plugins.old]
file = {old}
world = "mapper"
config = {{ tag = "kept" }}

[[routes]]
key = "GET /old"
integration = {{ type = "http", url = "{base}/old" }}
request_mapping = "old"
"#,
        old = toml_path(ABI_0_1_0),
        base = up.base(),
    ));
    let r = Client::default().get(&gw.url("/old")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = &up.seen()[0];
    let header = |n: &str| seen.headers.get(n).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(header("x-abi").as_deref(), Some("0.1.0"));
    // The 0.1.0 `host` import is served by the gateway's 0.1.1 one.
    assert_eq!(header("x-abi-config").as_deref(), Some(r#"{"tag":"kept"}"#));
    gw.wait_for_logs("abi 0.1.0 plugin ran", 1).await;
}

#[tokio::test]
async fn the_json_interface_indexes_bodies_for_plugins() {
    let up = Upstream::start().await;
    let gw = weir(&format!(
        r#"
[plugins.index]
file = {index}
world = "mapper"

[[routes]]
key = "POST /index"
integration = {{ type = "http", url = "{base}/" }}
request_mapping = "index"
"#,
        index = toml_path(JSON_INDEX),
        base = up.base(),
    ));
    let c = Client::default();
    let body = " {\"a\" : [1, {\"b\": 2}], \"k\\\"q\": \"v\u{e9}\", \"a\": null}\n";
    let r = c.send("POST", &gw.url("/index"), &[], body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        serde_json::json!({
            "members": [["a", "[1, {\"b\": 2}]"], ["k\\\"q", "\"v\u{e9}\""], ["a", "null"]],
            "close": body.len() - 2,
        })
    );
    for bad in [
        "",
        "[1]",
        "{\"a\":1,}",
        "{\"a\":01}",
        "{} {}",
        "{\"a\":\"\t\"}",
    ] {
        let r = c.send("POST", &gw.url("/index"), &[], bad).await;
        assert_eq!(r.status, 400, "{bad:?} was indexed: {}", r.text());
    }
    let deep = format!("{{\"a\":{}{}}}", "[".repeat(63), "]".repeat(63));
    let r = c.send("POST", &gw.url("/index"), &[], deep.clone()).await;
    assert_eq!(r.status, 200, "64 levels are allowed");
    let deeper = format!("{{\"a\":{}{}}}", "[".repeat(64), "]".repeat(64));
    let r = c.send("POST", &gw.url("/index"), &[], deeper.clone()).await;
    assert_eq!(r.status, 400, "65 levels are not");
    assert!(
        up.seen().is_empty(),
        "the plugin answers every request itself"
    );
}
