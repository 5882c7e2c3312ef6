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
use std::sync::atomic::{AtomicU64, Ordering};

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, PasswordHash, Version};
use rand::RngExt as _;
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
        // The operating system's generator, as for salts and tokens; it panics only where the
        // OS cannot provide randomness at all.
        let mut rng = rand::rand_core::UnwrapErr(rand::rngs::SysRng);
        let text: String = (0..24)
            .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
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

/// The password work this process has done so far: how many hashes and verifications ran
/// (against a stored hash or the dummy) and what they cost. A failed login's cost is what
/// tells "no such user" from "wrong password" to an attacker who times it; counting the work
/// shows the two equal exactly, where timing processes on a busy machine cannot.
///
/// Costs are argon2's memory × passes (KiB, summed over operations) and bcrypt's rounds
/// (2^cost, summed). Process-wide, monotonic; subtract two readings to get the work between.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PasswordWork {
    /// Hashes computed ([`hash_blocking`]).
    pub hashes: u64,
    /// Verifications run ([`verify_blocking`], [`dummy_verify_blocking`]), real or dummy.
    pub verifications: u64,
    /// argon2 memory cost × time cost of every operation, in KiB.
    pub argon2_kib_passes: u64,
    /// bcrypt rounds (2^cost) of every operation.
    pub bcrypt_rounds: u64,
}

impl std::ops::Sub for PasswordWork {
    type Output = PasswordWork;
    fn sub(self, earlier: PasswordWork) -> PasswordWork {
        PasswordWork {
            hashes: self.hashes - earlier.hashes,
            verifications: self.verifications - earlier.verifications,
            argon2_kib_passes: self.argon2_kib_passes - earlier.argon2_kib_passes,
            bcrypt_rounds: self.bcrypt_rounds - earlier.bcrypt_rounds,
        }
    }
}

static HASHES: AtomicU64 = AtomicU64::new(0);
static VERIFICATIONS: AtomicU64 = AtomicU64::new(0);
static ARGON2_KIB_PASSES: AtomicU64 = AtomicU64::new(0);
static BCRYPT_ROUNDS: AtomicU64 = AtomicU64::new(0);

/// The password work done by this process so far; see [`PasswordWork`].
pub fn password_work() -> PasswordWork {
    PasswordWork {
        hashes: HASHES.load(Ordering::Relaxed),
        verifications: VERIFICATIONS.load(Ordering::Relaxed),
        argon2_kib_passes: ARGON2_KIB_PASSES.load(Ordering::Relaxed),
        bcrypt_rounds: BCRYPT_ROUNDS.load(Ordering::Relaxed),
    }
}

/// Counts one argon2 operation of `m` KiB × `t` passes, and says so at trace level (target
/// `accountctl::password`: `RUST_LOG=accountctl::password=trace` shows a process's password
/// work; no input or hash is logged).
fn count_argon2(kind: &'static str, m: u32, t: u32) {
    ARGON2_KIB_PASSES.fetch_add(u64::from(m) * u64::from(t), Ordering::Relaxed);
    tracing::trace!(target: "accountctl::password", kind, algorithm = "argon2", m, t, "password work");
}

/// Hashes `password` into a PHC string with a fresh 16-byte salt from the operating system's
/// generator. CPU-bound: tens of milliseconds.
pub fn hash_blocking(password: &Secret) -> Result<String> {
    HASHES.fetch_add(1, Ordering::Relaxed);
    count_argon2("hash", Params::DEFAULT.m_cost(), Params::DEFAULT.t_cost());
    hasher()
        .hash_password(password.expose().as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Error::Internal(format!("hashing failed: {e}")))
}

/// Verifies `password` against a stored hash in constant time: a PHC string (argon2id,
/// argon2i or argon2d) or a bcrypt hash (`$2a$`, `$2b$`, `$2y$`, as imported from other
/// systems), within the cost bounds of [`check_hash`]. A malformed, unsupported or too
/// costly hash verifies as `false` after the same work as a wrong password, so a hostile
/// stored hash can neither exhaust memory or CPU nor be told apart by timing.
///
/// A failed verification against a hash cheaper than the policy ([`costs_less_than_policy`]:
/// a bcrypt hash imported from another system, a weaker argon2) is followed by a dummy
/// verification at the policy's parameters, so a wrong password costs at least what an
/// unknown user costs and a cheap imported hash does not tell which users exist (a bcrypt
/// cost-4 miss alone answers in a millisecond, the dummy in tens). A successful one is not
/// padded: the sign-in then rehashes the password at the policy's parameters anyway.
pub fn verify_blocking(phc: &str, password: &Secret) -> bool {
    if let Err(e) = check_hash(phc) {
        tracing::error!(error = %e, "stored password hash refused");
        let _ = verify_unchecked(DUMMY_PHC, password);
        return false;
    }
    let verified = verify_unchecked(phc, password);
    if !verified && costs_less_than_policy(phc) {
        let _ = verify_unchecked(DUMMY_PHC, password);
    }
    verified
}

/// Whether verifying against `phc` costs less than one verification at the policy's
/// parameters (argon2id m=19456 KiB, t=2, p=1; see the module docs), so that a failed
/// verification must be padded with a dummy one ([`verify_blocking`]).
///
/// Every bcrypt hash counts as cheaper: its CPU-only work (2^cost rounds) has no common
/// measure with argon2's memory-hard passes, and padding a bcrypt miss costs one dummy
/// verification more, never less than the policy. An argon2 hash counts as cheaper when its
/// memory or its total work (memory × passes) is below the policy's. A hash that is not
/// one of these (malformed, another algorithm) counts as cheaper too: it verifies nothing.
pub fn costs_less_than_policy(phc: &str) -> bool {
    if is_bcrypt(phc) {
        return true;
    }
    let Ok(parsed) = PasswordHash::new(phc) else {
        return true;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return true;
    };
    let policy = Params::DEFAULT;
    let work = |p: &Params| u64::from(p.m_cost()) * u64::from(p.t_cost());
    params.m_cost() < policy.m_cost() || work(&params) < work(&policy)
}

fn verify_unchecked(phc: &str, password: &Secret) -> bool {
    VERIFICATIONS.fetch_add(1, Ordering::Relaxed);
    if is_bcrypt(phc) {
        if let Ok(parts) = bcrypt::HashParts::from_str(phc) {
            let cost = parts.get_cost();
            BCRYPT_ROUNDS.fetch_add(1u64 << cost.min(63), Ordering::Relaxed);
            tracing::trace!(target: "accountctl::password", kind = "verify", algorithm = "bcrypt", cost, "password work");
        }
        return bcrypt::verify(password.expose(), phc).unwrap_or(false);
    }
    match PasswordHash::new(phc) {
        Ok(parsed) => {
            if let Ok(params) = Params::try_from(&parsed) {
                count_argon2("verify", params.m_cost(), params.t_cost());
            }
            Argon2::default()
                .verify_password(password.expose().as_bytes(), &parsed)
                .is_ok()
        }
        Err(_) => false,
    }
}

fn is_bcrypt(hash: &str) -> bool {
    ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p))
}

/// Largest argon2 memory cost accepted, in KiB: 64 MiB, RFC 9106 §4's second recommended
/// option (the first, 2 GiB, is for dedicated servers, not a login path any client can call).
pub const MAX_ARGON2_MEMORY_KIB: u32 = 65_536;
/// Largest argon2 time cost (passes) accepted.
pub const MAX_ARGON2_TIME_COST: u32 = 10;
/// Largest argon2 parallelism accepted (RFC 9106 §4 recommends 4 lanes).
pub const MAX_ARGON2_LANES: u32 = 8;
/// Largest argon2 total work accepted, memory × passes in KiB: RFC 9106's second option
/// (64 MiB × 3 passes). Bounds the worst case of one login at a few hundred milliseconds.
pub const MAX_ARGON2_WORK_KIB: u64 = 65_536 * 3;
/// Largest bcrypt cost accepted: 2^14 rounds, about a second; costs 10–12 are usual.
pub const MAX_BCRYPT_COST: u32 = 14;

/// The lowest bcrypt cost the algorithm defines (its verifier refuses lower ones).
pub const MIN_BCRYPT_COST: u32 = 4;

/// Checks that a stored or imported hash is one the login path can verify at a bounded
/// cost: an argon2 PHC string (`$argon2id$…`, `$argon2i$…`, `$argon2d$…`) with a salt, a hash
/// of 16–64 bytes and parameters within [`MAX_ARGON2_MEMORY_KIB`], [`MAX_ARGON2_TIME_COST`],
/// [`MAX_ARGON2_LANES`] and [`MAX_ARGON2_WORK_KIB`]; or bcrypt (`$2b$…`) with a cost of at
/// most [`MAX_BCRYPT_COST`]. Errors: [`Error::Invalid`] naming the form or bound broken.
pub fn check_hash(hash: &str) -> Result<()> {
    if is_bcrypt(hash) {
        let parts =
            bcrypt::HashParts::from_str(hash).map_err(|e| Error::Invalid(format!("malformed bcrypt hash: {e}")))?;
        // bcrypt's cost is 4..=31: a lower one parses but never verifies.
        if parts.get_cost() < MIN_BCRYPT_COST {
            return Err(Error::Invalid(format!(
                "bcrypt cost {} is below bcrypt's minimum of {MIN_BCRYPT_COST}: no password would verify against it",
                parts.get_cost()
            )));
        }
        if parts.get_cost() > MAX_BCRYPT_COST {
            return Err(Error::Invalid(format!(
                "bcrypt cost {} is above the accepted maximum of {MAX_BCRYPT_COST}",
                parts.get_cost()
            )));
        }
        return Ok(());
    }
    let parsed = PasswordHash::new(hash).map_err(|e| {
        Error::Invalid(format!(
            "password_hash is not a PHC string (argon2id, argon2i) or bcrypt ($2b$): {e}"
        ))
    })?;
    match parsed.algorithm.as_str() {
        "argon2id" | "argon2i" | "argon2d" => {}
        other => {
            return Err(Error::Invalid(format!(
                "unsupported password_hash algorithm {} (argon2id, argon2i, bcrypt)",
                crate::domain::shown(other)
            )));
        }
    }
    if parsed.salt.is_none() {
        return Err(Error::Invalid("the argon2 password_hash has no salt".into()));
    }
    match &parsed.hash {
        Some(out) if (16..=64).contains(&out.len()) => {}
        Some(out) => {
            return Err(Error::Invalid(format!(
                "the argon2 password_hash output is {} bytes: 16 to 64 are accepted",
                out.len()
            )));
        }
        None => return Err(Error::Invalid("the argon2 password_hash has no hash value".into())),
    }
    let bound = |name: &str| {
        parsed
            .params
            .get_decimal(name)
            .ok_or_else(|| Error::Invalid(format!("the argon2 password_hash has no {name}= parameter")))
    };
    let (m, t, p) = (bound("m")?, bound("t")?, bound("p")?);
    if m > MAX_ARGON2_MEMORY_KIB {
        return Err(Error::Invalid(format!(
            "argon2 memory cost m={m} KiB is above the accepted maximum of {MAX_ARGON2_MEMORY_KIB}"
        )));
    }
    if t > MAX_ARGON2_TIME_COST {
        return Err(Error::Invalid(format!(
            "argon2 time cost t={t} is above the accepted maximum of {MAX_ARGON2_TIME_COST}"
        )));
    }
    if p > MAX_ARGON2_LANES {
        return Err(Error::Invalid(format!(
            "argon2 parallelism p={p} is above the accepted maximum of {MAX_ARGON2_LANES}"
        )));
    }
    if u64::from(m) * u64::from(t) > MAX_ARGON2_WORK_KIB {
        return Err(Error::Invalid(format!(
            "argon2 work m×t = {} KiB is above the accepted maximum of {MAX_ARGON2_WORK_KIB}",
            u64::from(m) * u64::from(t)
        )));
    }
    Params::try_from(&parsed).map_err(|e| Error::Invalid(format!("invalid argon2 parameters: {e}")))?;
    Ok(())
}

/// Checks that an imported hash is one the login path can verify; see [`check_hash`]
/// (stored as is; the first login upgrades it to the current argon2id).
pub fn validate_imported_hash(hash: &str) -> Result<()> {
    check_hash(hash)
}

/// A hash with the current parameters (m=19456, t=2, p=1) that no password matches: what an
/// unknown or password-less user is verified against. A constant, so the first miss in a
/// process costs one verification like every other attempt, not a hash *and* a verification
/// (a lazily built dummy made "no such user" measurably slower from the CLI).
const DUMMY_PHC: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$YWNjb3VudGN0bGR1bW15$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// Burns the same time as a real verification against nothing, so "no such user" and
/// "wrong password" cannot be told apart by timing (no user-enumeration oracle).
pub fn dummy_verify_blocking(password: &Secret) {
    let _ = verify_unchecked(DUMMY_PHC, password);
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
    fn hashes_stored_by_earlier_builds_still_verify() {
        // Stored by `accountctl bootstrap` built with argon2 0.5 / password-hash 0.5.
        let old = "$argon2id$v=19$m=19456,t=2,p=1$xtRAZJdNIaNQ0QS89t/xXw$QwHWoYSceIRJimR7RDgaCCkgvPmtqYwOEZWlsqgschw";
        assert!(check_hash(old).is_ok());
        assert!(verify_blocking(old, &Secret::new("old release password".into())));
        assert!(!verify_blocking(old, &Secret::new("old release passwore".into())));
        assert!(!needs_rehash(old));
        // The argon2 crate's own argon2id vector (RFC 9106 parameters, "somesalt").
        let kat = "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc";
        assert!(verify_blocking(kat, &Secret::new("password".into())));
    }

    #[test]
    fn weaker_or_other_hashes_need_rehash() {
        let weak = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(4096, 1, 1, None).expect("params"),
        );
        let phc = weak.hash_password(b"password123").expect("hash").to_string();
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
        assert!(validate_imported_hash(&bcrypt::hash("x", 4).expect("bcrypt").replacen("$04$", "$31$", 1)).is_err());
    }

    #[test]
    fn a_miss_against_a_cheap_hash_is_padded_to_the_policy_cost() {
        let bcrypt4 = bcrypt::hash("legacy password", 4).expect("bcrypt");
        assert!(costs_less_than_policy(&bcrypt4));
        let weak = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(4096, 1, 1, None).expect("params"),
        )
        .hash_password(b"password123")
        .expect("hash")
        .to_string();
        assert!(costs_less_than_policy(&weak));
        assert!(!costs_less_than_policy(DUMMY_PHC));
        let policy = hash_blocking(&Secret::new("current password".into())).expect("hash");
        assert!(!costs_less_than_policy(&policy));
        let kat = "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc";
        assert!(!costs_less_than_policy(kat), "costlier than the policy");

        let policy_kib_passes = u64::from(Params::DEFAULT.m_cost()) * u64::from(Params::DEFAULT.t_cost());
        for (phc, padded) in [
            (bcrypt4.as_str(), true),
            (weak.as_str(), true),
            (policy.as_str(), false),
        ] {
            let before = password_work();
            assert!(!verify_blocking(phc, &Secret::new("wrong".into())));
            let work = password_work() - before;
            // Other tests in this process count too: at least what this miss costs.
            assert!(work.verifications >= if padded { 2 } else { 1 }, "{phc}: {work:?}");
            if padded {
                assert!(work.argon2_kib_passes >= policy_kib_passes, "{phc}: {work:?}");
            }
        }
    }

    #[test]
    fn the_dummy_hash_has_the_current_parameters() {
        assert!(check_hash(DUMMY_PHC).is_ok());
        assert!(!needs_rehash(DUMMY_PHC));
        assert!(!verify_blocking(DUMMY_PHC, &Secret::new(String::new())));
    }

    #[test]
    fn costly_or_truncated_argon2_hashes_are_refused() {
        let salt = "c29tZXNhbHRzb21lc2FsdA";
        let out = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        for bad in [
            format!("$argon2id$v=19$m=1048576,t=2,p=1${salt}${out}"),
            format!("$argon2id$v=19$m=4294967295,t=2,p=1${salt}${out}"),
            format!("$argon2id$v=19$m=19456,t=100000,p=1${salt}${out}"),
            format!("$argon2id$v=19$m=65536,t=10,p=1${salt}${out}"),
            format!("$argon2id$v=19$m=19456,t=2,p=255${salt}${out}"),
            "$argon2id$v=19$m=19456,t=2,p=1".to_owned(),
            format!("$argon2id$v=19$m=19456,t=2,p=1${salt}"),
        ] {
            assert!(check_hash(&bad).is_err(), "{bad}");
            let started = std::time::Instant::now();
            assert!(!verify_blocking(&bad, &Secret::new("x".into())));
            assert!(started.elapsed() < std::time::Duration::from_secs(5), "{bad}");
        }
        assert!(check_hash(&format!("$argon2id$v=19$m=19456,t=2,p=1${salt}${out}")).is_ok());
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
