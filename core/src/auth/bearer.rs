//! Registry tokens: what the realm signs, and what a bearer token is worth when it comes back.
//!
//! A token is worth its grants only while what it was obtained with still stands — checked on
//! every request, against the directory in force (which every core refreshes from the metadata
//! store): its user exists (a directory user: this core still has the directory, and no local
//! user has taken the name); an API token it came from is neither revoked nor expired; a
//! password it came from has not changed. It is never a login: the realm does not take it, and
//! the admin API and the UI refuse it.

use super::token::{self, Claims, ExternalClaim, TokenKind};
use super::{Auth, Grant, Identity};

impl Auth {
    /// Signs a registry token for `who` holding `access`.
    pub fn issue(&self, who: &Identity, access: Vec<Grant>) -> String {
        let dir = self.dir();
        let (sub, tid, pwd, ext) = match who {
            Identity::Anonymous => (String::new(), None, None, None),
            Identity::User(u) => {
                let stamp = dir.users.get(u).map(|x| x.stamp.clone());
                (u.clone(), None, stamp, None)
            }
            Identity::Token { user, id } => (user.clone(), Some(id.clone()), None, None),
            Identity::External {
                user,
                source,
                roles,
            } => {
                let ext = ExternalClaim {
                    source: *source,
                    roles: roles.clone(),
                };
                (user.clone(), None, None, Some(ext))
            }
        };
        self.keys().sign(&Claims {
            typ: TokenKind::Registry,
            sub,
            tid,
            pwd,
            ext,
            exp: token::now() + self.token_ttl.as_secs(),
            access,
        })
    }

    /// The identity and grants of a registry token that is valid now, or `None`: a bad
    /// signature, expired, another kind, or obtained with something that no longer stands.
    pub fn bearer(&self, token: &str) -> Option<(Identity, Claims)> {
        let claims = self.keys().verify(token)?;
        if claims.typ != TokenKind::Registry {
            return None;
        }
        if claims.sub.is_empty() {
            return Some((Identity::Anonymous, claims));
        }
        let dir = self.dir();
        if let Some(ext) = &claims.ext {
            // The directory since removed from the config, or a local user of that name since
            // (the name is theirs now): nothing.
            if !self.source_configured(ext.source) || dir.users.contains_key(&claims.sub) {
                return None;
            }
            let identity = Identity::External {
                user: claims.sub.clone(),
                source: ext.source,
                roles: ext.roles.clone(),
            };
            return Some((identity, claims));
        }
        let user = dir.users.get(&claims.sub)?;
        let identity = match (&claims.tid, &claims.pwd) {
            (Some(id), _) => {
                dir.live_token(id, &claims.sub, token::now() as i64)?;
                Identity::Token {
                    user: claims.sub.clone(),
                    id: id.clone(),
                }
            }
            (None, Some(stamp)) if *stamp == user.stamp => Identity::User(claims.sub.clone()),
            _ => return None,
        };
        Some((identity, claims))
    }
}
