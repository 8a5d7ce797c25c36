//! Real JWTs for tests: an RSA key pair made at test time (RS256, published as a JWKS)
//! and HS256 with a shared secret.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use rsa::pkcs1v15::SigningKey;
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
        let signer = SigningKey::<Sha256>::new(self.key.clone());
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
