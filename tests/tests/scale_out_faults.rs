//! Faults behind one edge, with real processes: a core that loses its database answers 503 on
//! `/readyz`, leaves the edge's pool and comes back by itself when the database does; a core
//! killed with SIGKILL in the middle of a pull load costs no pull the edge could still save,
//! and in the middle of pushes and pulls loses no push it acknowledged.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_tests::core::Core;
use berth_tests::edge::{curl, front_edge, wait_for, Edge};
use berth_tests::http::{digest, request};
use berth_tests::postgres::Postgres;
use berth_tests::registry::{oci_manifest, push_blob, put_manifest};
use berth_tests::s3::S3Server;
use berth_tests::tls;

/// A core on `pg` (and `s3`'s bucket, if given; else its own directory).
fn core(pg: &Postgres, s3: Option<&S3Server>) -> Core {
    let dir = tempfile::tempdir().unwrap();
    let blobs = s3.map_or(String::new(), |s| {
        format!("  blobs: {}\n", s.config("registry"))
    });
    let config = format!(
        "storage:\n  root: {}\n  metadata: {{ postgres: {{ url: \"{}\" }} }}\n{blobs}\
         main: {{ listen: 127.0.0.1:0 }}\n\
         repositories:\n  - {{ name: hosted, kind: hosted, connector: {{ http: 127.0.0.1:0 }} }}\n",
        dir.path().join("data").display(),
        pg.url,
    );
    Core::start_in(dir, &config)
}

/// An edge over `upstreams`; (edge, its CA certificate).
fn edge(upstreams: &[&str], pki: &Path) -> (Edge, PathBuf) {
    let (edge, trust) = front_edge(upstreams, pki);
    (edge, trust.join("ca.crt"))
}

fn healthy_upstreams(edge: &Edge) -> u64 {
    let r = request(
        &format!("127.0.0.1:{}", edge.ports[1]),
        "GET",
        "/readyz",
        &[],
        b"",
    )
    .unwrap();
    r.json()["listeners"][0]["healthy_upstreams"]
        .as_u64()
        .unwrap_or(0)
}

/// The status (or curl's failure) of a GET through the edge.
fn get_through(port: u16, ca: &Path, path: &str) -> Result<u16, String> {
    let out = curl(ca, "localhost", "127.0.0.1", port)
        .args(["-o", "/dev/null", "-w", "%{http_code}"])
        .arg(format!("https://localhost:{port}{path}"))
        .output()
        .unwrap();
    let code = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    match out.status.success() {
        true => Ok(code.parse().unwrap_or(0)),
        false => Err(format!(
            "curl {:?} after {code}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

#[test]
fn a_core_that_loses_its_database_leaves_the_pool_and_comes_back() {
    let (pg_a, pg_b) = (Postgres::start(), Postgres::start());
    let (a, b) = (core(&pg_a, None), core(&pg_b, None));
    let pki = tempfile::tempdir().unwrap();
    let (edge, ca) = edge(&[a.connector("hosted"), b.connector("hosted")], pki.path());
    assert!(wait_for(|| (healthy_upstreams(&edge) == 2).then_some(())).is_some());

    pg_b.stop();
    // Core B says it is not ready, and why; a request that needs the database fails with 503
    // and a message instead of hanging.
    let ready = wait_for(|| {
        let r = request(b.connector("hosted"), "GET", "/readyz", &[], b"").unwrap();
        (r.status == 503).then_some(r)
    })
    .expect("B stayed ready without its database");
    assert_ne!(ready.json()["metadata"], "ok", "{}", ready.json());
    let started = Instant::now();
    let r = request(b.connector("hosted"), "GET", "/v2/_catalog", &[], b"").unwrap();
    let took = started.elapsed();
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert!(took < Duration::from_secs(6), "took {took:?}");
    assert!(String::from_utf8_lossy(&r.body).contains("metadata database is unavailable"));
    assert_eq!(r.header("retry-after"), Some("5"));
    eprintln!("a request on a core without its database failed in {took:?}");

    // The edge takes B out: every request through it is answered by A.
    assert!(
        wait_for(|| (healthy_upstreams(&edge) == 1).then_some(())).is_some(),
        "the edge kept the core without a database in its pool"
    );
    for _ in 0..20 {
        assert_eq!(get_through(edge.ports[0], &ca, "/v2/_catalog"), Ok(200));
    }

    // The database is back: B recovers without a restart, and rejoins the pool.
    pg_b.resume();
    assert!(
        wait_for(|| (healthy_upstreams(&edge) == 2).then_some(())).is_some(),
        "B did not come back"
    );
    let r = request(b.connector("hosted"), "GET", "/v2/_catalog", &[], b"").unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn a_core_killed_during_a_pull_load_costs_no_pull_the_edge_can_save() {
    let pg = Postgres::start();
    let s3 = S3Server::start();
    let (a, mut b) = (core(&pg, Some(&s3)), core(&pg, Some(&s3)));
    let layer: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let config = b"{}".to_vec();
    for blob in [&config, &layer] {
        assert_eq!(
            push_blob(a.connector("hosted"), "app", blob)
                .unwrap()
                .status,
            201
        );
    }
    let manifest = oci_manifest(&config, &[&layer]);
    assert_eq!(
        put_manifest(a.connector("hosted"), "app", "v1", &manifest)
            .unwrap()
            .status,
        201
    );
    let pki = tempfile::tempdir().unwrap();
    let (edge, ca) = edge(&[a.connector("hosted"), b.connector("hosted")], pki.path());
    assert!(wait_for(|| (healthy_upstreams(&edge) == 2).then_some(())).is_some());

    // Four pullers, manifests and the layer in turn, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(Mutex::new(Vec::new()));
    let paths = [
        "/v2/app/manifests/v1".to_owned(),
        format!("/v2/app/blobs/{}", digest(&layer)),
    ];
    let port = edge.ports[0];
    let pullers: Vec<_> = (0..4)
        .map(|i| {
            let (stop, answers, ca) = (stop.clone(), answers.clone(), ca.clone());
            let path = paths[i % 2].clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let got = get_through(port, &ca, &path);
                    answers.lock().unwrap().push(got);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    b.kill9();
    let killed_at = answers.lock().unwrap().len();
    std::thread::sleep(Duration::from_millis(2500));
    stop.store(true, Ordering::SeqCst);
    for p in pullers {
        p.join().unwrap();
    }
    let answers = answers.lock().unwrap();
    // A pull whose answer had begun when its core died is cut off (curl says so; the client
    // retries it); none is answered with an error status, and none fails after the kill
    // settled.
    let errors: Vec<_> = answers
        .iter()
        .filter(|a| !matches!(a, Ok(200) | Err(_)))
        .collect();
    assert!(errors.is_empty(), "error answers: {errors:?}");
    let cut: Vec<_> = answers.iter().filter(|a| a.is_err()).collect();
    assert!(cut.len() <= 4, "{} pulls cut off: {cut:?}", cut.len());
    let after = &answers[killed_at + 8..];
    assert!(after.iter().all(|a| *a == Ok(200)), "{after:?}");
    eprintln!(
        "{} pulls, {} cut off mid-answer by the kill, {} after it",
        answers.len(),
        cut.len(),
        answers.len() - killed_at
    );
}

/// Three cores on one PostgreSQL and bucket, each with the same proxy repository: the same
/// cold 32 MiB layer pulled through all three at once is fetched from the remote once, and
/// every client gets it whole.
#[test]
fn three_cores_pulling_one_cold_blob_ask_the_remote_once() {
    use berth_tests::relay::Relay;
    let remote = Core::start();
    let layer: Vec<u8> = (0..32u32 << 20)
        .map(|i| (i.wrapping_mul(31) % 253) as u8)
        .collect();
    let d = digest(&layer);
    let path = format!("/v2/big/app/blobs/uploads/?digest={d}");
    let r = request(remote.connector("hosted"), "POST", &path, &[], &layer).unwrap();
    assert_eq!(r.status, 201);
    let relay = Relay::start(remote.connector("hosted"));
    relay.rate.store(16 << 20, Ordering::SeqCst); // ~2 s for the layer
    let pg = Postgres::start();
    let s3 = S3Server::start();
    let cores: Vec<Core> = (0..3)
        .map(|_| {
            let dir = tempfile::tempdir().unwrap();
            let config = format!(
                "storage:\n  root: {}\n  metadata: {{ postgres: {{ url: \"{}\" }} }}\n  blobs: {}\n\
                 main: {{ listen: 127.0.0.1:0 }}\nrepositories:\n\
                 \x20 - name: hub\n    kind: proxy\n    connector: {{ http: 127.0.0.1:0 }}\n\
                 \x20   remote: {{ url: \"http://{}\" }}\n",
                dir.path().join("data").display(),
                pg.url,
                s3.config("registry"),
                relay.addr,
            );
            Core::start_in(dir, &config)
        })
        .collect();
    let pulls: Vec<_> = cores
        .iter()
        .flat_map(|c| {
            let addr = c.connector("hub").to_owned();
            (0..2).map(move |_| addr.clone())
        })
        .map(|addr| {
            let path = format!("/v2/big/app/blobs/{d}");
            std::thread::spawn(move || request(&addr, "GET", &path, &[], b"").unwrap())
        })
        .collect();
    for p in pulls {
        let r = p.join().unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(digest(&r.body), d, "a client got other bytes");
    }
    assert_eq!(
        relay.count("GET", &format!("/blobs/{d}")),
        1,
        "remote requests: {:?}",
        relay.requests.lock().unwrap()
    );
}

/// A PATCH cut off by its core's SIGKILL: the session is still there on another core, at the
/// offset of what was durably appended, and the client finishes it there.
#[test]
fn a_patch_cut_off_by_a_killed_core_is_resumed_on_another() {
    use std::io::Write as _;
    let pg = Postgres::start();
    let s3 = S3Server::start();
    let (a, mut b) = (core(&pg, Some(&s3)), core(&pg, Some(&s3)));
    let blob: Vec<u8> = (0..6_000_000u32).map(|i| (i % 241) as u8).collect();
    let (one, rest) = blob.split_at(2_000_000);
    let started = request(
        b.connector("hosted"),
        "POST",
        "/v2/app/blobs/uploads/",
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(started.status, 202);
    let location = started.header("location").unwrap().to_owned();
    let path = location
        .split_once("://")
        .map_or(location.as_str(), |(_, r)| &r[r.find('/').unwrap()..])
        .to_owned();
    let range = format!("0-{}", one.len() - 1);
    let first = request(
        b.connector("hosted"),
        "PATCH",
        &path,
        &[("content-range", &range)],
        one,
    )
    .unwrap();
    assert_eq!(first.status, 202);

    // The second PATCH: half its body sent, then its core dies.
    let mut conn = std::net::TcpStream::connect(b.connector("hosted")).unwrap();
    write!(
        conn,
        "PATCH {path} HTTP/1.1\r\nHost: x\r\nContent-Range: {}-{}\r\nContent-Length: {}\r\n\r\n",
        one.len(),
        blob.len() - 1,
        rest.len()
    )
    .unwrap();
    conn.write_all(&rest[..rest.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    b.kill9();

    // On A: the session stands at what B durably appended, and it finishes there.
    let status = request(a.connector("hosted"), "GET", &path, &[], b"").unwrap();
    assert_eq!(status.status, 204);
    let have = status.header("range").unwrap().to_owned();
    let end: usize = have.split('-').nth(1).unwrap().parse::<usize>().unwrap() + 1;
    assert!(end >= one.len() && end <= blob.len(), "range {have}");
    // The dead writer's claim on the offset lapses (10 s without a sign of life): the client's
    // retries are refused until then, and then taken.
    let range = format!("{end}-{}", blob.len() - 1);
    let started = Instant::now();
    let resumed = wait_for(|| {
        let r = request(
            a.connector("hosted"),
            "PATCH",
            &path,
            &[("content-range", &range)],
            &blob[end..],
        )
        .unwrap();
        if r.status != 202 {
            std::thread::sleep(Duration::from_millis(500));
        }
        (r.status == 202).then_some(r)
    })
    .expect("the append was never resumed");
    eprintln!("resumed {:?} after the kill", started.elapsed());
    assert_eq!(resumed.status, 202);
    let d = digest(&blob);
    let sep = if path.contains('?') { '&' } else { '?' };
    let done = request(
        a.connector("hosted"),
        "PUT",
        &format!("{path}{sep}digest={d}"),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(done.status, 201, "{}", String::from_utf8_lossy(&done.body));
    let got = request(
        a.connector("hosted"),
        "GET",
        &format!("/v2/app/blobs/{d}"),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(digest(&got.body), d);
}

/// The S3 endpoint goes away: a pull answers 503 naming the blob store (not a 500, not a
/// minutes-long hang), `/readyz` says so, and the core serves again once the endpoint is back.
#[test]
fn a_core_whose_bucket_goes_away_answers_503_and_recovers() {
    let pg = Postgres::start();
    let mut s3 = S3Server::start();
    let a = core(&pg, Some(&s3));
    let blob = vec![7u8; 300_000];
    assert_eq!(
        push_blob(a.connector("hosted"), "app", &blob)
            .unwrap()
            .status,
        201
    );
    let path = format!("/v2/app/blobs/{}", digest(&blob));

    s3.stop();
    let started = Instant::now();
    let r = request(a.connector("hosted"), "GET", &path, &[], b"").unwrap();
    let took = started.elapsed();
    eprintln!(
        "a pull with the bucket gone answered {} in {took:?}",
        r.status
    );
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body).contains("blob store is unavailable"));
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let ready = request(a.connector("hosted"), "GET", "/readyz", &[], b"").unwrap();
    assert_eq!(ready.status, 503);

    s3.resume();
    let back = wait_for(|| {
        let r = request(a.connector("hosted"), "GET", &path, &[], b"").unwrap();
        (r.status == 200).then_some(r)
    })
    .expect("the core did not serve again once the bucket was back");
    assert_eq!(digest(&back.body), digest(&blob));
}

/// What a pusher thread saw: pushes acknowledged (tag, manifest digest, layer) and failures.
#[derive(Default)]
struct Pushes {
    done: Vec<(String, String, Vec<u8>)>,
    failed: Vec<String>,
}

/// One push through the edge on `conn`: a 256 KiB layer, then a manifest tagged `tag`; the
/// manifest's digest once both are acknowledged.
fn push_through(conn: &mut tls::Conn, tag: &str, layer: &[u8]) -> Result<String, String> {
    let config = format!("{{\"tag\":\"{tag}\"}}").into_bytes();
    for blob in [&config[..], layer] {
        let path = format!("/v2/mixed/blobs/uploads/?digest={}", digest(blob));
        let (status, _, body) = conn
            .request("POST", &path, &[], blob)
            .map_err(|e| e.to_string())?;
        if status != 201 {
            return Err(format!("blob: {status} {}", String::from_utf8_lossy(&body)));
        }
    }
    let manifest = oci_manifest(&config, &[layer]);
    let headers = [("Content-Type", "application/vnd.oci.image.manifest.v1+json")];
    let path = format!("/v2/mixed/manifests/{tag}");
    let (status, _, body) = conn
        .request("PUT", &path, &headers, &manifest)
        .map_err(|e| e.to_string())?;
    if status != 201 {
        return Err(format!(
            "manifest: {status} {}",
            String::from_utf8_lossy(&body)
        ));
    }
    Ok(digest(&manifest))
}

/// Pushes until `stop`, reconnecting after a failure, as a client that retries would.
fn pusher(id: usize, port: u16, ca: PathBuf, stop: Arc<AtomicBool>, seen: Arc<Mutex<Pushes>>) {
    let config = tls::config(&ca);
    let addr = format!("127.0.0.1:{port}");
    let host = format!("localhost:{port}");
    let mut conn = None;
    let mut n = 0u32;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let tag = format!("p{id}-{n}");
        let layer: Vec<u8> = (0..256 * 1024u32)
            .map(|i| (i.wrapping_mul(31) ^ n ^ (id as u32) << 8) as u8)
            .collect();
        let c = match conn
            .take()
            .map_or_else(|| tls::Conn::open(&config, &addr, &host), Ok)
        {
            Ok(c) => conn.insert(c),
            Err(e) => {
                seen.lock()
                    .unwrap()
                    .failed
                    .push(format!("{tag}: connect: {e}"));
                continue;
            }
        };
        match push_through(c, &tag, &layer) {
            Ok(manifest) => seen.lock().unwrap().done.push((tag, manifest, layer)),
            Err(e) => {
                conn = None;
                seen.lock().unwrap().failed.push(format!("{tag}: {e}"));
            }
        }
    }
}

/// Three cores under pulls and pushes at once through one edge; one is killed with SIGKILL.
/// No pull is answered with an error, at most the requests in flight on the dead core are cut
/// off, and every push acknowledged before or after the kill pulls back whole.
#[test]
fn a_core_killed_during_pushes_and_pulls_loses_no_acknowledged_push() {
    let pg = Postgres::start();
    let s3 = S3Server::start();
    let mut cores: Vec<Core> = (0..3).map(|_| core(&pg, Some(&s3))).collect();
    let layer: Vec<u8> = (0..1_000_000u32).map(|i| (i % 241) as u8).collect();
    let config = b"{}".to_vec();
    for blob in [&config, &layer] {
        let r = push_blob(cores[0].connector("hosted"), "app", blob).unwrap();
        assert_eq!(r.status, 201);
    }
    let manifest = oci_manifest(&config, &[&layer]);
    let r = put_manifest(cores[0].connector("hosted"), "app", "v1", &manifest).unwrap();
    assert_eq!(r.status, 201);
    let pki = tempfile::tempdir().unwrap();
    let upstreams: Vec<&str> = cores.iter().map(|c| c.connector("hosted")).collect();
    let (edge, ca) = edge(&upstreams, pki.path());
    assert!(wait_for(|| (healthy_upstreams(&edge) == 3).then_some(())).is_some());

    let port = edge.ports[0];
    let stop = Arc::new(AtomicBool::new(false));
    let pulls = Arc::new(Mutex::new(Vec::new()));
    let pushes = Arc::new(Mutex::new(Pushes::default()));
    let paths = [
        "/v2/app/manifests/v1".to_owned(),
        format!("/v2/app/blobs/{}", digest(&layer)),
    ];
    let mut threads: Vec<_> = (0..2)
        .map(|i| {
            let (stop, pulls, ca, path) =
                (stop.clone(), pulls.clone(), ca.clone(), paths[i].clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let got = get_through(port, &ca, &path);
                    pulls.lock().unwrap().push(got);
                }
            })
        })
        .collect();
    for id in 0..2 {
        let (stop, pushes, ca) = (stop.clone(), pushes.clone(), ca.clone());
        threads.push(std::thread::spawn(move || {
            pusher(id, port, ca, stop, pushes)
        }));
    }
    std::thread::sleep(Duration::from_millis(1500));
    cores[2].kill9();
    let pulled_at = pulls.lock().unwrap().len();
    // Once the edge has seen the core die (health checks every 200 ms), nothing more fails.
    std::thread::sleep(Duration::from_millis(1000));
    let failed_by_then = pushes.lock().unwrap().failed.len();
    std::thread::sleep(Duration::from_millis(2000));
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }

    let pulls = pulls.lock().unwrap();
    let errors: Vec<_> = pulls
        .iter()
        .filter(|a| !matches!(a, Ok(200) | Err(_)))
        .collect();
    assert!(errors.is_empty(), "error answers to pulls: {errors:?}");
    let cut = pulls.iter().filter(|a| a.is_err()).count();
    assert!(cut <= 2, "{cut} pulls cut off");
    assert!(pulls[pulled_at + 8..].iter().all(|a| *a == Ok(200)));
    let pushes = pushes.lock().unwrap();
    // A push in flight on the killed core may fail (the client retries it); two pushers, so
    // at most two, and none once the edge has taken the core out.
    assert!(
        pushes.failed.len() <= 2,
        "failed pushes: {:?}",
        pushes.failed
    );
    assert_eq!(pushes.failed.len(), failed_by_then, "{:?}", pushes.failed);
    assert!(pushes.done.len() >= 10, "only {} pushes", pushes.done.len());
    let alive = cores[0].connector("hosted");
    for (tag, manifest, blob) in &pushes.done {
        let r = request(
            alive,
            "GET",
            &format!("/v2/mixed/manifests/{tag}"),
            &[("Accept", "application/vnd.oci.image.manifest.v1+json")],
            b"",
        )
        .unwrap();
        assert_eq!(r.status, 200, "{tag}");
        assert_eq!(&digest(&r.body), manifest, "{tag}");
        let r = request(
            alive,
            "GET",
            &format!("/v2/mixed/blobs/{}", digest(blob)),
            &[],
            b"",
        )
        .unwrap();
        assert_eq!(r.status, 200, "{tag}'s layer");
        assert_eq!(digest(&r.body), digest(blob), "{tag}'s layer");
    }
    eprintln!(
        "{} pulls ({cut} cut off by the kill), {} pushes acknowledged and pulled back, {} failed: {:?}",
        pulls.len(),
        pushes.done.len(),
        pushes.failed.len(),
        pushes.failed
    );
}
