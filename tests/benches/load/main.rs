//! Load benches (bounded; loopback only), each for BERTH_LOAD_SECONDS:
//! - `flood` (default 120 s): authenticated clients through the edge while a bad client floods
//!   failed logins; every request must succeed.
//! - `mixed` (default 180 s): 32 keep-alive HTTPS clients mixing manifest GETs, 4 MiB blob pulls
//!   and small pushes, against the edge + core and against Distribution behind nginx in the same
//!   run; ops/s, p50/p99 per kind, errors and server CPU side by side.
//!
//! `cargo bench -p berth-tests --bench load [-- flood|mixed]` runs both without an argument.
//! Needs release binaries (`cargo build --release --workspace`); `mixed` also needs
//! `docker-registry` and `nginx-light`.

mod flood;
mod mixed;

fn seconds(default: u64) -> u64 {
    std::env::var("BERTH_LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let wants = |name: &str| {
        let named: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
        named.is_empty() || named.iter().any(|a| *a == name)
    };
    if wants("flood") {
        flood::run(seconds(120));
    }
    if wants("mixed") {
        mixed::run(seconds(180));
    }
}
