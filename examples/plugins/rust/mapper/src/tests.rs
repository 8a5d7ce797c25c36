use super::*;

fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn set(body: &str, pairs: &[(&str, &str)]) -> Option<String> {
    json::set_fields(body.as_bytes(), &fields(pairs)).map(|b| String::from_utf8(b).unwrap())
}

#[test]
fn replaces_and_appends_fields_without_touching_the_rest() {
    let f = [("source", "gateway"), ("note", "a \"q\"\n\u{1}é")];
    assert_eq!(
        set(r#" {"a" : 1.50, "source":{"x":[1,2]} } "#, &f).unwrap(),
        r#" {"a" : 1.50, "source":"gateway" ,"note":"a \"q\"\n\u0001é"} "#
    );
    assert_eq!(
        set("{}", &f).unwrap(),
        r#"{"source":"gateway","note":"a \"q\"\n\u0001é"}"#
    );
    assert_eq!(
        set(r#"{"source":1,"source":2}"#, &f[..1]).unwrap(),
        r#"{"source":"gateway","source":"gateway"}"#,
        "every member with that key"
    );
    assert_eq!(
        set(r#"{"sourc\u0065":1}"#, &f[..1]).unwrap(),
        r#"{"sourc\u0065":1,"source":"gateway"}"#,
        "keys compare as written"
    );
    assert_eq!(set(r#"{"a":1}"#, &[]).unwrap(), r#"{"a":1}"#);
}

#[test]
fn rejects_what_is_not_a_json_object() {
    for bad in [
        "",
        "[]",
        "\"s\"",
        "1",
        "{",
        "{\"a\"}",
        "{\"a\":}",
        "{\"a\":1,}",
        "{'a':1}",
        "{\"a\":01}",
        "{\"a\":1.}",
        "{\"a\":-}",
        "{\"a\":1e}",
        "{\"a\":tru}",
        "{\"a\":\"\u{1}\"}",
        "{\"a\":\"\\x\"}",
        "{\"a\":\"\\u12g4\"}",
        "{\"a\":1} x",
        "{\"a\":[1,]}",
        "{\"a\":NaN}",
    ] {
        assert_eq!(set(bad, &[]), None, "{bad:?}");
    }
    assert_eq!(
        json::set_fields(b"{\"a\":\"\xff\"}", &[]),
        None,
        "not UTF-8"
    );
    let deep = |n: usize| format!("{{\"a\":{}1{}}}", "[".repeat(n), "]".repeat(n));
    assert!(set(&deep(json::MAX_DEPTH - 1), &[]).is_some());
    assert_eq!(set(&deep(json::MAX_DEPTH), &[]), None);
}

#[test]
fn config_tables_must_hold_strings() {
    let c = Config::parse(r#"{"add_headers":{"x-b":"2","x-a":"1"}}"#).unwrap();
    assert_eq!(
        c.add_headers,
        fields(&[("x-b", "2"), ("x-a", "1")]),
        "order kept"
    );
    assert!(Config::parse("{}").unwrap().json_fields.is_empty());
    assert!(Config::parse(r#"{"add_headers":"x"}"#).is_err());
    assert!(Config::parse(r#"{"add_headers":{"x":1}}"#).is_err());
    assert!(Config::parse("[]").is_err());
}

#[test]
fn renames_adds_and_answers_400() {
    let config = Config::parse(
        r#"{"rename_headers":{"X-Client-Id":"X-User"},"add_headers":{"X-Gateway":"weir"},"json_fields":{"source":"gw"}}"#,
    )
    .unwrap();
    let mut req = Request::new("POST", "/");
    req.headers = [
        ("Content-Type", "application/json; charset=utf-8"),
        ("x-client-id", "c1"),
    ]
    .into_iter()
    .collect();
    req.body = br#"{"a":1}"#.to_vec();
    let ctx = Context {
        principal_id: Some("alice".into()),
        ..Context::default()
    };
    let out = map_request_with(&config, req.clone(), &ctx).unwrap();
    let pairs: Vec<_> = out.headers.iter().collect();
    assert_eq!(
        pairs,
        [
            ("content-type", "application/json; charset=utf-8"),
            ("x-user", "c1"),
            ("x-gateway", "weir"),
            ("x-principal", "alice"),
            ("x-body-bytes", "7"),
        ]
    );
    assert_eq!(out.body, br#"{"a":1,"source":"gw"}"#);
    req.body = b"{nope".to_vec();
    let resp = map_request_with(&config, req, &ctx).unwrap_err();
    assert_eq!(resp.status, 400);
    assert_eq!(resp.body, br#"{"message":"malformed JSON body"}"#);
}
