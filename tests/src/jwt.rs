//! Real JWTs for tests: key pairs made at test time (RS256 as [`RsaKey`], every
//! RS/PS/ES algorithm as [`SigningKey`], published as a JWKS) and HS256 with a shared
//! secret.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use rsa::pkcs1v15::SigningKey as Pkcs1SigningKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, rand_core::OsRng};
use sha2::Sha256;

/// An RSA signing key and its key id.
pub struct RsaKey {
    key: RsaPrivateKey,
    /// The `kid` in headers and the JWKS.
    pub kid: String,
}

impl RsaKey {
    /// A fresh 2048-bit key.
    pub fn generate(kid: &str) -> RsaKey {
        RsaKey {
            key: RsaPrivateKey::new(&mut OsRng, 2048).expect("generating an RSA key"),
            kid: kid.to_owned(),
        }
    }

    /// The public key as a JWKS document.
    pub fn jwks(&self) -> serde_json::Value {
        let public = self.key.to_public_key();
        serde_json::json!({ "keys": [{
            "kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid,
            "n": B64.encode(public.n().to_bytes_be()),
            "e": B64.encode(public.e().to_bytes_be()),
        }]})
    }

    /// Signs `claims` as an RS256 JWT.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let header = serde_json::json!({ "alg": "RS256", "typ": "JWT", "kid": self.kid });
        let input = signing_input(&header, claims);
        let signer = Pkcs1SigningKey::<Sha256>::new(self.key.clone());
        let sig = signer.sign(input.as_bytes()).to_vec();
        format!("{input}.{}", B64.encode(sig))
    }
}

/// Signs `claims` as an HS256 JWT with `secret`.
pub fn sign_hs256(secret: &[u8], claims: &serde_json::Value) -> String {
    let header = serde_json::json!({ "alg": "HS256", "typ": "JWT" });
    let input = signing_input(&header, claims);
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", B64.encode(mac.finalize().into_bytes()))
}

fn signing_input(header: &serde_json::Value, claims: &serde_json::Value) -> String {
    format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    )
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A signing key of any algorithm the JWT authorizer accepts, made at test time:
/// RS256/384/512 and PS256/384/512 (RSA 2048), ES256/384/512 (P-256, P-384, P-521).
pub struct SigningKey {
    /// Its algorithm, as `alg` names it.
    pub alg: &'static str,
    /// Its `kid`.
    pub kid: String,
    secret: Secret,
}

enum Secret {
    Rsa(Box<RsaPrivateKey>),
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    P521(p521::ecdsa::SigningKey),
}

/// Every asymmetric algorithm the JWT authorizer accepts.
pub const ALGORITHMS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
];

impl SigningKey {
    /// A fresh key for `alg` (one of [`ALGORITHMS`]).
    pub fn generate(alg: &'static str, kid: &str) -> SigningKey {
        let secret = match &alg[..2] {
            "RS" | "PS" => Secret::Rsa(Box::new(
                RsaPrivateKey::new(&mut OsRng, 2048).expect("generating an RSA key"),
            )),
            _ => match alg {
                "ES256" => Secret::P256(p256::ecdsa::SigningKey::random(&mut OsRng)),
                "ES384" => Secret::P384(p384::ecdsa::SigningKey::random(&mut OsRng)),
                "ES512" => Secret::P521(p521::ecdsa::SigningKey::random(&mut OsRng)),
                other => panic!("no such algorithm {other}"),
            },
        };
        SigningKey {
            alg,
            kid: kid.to_owned(),
            secret,
        }
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> serde_json::Value {
        // (n, e) of an RSA key, (x, y) of an EC one.
        let (first, second) = self.public_parts();
        let (first, second) = (B64.encode(first), B64.encode(second));
        let crv = match &self.secret {
            Secret::Rsa(_) => {
                return serde_json::json!({
                    "kty": "RSA", "use": "sig", "alg": self.alg, "kid": self.kid,
                    "n": first, "e": second,
                });
            }
            Secret::P256(_) => "P-256",
            Secret::P384(_) => "P-384",
            Secret::P521(_) => "P-521",
        };
        serde_json::json!({
            "kty": "EC", "crv": crv, "use": "sig", "alg": self.alg, "kid": self.kid,
            "x": first, "y": second,
        })
    }

    /// Signs `claims` as a JWT with this key's `alg` and `kid`.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let header = serde_json::json!({ "alg": self.alg, "typ": "JWT", "kid": self.kid });
        let input = signing_input(&header, claims);
        let sig = self.signature(input.as_bytes());
        format!("{input}.{}", B64.encode(sig))
    }

    /// The public key's parts, big-endian: `(n, e)` of an RSA key, `(x, y)` of an EC one.
    pub fn public_parts(&self) -> (Vec<u8>, Vec<u8>) {
        let ec = |point: &[u8]| {
            let size = (point.len() - 1) / 2;
            (point[1..1 + size].to_vec(), point[1 + size..].to_vec())
        };
        match &self.secret {
            Secret::Rsa(key) => (key.n().to_bytes_be(), key.e().to_bytes_be()),
            Secret::P256(k) => ec(k.verifying_key().to_encoded_point(false).as_bytes()),
            Secret::P384(k) => ec(k.verifying_key().to_encoded_point(false).as_bytes()),
            Secret::P521(k) => ec(p521::ecdsa::VerifyingKey::from(k)
                .to_encoded_point(false)
                .as_bytes()),
        }
    }

    /// This key's signature of `m` under its `alg`, as JWS encodes it.
    pub fn signature(&self, m: &[u8]) -> Vec<u8> {
        use rsa::signature::RandomizedSigner;
        match (&self.secret, self.alg) {
            (Secret::Rsa(k), "RS256") => Pkcs1SigningKey::<Sha256>::new((**k).clone())
                .sign(m)
                .to_vec(),
            (Secret::Rsa(k), "RS384") => {
                rsa::pkcs1v15::SigningKey::<sha2::Sha384>::new((**k).clone())
                    .sign(m)
                    .to_vec()
            }
            (Secret::Rsa(k), "RS512") => {
                rsa::pkcs1v15::SigningKey::<sha2::Sha512>::new((**k).clone())
                    .sign(m)
                    .to_vec()
            }
            (Secret::Rsa(k), "PS256") => rsa::pss::SigningKey::<Sha256>::new((**k).clone())
                .sign_with_rng(&mut OsRng, m)
                .to_vec(),
            (Secret::Rsa(k), "PS384") => rsa::pss::SigningKey::<sha2::Sha384>::new((**k).clone())
                .sign_with_rng(&mut OsRng, m)
                .to_vec(),
            (Secret::Rsa(k), _) => rsa::pss::SigningKey::<sha2::Sha512>::new((**k).clone())
                .sign_with_rng(&mut OsRng, m)
                .to_vec(),
            (Secret::P256(k), _) => {
                let s: p256::ecdsa::Signature = k.sign(m);
                s.to_bytes().to_vec()
            }
            (Secret::P384(k), _) => {
                let s: p384::ecdsa::Signature = k.sign(m);
                s.to_bytes().to_vec()
            }
            (Secret::P521(k), _) => {
                let s: p521::ecdsa::Signature = k.sign(m);
                s.to_bytes().to_vec()
            }
        }
    }
}

/// A JWKS document of these keys' public halves.
pub fn jwks(keys: &[&SigningKey]) -> serde_json::Value {
    serde_json::json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() })
}
