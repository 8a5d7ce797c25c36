//! The shipped example configs stay valid and do what their READMEs say.

use bytes::Bytes;
use weir_tests::Client;
use weir_tests::artifacts::{CORS, JWT_AUTHORIZER, PARAM_MAPPING};
use weir_tests::jwt::{now, sign_hs256};

use crate::weir;

/// The quickstart config with its plugin paths pointed at this test run's builds.
fn quickstart() -> String {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/quickstart/weir.toml"
    ))
    .unwrap();
    text.replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\"")
        .replace(
            "\"../../plugins/target/wasm32-wasip2/release/cors.wasm\"",
            &format!("{CORS:?}"),
        )
        .replace(
            "\"../../plugins/target/wasm32-wasip2/release/jwt_authorizer.wasm\"",
            &format!("{JWT_AUTHORIZER:?}"),
        )
        .replace(
            "\"../../plugins/target/wasm32-wasip2/release/param_mapping.wasm\"",
            &format!("{PARAM_MAPPING:?}"),
        )
}

#[tokio::test]
async fn quickstart_serves_what_its_readme_shows() {
    let config = quickstart();
    assert!(
        !config.contains("../../plugins"),
        "every plugin path was replaced"
    );
    let gw = weir(&config);
    let c = Client::default();
    let r = c.get(&gw.url("/hello")).await;
    assert_eq!(r.json()["message"], "Hello from Weir");
    let r = c.get(&gw.url("/pets/7")).await;
    assert_eq!(r.header("x-served-by"), Some("weir"));
    assert_eq!(c.get(&gw.url("/private")).await.status, 401);
    let token = sign_hs256(
        b"quickstart-secret-change-me",
        &serde_json::json!({"iss": "weir-quickstart", "aud": "quickstart", "sub": "quickstart-user", "exp": now() + 60}),
    );
    let r = c
        .send(
            "GET",
            &gw.url("/private"),
            &[("authorization", &format!("Bearer {token}"))],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-caller"), Some("quickstart-user"));
    let r = c
        .send(
            "OPTIONS",
            &gw.url("/hello"),
            &[
                ("origin", "http://localhost:3000"),
                ("access-control-request-method", "GET"),
            ],
            Bytes::new(),
        )
        .await;
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://localhost:3000")
    );
    assert_eq!(c.get(&gw.url("/nowhere")).await.status, 404);
}

#[test]
fn upstream_example_validates() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "validate",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../examples/upstream/weir.toml"
            ),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn upstream_pool_example_validates() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "validate",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../examples/upstream-pool/weir.toml"
            ),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_example_serves_what_its_readme_shows() {
    let rt = weir_tests::lambda::python_runtime(env!("CARGO_BIN_EXE_weir"));
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/lambda");
    let text = std::fs::read_to_string(format!("{dir}/weir.toml")).unwrap();
    let config = text
        .replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\"")
        .replace("listen = \"127.0.0.1:9901\"", "listen = \"127.0.0.1:0\"")
        .replace("\"python3\"", &format!("{:?}", rt.python))
        .replace(
            "dir = \"functions/orders\"",
            &format!("dir = {:?}", format!("{dir}/functions/orders")),
        )
        .replace(
            "PYTHONPATH = \".deps\"",
            &format!("PYTHONPATH = {:?}", rt.site.display().to_string()),
        );
    let gw = weir(&config);
    let c = Client::default();
    let r = c
        .send("PUT", &gw.url("/orders/7"), &[], r#"{"item":"tea"}"#)
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["id"], "7");
    let r = c.get(&gw.url("/orders/7")).await;
    assert_eq!(r.json()["item"], "tea");
    let r = c.get(&gw.url("/orders")).await;
    assert_eq!(r.json()["table"], "orders");
    let r = c.get(&gw.url("/orders/8")).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["message"], "no order 8");
    gw.wait_for_logs("function=\"orders\"", 1).await;
}
