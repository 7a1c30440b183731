//! Password hashes: argon2id only, in the PHC string format (`$argon2id$v=19$...`).

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

/// Hashes a password for the config file (`berth-core hash-password`).
pub fn hash(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Checks that a configured hash is one we can verify.
pub fn validate(hash: &str) -> Result<(), String> {
    let parsed = PasswordHash::new(hash).map_err(|e| format!("not a PHC password hash: {e}"))?;
    if parsed.algorithm.as_str() != "argon2id"
        && parsed.algorithm.as_str() != "argon2i"
        && parsed.algorithm.as_str() != "argon2d"
    {
        return Err(format!(
            "{} hashes are not supported; use berth-core hash-password",
            parsed.algorithm
        ));
    }
    Ok(())
}

/// Verifies `password` against `hash` (argon2's comparison is constant-time).
pub fn verify(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_are_salted() {
        let a = hash("s3cret").unwrap();
        let b = hash("s3cret").unwrap();
        assert_ne!(a, b, "salted");
        assert!(a.starts_with("$argon2id$"));
        assert!(verify("s3cret", &a));
        assert!(!verify("s3cre", &a));
        assert!(validate(&a).is_ok());
        assert!(validate("$2y$10$abcdefghijklmnopqrstuv").is_err());
        assert!(!verify("x", "garbage"));
    }
}
