use super::*;
use crate::keys::{Jwk, Jwks};

const SECRET: &str = "test-secret";

fn config() -> Config {
    Config {
        issuer: "iss".into(),
        audience: vec!["aud".into()],
        jwks: None,
        jwks_uri: None,
        hs256_secret: Some(SECRET.into()),
        leeway: 0,
        claims_to_context: None,
    }
}

/// [`verify`] with the config's inline keys.
fn check(token: &str, c: &Config, now: i64, scopes: &[String]) -> Result<Verified, Denial> {
    let mut keys = |_| match &c.jwks {
        Some(j) => j.keys(),
        None => Err("no keys".to_owned()),
    };
    verify(token, c, now, scopes, &mut keys)
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
    let v = check(
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
        check(&t, &c, 950, &[]),
        Err(Denial::Unauthorized(_))
    ));
    assert!(check(&t, &c, 970, &[]).is_ok());
    assert!(
        matches!(check(&t, &c, 1000, &[]), Err(Denial::Unauthorized(_))),
        "exp is exclusive"
    );
    let lenient = Config {
        leeway: 30,
        ..config()
    };
    assert!(check(&t, &lenient, 1010, &[]).is_ok());
}

#[test]
fn scopes_from_scope_or_scp() {
    let c = config();
    let need = ["write".to_owned()];
    let t = hs256(claims(serde_json::json!({"scope": "read write"})));
    assert!(check(&t, &c, 950, &need).is_ok());
    let t = hs256(claims(serde_json::json!({"scp": ["write"]})));
    assert!(check(&t, &c, 950, &need).is_ok());
    let t = hs256(claims(serde_json::json!({"scope": "read"})));
    assert!(matches!(
        check(&t, &c, 950, &need),
        Err(Denial::Forbidden(_))
    ));
}

#[test]
fn refuses_malformed_and_unsigned_tokens() {
    let c = config();
    for t in ["", "a.b", "a.b.c.d", "!!.!!.!!"] {
        assert!(
            matches!(check(t, &c, 950, &[]), Err(Denial::Unauthorized(_))),
            "{t}"
        );
    }
    let none = format!(
        "{}.{}.",
        b64(&serde_json::json!({"alg":"none"})),
        b64(&claims(serde_json::json!({})))
    );
    assert!(matches!(
        check(&none, &c, 950, &[]),
        Err(Denial::Unauthorized(_))
    ));
    let rs = format!(
        "{}.{}.AAAA",
        b64(&serde_json::json!({"alg":"RS256"})),
        b64(&claims(serde_json::json!({})))
    );
    assert!(
        matches!(check(&rs, &c, 950, &[]), Err(Denial::NoKeys(_))),
        "no jwks configured"
    );
}

// An RS256 key pair made once with `openssl genrsa 2048`; only the public half (as a
// JWK) and two tokens it signed are kept. Claims: iss "iss", aud ["other", "aud"],
// sub "rs-user", exp 2000, iat 900, scp ["pets:read"].
const RSA_N: &str = concat!(
    "r-4L9jwcNo58TxyfPik1PgbjtqWJTuuL3ABKFRfm1wbEOZ8akPV4sdgmy1BhYWZhY0yzhB8NoNz__gH9",
    "T5WJ33Fvmadre7HJH84fd0sFiJoZ8Yzza9k4CSDRcy2J0bU0bdwvXP7YDXjYueJBRz1-T7NHvDHv9kfb",
    "2igAnl-sWTImMiSdFi-9PDhoNtUzj5e8EKSqxm-9uGRHh-KgqrPMLoD5bTjfg-rCI3-FxhVnPFZ_Tipa",
    "u2l-Q-8wuPB6cg9ibQ9ihI9xS8diLvL_7Nrd1qP1y9XH0Y2vePqTMX765ZKJ5omgy5A_UUmTKw0SNjJl",
    "i5w-xKOjAwVqpCcQORNrGw",
);
/// Signed with `kid: "k1"`.
const RS256_KID: &str = concat!(
    "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImsxIn0.eyJpc3MiOiJpc3MiLCJhdWQiOlsi",
    "b3RoZXIiLCJhdWQiXSwic3ViIjoicnMtdXNlciIsImV4cCI6MjAwMCwiaWF0Ijo5MDAsInNjcCI6WyJw",
    "ZXRzOnJlYWQiXX0.YrCzBchrXqsxOLN1i0Ip3thzr1_nekG9W8b-xtVh95bz7XpxhN8UG31-zV4Va-7D",
    "GfTFk0RATIGiBnPasj59GLZpwMCDir5rBmKaibWs0F1RSIroesoBYrXZFoXW9gbYltgGfxU9VpTUwkFA",
    "bVvNza9xOAAU05HsuUH4yKQVWAUGLKKoAVh0GoWed6GhrhlfmmgoPPPEkzLWpoJ6zeydNg-VmvhWK-dj",
    "wXfdYj-nPBRstrIoc-z-keRylVqO9HjLN5GmkzpNibVdx-gG8L_TEHaI26mITKVgZwy23EdpNqGrFx_R",
    "m4Ozr9koy1MIm2c0SW7gcIY9UkUiuB7N4dmPdg",
);
/// Signed without a `kid`.
const RS256_NO_KID: &str = concat!(
    "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJpc3MiLCJhdWQiOlsib3RoZXIiLCJhdWQ",
    "iXSwic3ViIjoicnMtdXNlciIsImV4cCI6MjAwMCwiaWF0Ijo5MDAsInNjcCI6WyJwZXRzOnJlYWQiXX0",
    ".bM8CNuoRCfLioiN5faPVi50adjQIemyBxHKhaq6Ayj3q5wjBg7eDsNrSXrtLOxZ58FztD0aC3LHrV2n",
    "m67wizOB8lxahkscsjVYMGds8wSRi-ALVcWRVlUiHOAZgRILzZtfJjdVGPwGKkLVntOJh5KPP17LKXK0",
    "4oENohnU_Ko50S7qeItdeRxdJOZzTu_S4PPdITRVGp49iInG2sSami1dnxK0qvATIcr5aVEvtfeu580F",
    "fqAbHJzt9GEVVEd6iy91SN4tCVxq9iJ2mJDuBa3331W5gBiXYUGf0L02_1sFaKL61zIdkkE-nhOxb_Md",
    "roUX83MBS2ve4hvYWU_MCEQ",
);

fn rsa_config(kids: &[Option<&str>]) -> Config {
    let keys = kids
        .iter()
        .map(|kid| Jwk {
            kty: "RSA".into(),
            kid: kid.map(str::to_owned),
            n: Some(RSA_N.into()),
            e: Some("AQAB".into()),
            ..Jwk::default()
        })
        .collect();
    Config {
        jwks: Some(Jwks::Object { keys }),
        hs256_secret: None,
        ..config()
    }
}

#[test]
fn rs256_with_and_without_kid() {
    let c = rsa_config(&[Some("k0"), Some("k1")]);
    let v = check(
        &format!("bearer {RS256_KID}"),
        &c,
        1000,
        &["pets:read".into()],
    )
    .unwrap();
    assert_eq!(v.subject, "rs-user");
    assert!(
        check(RS256_NO_KID, &c, 1000, &[]).is_err(),
        "no kid needs exactly one key"
    );
    assert!(check(RS256_NO_KID, &rsa_config(&[None]), 1000, &[]).is_ok());
    assert!(
        check(RS256_KID, &rsa_config(&[Some("k2")]), 1000, &[]).is_err(),
        "unknown kid"
    );
    assert!(matches!(
        check(RS256_KID, &c, 1000, &["pets:write".into()]),
        Err(Denial::Forbidden(_))
    ));
    assert!(
        matches!(
            check(RS256_KID, &config(), 1000, &[]),
            Err(Denial::NoKeys(_))
        ),
        "no jwks configured"
    );
}

#[test]
fn rs256_tampering_is_caught() {
    let c = rsa_config(&[Some("k1")]);
    let [h, p, s]: [&str; 3] = RS256_KID.split('.').collect::<Vec<_>>().try_into().unwrap();
    let forged_claims =
        URL_SAFE_NO_PAD.encode(r#"{"iss":"iss","aud":"aud","sub":"admin","exp":2000,"iat":900}"#);
    assert!(check(&format!("{h}.{forged_claims}.{s}"), &c, 1000, &[]).is_err());
    let hs_header = b64(&serde_json::json!({"alg":"HS256","kid":"k1"}));
    assert!(
        check(&format!("{hs_header}.{p}.{s}"), &c, 1000, &[]).is_err(),
        "alg switched to HS256 without a secret"
    );
    let mut sig = URL_SAFE_NO_PAD.decode(s).unwrap();
    sig[10] ^= 1;
    let s = URL_SAFE_NO_PAD.encode(sig);
    assert!(check(&format!("{h}.{p}.{s}"), &c, 1000, &[]).is_err());
}
