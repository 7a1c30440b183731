//! Bodies stream: a 2 GiB chunked upload with flat edge memory, an interrupted upload resumed,
//! and SIGTERM draining what is in flight, on the edge and on a core serving HTTPS.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use berth_tests::edge::{curl, wait_for};
use berth_tests::proc;
use berth_tests::tools::run;

use crate::harness::*;

#[test]
fn a_2_gib_chunked_upload_streams_with_flat_edge_memory() {
    let core = trusting_core();
    let pki = Pki::new();
    let edge = edge_for(&core, &pki, "");
    let port = edge.ports[0];
    const SIZE: u64 = 2 << 30;
    let digest = {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..(SIZE >> 20) {
            h.update(&zeros);
        }
        format!("sha256:{}", hex::encode(h.finalize()))
    };
    let out = run(curl(&pki.ca_cert(), "registry.test", "127.0.0.1", port)
        .args(["-X", "POST", "-D", "-", "-o", "/dev/null"])
        .arg(format!(
            "https://registry.test:{port}/v2/big/blobs/uploads/"
        )));
    let loc = header(&String::from_utf8_lossy(&out.stdout), "location").expect("location");
    let before = proc::rss_mib(edge.pid());
    proc::reset_peak(edge.pid());
    // Docker's way: one PATCH with a chunked body of unknown length.
    let mut patch = curl(&pki.ca_cert(), "registry.test", "127.0.0.1", port)
        .args([
            "--max-time",
            "600",
            "--fail",
            "-X",
            "PATCH",
            "-T",
            "-",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(&loc)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = patch.stdin.take().unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..(SIZE >> 20) {
            stdin.write_all(&zeros).unwrap();
        }
    }
    let out = patch.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "202",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let growth = proc::peak_rss_mib(edge.pid()) - before;
    assert_eq!(finish_upload(&pki, port, &loc, &digest), "201");
    eprintln!("edge RSS grew {growth:.1} MiB during a 2 GiB upload");
    assert!(
        growth < 64.0,
        "edge RSS grew {growth:.1} MiB: the body is being buffered"
    );
}

#[test]
fn sigterm_drains_in_flight_requests_then_exits() {
    let core = trusting_core();
    let pki = Pki::new();
    let mut edge = edge_for(&core, &pki, "drain_timeout: 2m\n");
    let port = edge.ports[0];
    // A 200 MiB blob, downloaded slowly enough to be in flight when SIGTERM arrives.
    let digest = push_200_mib(core.connector("hosted"));
    let sink = tempfile::NamedTempFile::new().unwrap();
    let download = slow_download(&pki, port, &digest, sink.path());
    wait_receiving(sink.path());
    edge.signal("TERM");
    // No new connections once draining...
    let refused = || {
        let out = curl(&pki.ca_cert(), "registry.test", "127.0.0.1", port)
            .args(["--fail", "-o", "/dev/null"])
            .arg(format!("https://registry.test:{port}/v2/"))
            .output()
            .unwrap();
        (!out.status.success()).then_some(())
    };
    wait_for(refused).expect("new requests were still accepted while draining");
    // ...the in-flight download completes...
    let out = download.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "in-flight download was cut: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        edge.log()
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        (200u64 << 20).to_string()
    );
    // ...and the edge exits once idle, long before the 120 s deadline.
    assert!(
        edge.wait_exit(Duration::from_secs(30)),
        "edge still running after draining:\n{}",
        edge.log()
    );
}

#[test]
fn a_client_that_disconnects_mid_upload_can_resume() {
    let core = trusting_core();
    let pki = Pki::new();
    let edge = edge_for(&core, &pki, "");
    let port = edge.ports[0];
    let out = run(curl(&pki.ca_cert(), "registry.test", "127.0.0.1", port)
        .args(["-X", "POST", "-D", "-", "-o", "/dev/null"])
        .arg(format!(
            "https://registry.test:{port}/v2/resume/blobs/uploads/"
        )));
    let loc = header(&String::from_utf8_lossy(&out.stdout), "location").expect("location");
    const TOTAL: u64 = 64 << 20;
    // Send half the bytes of a chunked PATCH, then die.
    let mut patch = curl(&pki.ca_cert(), "registry.test", "127.0.0.1", port)
        .args(["-X", "PATCH", "-T", "-", "-o", "/dev/null"])
        .arg(&loc)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = patch.stdin.take().unwrap();
        let mut buf = vec![0u8; 1 << 20];
        for i in 0..((TOTAL / 2) >> 20) {
            berth_tests::image::Pattern::fill_at(i << 20, &mut buf);
            stdin.write_all(&buf).unwrap();
        }
        stdin.flush().unwrap();
        // Cut once bytes have reached the core: a disconnect mid-upload.
        wait_for(|| (received(&pki, port, &loc) > 0).then_some(()))
            .expect("no bytes reached the core");
        let _ = patch.kill();
    }
    let _ = patch.wait();
    // The core keeps what it got before the body broke; the count settles.
    let mut last = received(&pki, port, &loc);
    let have = wait_for(|| {
        std::thread::sleep(Duration::from_millis(100));
        let now = received(&pki, port, &loc);
        let settled = (now == last).then_some(now);
        last = now;
        settled
    })
    .expect("the upload's size never settled");
    assert!(have > 0 && have <= TOTAL / 2, "resume point {have}");
    // Resume from where the core says it is, through the edge.
    let rest = tempfile::NamedTempFile::new().unwrap();
    let mut buf = vec![0u8; (TOTAL - have) as usize];
    berth_tests::image::Pattern::fill_at(have, &mut buf);
    std::fs::write(rest.path(), &buf).unwrap();
    let out = run(curl(&pki.ca_cert(), "registry.test", "127.0.0.1", port)
        .args([
            "--fail",
            "-X",
            "PATCH",
            "-H",
            &format!("Content-Range: {have}-{}", TOTAL - 1),
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--data-binary",
        ])
        .arg(format!("@{}", rest.path().display()))
        .arg(&loc));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "202");
    let digest = berth_tests::image::Pattern::digest(TOTAL);
    assert_eq!(finish_upload(&pki, port, &loc, &digest), "201");
}

/// Audit: with a direct-HTTPS connection open, SIGTERM skipped the drain (the shutdown handle
/// could not be reclaimed) and cut downloads in flight. Now an idle HTTPS keep-alive connection
/// and an HTTPS download in flight: the download completes and the core exits soon after.
#[test]
fn core_sigterm_drains_with_https_connections_open() {
    let pki = Pki::new();
    let (mut core, port) = direct_https_core(&pki);
    let digest = push_200_mib(core.connector("hosted"));
    let tls = berth_tests::tls::config(&pki.ca_cert());
    let mut idle = berth_tests::tls::Conn::open(
        &tls,
        &format!("127.0.0.1:{port}"),
        &format!("registry.test:{port}"),
    )
    .unwrap();
    assert_eq!(idle.request("GET", "/v2/", &[], b"").unwrap().0, 200);
    let sink = tempfile::NamedTempFile::new().unwrap();
    let download = slow_download(&pki, port, &digest, sink.path());
    wait_receiving(sink.path());
    core.signal("TERM");
    let out = download.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "in-flight HTTPS download was cut: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        core.log()
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        (200u64 << 20).to_string()
    );
    let status = core.wait_exit(Duration::from_secs(10));
    assert!(
        status.is_some_and(|s| s.success()),
        "core did not exit cleanly: {status:?}\n{}",
        core.log()
    );
    drop(idle);
}

/// Pushes a 200 MiB blob to `slow/` on a plain connector; returns its digest.
fn push_200_mib(connector: &str) -> String {
    let blob = vec![9u8; 200 << 20];
    let r = berth_tests::registry::push_blob(connector, "slow", &blob).unwrap();
    assert_eq!(r.status, 201);
    berth_tests::http::digest(&blob)
}

/// Returns once the first bytes of a download have arrived in `file`: it is in flight.
fn wait_receiving(file: &Path) {
    let started = || std::fs::metadata(file).is_ok_and(|m| m.len() > 0);
    wait_for(|| started().then_some(())).expect("the download never started");
}

/// How many bytes the upload session at `loc` holds (its `Range`), asked through the edge.
fn received(pki: &Pki, port: u16, loc: &str) -> u64 {
    let out = run(curl(&pki.ca_cert(), "registry.test", "127.0.0.1", port)
        .args(["-D", "-", "-o", "/dev/null"])
        .arg(loc));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.starts_with("HTTP/2 204"), "{text}");
    header(&text, "range")
        .and_then(|r| r.trim_start_matches("0-").parse::<u64>().ok())
        .map_or(0, |e| e + 1)
}

/// Downloads `slow/<digest>` over HTTPS at 50 MB/s (about 4 s); prints the size downloaded.
fn slow_download(pki: &Pki, port: u16, digest: &str, to: &Path) -> std::process::Child {
    curl(&pki.ca_cert(), "registry.test", "127.0.0.1", port)
        .args(["--fail", "--limit-rate", "50M", "-o"])
        .arg(to)
        .args(["-w", "%{size_download}"])
        .arg(format!(
            "https://registry.test:{port}/v2/slow/blobs/{digest}"
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The closing `PUT ?digest=` of an upload session through the edge; its status.
fn finish_upload(pki: &Pki, port: u16, loc: &str, digest: &str) -> String {
    let out = run(curl(&pki.ca_cert(), "registry.test", "127.0.0.1", port)
        .args([
            "--fail",
            "-X",
            "PUT",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(format!("{loc}?digest={digest}")));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
