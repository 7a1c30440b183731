//! Files only the registry may read. The storage root holds the metadata database (password
//! hashes, API-token digests, the token signing key) and upload data; under a default umask
//! they would be created world-readable (0644/0755). So the root is created 0700 and the
//! SQLite database 0600 before SQLite opens it (SQLite gives its `-wal` and `-shm` files the
//! database's mode). What an operator created beforehand is left as it is, apart from a
//! database file others can read: that loses its group and other bits, with a warning.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates `dir` (and missing parents) with mode 0700 if it does not exist.
pub fn dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Makes sure the file at `path` exists with no access for group and others: created 0600,
/// or tightened if it is there already (with its `-wal` and `-shm` companions).
pub fn database_file(path: &Path) -> io::Result<()> {
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    for suffix in ["", "-wal", "-shm"] {
        let file = format!("{}{suffix}", path.display());
        let Ok(meta) = fs::metadata(&file) else {
            continue;
        };
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                file,
                mode = format!("{:o}", mode & 0o777),
                "the metadata database was readable by others; made it 0600"
            );
            fs::set_permissions(&file, fs::Permissions::from_mode(mode & 0o700))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_root_is_0700_and_a_database_0600_even_when_it_was_open() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("a/b");
        dir(&root).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o700);
        let db = root.join("metadata.db");
        database_file(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        let wal = root.join("metadata.db-wal");
        fs::write(&wal, b"").unwrap();
        fs::set_permissions(&wal, fs::Permissions::from_mode(0o644)).unwrap();
        fs::set_permissions(&db, fs::Permissions::from_mode(0o644)).unwrap();
        database_file(&db).unwrap();
        assert_eq!((mode(&db), mode(&wal)), (0o600, 0o600));
    }
}
