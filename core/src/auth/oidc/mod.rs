//! OpenID Connect: people signing in to the web UI at a provider (`web.rs`), and CI jobs
//! logging in with the ID token their platform gives them (GitHub Actions, GitLab CI,
//! Kubernetes service accounts), so no long-lived secret sits in CI.
//!
//! # Workload identity
//! A token given as a `docker login` password is checked by openidconnect against its
//! issuer's published keys: signature (asymmetric algorithms only), issuer, audience, expiry.
//! Then the `auth.oidc.workload` rules for that issuer and audience are matched against its
//! claims (each a glob over the claim's value, or over any element of a list); the roles of
//! every rule that matches are the job's. A rule must constrain at least one claim: a
//! platform's issuer and audience alone say nothing about *which* job (any repository on
//! GitHub can ask for a token with any audience). The job's name is the token's `sub`; the
//! user name it logs in with is not used.
//!
//! Claims are read from the token's payload only after the library has verified it.

pub mod issuer;
pub mod web;

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use openidconnect::core::{CoreIdToken, CoreIdTokenVerifier, CoreJwsSigningAlgorithm};
use openidconnect::{ClaimsVerificationError, ClientId, Nonce, SignatureVerificationError};
use serde_json::{Map, Value};

use super::settings::{OidcConfig, WorkloadRule};
use issuer::{Issuer, Unreachable};

/// Why a token was not taken.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The issuer could not be asked (not a bad token).
    #[error("the identity provider is unavailable: {0}")]
    Unavailable(String),
    /// The token or the answer is not good; the reason is logged, never the token.
    #[error("{0}")]
    Refused(String),
}

impl From<Unreachable> for OidcError {
    fn from(e: Unreachable) -> Self {
        OidcError::Unavailable(e.0)
    }
}

/// A verified workload: its name (`sub`) and the roles its rules grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    pub name: String,
    pub roles: Vec<String>,
}

/// The signature algorithms taken: asymmetric ones (an HMAC would need a shared secret).
const ALGS: [CoreJwsSigningAlgorithm; 8] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
];

/// The OIDC side of a core.
pub struct Oidc {
    pub web: Option<web::WebLogin>,
    workload: Vec<WorkloadRule>,
    /// Issuers of workload tokens, by their exact URL.
    issuers: HashMap<String, Arc<Issuer>>,
}

impl Oidc {
    pub fn new(config: OidcConfig) -> Result<Oidc, String> {
        let urls = config
            .workload
            .iter()
            .map(|r| r.issuer.clone())
            .chain(config.people.iter().map(|p| p.issuer.clone()));
        let issuers = issuer::issuers(urls, config.ca_file.as_ref(), config.timeout)?;
        let web = config.people.map(|p| {
            let issuer = issuers[&p.issuer].clone();
            web::WebLogin::new(p, issuer)
        });
        Ok(Oidc {
            web,
            workload: config.workload,
            issuers,
        })
    }

    /// Whether workload tokens are taken at all.
    pub fn takes_workloads(&self) -> bool {
        !self.workload.is_empty()
    }

    /// Checks a CI job's token; the workload it proves, with its roles.
    pub async fn workload(&self, jwt: &str) -> Result<Workload, OidcError> {
        let unverified = payload(jwt).ok_or_else(|| refused("not a JWT"))?;
        let iss = unverified.get("iss").and_then(Value::as_str).unwrap_or("");
        let issuer = self
            .issuers
            .get(iss)
            .filter(|_| self.workload.iter().any(|r| r.issuer == iss))
            .ok_or_else(|| refused(format!("no workload rule for issuer {iss:?}")))?;
        let token: CoreIdToken = jwt
            .parse()
            .map_err(|e| refused(format!("not a JWT: {e}")))?;
        let rules: Vec<&WorkloadRule> = self.workload.iter().filter(|r| r.issuer == iss).collect();
        let mut roles = Vec::new();
        // The most telling reason: claims that match no rule, else what was wrong with the
        // token, else the audiences it was not for.
        let (mut verified, mut bad, mut audiences) = (false, None, Vec::new());
        for rule in rules {
            match verify(issuer, &token, &rule.audience).await {
                Ok(()) => verified = true,
                Err(Failed::Audience) => {
                    audiences.push(rule.audience.as_str());
                    continue;
                }
                Err(Failed::Token(r)) => {
                    bad.get_or_insert(r);
                    continue;
                }
                Err(Failed::Unreachable(e)) => return Err(e.into()),
            }
            // Verified for this audience: the payload is the token's own.
            if rule
                .claims
                .iter()
                .all(|(k, g)| claim_matches(&unverified, k, g))
            {
                roles.extend(rule.roles.iter().cloned());
            }
        }
        if roles.is_empty() {
            return Err(OidcError::Refused(match (verified, bad) {
                (true, _) => "its claims match no workload rule".into(),
                (false, Some(r)) => r,
                (false, None) => {
                    format!("not for an audience of a rule ({})", audiences.join(", "))
                }
            }));
        }
        roles.sort();
        roles.dedup();
        let name = unverified
            .get("sub")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Ok(Workload { name, roles })
    }
}

fn refused(why: impl Into<String>) -> OidcError {
    OidcError::Refused(why.into())
}

/// Why a token did not verify for one rule.
enum Failed {
    /// Not for this rule's audience (it may be for another's).
    Audience,
    /// Bad in itself: signature, expiry, issuer, algorithm.
    Token(String),
    Unreachable(Unreachable),
}

impl From<Unreachable> for Failed {
    fn from(e: Unreachable) -> Self {
        Failed::Unreachable(e)
    }
}

/// Verifies `token` as one of `issuer` for `audience` (no nonce: nobody asked for it); on a key
/// the issuer's set does not hold, its keys are fetched again once and the check repeated.
async fn verify(issuer: &Issuer, token: &CoreIdToken, audience: &str) -> Result<(), Failed> {
    let mut refetched = false;
    loop {
        let keys = issuer.keys().await?;
        let verifier = CoreIdTokenVerifier::new_public_client(
            ClientId::new(audience.to_owned()),
            issuer.url.clone(),
            keys,
        )
        .set_allowed_algs(ALGS)
        // A token for several audiences is taken when ours is one of them.
        .set_other_audience_verifier_fn(|_| true);
        match token.claims(&verifier, |_: Option<&Nonce>| Ok(())) {
            Ok(_) => return Ok(()),
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) if !refetched => {
                refetched = true;
                if !issuer.refetch_keys().await? {
                    return Err(Failed::Token(
                        "signed with a key the issuer does not publish".into(),
                    ));
                }
            }
            Err(ClaimsVerificationError::InvalidAudience(_)) => return Err(Failed::Audience),
            Err(e) => return Err(Failed::Token(e.to_string())),
        }
    }
}

/// The claims of a JWT, unverified (read after verification, or to pick the issuer).
pub fn payload(jwt: &str) -> Option<Map<String, Value>> {
    let mut parts = jwt.split('.');
    let (_, body, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(body.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Whether a password looks like a JWT (three base64url parts, a JSON header).
pub fn looks_like_jwt(s: &str) -> bool {
    s.starts_with("eyJ") && s.bytes().filter(|&b| b == b'.').count() == 2
}

/// Whether claim `key` (a string, a number, a boolean, or a list of those) matches `glob`.
fn claim_matches(claims: &Map<String, Value>, key: &str, glob: &str) -> bool {
    let one = |v: &Value| match v {
        Value::String(s) => super::glob(glob, s),
        Value::Number(n) => super::glob(glob, &n.to_string()),
        Value::Bool(b) => super::glob(glob, &b.to_string()),
        _ => false,
    };
    match claims.get(key) {
        Some(Value::Array(items)) => items.iter().any(one),
        Some(v) => one(v),
        None => false,
    }
}

/// The values of a claim as strings (a list, or one string), e.g. a user's groups.
pub fn claim_strings(claims: &Map<String, Value>, key: &str) -> Vec<String> {
    match claims.get(key) {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_match_as_globs_over_values_and_lists() {
        let c: Map<String, Value> = serde_json::from_str(
            r#"{"repository":"org/app","groups":["a","org-devs"],"run":7,"x":{"y":1}}"#,
        )
        .unwrap();
        assert!(claim_matches(&c, "repository", "org/*"));
        assert!(!claim_matches(&c, "repository", "other/*"));
        assert!(claim_matches(&c, "groups", "org-*"));
        assert!(claim_matches(&c, "run", "7"));
        assert!(!claim_matches(&c, "x", "*"), "objects never match");
        assert!(
            !claim_matches(&c, "missing", "*"),
            "a missing claim never matches"
        );
        assert_eq!(claim_strings(&c, "groups"), ["a", "org-devs"]);
        assert_eq!(claim_strings(&c, "repository"), ["org/app"]);
    }

    #[test]
    fn jwts_are_told_from_passwords() {
        assert!(looks_like_jwt("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"));
        assert!(!looks_like_jwt("hunter2"));
        assert!(!looks_like_jwt("eyJ.only-one-dot"));
        let p = payload("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln").unwrap();
        assert_eq!(p["sub"], "x");
        assert!(payload("a.b").is_none());
    }
}
