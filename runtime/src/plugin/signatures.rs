//! The `signatures` interface (`weir:plugin@0.1.5`, authorizers): RSA and ECDSA
//! signature checks done natively. A JWT authorizer checking an RS256 token in
//! WebAssembly spends about a millisecond on the big-number arithmetic; here it takes
//! tens of microseconds. The checks are ring's (the crypto provider under the
//! gateway's TLS); a key ring cannot use is an error, and the guest may then check the
//! signature itself.

use ring::signature::{self as sig, RsaPublicKeyComponents, UnparsedPublicKey};

use super::bindings::authorizer::weir::plugin::signatures::{Algorithm, Host, PublicKey};
use super::state::State;

/// Largest message checked. A check is one uninterruptible host call whose cost grows
/// with the message (it is hashed); a JWS signing input is a few kilobytes.
pub const MAX_MESSAGE: usize = 1 << 20;

/// Longest key part (an RSA modulus or exponent, an EC coordinate): 8192 bits and 16
/// leading zero bytes. Checked before a part is read, so no key costs more than that.
pub const MAX_KEY_PART: usize = 1040;

/// RSA moduli ring checks: 2048 to 8192 bits.
const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

impl Host for State {
    fn verify(
        &mut self,
        algorithm: Algorithm,
        key: PublicKey,
        message: Vec<u8>,
        signature: Vec<u8>,
    ) -> Result<bool, String> {
        let checked = verify(algorithm, &key, &message, &signature);
        let result = match checked {
            Ok(true) => "good",
            Ok(false) => "bad",
            Err(_) => "unusable",
        };
        if !self.quiet {
            metrics::counter!("weir_plugin_signature_checks_total",
                "plugin" => self.name.to_string(), "result" => result)
            .increment(1);
        }
        checked
    }
}

/// Whether `signature` is `key`'s signature of `message` under `algorithm`; an error
/// when the key cannot be used for it here.
pub fn verify(
    algorithm: Algorithm,
    key: &PublicKey,
    message: &[u8],
    signature: &[u8],
) -> Result<bool, String> {
    if message.len() > MAX_MESSAGE {
        return Err(format!(
            "a message of {} bytes is over the {MAX_MESSAGE}-byte limit",
            message.len()
        ));
    }
    let (PublicKey::Rsa((a, b)) | PublicKey::Ec((a, b))) = key;
    if let Some(long) = [a, b].into_iter().find(|p| p.len() > MAX_KEY_PART) {
        return Err(format!(
            "a key part of {} bytes is over the {MAX_KEY_PART}-byte limit",
            long.len()
        ));
    }
    let checked = match (algorithm, key) {
        (Algorithm::Es256 | Algorithm::Es384, PublicKey::Ec((x, y))) => {
            let (params, size): (&'static sig::EcdsaVerificationAlgorithm, usize) = match algorithm
            {
                Algorithm::Es256 => (&sig::ECDSA_P256_SHA256_FIXED, 32),
                _ => (&sig::ECDSA_P384_SHA384_FIXED, 48),
            };
            if x.len() != size || y.len() != size {
                return Err(format!("EC key coordinates are not {size} bytes"));
            }
            let point = [&[0x04][..], x, y].concat();
            UnparsedPublicKey::new(params, point).verify(message, signature)
        }
        (Algorithm::Es256 | Algorithm::Es384, PublicKey::Rsa(_)) => {
            return Err("an RSA key for an ECDSA algorithm".into());
        }
        (_, PublicKey::Rsa((n, e))) => {
            let n = trim(n);
            let e = trim(e);
            usable_rsa(n, e)?;
            let params: &'static sig::RsaParameters = match algorithm {
                Algorithm::Rs256 => &sig::RSA_PKCS1_2048_8192_SHA256,
                Algorithm::Rs384 => &sig::RSA_PKCS1_2048_8192_SHA384,
                Algorithm::Rs512 => &sig::RSA_PKCS1_2048_8192_SHA512,
                Algorithm::Ps256 => &sig::RSA_PSS_2048_8192_SHA256,
                Algorithm::Ps384 => &sig::RSA_PSS_2048_8192_SHA384,
                _ => &sig::RSA_PSS_2048_8192_SHA512,
            };
            RsaPublicKeyComponents { n, e }.verify(params, message, signature)
        }
        (_, PublicKey::Ec(_)) => return Err("an EC key for an RSA algorithm".into()),
    };
    Ok(checked.is_ok())
}

/// Without leading zero bytes (a JWK's integers should have none; some do).
fn trim(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[start..]
}

/// The RSA keys ring checks: a modulus of 2048 to 8192 bits; an odd exponent of at
/// least 3 and at most 33 bits. Anything else would fail every check the same way as
/// a bad signature, so it is told apart here.
fn usable_rsa(n: &[u8], e: &[u8]) -> Result<(), String> {
    let bits = |b: &[u8]| {
        b.first()
            .map_or(0, |&top| 8 * b.len() - top.leading_zeros() as usize)
    };
    if !RSA_BITS.contains(&bits(n)) {
        return Err(format!("an RSA modulus of {} bits", bits(n)));
    }
    let odd = e.last().is_some_and(|&low| low & 1 == 1);
    if !odd || bits(e) > 33 || (e.len() == 1 && e[0] < 3) {
        return Err("an RSA exponent that is not odd, at least 3 and at most 33 bits".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
