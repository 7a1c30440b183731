//! One ACME order, start to finish: the stored account (or a new one, stored at once), the
//! order for every configured domain, each authorization answered by the configured
//! challenge, then the CSR (a fresh key per certificate) and the issued chain.

use std::sync::Arc;
use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, ExternalAccountKey,
    Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use sha2::{Digest, Sha256};

use super::{AcmeTask, StoreError};
use crate::config::Challenge;

/// Why an order failed. `Acme` carries the CA's problem document as instant-acme renders it.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("ACME: {0}")]
    Acme(#[from] instant_acme::Error),
    #[error("the order ended {0}")]
    Status(String),
    #[error("authorization for {domain} is {status}: {problem}")]
    Authorization {
        domain: String,
        status: String,
        problem: String,
    },
    #[error("the CA offers no {0} challenge")]
    NoChallenge(&'static str),
    #[error("state: {0}")]
    Store(#[from] StoreError),
    #[error("the challenge certificate: {0}")]
    ChallengeCert(String),
    #[error("installing the certificate: {0}")]
    Install(String),
}

/// A new certificate chain and its key, PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// How long the CA gets to validate and to issue.
const POLL: RetryPolicy = RetryPolicy::new()
    .initial_delay(Duration::from_millis(250))
    .backoff(1.5)
    .timeout(Duration::from_secs(90));

async fn account(task: &AcmeTask) -> Result<Account, OrderError> {
    let dir = &task.settings.directory;
    let builder = || Account::builder_with_http(Box::new(task.http.clone()));
    if let Some(json) = task.store.account(dir)? {
        let credentials: AccountCredentials =
            serde_json::from_str(&json).map_err(|e| StoreError::Corrupt {
                path: format!("ACME account for {dir}"),
                reason: e.to_string(),
            })?;
        return Ok(builder().from_credentials(credentials).await?);
    }
    let contact: Vec<&str> = task.settings.contact.iter().map(String::as_str).collect();
    let new = NewAccount {
        contact: &contact,
        terms_of_service_agreed: true,
        only_return_existing: false,
    };
    let eab = task
        .settings
        .eab
        .as_ref()
        .map(|e| ExternalAccountKey::new(e.kid.clone(), &e.hmac_key));
    let (account, credentials) = builder().create(&new, dir.clone(), eab.as_ref()).await?;
    let json = serde_json::to_string(&credentials).map_err(instant_acme::Error::from)?;
    task.store.save_account(dir, &json)?;
    tracing::info!(listener = %task.listener, directory = %dir, account = %account.id(),
        "ACME account registered");
    Ok(account)
}

/// What to undo once the order is over: challenge answers put in place.
#[derive(Default)]
struct Answers {
    tokens: Vec<String>,
    alpn_domains: Vec<String>,
}

impl Answers {
    fn clear(&self, task: &AcmeTask) {
        for t in &self.tokens {
            task.tokens.remove(t);
        }
        for d in &self.alpn_domains {
            task.resolver.set_alpn_challenge(d, None);
        }
    }
}

/// The TLS-ALPN-01 certificate as rustls wants it.
fn alpn_key(
    domain: &str,
    key_authorization: &str,
) -> Result<Arc<rustls::sign::CertifiedKey>, OrderError> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let digest = Sha256::digest(key_authorization.as_bytes());
    let (cert, key) = berth_certs::alpn_challenge(domain, &digest)
        .map_err(|e| OrderError::ChallengeCert(e.to_string()))?;
    let provider = rustls::crypto::ring::default_provider();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key));
    // Not `CertifiedKey::from_der`: that parses the certificate with webpki, which refuses the
    // critical acmeIdentifier extension it does not know.
    let signer = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| OrderError::ChallengeCert(e.to_string()))?;
    let ck = rustls::sign::CertifiedKey::new(vec![CertificateDer::from(cert)], signer);
    Ok(Arc::new(ck))
}

/// Answers every pending authorization of `order` and tells the CA it may validate.
async fn answer(
    task: &AcmeTask,
    order: &mut instant_acme::Order,
    answers: &mut Answers,
) -> Result<(), OrderError> {
    let (kind, name) = match task.settings.challenge {
        Challenge::TlsAlpn01 => (ChallengeType::TlsAlpn01, "tls-alpn-01"),
        Challenge::Http01 => (ChallengeType::Http01, "http-01"),
    };
    let mut authorizations = order.authorizations();
    while let Some(authz) = authorizations.next().await {
        let mut authz = authz?;
        match authz.status {
            AuthorizationStatus::Valid => continue,
            AuthorizationStatus::Pending => {}
            other => {
                return Err(OrderError::Authorization {
                    domain: authz.identifier().to_string(),
                    status: format!("{other:?}"),
                    problem: String::new(),
                })
            }
        }
        let mut challenge = authz
            .challenge(kind.clone())
            .ok_or(OrderError::NoChallenge(name))?;
        let domain = challenge.identifier().to_string();
        let key_authorization = challenge.key_authorization();
        match task.settings.challenge {
            Challenge::TlsAlpn01 => {
                let key = alpn_key(&domain, key_authorization.as_str())?;
                task.resolver.set_alpn_challenge(&domain, Some(key));
                answers.alpn_domains.push(domain);
            }
            Challenge::Http01 => {
                task.tokens
                    .insert(&challenge.token, key_authorization.as_str());
                answers.tokens.push(challenge.token.clone());
            }
        }
        challenge.set_ready().await?;
    }
    Ok(())
}

/// The CA's problem documents for failed challenges, for the log.
async fn problems(order: &mut instant_acme::Order) -> String {
    let mut out = String::new();
    let mut authorizations = order.authorizations();
    while let Some(Ok(authz)) = authorizations.next().await {
        for c in &authz.challenges {
            if let Some(p) = &c.error {
                out.push_str(&format!("; {}: {p}", authz.identifier()));
            }
        }
    }
    out
}

/// Runs one order to an issued certificate.
pub async fn issue(task: &AcmeTask) -> Result<Issued, OrderError> {
    let identifiers: Vec<Identifier> = task
        .settings
        .domains
        .iter()
        .map(|d| Identifier::Dns(d.clone()))
        .collect();
    let new_order = NewOrder::new(&identifiers);
    let mut order = match account(task).await?.new_order(&new_order).await {
        // The CA forgot the account (a reset test CA, a deleted account): register again.
        Err(instant_acme::Error::Api(p))
            if p.r#type.as_deref() == Some("urn:ietf:params:acme:error:accountDoesNotExist") =>
        {
            tracing::warn!(listener = %task.listener, "the ACME CA no longer knows the stored account; registering a new one");
            task.store.forget_account(&task.settings.directory)?;
            account(task).await?.new_order(&new_order).await?
        }
        other => other?,
    };
    let mut answers = Answers::default();
    let validated = async {
        answer(task, &mut order, &mut answers).await?;
        order.poll_ready(&POLL).await.map_err(OrderError::from)
    }
    .await;
    answers.clear(task);
    let status = validated?;
    if status != OrderStatus::Ready {
        return Err(OrderError::Status(format!(
            "{status:?}{}",
            problems(&mut order).await
        )));
    }
    let key_pem = order.finalize().await?;
    let cert_pem = order.poll_certificate(&POLL).await?;
    Ok(Issued { cert_pem, key_pem })
}
