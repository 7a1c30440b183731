//! Pull-through benchmark: a 1 GiB layer (`BERTH_PULLTHROUGH_MIB` sets another size) pulled cold (fetched from the remote while it is
//! served) and warm (from the cache), through a berth-core proxy repository and through CNCF
//! Distribution configured as a pull-through cache of the same remote (a berth-core), in one
//! run. Needs release binaries and `docker-registry`. Each cold run starts on warmed memory
//! (see `bench::warm_memory`): on a VM the first touch of fresh pages costs more than the
//! whole pull, and whoever ran first paid it.
//!
//! Distribution serves a cold blob by asking the remote twice, once for the client and once
//! for its cache, which it fills in the background after the client is served; so the cache's
//! CPU is counted until it settles, and the remote's reads of the layer are printed. The
//! cache's peak RSS growth during the cold pull shows whether memory stays flat in layer size.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use berth_tests::bench::{print_table, warm_memory, Distribution};
use berth_tests::core::{default_config, Core};
use berth_tests::http::{self, request};
use berth_tests::image::Pattern;
use berth_tests::proc;

const MIB: f64 = 1024.0 * 1024.0;

/// One server's figures.
struct Column {
    name: &'static str,
    cold_mbs: f64,
    warm_mbs: f64,
    cold_cpu: f64,
    cached_cpu: f64,
    warm_cpu: f64,
    reads: f64,
    rss_growth: f64,
}

/// The layer's size: `BERTH_PULLTHROUGH_MIB` MiB, 1 GiB unless set.
fn layer_size() -> usize {
    std::env::var("BERTH_PULLTHROUGH_MIB")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1024)
        << 20
}

/// GETs a blob, reading and discarding it; returns (seconds, bytes).
fn pull(addr: &str, path: &str) -> (f64, usize) {
    let t = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
    (t.elapsed().as_secs_f64(), total)
}

/// Response body bytes the remote has sent so far (its `http_response_bytes` counters).
fn served(remote: &Core) -> f64 {
    let metrics = remote
        .metrics
        .as_deref()
        .expect("the remote's metrics listener");
    let text = request(metrics, "GET", "/metrics", &[], b"")
        .expect("metrics")
        .body;
    String::from_utf8_lossy(&text)
        .lines()
        .filter(|l| l.starts_with("berth_http_response_bytes_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn main() {
    let size = layer_size();
    eprintln!("preparing a {} MiB layer on the remote...", size >> 20);
    let remote_dir = tempfile::tempdir().expect("tempdir");
    let remote_config = format!(
        "{}metrics: {{ listen: 127.0.0.1:0 }}\n",
        default_config(&remote_dir.path().join("data"))
    );
    let remote = Core::start_in(remote_dir, &remote_config);
    let mut blob = vec![0u8; size];
    Pattern::fill_at(3 << 20, &mut blob);
    let digest = http::digest(&blob);
    let r = request(
        remote.connector("hosted"),
        "POST",
        &format!("/v2/lib/big/blobs/uploads/?digest={digest}"),
        &[],
        &blob,
    )
    .expect("push");
    assert_eq!(r.status, 201);
    drop(blob);

    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "storage: {{ root: {} }}\nmain: {{ listen: 127.0.0.1:0 }}\nrepositories:\n  - name: hub\n    kind: proxy\n    connector: {{ http: 127.0.0.1:0 }}\n    remote: {{ url: http://{} }}\n",
        dir.path().join("data").display(),
        remote.connector("hosted")
    );
    let berth = Core::start_in(dir, &config);
    let dist = Distribution::start_with(&format!(
        "proxy:\n  remoteurl: http://{}\n",
        remote.connector("hosted")
    ));

    let path = format!("/v2/lib/big/blobs/{digest}");
    let mut cols = Vec::new();
    for (name, addr, pid) in [
        (
            "berth proxy",
            berth.connector("hub").to_owned(),
            berth.pid().expect("pid"),
        ),
        ("distribution", dist.addr.clone(), dist.child.id()),
    ] {
        eprintln!("measuring {name}...");
        cols.push(measure(name, &addr, pid, &path, &remote, size));
    }
    let names: Vec<&str> = cols.iter().map(|c| c.name).collect();
    let layer = if size == 1 << 30 {
        "1 GiB".to_owned()
    } else {
        format!("{} MiB", size >> 20)
    };
    let values = |f: fn(&Column) -> f64| cols.iter().map(f).collect::<Vec<f64>>();
    let (cold, warm) = (
        format!("cold pull {layer} (MB/s)"),
        format!("warm pull {layer} (MB/s)"),
    );
    let rows: Vec<(&str, Vec<f64>)> = vec![
        (&cold, values(|c| c.cold_mbs)),
        (&warm, values(|c| c.warm_mbs)),
        (
            "cache CPU per MiB, cold, while serving (ms)",
            values(|c| c.cold_cpu),
        ),
        (
            "cache CPU per MiB, cold, until cached (ms)",
            values(|c| c.cached_cpu),
        ),
        ("cache CPU per MiB, warm (ms)", values(|c| c.warm_cpu)),
        (
            "remote reads of the layer per cold pull",
            values(|c| c.reads),
        ),
        (
            "cache peak RSS growth, cold pull (MiB)",
            values(|c| c.rss_growth),
        ),
    ];
    print_table(&names, &rows);
}

/// Pulls the layer cold, then warm, through one server.
fn measure(
    name: &'static str,
    addr: &str,
    pid: u32,
    path: &str,
    remote: &Core,
    size: usize,
) -> Column {
    let mib = size as f64 / MIB;
    // The cold pull writes the layer into the cache: on memory the machine has used.
    warm_memory(2 * size);
    let (c0, r0) = (proc::cpu_seconds(pid), served(remote));
    let rss0 = proc::rss_mib(pid);
    proc::reset_peak(pid);
    let (cold, n) = pull(addr, path);
    assert!(n >= size, "{name}: short cold pull ({n} bytes)");
    let cold_cpu = (proc::cpu_seconds(pid) - c0) * 1000.0 / mib;
    // Distribution caches in the background, after the client is served: count that too.
    std::thread::sleep(std::time::Duration::from_secs(3));
    let cached_cpu = (proc::cpu_seconds(pid) - c0) * 1000.0 / mib;
    let rss_growth = proc::peak_rss_mib(pid) - rss0;
    let reads = (served(remote) - r0) / size as f64;
    let c0 = proc::cpu_seconds(pid);
    let (warm, n) = pull(addr, path);
    assert!(n >= size, "{name}: short warm pull ({n} bytes)");
    Column {
        name,
        cold_mbs: mib / cold,
        warm_mbs: mib / warm,
        cold_cpu,
        cached_cpu,
        warm_cpu: (proc::cpu_seconds(pid) - c0) * 1000.0 / mib,
        reads,
        rss_growth,
    }
}
