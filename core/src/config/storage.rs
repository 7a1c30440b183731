//! The `storage` section: the blob root and where the metadata lives.

use super::raw::RawStorage;
use super::{ConfigError, Source};
use crate::storage::metadata::sql::Backend;
use crate::storage::StorageConfig;

pub(super) fn storage(raw: RawStorage, source: &Source) -> Result<StorageConfig, ConfigError> {
    let mut config = StorageConfig::under(source.resolve(&raw.root));
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
            let password = match (pg.password_file, pg.password_env) {
                (Some(_), Some(_)) => {
                    return Err(source.err(
                        "storage.metadata.postgres",
                        "choose password_file or password_env, not both",
                    ))
                }
                (Some(f), None) => {
                    let path = source.resolve(&f);
                    let text = std::fs::read_to_string(&path).map_err(|e| {
                        source.err(
                            "storage.metadata.postgres.password_file",
                            format!("{}: {e}", path.display()),
                        )
                    })?;
                    Some(text.trim_end_matches(['\n', '\r']).to_owned())
                }
                (None, Some(var)) => Some(std::env::var(&var).map_err(|_| {
                    source.err(
                        "storage.metadata.postgres.password_env",
                        format!("environment variable {var} is not set"),
                    )
                })?),
                (None, None) => None,
            };
            Backend::Postgres {
                url: pg.url,
                password,
            }
        }
    };
    Ok(config)
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
