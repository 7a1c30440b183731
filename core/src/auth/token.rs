//! Bearer tokens: short-lived, HMAC-SHA256-signed grants of repository actions.
//!
//! Format: `base64url(claims JSON) "." base64url(HMAC-SHA256(key, first part))`. Clients treat
//! tokens as opaque; the core verifies the signature and expiry on every request, so editing
//! the claims (to widen a scope) invalidates the token. The key is generated once and kept in
//! the storage root (`auth/token.key`, mode 0600), so several cores sharing storage accept each
//! other's tokens.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// What a token grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user, or `""` for anonymous.
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Granted `(repository/image, actions)` pairs; actions are `pull`, `push`, `delete`.
    pub access: Vec<Grant>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub name: String,
    pub actions: Vec<String>,
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The signing key.
pub struct Signer {
    key: Vec<u8>,
}

impl Signer {
    /// Loads the key from `dir/token.key`, generating it on first use.
    pub fn load_or_create(dir: &Path) -> std::io::Result<Signer> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = dir.join("token.key");
        if let Ok(key) = std::fs::read(&path) {
            if key.len() >= 32 {
                return Ok(Signer { key });
            }
        }
        std::fs::create_dir_all(dir)?;
        let key: [u8; 32] = rand::random();
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&key)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        Ok(Signer { key: key.to_vec() })
    }

    #[cfg(test)]
    pub fn from_key(key: &[u8]) -> Signer {
        Signer { key: key.to_vec() }
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length; this cannot fail.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"))
    }

    pub fn sign(&self, claims: &Claims) -> String {
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{body}.{sig}")
    }

    /// The claims of a valid, unexpired token.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let (body, sig) = token.split_once('.')?;
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        mac.verify_slice(&sig).ok()?;
        let claims: Claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()?;
        (claims.exp > now()).then_some(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: "alice".into(),
            exp,
            access: vec![Grant {
                name: "hosted/app".into(),
                actions: vec!["pull".into()],
            }],
        }
    }

    #[test]
    fn round_trip_tamper_and_expiry() {
        let s = Signer::from_key(b"0123456789abcdef0123456789abcdef");
        let t = s.sign(&claims(now() + 60));
        assert_eq!(
            s.verify(&t),
            Some(claims(now() + 60)).filter(|c| c.exp == s.verify(&t).map(|v| v.exp).unwrap_or(0))
        );
        // Widening the grant by editing the claims breaks the signature.
        let (_, sig) = t.split_once('.').unwrap();
        let mut wide = claims(now() + 60);
        wide.access[0].actions.push("push".into());
        let forged = format!(
            "{}.{sig}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&wide).unwrap())
        );
        assert_eq!(s.verify(&forged), None);
        assert_eq!(s.verify(&s.sign(&claims(now() - 1))), None, "expired");
        assert_eq!(
            Signer::from_key(b"another key, 32 bytes long......").verify(&t),
            None
        );
        assert_eq!(s.verify("garbage"), None);
    }
}
