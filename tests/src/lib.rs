//! Harness for the black-box tests in `tests/tests/`: start the real `berth-core` binary on
//! ephemeral ports, talk to it over real sockets, and drive real clients (skopeo, podman,
//! docker) against it. Everything started here is stopped on drop.
//!
//! The binaries are the ones cargo built for this test run (`target/<profile>/`); set
//! `BERTH_BIN_DIR` to test others.

pub mod bench;
pub mod blobs;
pub mod busy_ca;
pub mod core;
pub mod edge;
pub mod garage;
pub mod http;
pub mod image;
pub mod ldap;
pub mod oidc;
pub mod pebble;
pub mod postgres;
pub mod principals;
pub mod proc;
pub mod prometheus;
pub mod registry;
pub mod relay;
pub mod s3;
pub mod tls;
pub mod tools;
pub mod webdriver;
pub mod webhook;

use std::path::PathBuf;

/// Directory holding the workspace binaries.
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("BERTH_BIN_DIR") {
        return PathBuf::from(d);
    }
    // This test executable lives in target/<profile>/deps/.
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(|deps| deps.parent())
        .map(PathBuf::from)
        .expect("test binary is inside target/<profile>/deps")
}

/// Path of a workspace binary, with a clear message if it was not built.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} not found: run `cargo build --workspace` (or `cargo test --workspace`) first",
        p.display()
    );
    p
}
