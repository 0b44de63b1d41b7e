//! What a client can hold of the server, against the real binary: the open-files limit, idle
//! and half-sent connections, the connection cap, stalled and slow bodies, the drain on SIGTERM,
//! and a full disk.

use std::time::{Duration, Instant};

use berth_e2e::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn basic(b: &Berth) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("AWS:{}", b.token())))
}

/// Reads until the server closes the connection (or `limit` passes): what it sent, and whether
/// it closed.
async fn read_until_closed(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, false),
        }
    }
}

/// Reads one HTTP/1.1 response head (and a body of `content-length` bytes).
async fn read_response(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                .unwrap_or(0);
            while got.len() < end + 4 + len {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "closed mid-response");
                got.extend_from_slice(&buf[..n]);
            }
            return head;
        }
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.expect("a response").unwrap();
        assert!(n > 0, "closed before a response");
        got.extend_from_slice(&buf[..n]);
    }
}

fn soft_open_files_limit(pid: u32) -> u64 {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    line.split_whitespace().nth(3).unwrap().parse().unwrap()
}

#[tokio::test]
async fn the_open_files_limit_is_raised_and_idle_sockets_block_nobody() {
    if single_node(
        "one node's connection handling (limits, timeouts, drain, a full disk): behind nginx the client's connections end at nginx",
    ) {
        return;
    }
    let b = Berth::start_under(&["prlimit", "--nofile=256:4096"], &[]);
    assert_eq!(soft_open_files_limit(b.pid()), 4096, "the soft limit is raised to the hard one at start");
    // More idle sockets than the limit the server was started with.
    let mut idle = Vec::new();
    for _ in 0..400 {
        idle.push(TcpStream::connect(b.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = tokio::time::timeout(Duration::from_secs(10), b.client().get(b.url("/v2/")).send())
        .await
        .expect("a normal request is served beside 400 idle sockets")
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn half_sent_and_idle_connections_are_closed() {
    if single_node(
        "one node's connection handling (limits, timeouts, drain, a full disk): behind nginx the client's connections end at nginx",
    ) {
        return;
    }
    let b = Berth::start_env(&[("BERTH_HEADER_READ_TIMEOUT_SECONDS", "2"), ("BERTH_IDLE_TIMEOUT_SECONDS", "5")]);
    let auth = basic(&b);

    // Slowloris: half the headers, then nothing. Closed by the header-read timeout.
    let mut half = TcpStream::connect(b.addr).await.unwrap();
    half.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut half, Duration::from_secs(10)).await;
    assert!(closed, "a half-sent request keeps its connection");
    assert!(started.elapsed() >= Duration::from_millis(1500), "{:?}", started.elapsed());

    // A keep-alive connection between requests is idle, not reading headers: it outlives the
    // header timeout and serves the next request, then closes after the idle timeout.
    let mut keep = TcpStream::connect(b.addr).await.unwrap();
    let request = format!("GET /v2/ HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n");
    keep.write_all(request.as_bytes()).await.unwrap();
    assert!(read_response(&mut keep).await.starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    keep.write_all(request.as_bytes()).await.unwrap();
    assert!(read_response(&mut keep).await.starts_with("HTTP/1.1 200"));
    let started = Instant::now();
    let (_, closed) = read_until_closed(&mut keep, Duration::from_secs(15)).await;
    assert!(closed, "an idle keep-alive connection stays open");
    assert!(started.elapsed() >= Duration::from_secs(3), "{:?}", started.elapsed());

    // A connection that never sends anything: closed after the idle timeout.
    let mut silent = TcpStream::connect(b.addr).await.unwrap();
    let (_, closed) = read_until_closed(&mut silent, Duration::from_secs(15)).await;
    assert!(closed);
}

#[tokio::test]
async fn past_the_connection_cap_a_client_gets_503_at_once() {
    if single_node(
        "one node's connection handling (limits, timeouts, drain, a full disk): behind nginx the client's connections end at nginx",
    ) {
        return;
    }
    let b = Berth::start_env(&[("BERTH_MAX_CONNECTIONS", "20")]);
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut c = TcpStream::connect(b.addr).await.unwrap();
        // An answer proves the server holds the connection (on a busy machine accepting can lag).
        c.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        assert!(read_response(&mut c).await.starts_with("HTTP/1.1 "));
        held.push(c);
    }
    let mut over = TcpStream::connect(b.addr).await.unwrap();
    let (got, closed) = read_until_closed(&mut over, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
    assert!(closed && text.starts_with("http/1.1 503"), "{text}");
    assert!(text.contains("connection: close"), "{text}");
    // Places come back as connections close.
    held.clear();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.client().get(b.url("/v2/")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_long_download_outlasts_the_header_and_idle_timeouts() {
    if single_node(
        "one node's connection handling (limits, timeouts, drain, a full disk): behind nginx the client's connections end at nginx",
    ) {
        return;
    }
    let b = Berth::start_env(&[("BERTH_HEADER_READ_TIMEOUT_SECONDS", "1"), ("BERTH_IDLE_TIMEOUT_SECONDS", "2")]);
    let data = pseudo_random(31, 48 * 1024 * 1024);
    let d = push_blob(&b.client(), &b, "long/app", &data).await;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, basic(&b).parse().unwrap());
    for http2 in [false, true] {
        let builder = reqwest::Client::builder().default_headers(headers.clone());
        let client = if http2 { builder.http2_prior_knowledge() } else { builder.http1_only() }.build().unwrap();
        let r = client.get(b.url(&format!("/v2/long/app/blobs/{d}"))).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.version(), if http2 { reqwest::Version::HTTP_2 } else { reqwest::Version::HTTP_11 });
        // The client reads slowly and pauses past both timeouts: the server is busy sending
        // (HTTP/2 window updates keep arriving meanwhile), not idle and not reading a head.
        let mut body = r.bytes_stream();
        let mut got = Vec::new();
        let mut paused = false;
        use futures_util::StreamExt;
        while let Some(chunk) = body.next().await {
            got.extend_from_slice(&chunk.unwrap_or_else(|e| panic!("http2={http2}: the download was cut: {e}")));
            if !paused && got.len() > 1024 * 1024 {
                tokio::time::sleep(Duration::from_secs(3)).await;
                paused = true;
            }
        }
        assert_eq!(got.len(), data.len(), "http2={http2}");
        assert_eq!(sha256(&got), d, "http2={http2}");
    }
}

/// Starts an upload session; returns its path.
async fn start_upload(b: &Berth, repo: &str) -> String {
    let r = b.client().post(b.url(&format!("/v2/{repo}/blobs/uploads/"))).send().await.unwrap();
    assert_eq!(r.status(), 202);
    r.headers()["location"].to_str().unwrap().to_string()
}

/// Sends a PATCH head announcing `len` bytes.
async fn patch_head(b: &Berth, auth: &str, path: &str, len: usize) -> TcpStream {
    let mut s = TcpStream::connect(b.addr).await.unwrap();
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s
}

#[tokio::test]
async fn a_stalled_body_is_cut_off_and_a_slow_live_one_finishes() {
    if single_node(
        "one node's connection handling (limits, timeouts, drain, a full disk): behind nginx the client's connections end at nginx",
    ) {
        return;
    }
    let b =
        Berth::start_env(&[("BERTH_MIN_UPLOAD_BYTES_PER_SECOND", "1024"), ("BERTH_MIN_UPLOAD_WINDOW_SECONDS", "2")]);
    let auth = basic(&b);
    // 100 bytes of 100,000, then nothing: answered and closed within a few windows.
    let path = start_upload(&b, "slow/app").await;
    let mut stalled = patch_head(&b, &auth, &path, 100_000).await;
    stalled.write_all(&[1u8; 100]).await.unwrap();
    let (got, closed) = read_until_closed(&mut stalled, Duration::from_secs(15)).await;
    assert!(closed, "a stalled body holds its connection");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");

    // 20 KiB at 4 KiB/s: slower than a fast client, faster than the minimum. It finishes.
    let path = start_upload(&b, "slow/app").await;
    let mut live = patch_head(&b, &auth, &path, 20 * 1024).await;
    for _ in 0..10 {
        live.write_all(&[2u8; 2048]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let head = read_response(&mut live).await;
    assert!(head.starts_with("HTTP/1.1 202"), "{head}");
    assert!(head.to_ascii_lowercase().contains("range: 0-20479"), "{head}");
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_within_the_drain_period() {
    if single_node(
        "one node's connection handling (limits, timeouts, drain, a full disk): behind nginx the client's connections end at nginx",
    ) {
        return;
    }
    let mut b =
        Berth::start_env(&[("BERTH_SHUTDOWN_DRAIN_SECONDS", "4"), ("BERTH_HEADER_READ_TIMEOUT_SECONDS", "120")]);
    let auth = basic(&b);
    let data_dir = b.data_dir.clone();
    // A half-sent request that would hold a graceful shutdown forever.
    let mut half = TcpStream::connect(b.addr).await.unwrap();
    half.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    // A live upload in flight when SIGTERM comes.
    let path = start_upload(&b, "drain/app").await;
    let mut live = patch_head(&b, &auth, &path, 16 * 1024).await;
    live.write_all(&[3u8; 4096]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = b.pid();
    let signalled = Instant::now();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap().success());
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        live.write_all(&[3u8; 4096]).await.unwrap();
    }
    let head = read_response(&mut live).await;
    assert!(head.starts_with("HTTP/1.1 202"), "the in-flight upload finished: {head}");
    let status = b.stop();
    assert!(status.success(), "{status:?}");
    let took = signalled.elapsed();
    assert!(took < Duration::from_secs(12), "shutdown took {took:?}");
    // What was acknowledged is there after a restart.
    let b2 = Berth::start_in(&data_dir);
    let r = b2.client().get(b2.url(&path)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(r.headers()["range"], "0-16383");
}

/// A tmpfs of `mib` MiB mounted on `<fresh dir>/data` (the tests run as root), so the server's
/// log beside it stays on another disk; unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(mib: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path().join("data"))
            .output()
            .unwrap();
        assert!(out.status.success(), "mounting a tmpfs needs root: {}", String::from_utf8_lossy(&out.stderr));
        SmallDisk { dir }
    }

    fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.data()).status();
    }
}

#[tokio::test]
async fn a_full_disk_is_the_servers_fault_and_space_freed_is_used_again() {
    if single_node(
        "one node's connection handling (limits, timeouts, drain, a full disk): behind nginx the client's connections end at nginx",
    ) {
        return;
    }
    let disk = SmallDisk::mount(24);
    let mut b = Berth::start_in(&disk.data());
    b.create_on_push();
    let c = b.client();
    let (image, _) = push_image(&c, &b, "full/app", "v1", 21).await;

    // Chunks until the disk is full (each small enough that the client finishes sending it and
    // reads the answer): 507 with UNKNOWN and "insufficient storage", not a client error.
    let chunk = pseudo_random(22, 256 * 1024);
    let path = start_upload(&b, "full/app").await;
    let mut full = 0;
    for _ in 0..200 {
        let r = c.patch(b.url(&path)).body(chunk.clone()).send().await.unwrap();
        if r.status() == 202 {
            assert_eq!(full, 0, "accepted again while the disk is full");
            continue;
        }
        assert_eq!(r.status(), 507);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["errors"][0]["code"], "UNKNOWN");
        assert_eq!(v["errors"][0]["message"], "insufficient storage");
        full += 1;
        if full == 3 {
            break;
        }
    }
    assert_eq!(full, 3, "the disk never filled");
    // Writes through the ECR API fail as the server's fault too.
    let (status, v) = b.ecr("InitiateLayerUpload", json!({"repositoryName": "full/app"}));
    assert_eq!(status, 200, "{v}");
    let part = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(&chunk)
    };
    let (status, v) = b.ecr(
        "UploadLayerPart",
        json!({"repositoryName": "full/app", "uploadId": v["uploadId"], "partFirstByte": 0,
               "partLastByte": chunk.len() - 1, "layerPartBlob": part}),
    );
    assert_eq!((status, v["__type"].as_str().unwrap_or_default()), (500, "ServerException"), "{v}");
    // Reads go on.
    let r = c.get(b.url("/v2/full/app/manifests/v1")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["docker-content-digest"].to_str().unwrap(), image);

    // Space freed (the partial upload dropped): writes are accepted again.
    let r = c.delete(b.url(&path)).send().await.unwrap();
    assert_eq!(r.status(), 204);
    push_image(&c, &b, "full/app", "v2", 23).await;
    let (status, v) = b.ecr("CreateRepository", json!({"repositoryName": "full/more"}));
    assert_eq!(status, 200, "{v}");
    b.stop();
    // Logged once (a minute), not once per request.
    let log = std::fs::read_to_string(disk.dir.path().join("data.log")).unwrap();
    assert_eq!(log.matches("out of storage space").count(), 1, "{log}");
}
