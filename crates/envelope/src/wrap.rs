//! Sealing a small value (a data key, a KMS `Encrypt` payload) in one piece: AES-256-GCM under
//! a 32-byte key with a fresh random nonce, bound to `aad`. The sealed form is the nonce, then
//! the ciphertext, then the tag.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::{EnvelopeError, KEY_LEN, Result, TAG_LEN, random};

/// What [`wrap`] adds to a value.
pub const WRAP_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

fn key(key: &[u8; KEY_LEN]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte AES-256 key"))
}

/// A fresh random 32-byte key.
pub fn generate_key() -> [u8; KEY_LEN] {
    random()
}

/// Seals `plaintext` under `k`, bound to `aad`.
pub fn wrap(k: &[u8; KEY_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let nonce: [u8; NONCE_LEN] = random();
    let mut out = Vec::with_capacity(WRAP_OVERHEAD + plaintext.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = key(k)
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut out[NONCE_LEN..])
        .expect("AES-GCM seals a small value");
    out.extend_from_slice(tag.as_ref());
    out
}

/// Opens what [`wrap`] sealed under `k` with the same `aad`.
pub fn unwrap(k: &[u8; KEY_LEN], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>> {
    if sealed.len() < WRAP_OVERHEAD {
        return Err(EnvelopeError::WrappedDamaged);
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| EnvelopeError::WrappedDamaged)?;
    let mut buf = body.to_vec();
    let len = key(k).open_in_place(nonce, Aad::from(aad), &mut buf).map_err(|_| EnvelopeError::WrappedDamaged)?.len();
    buf.truncate(len);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrapped_value_opens_only_with_its_key_and_aad() {
        let k = generate_key();
        let sealed = wrap(&k, b"context", b"a data key");
        assert_eq!(sealed.len(), WRAP_OVERHEAD + 10);
        assert_eq!(unwrap(&k, b"context", &sealed).unwrap(), b"a data key");
        assert_eq!(unwrap(&k, b"other", &sealed), Err(EnvelopeError::WrappedDamaged));
        assert_eq!(unwrap(&generate_key(), b"context", &sealed), Err(EnvelopeError::WrappedDamaged));
        for i in 0..sealed.len() {
            let mut flipped = sealed.clone();
            flipped[i] ^= 1;
            assert!(unwrap(&k, b"context", &flipped).is_err(), "a flipped bit at {i} is detected");
        }
        assert!(unwrap(&k, b"context", &sealed[..sealed.len() - 1]).is_err());
        assert!(unwrap(&k, b"context", &sealed[..5]).is_err());
        assert_ne!(wrap(&k, b"context", b"a data key"), sealed, "a fresh nonce each time");
    }
}
