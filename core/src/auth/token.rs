//! Bearer tokens: short-lived, HMAC-SHA256-signed grants of repository actions.
//!
//! Format: `base64url(claims JSON) "." base64url(HMAC-SHA256(key, first part))`. Clients treat
//! tokens as opaque; the core verifies the signature and expiry on every request, so editing
//! the claims (to widen a scope) invalidates the token. Which key signs is decided by
//! `auth::keys`: one key for every core on a metadata store.
//!
//! A token says what it is (`typ`), and the key that signs registry tokens is derived from the
//! stored one for that purpose alone, so nothing else this core might sign one day can pass
//! for a registry token. Web UI sessions are not signed tokens at all (see `auth::session`).

use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// What kind of credential a signed token is. Only one kind is signed today; the claim is
/// required, so a token without it (or of another kind) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// A bearer token from the realm, for the registry API only.
    Registry,
}

/// What a token grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub typ: TokenKind,
    /// The user, or `""` for anonymous.
    pub sub: String,
    /// The API token it was obtained with: it stops working when that one is revoked or
    /// expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<String>,
    /// Obtained with a password: a fingerprint of the user's password hash then, so a changed
    /// password ends the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pwd: Option<String>,
    /// Obtained by a user defined outside Berth: where, and the roles it had then (there is
    /// no local record to check them against later; they last as long as the token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext: Option<ExternalClaim>,
    /// Expiry, seconds since the epoch.
    pub exp: u64,
    /// Granted `(repository/image, actions)` pairs; actions are `pull`, `push`, `delete`.
    pub access: Vec<Grant>,
}

/// A directory user's part of a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalClaim {
    pub source: super::UserSource,
    pub roles: Vec<String>,
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

/// A signing key: what signs and checks registry tokens, and the fingerprint that names it.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
    kid: String,
}

/// What the stored key is turned into before it signs registry tokens.
const REGISTRY_PURPOSE: &[u8] = b"berth registry token v1";
/// What the stored key is turned into for its fingerprint.
const KID_PURPOSE: &[u8] = b"berth key id v1";

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

impl Signer {
    /// The signer of registry tokens for a stored key: HMAC(stored key, purpose), so the key
    /// itself signs nothing.
    pub fn for_registry(stored: &[u8]) -> Signer {
        Signer {
            key: hmac(stored, REGISTRY_PURPOSE),
            kid: Signer::kid_of(stored),
        }
    }

    /// The fingerprint of a stored key: 16 hex digits of a one-way function of it, safe to
    /// show and to keep in the metadata store.
    pub fn kid_of(stored: &[u8]) -> String {
        hex::encode(&hmac(stored, KID_PURPOSE)[..8])
    }

    /// The fingerprint naming this key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    #[cfg(test)]
    pub fn from_key(key: &[u8]) -> Signer {
        Signer {
            key: key.to_vec(),
            kid: String::new(),
        }
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
            typ: TokenKind::Registry,
            sub: "alice".into(),
            tid: None,
            pwd: None,
            ext: None,
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
        // A token without its kind is not a registry token.
        let mut untyped = serde_json::to_value(claims(now() + 60)).unwrap();
        untyped.as_object_mut().unwrap().remove("typ");
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&untyped).unwrap());
        let mut mac = s.mac();
        mac.update(body.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        assert_eq!(s.verify(&format!("{body}.{sig}")), None);
    }
}
