//! The gateway's `signatures` interface (WIT 0.1.5, authorizers only): RSA and ECDSA
//! signature checks done natively, where the same arithmetic in WebAssembly costs
//! about a millisecond per RSA check.

use crate::authorizer::bindings::weir::plugin::signatures as imports;

pub use imports::{Algorithm, PublicKey};

/// Whether `signature` (as JWS encodes it: ECDSA's as `r || s`) is `key`'s signature
/// of `message` under `algorithm`: `Ok(true)` or `Ok(false)`. `Err` when the gateway
/// cannot use the key for it (the wrong kind, an RSA modulus outside 2048–8192 bits,
/// EC coordinates of the wrong size) or the message is over 1 MiB; the plugin may then
/// check it itself.
///
/// Only in the `authorizer` world, and like every host function it panics outside a
/// wasm32 build.
pub fn verify(
    algorithm: Algorithm,
    key: &PublicKey,
    message: &[u8],
    signature: &[u8],
) -> Result<bool, String> {
    imports::verify(algorithm, key, message, signature)
}
