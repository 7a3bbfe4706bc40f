//! Secret values: held in memory only, redacted in every `Debug`/`Display`.
//!
//! A saved plan records a salted, deliberately slow fingerprint (argon2id) of each secret so
//! that apply can prove it is about to write the value that was planned, without the plan
//! file holding anything a reader could brute-force cheaply. State holds no trace at all.

use std::fmt;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The raw value, for the AWS or database call that needs it. Never print it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(sensitive)")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(sensitive)")
    }
}

fn hasher() -> Argon2<'static> {
    // 19 MiB, 2 passes: OWASP's minimum for argon2id; slow enough to make guessing costly.
    let params = Params::new(19 * 1024, 2, 1, None).expect("static argon2 params");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// A salted argon2id fingerprint in PHC string form.
pub fn fingerprint(secret: &SecretString) -> String {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    hasher()
        .hash_password(secret.expose().as_bytes(), &salt)
        .expect("argon2 hashing of an in-memory value")
        .to_string()
}

/// Whether `secret` is the value a fingerprint was taken of.
pub fn matches(secret: &SecretString, fingerprint: &str) -> bool {
    match PasswordHash::new(fingerprint) {
        Ok(hash) => hasher()
            .verify_password(secret.expose().as_bytes(), &hash)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_matches_only_its_value_and_is_salted() {
        let s = SecretString::new("hunter2");
        let a = fingerprint(&s);
        let b = fingerprint(&s);
        assert_ne!(a, b, "salt must differ per fingerprint");
        assert!(matches(&s, &a));
        assert!(!matches(&SecretString::new("hunter3"), &a));
        assert!(!a.contains("hunter2"));
        assert_eq!(format!("{s:?} {s}"), "(sensitive) (sensitive)");
    }
}
