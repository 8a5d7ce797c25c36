use rand_core::OsRng;
use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};

use super::*;
use crate::{Config, Denial, verify};

/// One RSA key for every test (made once: key generation is the slow part).
static RSA_KEY: std::sync::LazyLock<rsa::RsaPrivateKey> =
    std::sync::LazyLock::new(|| rsa::RsaPrivateKey::new(&mut OsRng, 2048).unwrap());

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs a JWS signing input.
type Sign = Box<dyn Fn(&[u8]) -> Vec<u8>>;

/// A key made here: its JWK, and a signer for its algorithm.
struct Made {
    jwk: Jwk,
    sign: Sign,
}

fn rsa_jwk(key: &rsa::RsaPrivateKey, kid: &str) -> Jwk {
    Jwk {
        kty: "RSA".into(),
        kid: Some(kid.into()),
        n: Some(b64(key.n().to_bytes_be())),
        e: Some(b64(key.e().to_bytes_be())),
        ..Jwk::default()
    }
}

fn ec_jwk(crv: &str, point: &[u8], kid: &str) -> Jwk {
    let size = (point.len() - 1) / 2;
    Jwk {
        kty: "EC".into(),
        kid: Some(kid.into()),
        crv: Some(crv.into()),
        x: Some(b64(&point[1..1 + size])),
        y: Some(b64(&point[1 + size..])),
        ..Jwk::default()
    }
}

fn make(alg: Alg, rsa_key: &rsa::RsaPrivateKey) -> Made {
    let kid = alg.name().to_lowercase();
    let key = rsa_key.clone();
    match alg {
        Alg::Rs(h) => Made {
            jwk: rsa_jwk(rsa_key, &kid),
            sign: Box::new(move |m| match h {
                Hash::S256 => rsa::pkcs1v15::SigningKey::<Sha256>::new(key.clone())
                    .sign(m)
                    .to_vec(),
                Hash::S384 => rsa::pkcs1v15::SigningKey::<Sha384>::new(key.clone())
                    .sign(m)
                    .to_vec(),
                Hash::S512 => rsa::pkcs1v15::SigningKey::<Sha512>::new(key.clone())
                    .sign(m)
                    .to_vec(),
            }),
        },
        Alg::Ps(h) => Made {
            jwk: rsa_jwk(rsa_key, &kid),
            sign: Box::new(move |m| match h {
                Hash::S256 => rsa::pss::SigningKey::<Sha256>::new(key.clone())
                    .sign_with_rng(&mut OsRng, m)
                    .to_vec(),
                Hash::S384 => rsa::pss::SigningKey::<Sha384>::new(key.clone())
                    .sign_with_rng(&mut OsRng, m)
                    .to_vec(),
                Hash::S512 => rsa::pss::SigningKey::<Sha512>::new(key.clone())
                    .sign_with_rng(&mut OsRng, m)
                    .to_vec(),
            }),
        },
        Alg::Es(Hash::S256) => {
            let k = p256::ecdsa::SigningKey::random(&mut OsRng);
            let point = k.verifying_key().to_encoded_point(false);
            Made {
                jwk: ec_jwk("P-256", point.as_bytes(), &kid),
                sign: Box::new(move |m| {
                    let s: p256::ecdsa::Signature = k.sign(m);
                    s.to_bytes().to_vec()
                }),
            }
        }
        Alg::Es(Hash::S384) => {
            let k = p384::ecdsa::SigningKey::random(&mut OsRng);
            let point = k.verifying_key().to_encoded_point(false);
            Made {
                jwk: ec_jwk("P-384", point.as_bytes(), &kid),
                sign: Box::new(move |m| {
                    let s: p384::ecdsa::Signature = k.sign(m);
                    s.to_bytes().to_vec()
                }),
            }
        }
        Alg::Es(Hash::S512) => {
            let k = p521::ecdsa::SigningKey::random(&mut OsRng);
            let point = p521::ecdsa::VerifyingKey::from(&k).to_encoded_point(false);
            Made {
                jwk: ec_jwk("P-521", point.as_bytes(), &kid),
                sign: Box::new(move |m| {
                    let s: p521::ecdsa::Signature = k.sign_with_rng(&mut OsRng, m);
                    s.to_bytes().to_vec()
                }),
            }
        }
        Alg::Hs256 => unreachable!(),
    }
}

const ALL: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
];

fn token(header: Value, sign: &dyn Fn(&[u8]) -> Vec<u8>) -> String {
    let claims = json!({"iss": "https://idp", "aud": "api", "sub": "u", "exp": 2000});
    let input = format!("{}.{}", b64(header.to_string()), b64(claims.to_string()));
    format!("{input}.{}", b64(sign(input.as_bytes())))
}

fn config() -> Config {
    serde_json::from_value(json!({"issuer": "https://idp", "audience": ["api"]})).unwrap()
}

fn run(t: &str, keys: &[Jwk]) -> Result<crate::Verified, Denial> {
    let keys = keys.to_vec();
    verify(t, &config(), 1000, &[], &mut |_| Ok(keys.clone()))
}

#[test]
fn every_algorithm_with_its_own_keys_only() {
    let rsa_key = &*RSA_KEY;
    let made: Vec<(Alg, Made)> = ALL
        .iter()
        .map(|n| {
            let alg = Alg::parse(n).unwrap();
            assert_eq!(alg.name(), *n);
            (alg, make(alg, rsa_key))
        })
        .collect();
    let jwks: Vec<Jwk> = made.iter().map(|(_, m)| m.jwk.clone()).collect();
    for (alg, m) in &made {
        let kid = m.jwk.kid.clone().unwrap();
        let t = token(json!({"alg": alg.name(), "kid": kid}), &*m.sign);
        assert_eq!(
            run(&t, &jwks).map(|v| v.subject),
            Ok("u".into()),
            "{}",
            alg.name()
        );
        // Signed by another key of the set under this key's id: refused.
        for (other, o) in &made {
            if other == alg || o.jwk.kty != m.jwk.kty {
                continue;
            }
            let forged = token(json!({"alg": alg.name(), "kid": kid}), &*o.sign);
            assert!(
                run(&forged, &jwks).is_err(),
                "{} signed by {}",
                alg.name(),
                other.name()
            );
        }
        // Another algorithm named in the header than the key is for: no key fits.
        let mut pinned = m.jwk.clone();
        pinned.alg = Some(alg.name().into());
        let wrong_alg = match alg {
            Alg::Rs(_) => "PS256",
            Alg::Ps(_) => "RS256",
            Alg::Es(Hash::S256) => "ES384",
            _ => "ES256",
        };
        let t = token(json!({"alg": wrong_alg, "kid": kid}), &*m.sign);
        assert!(run(&t, &[pinned]).is_err(), "{} as {wrong_alg}", alg.name());
    }
}

#[test]
fn none_and_hmac_with_a_public_key_are_refused() {
    let rsa_key = &*RSA_KEY;
    let m = make(Alg::Rs(Hash::S256), rsa_key);
    let jwks = vec![m.jwk.clone()];
    for alg in ["none", "None", "NONE", "", "HS384", "RS1", "EdDSA"] {
        let t = token(json!({"alg": alg, "kid": "rs256"}), &|_| Vec::new());
        assert!(
            matches!(run(&t, &jwks), Err(Denial::Unauthorized(_))),
            "{alg}"
        );
    }
    // The classic confusion: HS256 keyed with the RSA key's public bytes. No secret is
    // configured, and a JWK never serves as an HMAC key.
    let public = format!(
        "{}.{}",
        m.jwk.n.as_deref().unwrap(),
        m.jwk.e.as_deref().unwrap()
    );
    let t = token(json!({"alg": "HS256", "kid": "rs256"}), &|input| {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<Sha256>::new_from_slice(public.as_bytes()).unwrap();
        mac.update(input);
        mac.finalize().into_bytes().to_vec()
    });
    assert!(matches!(run(&t, &jwks), Err(Denial::Unauthorized(_))));
    let oct = Jwk {
        kty: "oct".into(),
        kid: Some("rs256".into()),
        ..Jwk::default()
    };
    assert!(select(&[oct], Alg::Hs256, Some("rs256")).is_none());
    assert!(check(Alg::Hs256, &m.jwk, b"x", b"y").is_err());
}

#[test]
fn keys_are_chosen_by_kid_type_curve_and_use() {
    let ec = |kid: &str, crv: &str| Jwk {
        kty: "EC".into(),
        kid: Some(kid.into()),
        crv: Some(crv.into()),
        ..Jwk::default()
    };
    let keys = vec![
        ec("a", "P-256"),
        ec("b", "P-384"),
        Jwk {
            use_: Some("enc".into()),
            ..ec("c", "P-256")
        },
    ];
    let es256 = Alg::Es(Hash::S256);
    assert_eq!(
        select(&keys, es256, Some("a")).and_then(|k| k.kid.as_deref()),
        Some("a")
    );
    assert!(
        select(&keys, es256, Some("b")).is_none(),
        "P-384 key for ES256"
    );
    assert!(
        select(&keys, es256, Some("c")).is_none(),
        "an encryption key"
    );
    assert_eq!(
        select(&keys, es256, None).and_then(|k| k.kid.as_deref()),
        Some("a"),
        "the only fitting key"
    );
    assert!(select(&keys, Alg::Rs(Hash::S256), None).is_none());
    // A short RSA key is refused.
    let small = rsa::RsaPrivateKey::new(&mut OsRng, 1024).unwrap();
    let m = make(Alg::Rs(Hash::S256), &small);
    let t = token(json!({"alg": "RS256", "kid": "rs256"}), &*m.sign);
    assert!(run(&t, &[m.jwk]).is_err());
}

#[test]
fn an_unknown_kid_asks_for_the_keys_again_once() {
    let rsa_key = &*RSA_KEY;
    let old = make(Alg::Es(Hash::S256), rsa_key);
    let new = make(Alg::Rs(Hash::S256), rsa_key);
    let t = token(json!({"alg": "RS256", "kid": "rs256"}), &*new.sign);
    let mut asked = Vec::new();
    let mut rotated = |refresh: bool| {
        asked.push(refresh);
        Ok(if refresh {
            vec![old.jwk.clone(), new.jwk.clone()]
        } else {
            vec![old.jwk.clone()]
        })
    };
    assert!(verify(&t, &config(), 1000, &[], &mut rotated).is_ok());
    assert_eq!(asked, [false, true]);
    asked.clear();
    let mut stale = |refresh: bool| {
        asked.push(refresh);
        Ok(vec![old.jwk.clone()])
    };
    assert!(matches!(
        verify(&t, &config(), 1000, &[], &mut stale),
        Err(Denial::Unauthorized(_))
    ));
    assert_eq!(asked, [false, true], "once, not more");
    let mut down = |_| Err("issuer down".to_owned());
    assert_eq!(
        verify(&t, &config(), 1000, &[], &mut down).unwrap_err(),
        Denial::NoKeys("issuer down".into())
    );
}

#[test]
fn config_limits() {
    let c = |v: Value| serde_json::from_value::<Config>(v).unwrap().problem();
    assert_eq!(c(json!({"issuer": "https://idp", "audience": ["a"]})), None);
    let fifty: Vec<String> = (0..50).map(|i| format!("a{i}")).collect();
    assert_eq!(c(json!({"issuer": "https://idp", "audience": fifty})), None);
    let many: Vec<String> = (0..51).map(|i| format!("a{i}")).collect();
    assert!(c(json!({"issuer": "https://idp", "audience": many})).is_some());
    assert!(c(json!({"issuer": "https://idp", "audience": []})).is_some());
    assert!(
        c(json!({"issuer": "idp", "audience": ["a"]})).is_some(),
        "no way to keys"
    );
    assert_eq!(
        c(json!({"issuer": "idp", "audience": ["a"], "hs256_secret": "s"})),
        None
    );
    assert_eq!(
        c(json!({"issuer": "idp", "audience": ["a"], "jwks_uri": "https://k/"})),
        None
    );
    assert!(c(json!({"issuer": "idp", "audience": ["a"], "jwks_uri": "https://k/", "jwks": {"keys": []}})).is_some());
    let scopes: Vec<String> = (0..11).map(|i| format!("s{i}")).collect();
    let t = token(json!({"alg": "HS256"}), &|_| Vec::new());
    assert!(verify(&t, &config(), 1000, &scopes, &mut |_| Ok(Vec::new())).is_err());
}
