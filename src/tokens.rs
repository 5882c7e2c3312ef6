//! Bearer tokens (sessions, invites): 256 random bits, shown once, stored only as a hash.
//! SHA-256 suffices for the stored form: a 256-bit random token cannot be guessed, so the
//! slow, salted hashing that passwords need buys nothing here.

use base64::Engine as _;
use rand::Rng as _;
use sha2::{Digest, Sha256};

/// A new token (43 characters of URL-safe base64) and its stored hash (64 hex digits).
pub fn new_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rand_core::UnwrapErr(rand::rngs::SysRng).fill_bytes(&mut bytes);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_token(&token);
    (token, hash)
}

/// The stored form of a token: lower-case hex SHA-256 of its text.
pub fn hash_token(token: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(token.trim().as_bytes());
    let mut hex = String::with_capacity(64);
    for b in digest {
        hex.push(char::from(HEX[usize::from(b >> 4)]));
        hex.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bits_and_hash_deterministically() {
        let (token, hash) = new_token();
        assert_eq!(token.len(), 43);
        assert_eq!(hash.len(), 64);
        assert_eq!(hash_token(&token), hash);
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "SHA-256 of \"abc\" (FIPS 180-2 test vector)"
        );
        assert_ne!(new_token().0, token);
    }
}
