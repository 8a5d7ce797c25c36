use super::*;

fn env_eval(t: &str) -> String {
    let headers: Headers = [("x-user", "u1"), ("Token", "abc")].into_iter().collect();
    let body =
        serde_json::json!({"item": {"name": "widget", "n": 3}, "tags": ["a", "b"], "nil": null});
    let ctx = Context {
        request_id: "rid".into(),
        route_key: "GET /x/{id}".into(),
        stage: "$default".into(),
        path_parameters: vec![("id".into(), "7".into())],
        source_ip: "127.0.0.1".into(),
        principal_id: Some("p".into()),
        authorizer_context: vec![("email".into(), "e@x".into())],
    };
    let cert = ClientCert {
        pem: "-----BEGIN CERTIFICATE-----".into(),
        subject_dn: "CN=alice".into(),
        issuer_dn: "CN=Clients CA".into(),
        serial_number: "01:02".into(),
        not_before: "Jan  1 00:00:00 2026 GMT".into(),
        not_after: "Jan  1 00:00:00 2027 GMT".into(),
    };
    let env = Env {
        request_headers: &headers,
        request_query: "q=1&s=a%20b",
        request_path: "/x/7",
        request_body: Some(&body),
        response_headers: None,
        response_body: None,
        ctx: &ctx,
        client_cert: Some(&cert),
    };
    Template::parse(t).unwrap().eval(&env)
}

#[test]
fn resolves_every_reference_kind() {
    assert_eq!(env_eval("static"), "static");
    assert_eq!(env_eval("''"), "");
    assert_eq!(env_eval("$request.header.X-User"), "u1");
    assert_eq!(env_eval("Bearer $request.header.token"), "Bearer abc");
    assert_eq!(env_eval("$request.querystring.s"), "a b");
    assert_eq!(
        env_eval("/v2/items/$request.path.id/detail"),
        "/v2/items/7/detail"
    );
    assert_eq!(env_eval("$request.body.item.name"), "widget");
    assert_eq!(env_eval("$request.body.item.n"), "3");
    assert_eq!(env_eval("$request.body.tags.1"), "b");
    assert_eq!(env_eval("$request.body.item"), r#"{"n":3,"name":"widget"}"#);
    assert_eq!(env_eval("$request.body.nil|$request.body.missing.x"), "|");
    assert_eq!(
        env_eval("$context.requestId/$context.routeKey"),
        "rid/GET /x/{id}"
    );
    assert_eq!(env_eval("${context.authorizer.email}x"), "e@xx");
    assert_eq!(env_eval("$context.authorizer.principalId."), "p.");
    assert_eq!(env_eval("cost: $5"), "cost: $5");
    assert_eq!(env_eval("$request.path?"), "/x/7?");
    assert_eq!(env_eval("${context.authorizer.claims.email}"), "e@x");
    assert_eq!(env_eval("$context.stage"), "$default");
    assert_eq!(env_eval("$context.identity.sourceIp"), "127.0.0.1");
    assert_eq!(
        env_eval(
            "$context.identity.clientCert.subjectDN/${context.identity.clientCert.serialNumber}"
        ),
        "CN=alice/01:02"
    );
    assert_eq!(
        env_eval("$context.identity.clientCert.validity.notAfter"),
        "Jan  1 00:00:00 2027 GMT"
    );
    assert!(
        Template::parse("$context.identity.clientCert.issuerDN")
            .unwrap()
            .reads_client_cert()
    );
    assert!(
        !Template::parse("$context.identity.sourceIp")
            .unwrap()
            .reads_client_cert()
    );
    assert_eq!(
        env_eval("$response.header.x"),
        "",
        "no response while mapping a request"
    );
}

#[test]
fn rejects_unknown_references() {
    for bad in [
        "$request.cookie.x",
        "$context.nope",
        "$context.identity.clientCert.nope",
        "$context.identity.clientCert",
        "$context.identity.user",
        "$request.header.",
        "${request.body.a..b}",
        "${request.header.x",
    ] {
        assert!(Template::parse(bad).is_err(), "{bad}");
    }
}
