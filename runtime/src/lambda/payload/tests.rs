use super::*;
use std::time::Duration;

fn request(headers: &HeaderMap, body: &'static [u8]) -> HttpEvent<'static> {
    let headers: &'static HeaderMap = Box::leak(Box::new(headers.clone()));
    let params: &'static [(String, String)] =
        Box::leak(vec![("proxy".to_owned(), "a/b".to_owned())].into_boxed_slice());
    let context: &'static [(String, String)] =
        Box::leak(vec![("scope".to_owned(), "read write".to_owned())].into_boxed_slice());
    HttpEvent {
        method: "POST",
        path: "/orders/a/b",
        query: "x=1&x=2&y=a%20b+c&flag",
        headers,
        body,
        route_key: "ANY /orders/{proxy+}",
        path_parameters: params,
        stage: "$default",
        request_id: "r-1",
        source_ip: "10.0.0.7",
        user_agent: "curl/8",
        protocol: "HTTP/1.1",
        domain_name: "api.example.com",
        // 2020-03-12T19:03:58.390Z
        time: UNIX_EPOCH + Duration::from_millis(1_584_039_838_390),
        principal_id: Some("alice"),
        authorizer_context: context,
        client_cert: None,
    }
}

fn headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.append("accept", "a".parse().unwrap());
    h.append("accept", "b".parse().unwrap());
    h.append("cookie", "s=1; t=2".parse().unwrap());
    h.append("user-agent", "curl/8".parse().unwrap());
    h
}

fn parse(bytes: Vec<u8>) -> Value {
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn a_v2_event_has_every_field_aws_documents() {
    let e = parse(event(PayloadFormat::V2, &request(&headers(), b"{\"a\":1}")));
    assert_eq!(e["version"], "2.0");
    assert_eq!(e["routeKey"], "ANY /orders/{proxy+}");
    assert_eq!(e["rawPath"], "/orders/a/b");
    assert_eq!(e["rawQueryString"], "x=1&x=2&y=a%20b+c&flag");
    assert_eq!(e["cookies"], json!(["s=1", "t=2"]));
    assert_eq!(e["headers"]["accept"], "a,b");
    assert!(e["headers"].get("cookie").is_none());
    assert_eq!(
        e["queryStringParameters"],
        json!({"x": "1,2", "y": "a b c", "flag": ""})
    );
    assert_eq!(e["pathParameters"], json!({"proxy": "a/b"}));
    assert!(e.get("stageVariables").is_none());
    let c = &e["requestContext"];
    assert_eq!(c["accountId"], ACCOUNT_ID);
    assert_eq!(c["apiId"], API_ID);
    assert_eq!(c["domainName"], "api.example.com");
    assert_eq!(c["domainPrefix"], "api");
    assert_eq!(
        c["http"],
        json!({"method": "POST", "path": "/orders/a/b", "protocol": "HTTP/1.1",
               "sourceIp": "10.0.0.7", "userAgent": "curl/8"})
    );
    assert_eq!(c["requestId"], "r-1");
    assert_eq!(c["routeKey"], "ANY /orders/{proxy+}");
    assert_eq!(c["stage"], "$default");
    assert_eq!(c["time"], "12/Mar/2020:19:03:58 +0000");
    assert_eq!(c["timeEpoch"], 1_584_039_838_390u64);
    assert_eq!(c["authorizer"]["lambda"]["principalId"], "alice");
    assert_eq!(c["authorizer"]["lambda"]["scope"], "read write");
    assert_eq!(c["authorizer"]["jwt"]["claims"]["sub"], "alice");
    assert_eq!(c["authorizer"]["jwt"]["scopes"], json!(["read", "write"]));
    assert_eq!(e["body"], "{\"a\":1}");
    assert_eq!(e["isBase64Encoded"], false);
}

#[test]
fn a_v2_event_leaves_out_what_the_request_lacks() {
    let mut r = request(&HeaderMap::new(), b"");
    r.query = "";
    r.path_parameters = &[];
    r.principal_id = None;
    let e = parse(event(PayloadFormat::V2, &r));
    for absent in ["cookies", "queryStringParameters", "pathParameters", "body"] {
        assert!(e.get(absent).is_none(), "{absent}: {e}");
    }
    assert!(e["requestContext"].get("authorizer").is_none());
    assert_eq!(e["headers"], json!({}));
}

#[test]
fn binary_bodies_are_base64() {
    let e = parse(event(
        PayloadFormat::V2,
        &request(&headers(), b"\xff\x00\x01"),
    ));
    assert_eq!(e["body"], "/wAB");
    assert_eq!(e["isBase64Encoded"], true);
    let e = parse(event(
        PayloadFormat::V1,
        &request(&headers(), b"\xff\x00\x01"),
    ));
    assert_eq!(e["body"], "/wAB");
    assert_eq!(e["isBase64Encoded"], true);
}

#[test]
fn a_v1_event_has_multi_value_fields_and_the_identity() {
    let e = parse(event(PayloadFormat::V1, &request(&headers(), b"hi")));
    assert_eq!(e["version"], "1.0");
    assert_eq!(e["resource"], "/orders/{proxy+}");
    assert_eq!(e["path"], "/orders/a/b");
    assert_eq!(e["httpMethod"], "POST");
    assert_eq!(e["headers"]["accept"], "b");
    assert_eq!(e["multiValueHeaders"]["accept"], json!(["a", "b"]));
    assert_eq!(e["headers"]["cookie"], "s=1; t=2");
    assert_eq!(e["queryStringParameters"]["x"], "2");
    assert_eq!(e["multiValueQueryStringParameters"]["x"], json!(["1", "2"]));
    assert_eq!(e["pathParameters"], json!({"proxy": "a/b"}));
    assert_eq!(e["stageVariables"], Value::Null);
    let c = &e["requestContext"];
    assert_eq!(c["identity"]["sourceIp"], "10.0.0.7");
    assert_eq!(c["identity"]["userAgent"], "curl/8");
    assert_eq!(c["httpMethod"], "POST");
    assert_eq!(c["resourcePath"], "/orders/{proxy+}");
    assert_eq!(c["requestTime"], "12/Mar/2020:19:03:58 +0000");
    assert_eq!(c["requestTimeEpoch"], 1_584_039_838_390u64);
    assert_eq!(c["authorizer"]["principalId"], "alice");
    assert_eq!(c["authorizer"]["scope"], "read write");
    assert_eq!(e["body"], "hi");
    let mut r = request(&HeaderMap::new(), b"");
    r.query = "";
    r.path_parameters = &[];
    r.principal_id = None;
    let e = parse(event(PayloadFormat::V1, &r));
    for null in [
        "queryStringParameters",
        "multiValueQueryStringParameters",
        "pathParameters",
        "body",
    ] {
        assert_eq!(e[null], Value::Null, "{null}");
    }
    assert_eq!(e["requestContext"]["authorizer"], Value::Null);
}

#[test]
fn v2_answers_without_status_code_are_json_bodies() {
    let a = answer(PayloadFormat::V2, br#""hello""#).unwrap();
    assert_eq!((a.status, &a.body[..]), (StatusCode::OK, &b"hello"[..]));
    assert_eq!(a.headers["content-type"], "application/json");
    let a = answer(PayloadFormat::V2, br#" {"message": "hi"} "#).unwrap();
    assert_eq!(&a.body[..], br#"{"message": "hi"}"#);
    let a = answer(PayloadFormat::V2, b"[1,2]").unwrap();
    assert_eq!(&a.body[..], b"[1,2]");
    assert!(answer(PayloadFormat::V2, b"not json").is_err());
    assert!(answer(PayloadFormat::V1, br#"{"message":"hi"}"#).is_err());
}

#[test]
fn structured_answers_set_status_headers_cookies_and_body() {
    let raw = br#"{"statusCode": 201, "headers": {"x-a": "1", "content-length": "99", "x-n": 5},
        "cookies": ["a=1; Path=/", "b=2"], "body": "made", "multiValueHeaders": {"x-m": ["1"]}}"#;
    let a = answer(PayloadFormat::V2, raw).unwrap();
    assert_eq!(a.status, StatusCode::CREATED);
    assert_eq!(a.headers["x-a"], "1");
    assert_eq!(a.headers["x-n"], "5");
    assert!(!a.headers.contains_key("content-length"));
    assert!(
        !a.headers.contains_key("x-m"),
        "2.0 has no multiValueHeaders"
    );
    let cookies: Vec<_> = a.headers.get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1; Path=/", "b=2"]);
    assert_eq!(&a.body[..], b"made");

    let raw = br#"{"statusCode": "404", "headers": {"x-a": "1", "x-m": "gone"},
        "multiValueHeaders": {"x-m": ["1", "2"]}, "body": "/wAB", "isBase64Encoded": true}"#;
    let a = answer(PayloadFormat::V1, raw).unwrap();
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let m: Vec<_> = a.headers.get_all("x-m").iter().collect();
    assert_eq!(m, ["1", "2"]);
    assert_eq!(a.headers["x-a"], "1");
    assert_eq!(&a.body[..], b"\xff\x00\x01");
    let a = answer(PayloadFormat::V1, br#"{"statusCode": 204}"#).unwrap();
    assert!(a.body.is_empty());
}

#[test]
fn malformed_answers_are_refused() {
    for raw in [
        &br#"{"statusCode": 99}"#[..],
        br#"{"statusCode": 700}"#,
        br#"{"statusCode": "x"}"#,
        br#"{"statusCode": 200, "body": {"a": 1}}"#,
        br#"{"statusCode": 200, "headers": {"bad name": "v"}}"#,
        br#"{"statusCode": 200, "headers": {"x": "a\r\nb"}}"#,
        br#"{"statusCode": 200, "headers": []}"#,
        br#"{"statusCode": 200, "body": "***", "isBase64Encoded": true}"#,
        br#"{"statusCode": 200, "isBase64Encoded": "yes"}"#,
        br#"{"statusCode": 200, "cookies": "a=1"}"#,
    ] {
        assert!(
            answer(PayloadFormat::V2, raw).is_err(),
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
}

#[test]
fn query_strings_decode_like_aws() {
    assert_eq!(
        query_pairs("a=%41%zz&b&&c=1+2%"),
        [
            ("a".to_owned(), "A%zz".to_owned()),
            ("b".to_owned(), String::new()),
            ("c".to_owned(), "1 2%".to_owned()),
        ]
    );
}

#[test]
fn a_client_certificate_is_where_aws_puts_it() {
    let cert = json!({"subjectDN": "CN=alice", "serialNumber": "0a:0b"});
    let mut req = request(&headers(), b"");
    req.client_cert = Some(cert.clone());
    let v2 = parse(event(PayloadFormat::V2, &req));
    assert_eq!(v2["requestContext"]["authentication"]["clientCert"], cert);
    let v1 = parse(event(PayloadFormat::V1, &req));
    assert_eq!(v1["requestContext"]["identity"]["clientCert"], cert);
    req.client_cert = None;
    let v2 = parse(event(PayloadFormat::V2, &req));
    assert!(v2["requestContext"].get("authentication").is_none());
}
