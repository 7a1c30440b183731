//! The `storage` section: the blob root, where the metadata lives and where blob bytes live.

use super::raw::{RawS3, RawStorage};
use super::{ConfigError, Source};
use crate::storage::blob::s3::S3Settings;
use crate::storage::metadata::sql::Backend;
use crate::storage::{BlobBackend, StorageConfig};

pub(super) fn storage(raw: RawStorage, source: &Source) -> Result<StorageConfig, ConfigError> {
    let mut config = StorageConfig::under(source.resolve(&raw.root));
    if let Some(s3) = raw.blobs.and_then(|b| b.s3) {
        config.blobs = BlobBackend::S3(s3_settings(s3, source)?);
    }
    let Some(m) = raw.metadata else {
        return Ok(config);
    };
    config.metadata = match (m.postgres, m.sqlite) {
        (Some(_), Some(_)) => {
            return Err(source.err("storage.metadata", "choose postgres or sqlite, not both"))
        }
        (None, Some(s)) => Backend::Sqlite(source.resolve(&s.path)),
        (None, None) => config.metadata,
        (Some(pg), None) => {
            let key = "storage.metadata.postgres.url";
            if !(pg.url.starts_with("postgres://") || pg.url.starts_with("postgresql://")) {
                return Err(source.err(key, "must start with postgres:// or postgresql://"));
            }
            if password_in_url(&pg.url) {
                return Err(source.err(
                    key,
                    "put the password in password_file or password_env, not in the URL",
                ));
            }
            let password = secret(
                source,
                "storage.metadata.postgres",
                ("password_file", pg.password_file),
                ("password_env", pg.password_env),
            )?;
            Backend::Postgres {
                url: pg.url,
                password,
            }
        }
    };
    Ok(config)
}

/// A secret from a file (trailing newline ignored) or an environment variable, not both;
/// errors name `<section>.<key>`.
fn secret(
    source: &Source,
    section: &str,
    file: (&str, Option<String>),
    env: (&str, Option<String>),
) -> Result<Option<String>, ConfigError> {
    match (file.1, env.1) {
        (Some(_), Some(_)) => {
            Err(source.err(section, format!("choose {} or {}, not both", file.0, env.0)))
        }
        (Some(f), None) => {
            let path = source.resolve(&f);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                source.err(
                    format!("{section}.{}", file.0),
                    format!("{}: {e}", path.display()),
                )
            })?;
            Ok(Some(text.trim_end_matches(['\n', '\r']).to_owned()))
        }
        (None, Some(var)) => std::env::var(&var).map(Some).map_err(|_| {
            source.err(
                format!("{section}.{}", env.0),
                format!("environment variable {var} is not set"),
            )
        }),
        (None, None) => Ok(None),
    }
}

/// `storage.blobs.s3`.
fn s3_settings(raw: RawS3, source: &Source) -> Result<S3Settings, ConfigError> {
    let section = "storage.blobs.s3";
    if raw.bucket.trim().is_empty() {
        return Err(source.err(format!("{section}.bucket"), "must not be empty"));
    }
    if let Some(e) = &raw.endpoint {
        if !(e.starts_with("http://") || e.starts_with("https://")) {
            return Err(source.err(
                format!("{section}.endpoint"),
                "must start with http:// or https://",
            ));
        }
    }
    let secret_access_key = secret(
        source,
        section,
        ("secret_access_key_file", raw.secret_access_key_file),
        ("secret_access_key_env", raw.secret_access_key_env),
    )?;
    if raw.access_key_id.is_some() != secret_access_key.is_some() {
        return Err(source.err(
            section,
            "give access_key_id together with secret_access_key_file or secret_access_key_env \
             (or neither, for credentials from the environment)",
        ));
    }
    // Over TLS the payload needs no second SHA-256 for the signature; over plain HTTP (or
    // when told) it is signed.
    let plain = raw
        .endpoint
        .as_deref()
        .is_some_and(|e| e.starts_with("http://"));
    let sign_payload = raw.sign_payload.unwrap_or(plain);
    let ca_file = raw.ca_file.map(|f| source.resolve(&f));
    if let Some(path) = &ca_file {
        std::fs::metadata(path).map_err(|e| {
            source.err(
                format!("{section}.ca_file"),
                format!("{}: {e}", path.display()),
            )
        })?;
    }
    Ok(S3Settings {
        ca_file,
        bucket: raw.bucket,
        endpoint: raw.endpoint,
        region: raw.region.unwrap_or_else(|| "us-east-1".into()),
        prefix: raw.prefix.unwrap_or_default(),
        access_key_id: raw.access_key_id,
        secret_access_key,
        conditional_put: raw.conditional_put.unwrap_or(true),
        redirect: raw.redirect.unwrap_or(false),
        sign_payload,
    })
}

/// Whether `postgres://user:password@host/...` carries a password.
fn password_in_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_in_urls_are_spotted() {
        assert!(super::password_in_url(
            "postgres://berth:secret@db:5432/berth"
        ));
        assert!(!super::password_in_url("postgres://berth@db:5432/berth"));
        assert!(!super::password_in_url("postgres://db:5432/berth"));
    }
}

#[cfg(test)]
mod s3_tests {
    use crate::config::{Config, ConfigError};
    use crate::storage::BlobBackend;

    fn parse(blobs: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s3.secret"), "sekrit\n").unwrap();
        let text = format!(
            "storage:\n  root: ./data\n  blobs: {blobs}\nmain: {{ listen: 127.0.0.1:0 }}\n"
        );
        Config::parse(&text, &super::Source::new("core.yaml", dir.path()))
    }

    #[test]
    fn the_s3_section_parses_and_keeps_its_secret_out_of_debug() {
        let c = parse(
            "{ s3: { bucket: b, endpoint: \"http://127.0.0.1:9000\", prefix: reg, \
             access_key_id: AK, secret_access_key_file: s3.secret } }",
        )
        .unwrap();
        let BlobBackend::S3(s) = &c.storage.blobs else {
            panic!("not s3: {:?}", c.storage.blobs)
        };
        assert_eq!(s.secret_access_key.as_deref(), Some("sekrit"));
        assert_eq!(s.region, "us-east-1");
        assert!(s.conditional_put);
        assert!(!s.redirect);
        assert!(s.sign_payload, "plain HTTP signs its payloads by default");
        assert!(!format!("{s:?}").contains("sekrit"));
    }

    #[test]
    fn payload_signing_follows_the_scheme_unless_told() {
        let cases = [
            ("endpoint: \"https://s3.internal\"", false),
            (
                "endpoint: \"http://127.0.0.1:9000\", sign_payload: false",
                false,
            ),
            (
                "endpoint: \"https://s3.internal\", sign_payload: true",
                true,
            ),
        ];
        for (keys, signed) in cases {
            let c = parse(&format!("{{ s3: {{ bucket: b, {keys} }} }}")).unwrap();
            let BlobBackend::S3(s) = &c.storage.blobs else {
                panic!("not s3")
            };
            assert_eq!(s.sign_payload, signed, "{keys}");
        }
    }

    #[test]
    fn s3_mistakes_name_their_key() {
        let cases = [
            ("{ s3: { bucket: \"\" } }", "storage.blobs.s3.bucket"),
            ("{ s3: { bucket: b, endpoint: s3.internal } }", "storage.blobs.s3.endpoint"),
            ("{ s3: { bucket: b, access_key_id: AK } }", "storage.blobs.s3"),
            (
                "{ s3: { bucket: b, access_key_id: AK, secret_access_key_env: BERTH_NOT_SET_ANYWHERE } }",
                "storage.blobs.s3.secret_access_key_env",
            ),
            ("{ s3: { bucket: b, buckets: c } }", "storage.blobs.s3"),
            ("{ s3: { bucket: b, ca_file: nope.pem } }", "storage.blobs.s3.ca_file"),
        ];
        for (yaml, key) in cases {
            let e = parse(yaml).unwrap_err();
            assert!(e.to_string().contains(key), "{yaml}: {e}");
        }
    }
}
