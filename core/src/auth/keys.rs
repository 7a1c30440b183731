//! Which key signs registry tokens: one for every core on a metadata store, so a token issued
//! by one core is accepted by the next one an edge picks.
//!
//! By default the key lives in the metadata store (`signing_keys`): the first core on an empty
//! store creates it (importing the `auth/token.key` of an older single-core release, so its
//! tokens stay valid), every later core reads it. With `auth.token_key_file` the key lives in a
//! file every core reads instead, and the store keeps only its fingerprint: a core whose file
//! holds another key refuses to start rather than issue tokens the others refuse.
//!
//! `berth-core rotate-key` makes a new key current (a fresh one, or the key file's new
//! content). The previous key is still accepted for one token lifetime, so nobody is logged
//! out; running cores pick the new key up with their next settings poll.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::token::{Claims, Signer};
use crate::storage::metadata::cluster::{ClusterStore, KeyRecord, KeySlot};
use crate::storage::metadata::{now_ms, MetadataError};

/// The shortest key accepted, in bytes.
const MIN_KEY: usize = 32;

/// Where the signing key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The metadata store (the default).
    Store,
    /// A file every core reads (`auth.token_key_file`).
    File(PathBuf),
}

/// Why the signing key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("auth.token_key_file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "auth.token_key_file {path}: holds {len} bytes; a key needs at least {MIN_KEY} \
         (make one with `openssl rand -hex 32 > {path}`)"
    )]
    Short { path: PathBuf, len: usize },
    #[error(
        "auth.token_key_file {path} holds key {ours}, but the cores on this metadata store sign \
         registry tokens with key {theirs}: give every core the same key file, or run \
         `berth-core rotate-key` with this config to make this file's key the one they all use"
    )]
    Differs {
        path: PathBuf,
        ours: String,
        theirs: String,
    },
    #[error(
        "the cores on this metadata store sign registry tokens with the key in their \
         auth.token_key_file (key {kid}); set auth.token_key_file to the same file here"
    )]
    NeedsFile { kid: String },
    #[error("auth.token_key_file {path} holds key {kid}, which already signs")]
    AlreadyCurrent { path: PathBuf, kid: String },
    #[error("the key of an older release, {path}: {source}")]
    Legacy {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("signing keys in the metadata store: {0}")]
    Store(#[from] MetadataError),
}

/// The keys a core signs and checks registry tokens with.
pub struct KeyRing {
    current: Signer,
    /// The key before the last rotation, and until when (Unix ms) it is accepted.
    previous: Option<(Signer, i64)>,
}

impl KeyRing {
    /// The key to sign and check with, from `source` (see the module doc). `legacy_dir` holds
    /// an older release's `token.key`; `ttl` is the token lifetime.
    pub async fn load(
        source: &KeySource,
        legacy_dir: &Path,
        store: &dyn ClusterStore,
        ttl: Duration,
    ) -> Result<KeyRing, KeyError> {
        let current = match source {
            KeySource::Store => {
                let candidate = match legacy_key(legacy_dir)? {
                    Some(k) => k,
                    None => rand::random::<[u8; MIN_KEY]>().to_vec(),
                };
                let record = store.signing_key_init(&stored(&candidate)).await?;
                signer_of(&record)?
            }
            KeySource::File(path) => {
                let bytes = read_key_file(path)?;
                let kid = Signer::kid_of(&bytes);
                let record = store.signing_key_init(&fingerprint(&kid)).await?;
                if record.kid != kid {
                    return Err(KeyError::Differs {
                        path: path.clone(),
                        ours: kid,
                        theirs: record.kid,
                    });
                }
                Signer::for_registry(&bytes)
            }
        };
        let previous = match store.signing_key(KeySlot::Previous).await? {
            Some(KeyRecord {
                secret: Some(secret),
                retired_at: Some(at),
                ..
            }) => Some((Signer::for_registry(&decode(&secret)?), until(at, ttl))),
            _ => None,
        };
        Ok(KeyRing { current, previous })
    }

    /// A ring that follows a rotation made by another core (or `rotate-key`), or `None` if the
    /// store's current key is this ring's. The key this ring signed with is accepted for one
    /// more token lifetime.
    pub async fn follow(
        &self,
        source: &KeySource,
        store: &dyn ClusterStore,
        ttl: Duration,
    ) -> Result<Option<KeyRing>, KeyError> {
        let Some(record) = store.signing_key(KeySlot::Current).await? else {
            return Ok(None);
        };
        if record.kid == self.current.kid() {
            return Ok(None);
        }
        let current = match source {
            KeySource::Store => signer_of(&record)?,
            KeySource::File(path) => {
                let bytes = read_key_file(path)?;
                let ours = Signer::kid_of(&bytes);
                if ours != record.kid {
                    return Err(KeyError::Differs {
                        path: path.clone(),
                        ours,
                        theirs: record.kid,
                    });
                }
                Signer::for_registry(&bytes)
            }
        };
        Ok(Some(KeyRing {
            current,
            previous: Some((self.current.clone(), until(now_ms(), ttl))),
        }))
    }

    /// Makes a new key current in the store: a fresh one, or the key file's content. Returns
    /// the fingerprints before and after.
    pub async fn rotate(
        source: &KeySource,
        store: &dyn ClusterStore,
    ) -> Result<(Option<String>, String), KeyError> {
        let before = store.signing_key(KeySlot::Current).await?.map(|r| r.kid);
        let next = match source {
            KeySource::Store => stored(&rand::random::<[u8; MIN_KEY]>()),
            KeySource::File(path) => {
                let kid = Signer::kid_of(&read_key_file(path)?);
                if before.as_deref() == Some(kid.as_str()) {
                    return Err(KeyError::AlreadyCurrent {
                        path: path.clone(),
                        kid,
                    });
                }
                fingerprint(&kid)
            }
        };
        store.signing_key_rotate(&next).await?;
        Ok((before, next.kid))
    }

    pub fn sign(&self, claims: &Claims) -> String {
        self.current.sign(claims)
    }

    /// The claims of a valid token signed with the current key, or with the previous one
    /// while it is still accepted.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        self.current.verify(token).or_else(|| match &self.previous {
            Some((old, until)) if now_ms() < *until => old.verify(token),
            _ => None,
        })
    }

    /// The fingerprint of the key that signs.
    pub fn kid(&self) -> &str {
        self.current.kid()
    }

    #[cfg(test)]
    pub fn of(key: &[u8]) -> KeyRing {
        KeyRing {
            current: Signer::for_registry(key),
            previous: None,
        }
    }
}

fn until(retired_ms: i64, ttl: Duration) -> i64 {
    retired_ms.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
}

/// A key kept in the store.
fn stored(key: &[u8]) -> KeyRecord {
    KeyRecord {
        kid: Signer::kid_of(key),
        secret: Some(hex::encode(key)),
        created_at: now_ms(),
        retired_at: None,
    }
}

/// A key kept in a file: only its fingerprint is stored.
fn fingerprint(kid: &str) -> KeyRecord {
    KeyRecord {
        kid: kid.to_owned(),
        secret: None,
        created_at: now_ms(),
        retired_at: None,
    }
}

fn decode(secret: &str) -> Result<Vec<u8>, KeyError> {
    hex::decode(secret)
        .map_err(|e| MetadataError::Corrupt(format!("a signing key is not hex: {e}")).into())
}

/// The signer of a stored record; a record without a secret means the cores use key files.
fn signer_of(record: &KeyRecord) -> Result<Signer, KeyError> {
    match &record.secret {
        Some(secret) => Ok(Signer::for_registry(&decode(secret)?)),
        None => Err(KeyError::NeedsFile {
            kid: record.kid.clone(),
        }),
    }
}

fn read_key_file(path: &Path) -> Result<Vec<u8>, KeyError> {
    let bytes = std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source,
    })?;
    if bytes.len() < MIN_KEY {
        return Err(KeyError::Short {
            path: path.to_owned(),
            len: bytes.len(),
        });
    }
    Ok(bytes)
}

/// The `token.key` an older release kept under the storage root, if any.
fn legacy_key(dir: &Path) -> Result<Option<Vec<u8>>, KeyError> {
    let path = dir.join("token.key");
    match std::fs::read(&path) {
        Ok(k) if k.len() >= MIN_KEY => Ok(Some(k)),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(KeyError::Legacy { path, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::token::{now, TokenKind};
    use crate::storage::metadata::sql::{Backend, SqlMetadata};

    fn claims() -> Claims {
        Claims {
            typ: TokenKind::Registry,
            sub: "alice".into(),
            tid: None,
            pwd: None,
            ext: None,
            exp: now() + 60,
            access: vec![],
        }
    }

    #[tokio::test]
    async fn one_key_per_store_rotation_keeps_the_previous_and_files_must_agree() {
        let store = SqlMetadata::open(&Backend::Memory).await.unwrap();
        let none = tempfile::tempdir().unwrap();
        let ttl = Duration::from_secs(60);
        let a = KeyRing::load(&KeySource::Store, none.path(), &store, ttl)
            .await
            .unwrap();
        let b = KeyRing::load(&KeySource::Store, none.path(), &store, ttl)
            .await
            .unwrap();
        let t = a.sign(&claims());
        assert!(
            b.verify(&t).is_some(),
            "a second core accepts the first's token"
        );

        let (before, after) = KeyRing::rotate(&KeySource::Store, &store).await.unwrap();
        assert_eq!(before.as_deref(), Some(a.kid()));
        let followed = a.follow(&KeySource::Store, &store, ttl).await.unwrap();
        let a2 = followed.expect("the rotation is seen");
        assert_eq!(a2.kid(), after);
        assert!(a2.verify(&t).is_some(), "the old key is still accepted");
        let started_later = KeyRing::load(&KeySource::Store, none.path(), &store, ttl)
            .await
            .unwrap();
        assert!(started_later.verify(&t).is_some());
        assert!(started_later.verify(&a2.sign(&claims())).is_some());
        assert!(a2
            .follow(&KeySource::Store, &store, ttl)
            .await
            .unwrap()
            .is_none());

        // A core with a key file on a store whose key is kept in the store: refused.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("key");
        std::fs::write(&file, [7u8; 40]).unwrap();
        let source = KeySource::File(file.clone());
        let err = KeyRing::load(&source, none.path(), &store, ttl).await;
        assert!(matches!(err, Err(KeyError::Differs { .. })));
        // Rotated to the file's key, the file cores agree and store-key cores are told why not.
        KeyRing::rotate(&source, &store).await.unwrap();
        let f = KeyRing::load(&source, none.path(), &store, ttl)
            .await
            .unwrap();
        assert_eq!(f.kid(), Signer::kid_of(&[7u8; 40]));
        let err = KeyRing::load(&KeySource::Store, none.path(), &store, ttl).await;
        assert!(
            matches!(err, Err(KeyError::NeedsFile { .. })),
            "{:?}",
            err.err()
        );
        assert!(matches!(
            KeyRing::rotate(&source, &store).await,
            Err(KeyError::AlreadyCurrent { .. })
        ));
        std::fs::write(&file, b"short").unwrap();
        let err = KeyRing::load(&source, none.path(), &store, ttl).await;
        assert!(matches!(err, Err(KeyError::Short { len: 5, .. })));
    }

    #[tokio::test]
    async fn an_older_release_key_is_adopted() {
        let store = SqlMetadata::open(&Backend::Memory).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token.key"), [9u8; 32]).unwrap();
        let ring = KeyRing::load(
            &KeySource::Store,
            dir.path(),
            &store,
            Duration::from_secs(1),
        )
        .await
        .unwrap();
        let old = Signer::for_registry(&[9u8; 32]);
        assert!(ring.verify(&old.sign(&claims())).is_some());
    }
}
