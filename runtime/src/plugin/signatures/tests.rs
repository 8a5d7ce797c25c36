use weir_tests::jwt::SigningKey;

use super::*;

/// The WIT algorithm for a JWS `alg`.
fn algorithm(alg: &str) -> Algorithm {
    match alg {
        "RS256" => Algorithm::Rs256,
        "RS384" => Algorithm::Rs384,
        "RS512" => Algorithm::Rs512,
        "PS256" => Algorithm::Ps256,
        "PS384" => Algorithm::Ps384,
        "PS512" => Algorithm::Ps512,
        "ES256" => Algorithm::Es256,
        "ES384" => Algorithm::Es384,
        other => panic!("not checked natively: {other}"),
    }
}

fn public_key(key: &SigningKey) -> PublicKey {
    let parts = key.public_parts();
    if key.alg.starts_with("ES") {
        PublicKey::Ec(parts)
    } else {
        PublicKey::Rsa(parts)
    }
}

#[test]
fn every_algorithm_checks_good_signatures_and_refuses_altered_ones() {
    let message = b"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9";
    for alg in [
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
    ] {
        let key = SigningKey::generate(alg, "k");
        let (alg_id, public) = (algorithm(alg), public_key(&key));
        let good = key.signature(message);
        assert_eq!(verify(alg_id, &public, message, &good), Ok(true), "{alg}");

        let mut altered = message.to_vec();
        altered[0] ^= 1;
        assert_eq!(verify(alg_id, &public, &altered, &good), Ok(false), "{alg}");
        let mut bad = good.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert_eq!(verify(alg_id, &public, message, &bad), Ok(false), "{alg}");
        assert_eq!(
            verify(alg_id, &public, message, &good[1..]),
            Ok(false),
            "{alg}"
        );

        // Another key of the same kind does not verify it.
        let other = public_key(&SigningKey::generate(alg, "other"));
        assert_eq!(verify(alg_id, &other, message, &good), Ok(false), "{alg}");
    }
}

#[test]
fn pkcs1_and_pss_and_the_hash_are_not_interchangeable() {
    let message = b"header.claims";
    let key = SigningKey::generate("RS256", "k");
    let public = public_key(&key);
    let sig = key.signature(message);
    for other in [
        Algorithm::Rs384,
        Algorithm::Rs512,
        Algorithm::Ps256,
        Algorithm::Ps512,
    ] {
        assert_eq!(verify(other, &public, message, &sig), Ok(false));
    }
}

#[test]
fn a_modulus_with_leading_zero_bytes_is_the_same_key() {
    let message = b"header.claims";
    let key = SigningKey::generate("PS256", "k");
    let (n, e) = key.public_parts();
    let padded = PublicKey::Rsa(([&[0, 0][..], &n].concat(), [&[0][..], &e].concat()));
    let sig = key.signature(message);
    assert_eq!(verify(Algorithm::Ps256, &padded, message, &sig), Ok(true));
}

#[test]
fn keys_it_cannot_use_are_errors_not_refusals() {
    let message = b"header.claims";
    let rsa = SigningKey::generate("RS256", "r");
    let ec = SigningKey::generate("ES256", "e");
    let sig = rsa.signature(message);

    // Kinds that do not go with the algorithm.
    let err = verify(Algorithm::Es256, &public_key(&rsa), message, &sig).unwrap_err();
    assert!(err.contains("RSA key for an ECDSA"), "{err}");
    let err = verify(Algorithm::Rs256, &public_key(&ec), message, &sig).unwrap_err();
    assert!(err.contains("EC key for an RSA"), "{err}");

    // A P-256 key given for ES384: coordinates of the wrong size.
    let err = verify(Algorithm::Es384, &public_key(&ec), message, &sig).unwrap_err();
    assert!(err.contains("not 48 bytes"), "{err}");

    // RSA moduli outside 2048..=8192 bits and unusable exponents.
    let (n, e) = rsa.public_parts();
    let small = PublicKey::Rsa((vec![0xc5; 128], e.clone()));
    let err = verify(Algorithm::Rs256, &small, message, &sig).unwrap_err();
    assert!(err.contains("1024 bits"), "{err}");
    let huge = PublicKey::Rsa((vec![0xc5; 1025], e.clone()));
    assert!(verify(Algorithm::Rs256, &huge, message, &sig).is_err());
    // Parts longer than any usable key are refused before they are read.
    let padded = PublicKey::Rsa(([&[0; 1040 - 256][..], &n].concat(), e.clone()));
    assert_eq!(verify(Algorithm::Rs256, &padded, message, &sig), Ok(true));
    let zeros = PublicKey::Rsa((vec![0; MAX_KEY_PART + 1], e.clone()));
    let err = verify(Algorithm::Rs256, &zeros, message, &sig).unwrap_err();
    assert!(err.contains("over the 1040-byte limit"), "{err}");
    for bad_e in [vec![], vec![1], vec![0x01, 0x00, 0x00], vec![1; 6]] {
        let key = PublicKey::Rsa((n.clone(), bad_e.clone()));
        assert!(
            verify(Algorithm::Rs256, &key, message, &sig).is_err(),
            "{bad_e:?}"
        );
    }
}

#[test]
fn a_message_over_the_limit_is_an_error() {
    let key = SigningKey::generate("ES256", "k");
    let big = vec![b'a'; MAX_MESSAGE + 1];
    let sig = key.signature(&big);
    let err = verify(Algorithm::Es256, &public_key(&key), &big, &sig).unwrap_err();
    assert!(err.contains("limit"), "{err}");
    let ok = &big[..MAX_MESSAGE];
    let sig = key.signature(ok);
    assert_eq!(
        verify(Algorithm::Es256, &public_key(&key), ok, &sig),
        Ok(true)
    );
}
