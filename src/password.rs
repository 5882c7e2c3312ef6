//! Password hashing: argon2id with OWASP's current parameters, stored as PHC strings
//! (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`), verified in constant time.
//!
//! Parameters: m = 19456 KiB (19 MiB), t = 2, p = 1 — the OWASP Password Storage Cheat Sheet's
//! argon2id configuration with the lowest memory, and the argon2 crate's default (RFC 9106's
//! "second recommended option" scaled to interactive logins). Hashing takes tens of
//! milliseconds on one core; callers on an async runtime use the `*_blocking` free
//! functions through `tokio::task::spawn_blocking` (see [`hash_async`], [`verify_async`]).

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use argon2::{Algorithm, Argon2, Params, Version};
use password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand::Rng;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Shortest password accepted, in characters (NIST SP 800-63B §5.1.1.2: at least 8).
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest password accepted, in bytes: bounds the hashing work one request can cause.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// A password in memory: zeroed on drop, never printed by `Debug`.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps `text`. Each clone holds its own copy, zeroed when that clone is dropped.
    pub fn new(text: String) -> Self {
        Self(Zeroizing::new(text))
    }

    /// The plaintext. Keep the borrow short; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Checks the policy for a *new* password (not on login, where any input is just wrong).
    /// Errors: [`Error::Invalid`] when empty, shorter than [`MIN_PASSWORD_CHARS`] or longer
    /// than [`MAX_PASSWORD_BYTES`].
    pub fn validate_new(&self) -> Result<()> {
        let chars = self.0.chars().count();
        if chars == 0 {
            return Err(Error::Invalid("the password is empty".into()));
        }
        if chars < MIN_PASSWORD_CHARS {
            return Err(Error::Invalid(format!(
                "the password is too short: at least {MIN_PASSWORD_CHARS} characters"
            )));
        }
        if self.0.len() > MAX_PASSWORD_BYTES {
            return Err(Error::Invalid(format!(
                "the password is too long: at most {MAX_PASSWORD_BYTES} bytes"
            )));
        }
        Ok(())
    }

    /// A random 24-character password of letters and digits (≈143 bits).
    pub fn random() -> Self {
        const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
        let mut rng = rand::rngs::OsRng;
        let text: String = (0..24)
            .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
            .collect();
        Self::new(text)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

fn hasher() -> Argon2<'static> {
    // Params::DEFAULT is m=19456, t=2, p=1 (module docs).
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::DEFAULT)
}

/// Hashes `password` into a PHC string. CPU-bound: tens of milliseconds.
pub fn hash_blocking(password: &Secret) -> Result<String> {
    let salt = SaltString::generate(&mut password_hash::rand_core::OsRng);
    hasher()
        .hash_password(password.expose().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("hashing failed: {e}")))
}

/// Verifies `password` against a stored hash in constant time: a PHC string (argon2id,
/// argon2i or argon2d, any parameters) or a bcrypt hash (`$2a$`, `$2b$`, `$2y$`, as imported
/// from other systems). A malformed or unsupported hash verifies as `false`.
pub fn verify_blocking(phc: &str, password: &Secret) -> bool {
    if is_bcrypt(phc) {
        return bcrypt::verify(password.expose(), phc).unwrap_or(false);
    }
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.expose().as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

fn is_bcrypt(hash: &str) -> bool {
    ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p))
}

/// Checks that an imported hash is one the login path can verify: an argon2 PHC string
/// (`$argon2id$…`, `$argon2i$…`) or bcrypt (`$2b$…`). Errors: [`Error::Invalid`] naming the
/// accepted forms. (Stored as is; the first login upgrades it to the current argon2id.)
pub fn validate_imported_hash(hash: &str) -> Result<()> {
    if is_bcrypt(hash) {
        return bcrypt::HashParts::from_str(hash)
            .map(drop)
            .map_err(|e| Error::Invalid(format!("malformed bcrypt hash: {e}")));
    }
    let parsed = PasswordHash::new(hash).map_err(|e| {
        Error::Invalid(format!(
            "password_hash is not a PHC string (argon2id, argon2i) or bcrypt ($2b$): {e}"
        ))
    })?;
    match parsed.algorithm.as_str() {
        "argon2id" | "argon2i" | "argon2d" => Ok(()),
        other => Err(Error::Invalid(format!(
            "unsupported password_hash algorithm {other:?} (argon2id, argon2i, bcrypt)"
        ))),
    }
}

/// Burns the same time as a real verification against nothing, so "no such user" and
/// "wrong password" cannot be told apart by timing (no user-enumeration oracle).
pub fn dummy_verify_blocking(password: &Secret) {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let phc = DUMMY.get_or_init(|| hash_blocking(&Secret::random()).unwrap_or_default());
    let _ = verify_blocking(phc, password);
}

/// Whether a stored hash should be replaced by one with the current algorithm and
/// parameters (it is not argon2id, or its parameters are weaker than the current ones).
pub fn needs_rehash(phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return true;
    };
    if parsed.algorithm.as_str() != "argon2id" {
        return true;
    }
    let Ok(params) = Params::try_from(&parsed) else {
        return true;
    };
    let current = Params::DEFAULT;
    params.m_cost() < current.m_cost() || params.t_cost() < current.t_cost()
}

/// [`hash_blocking`] off the async runtime.
pub async fn hash_async(password: Secret) -> Result<String> {
    tokio::task::spawn_blocking(move || hash_blocking(&password))
        .await
        .map_err(|e| Error::Internal(format!("hashing task failed: {e}")))?
}

/// [`verify_blocking`] off the async runtime; with `None` for the hash it runs
/// [`dummy_verify_blocking`] and returns `false`.
pub async fn verify_async(phc: Option<String>, password: Secret) -> Result<bool> {
    tokio::task::spawn_blocking(move || match phc {
        Some(phc) => verify_blocking(&phc, &password),
        None => {
            dummy_verify_blocking(&password);
            false
        }
    })
    .await
    .map_err(|e| Error::Internal(format!("verification task failed: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_phc_strings_that_verify() {
        let pw = Secret::new("correct horse battery".into());
        let phc = hash_blocking(&pw).expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_blocking(&phc, &pw));
        assert!(!verify_blocking(&phc, &Secret::new("wrong horse".into())));
        assert!(!needs_rehash(&phc));
    }

    #[test]
    fn weaker_or_other_hashes_need_rehash() {
        let weak = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(4096, 1, 1, None).expect("params"),
        );
        let salt = SaltString::generate(&mut password_hash::rand_core::OsRng);
        let phc = weak.hash_password(b"password123", &salt).expect("hash").to_string();
        assert!(verify_blocking(&phc, &Secret::new("password123".into())));
        assert!(needs_rehash(&phc));
        assert!(needs_rehash("not a phc string"));
    }

    #[test]
    fn bcrypt_hashes_verify_validate_and_need_rehash() {
        let hash = bcrypt::hash("legacy password", 4).expect("bcrypt");
        assert!(hash.starts_with("$2b$04$"));
        assert!(verify_blocking(&hash, &Secret::new("legacy password".into())));
        assert!(!verify_blocking(&hash, &Secret::new("other".into())));
        assert!(needs_rehash(&hash));
        assert!(validate_imported_hash(&hash).is_ok());
        assert!(validate_imported_hash("$2b$04$short").is_err());
        assert!(validate_imported_hash("$pbkdf2-sha256$i=1000$abc$def").is_err());
        assert!(validate_imported_hash("plaintext").is_err());
    }

    #[test]
    fn password_policy_rejects_empty_and_short() {
        assert!(Secret::new(String::new()).validate_new().is_err());
        assert!(Secret::new("short".into()).validate_new().is_err());
        assert!(Secret::new("long enough".into()).validate_new().is_ok());
        assert_eq!(Secret::random().expose().len(), 24);
        assert_eq!(format!("{:?}", Secret::new("hunter22".into())), "Secret(***)");
    }
}
