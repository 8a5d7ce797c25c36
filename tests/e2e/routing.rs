//! Route keys, priority rules, 404, request ids, HTTP/2.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use weir_tests::Client;

use crate::weir;

const ROUTES: &str = r#"
[[routes]]
key = "GET /pets"
integration = { type = "mock", body = "GET /pets" }
[[routes]]
key = "GET /pets/{id}"
integration = { type = "mock", body = "GET /pets/{id}" }
[[routes]]
key = "GET /pets/dog"
integration = { type = "mock", body = "GET /pets/dog" }
[[routes]]
key = "ANY /pets/{id}"
integration = { type = "mock", body = "ANY /pets/{id}" }
[[routes]]
key = "ANY /pets/cat"
integration = { type = "mock", body = "ANY /pets/cat" }
[[routes]]
key = "GET /files/{path+}"
integration = { type = "mock", body = "GET /files/{path+}" }
[[routes]]
key = "POST /"
integration = { type = "mock", status = 201, body = "POST /", headers = { x-mock = "yes" } }
"#;

#[tokio::test]
async fn route_keys_and_priority() {
    let gw = weir(ROUTES);
    let c = Client::default();
    for (method, path, want) in [
        ("GET", "/pets", "GET /pets"),
        ("GET", "/pets/7", "GET /pets/{id}"),
        ("GET", "/pets/dog", "GET /pets/dog"),
        ("PUT", "/pets/7", "ANY /pets/{id}"),
        ("GET", "/pets/cat", "ANY /pets/cat"),
        ("DELETE", "/pets/dog", "ANY /pets/{id}"),
        ("GET", "/files/a/b/c.txt", "GET /files/{path+}"),
        ("POST", "/", "POST /"),
    ] {
        let r = c.send(method, &gw.url(path), &[], Bytes::new()).await;
        assert_eq!(r.text(), want, "{method} {path}");
    }
    let r = c.send("POST", &gw.url("/"), &[], Bytes::new()).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.header("x-mock"), Some("yes"));
}

#[tokio::test]
async fn unmatched_requests_get_404_json() {
    let gw = weir(ROUTES);
    let c = Client::default();
    for (method, path) in [
        ("GET", "/nope"),
        ("POST", "/pets"),
        ("GET", "/files/"),
        ("GET", "/pets/1/2"),
    ] {
        let r = c.send(method, &gw.url(path), &[], Bytes::new()).await;
        assert_eq!(r.status, 404, "{method} {path}");
        assert_eq!(r.json(), serde_json::json!({"message": "Not Found"}));
        assert_eq!(r.header("content-type"), Some("application/json"));
    }
}

#[tokio::test]
async fn default_route_takes_the_rest() {
    let gw = weir(&format!(
        "{ROUTES}\n[[routes]]\nkey = \"$default\"\nintegration = {{ type = \"mock\", body = \"default\" }}\n"
    ));
    let c = Client::default();
    assert_eq!(c.get(&gw.url("/nope")).await.text(), "default");
    assert_eq!(c.get(&gw.url("/pets/7")).await.text(), "GET /pets/{id}");
}

#[tokio::test]
async fn every_response_has_a_request_id() {
    let gw = weir(ROUTES);
    let c = Client::default();
    let a = c.get(&gw.url("/pets")).await;
    let b = c.get(&gw.url("/nope")).await;
    let (a, b) = (
        a.header("x-request-id").unwrap(),
        b.header("x-request-id").unwrap(),
    );
    assert_ne!(a, b);
    assert_eq!(a.len(), 32);
    let echoed = c
        .send(
            "GET",
            &gw.url("/pets"),
            &[("x-request-id", "trace-42")],
            Bytes::new(),
        )
        .await;
    assert_eq!(echoed.header("x-request-id"), Some("trace-42"));
    let replaced = c
        .send(
            "GET",
            &gw.url("/pets"),
            &[("x-request-id", "has spaces")],
            Bytes::new(),
        )
        .await;
    assert_ne!(replaced.header("x-request-id"), Some("has spaces"));
}

#[tokio::test]
async fn serves_http2_cleartext() {
    let gw = weir(ROUTES);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let resp = client
        .request(
            http::Request::get(gw.url("/pets/dog"))
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert!(resp.headers().contains_key("x-request-id"));
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"GET /pets/dog");
}
