//! Public keys (JWK, RFC 7517) and the JWS algorithms checked with them (RFC 7518):
//! RS256/384/512 (RSASSA-PKCS1-v1_5), PS256/384/512 (RSASSA-PSS, salt as long as the
//! hash) and ES256/384/512 (ECDSA on P-256, P-384, P-521). A key is used only for its
//! own family and curve, and only when its `alg` and `use` (if given) agree with the
//! token: HMAC is never checked with a public key, and `none` is never accepted.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::signature::Verifier;
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPublicKey};
use serde::Deserialize;
use sha2::{Sha256, Sha384, Sha512};

/// RSA keys shorter than this are refused (RFC 7518 §3.3).
pub const MIN_RSA_BITS: usize = 2048;

/// A JWKS document.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Jwks {
    /// `{"keys": [...]}`.
    Object {
        /// The keys.
        keys: Vec<Jwk>,
    },
    /// The same as JSON text.
    Text(String),
}

impl Jwks {
    /// The keys, parsing JSON text.
    pub fn keys(&self) -> Result<Vec<Jwk>, String> {
        match self {
            Jwks::Object { keys } => Ok(keys.clone()),
            Jwks::Text(text) => parse_jwks(text.as_bytes()),
        }
    }
}

/// The keys of a JWKS document's bytes.
pub fn parse_jwks(bytes: &[u8]) -> Result<Vec<Jwk>, String> {
    #[derive(Deserialize)]
    struct Doc {
        keys: Vec<Jwk>,
    }
    serde_json::from_slice::<Doc>(bytes)
        .map(|d| d.keys)
        .map_err(|e| format!("not a JWKS document: {e}"))
}

/// One key of a JWKS (the members used here; others are ignored).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Jwk {
    /// Key type: `RSA` or `EC`.
    pub kty: String,
    /// Key id.
    #[serde(default)]
    pub kid: Option<String>,
    /// The one algorithm the key is for, when said.
    #[serde(default)]
    pub alg: Option<String>,
    /// `sig` or `enc`, when said.
    #[serde(default, rename = "use")]
    pub use_: Option<String>,
    /// RSA modulus, base64url.
    #[serde(default)]
    pub n: Option<String>,
    /// RSA exponent, base64url.
    #[serde(default)]
    pub e: Option<String>,
    /// EC curve: `P-256`, `P-384`, `P-521`.
    #[serde(default)]
    pub crv: Option<String>,
    /// EC point coordinates, base64url.
    #[serde(default)]
    pub x: Option<String>,
    /// See `x`.
    #[serde(default)]
    pub y: Option<String>,
}

/// An algorithm a token may be signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// HMAC with SHA-256 and the configured shared secret (never a JWK).
    Hs256,
    /// RSASSA-PKCS1-v1_5.
    Rs(Hash),
    /// RSASSA-PSS.
    Ps(Hash),
    /// ECDSA.
    Es(Hash),
}

/// The hash of an algorithm (and for ECDSA its curve).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    /// SHA-256 (P-256).
    S256,
    /// SHA-384 (P-384).
    S384,
    /// SHA-512 (P-521).
    S512,
}

impl Alg {
    /// The algorithm a header's `alg` names, if accepted (`none` and anything unknown
    /// are not).
    pub fn parse(name: &str) -> Option<Alg> {
        let hash = |h: &str| match h {
            "256" => Some(Hash::S256),
            "384" => Some(Hash::S384),
            "512" => Some(Hash::S512),
            _ => None,
        };
        match name.split_at_checked(2)? {
            ("HS", "256") => Some(Alg::Hs256),
            ("RS", h) => hash(h).map(Alg::Rs),
            ("PS", h) => hash(h).map(Alg::Ps),
            ("ES", h) => hash(h).map(Alg::Es),
            _ => None,
        }
    }

    /// Its JWA name.
    pub fn name(self) -> &'static str {
        match self {
            Alg::Hs256 => "HS256",
            Alg::Rs(Hash::S256) => "RS256",
            Alg::Rs(Hash::S384) => "RS384",
            Alg::Rs(Hash::S512) => "RS512",
            Alg::Ps(Hash::S256) => "PS256",
            Alg::Ps(Hash::S384) => "PS384",
            Alg::Ps(Hash::S512) => "PS512",
            Alg::Es(Hash::S256) => "ES256",
            Alg::Es(Hash::S384) => "ES384",
            Alg::Es(Hash::S512) => "ES512",
        }
    }

    /// Whether `key` may check a signature of this algorithm.
    fn fits(self, key: &Jwk) -> bool {
        let family = match self {
            Alg::Hs256 => false,
            Alg::Rs(_) | Alg::Ps(_) => key.kty == "RSA",
            Alg::Es(h) => key.kty == "EC" && key.crv.as_deref() == Some(curve(h)),
        };
        family
            && key.alg.as_deref().is_none_or(|a| a == self.name())
            && key.use_.as_deref().is_none_or(|u| u == "sig")
    }
}

fn curve(h: Hash) -> &'static str {
    match h {
        Hash::S256 => "P-256",
        Hash::S384 => "P-384",
        Hash::S512 => "P-521",
    }
}

/// The key for a token signed with `alg`: the one with its `kid`, or without a `kid`
/// the only key that fits.
pub fn select<'k>(keys: &'k [Jwk], alg: Alg, kid: Option<&str>) -> Option<&'k Jwk> {
    let mut fitting = keys.iter().filter(|k| alg.fits(k));
    match kid {
        Some(kid) => fitting.find(|k| k.kid.as_deref() == Some(kid)),
        None => {
            let first = fitting.next()?;
            fitting.next().is_none().then_some(first)
        }
    }
}

fn bytes(v: &Option<String>, what: &str) -> Result<Vec<u8>, String> {
    v.as_deref()
        .and_then(|s| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok())
        .ok_or_else(|| format!("key without a base64url `{what}`"))
}

/// Checks `signature` over `signed` with `key` (one that [`select`] chose for `alg`):
/// natively by the gateway where it can (`signatures.verify`, in a wasm32 build),
/// here otherwise.
pub fn check(alg: Alg, key: &Jwk, signed: &[u8], signature: &[u8]) -> Result<(), String> {
    #[cfg(target_family = "wasm")]
    if let Some(checked) = native::check(alg, key, signed, signature) {
        return checked;
    }
    check_here(alg, key, signed, signature)
}

/// The gateway's own check of `alg`, when it has one for this key.
#[cfg(target_family = "wasm")]
mod native {
    use weir_sdk::signatures::{Algorithm, PublicKey, verify};

    use super::{Alg, Hash, Jwk, bytes, rsa_key};
    use rsa::traits::PublicKeyParts;

    /// `None` where the gateway has no check for `alg` (HS256, ES512) or cannot use
    /// the key: [`super::check_here`] then decides.
    pub fn check(
        alg: Alg,
        key: &Jwk,
        signed: &[u8],
        signature: &[u8],
    ) -> Option<Result<(), String>> {
        let (algorithm, public) = match alg {
            Alg::Hs256 | Alg::Es(Hash::S512) => return None,
            Alg::Rs(_) | Alg::Ps(_) => {
                // The same refusals as a check here (size, exponent).
                let key = match rsa_key(key) {
                    Ok(key) => key,
                    Err(why) => return Some(Err(why)),
                };
                let algorithm = match alg {
                    Alg::Rs(Hash::S256) => Algorithm::Rs256,
                    Alg::Rs(Hash::S384) => Algorithm::Rs384,
                    Alg::Rs(Hash::S512) => Algorithm::Rs512,
                    Alg::Ps(Hash::S256) => Algorithm::Ps256,
                    Alg::Ps(Hash::S384) => Algorithm::Ps384,
                    _ => Algorithm::Ps512,
                };
                let parts = (key.n().to_bytes_be(), key.e().to_bytes_be());
                (algorithm, PublicKey::Rsa(parts))
            }
            Alg::Es(h) => {
                let algorithm = match h {
                    Hash::S256 => Algorithm::Es256,
                    _ => Algorithm::Es384,
                };
                let x = bytes(&key.x, "x").ok()?;
                let y = bytes(&key.y, "y").ok()?;
                (algorithm, PublicKey::Ec((x, y)))
            }
        };
        match verify(algorithm, &public, signed, signature) {
            Ok(true) => Some(Ok(())),
            Ok(false) => Some(Err(format!("bad {} signature", alg.name()))),
            Err(_) => None,
        }
    }
}

/// Checks `signature` over `signed` with `key` in the plugin's own code.
pub fn check_here(alg: Alg, key: &Jwk, signed: &[u8], signature: &[u8]) -> Result<(), String> {
    let bad = |_| format!("bad {} signature", alg.name());
    match alg {
        Alg::Hs256 => Err("HMAC is not checked with a public key".into()),
        Alg::Rs(h) => {
            let key = rsa_key(key)?;
            let sig = rsa::pkcs1v15::Signature::try_from(signature).map_err(bad)?;
            match h {
                Hash::S256 => rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key).verify(signed, &sig),
                Hash::S384 => rsa::pkcs1v15::VerifyingKey::<Sha384>::new(key).verify(signed, &sig),
                Hash::S512 => rsa::pkcs1v15::VerifyingKey::<Sha512>::new(key).verify(signed, &sig),
            }
            .map_err(bad)
        }
        Alg::Ps(h) => {
            let key = rsa_key(key)?;
            let sig = rsa::pss::Signature::try_from(signature).map_err(bad)?;
            match h {
                Hash::S256 => rsa::pss::VerifyingKey::<Sha256>::new(key).verify(signed, &sig),
                Hash::S384 => rsa::pss::VerifyingKey::<Sha384>::new(key).verify(signed, &sig),
                Hash::S512 => rsa::pss::VerifyingKey::<Sha512>::new(key).verify(signed, &sig),
            }
            .map_err(bad)
        }
        Alg::Es(h) => {
            let (x, y) = (bytes(&key.x, "x")?, bytes(&key.y, "y")?);
            let size = match h {
                Hash::S256 => 32,
                Hash::S384 => 48,
                Hash::S512 => 66,
            };
            if x.len() != size || y.len() != size {
                return Err(format!("{} key coordinates are not {size} bytes", curve(h)));
            }
            if signature.len() != 2 * size {
                return Err(format!(
                    "{} signature is not {} bytes",
                    alg.name(),
                    2 * size
                ));
            }
            let point = [&[0x04][..], &x, &y].concat();
            let unusable = |_| format!("unusable {} key", curve(h));
            match h {
                Hash::S256 => p256::ecdsa::VerifyingKey::from_sec1_bytes(&point)
                    .map_err(unusable)?
                    .verify(
                        signed,
                        &p256::ecdsa::Signature::from_slice(signature).map_err(bad)?,
                    ),
                Hash::S384 => p384::ecdsa::VerifyingKey::from_sec1_bytes(&point)
                    .map_err(unusable)?
                    .verify(
                        signed,
                        &p384::ecdsa::Signature::from_slice(signature).map_err(bad)?,
                    ),
                Hash::S512 => p521::ecdsa::VerifyingKey::from_sec1_bytes(&point)
                    .map_err(unusable)?
                    .verify(
                        signed,
                        &p521::ecdsa::Signature::from_slice(signature).map_err(bad)?,
                    ),
            }
            .map_err(bad)
        }
    }
}

fn rsa_key(key: &Jwk) -> Result<RsaPublicKey, String> {
    let n = BigUint::from_bytes_be(&bytes(&key.n, "n")?);
    let e = BigUint::from_bytes_be(&bytes(&key.e, "e")?);
    let key = RsaPublicKey::new(n, e).map_err(|e| format!("unusable RSA key: {e}"))?;
    if key.n().bits() < MIN_RSA_BITS {
        return Err(format!("RSA key under {MIN_RSA_BITS} bits"));
    }
    Ok(key)
}

#[cfg(test)]
mod tests;
