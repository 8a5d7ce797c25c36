use super::*;

const SECRET: &str = "test-secret";

fn config() -> Config {
    Config {
        issuer: "iss".into(),
        audience: vec!["aud".into()],
        jwks: None,
        hs256_secret: Some(SECRET.into()),
        leeway: 0,
        claims_to_context: None,
    }
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn hs256(claims: Value) -> String {
    let input = format!(
        "{}.{}",
        b64(&serde_json::json!({"alg":"HS256"})),
        b64(&claims)
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(input.as_bytes());
    format!(
        "{input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    )
}

fn claims(extra: Value) -> Value {
    let mut c = serde_json::json!({"iss":"iss","aud":"aud","sub":"s","exp":1000,"iat":900,"n":5,"deep":{"x":1}});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

#[test]
fn accepts_a_valid_token_and_exposes_claims() {
    let v = verify(
        &format!("bearer {}", hs256(claims(serde_json::json!({})))),
        &config(),
        950,
        &[],
    )
    .unwrap();
    assert_eq!(v.subject, "s");
    assert!(v.context.contains(&("n".into(), "5".into())));
    assert!(
        !v.context.iter().any(|(k, _)| k == "deep"),
        "objects are not context values"
    );
}

#[test]
fn time_claims_with_leeway() {
    let c = config();
    let t = hs256(claims(serde_json::json!({"nbf": 960})));
    assert!(matches!(
        verify(&t, &c, 950, &[]),
        Err(Denial::Unauthorized(_))
    ));
    assert!(verify(&t, &c, 970, &[]).is_ok());
    assert!(
        matches!(verify(&t, &c, 1000, &[]), Err(Denial::Unauthorized(_))),
        "exp is exclusive"
    );
    let lenient = Config {
        leeway: 30,
        ..config()
    };
    assert!(verify(&t, &lenient, 1010, &[]).is_ok());
}

#[test]
fn scopes_from_scope_or_scp() {
    let c = config();
    let need = ["write".to_owned()];
    let t = hs256(claims(serde_json::json!({"scope": "read write"})));
    assert!(verify(&t, &c, 950, &need).is_ok());
    let t = hs256(claims(serde_json::json!({"scp": ["write"]})));
    assert!(verify(&t, &c, 950, &need).is_ok());
    let t = hs256(claims(serde_json::json!({"scope": "read"})));
    assert!(matches!(
        verify(&t, &c, 950, &need),
        Err(Denial::Forbidden(_))
    ));
}

#[test]
fn refuses_malformed_and_unsigned_tokens() {
    let c = config();
    for t in ["", "a.b", "a.b.c.d", "!!.!!.!!"] {
        assert!(
            matches!(verify(t, &c, 950, &[]), Err(Denial::Unauthorized(_))),
            "{t}"
        );
    }
    let none = format!(
        "{}.{}.",
        b64(&serde_json::json!({"alg":"none"})),
        b64(&claims(serde_json::json!({})))
    );
    assert!(matches!(
        verify(&none, &c, 950, &[]),
        Err(Denial::Unauthorized(_))
    ));
    let rs = format!(
        "{}.{}.AAAA",
        b64(&serde_json::json!({"alg":"RS256"})),
        b64(&claims(serde_json::json!({})))
    );
    assert!(
        matches!(verify(&rs, &c, 950, &[]), Err(Denial::Unauthorized(_))),
        "no jwks configured"
    );
}
