//! Floods and stalls: hundreds of connections that send nothing, half a request head,
//! or half an upload do not keep a survivor out; uploads past the cap are refused at
//! once with 503 and Retry-After; an upload that trickles forever meets its deadline;
//! the storage quota answers 507 before anything is acknowledged.

use crate::common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn still_open(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let open =
        matches!((&*stream).read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    stream.set_nonblocking(false).unwrap();
    open
}

/// Whether the server has written something back (without reading it).
fn answered(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let answered = matches!(stream.peek(&mut byte), Ok(n) if n > 0);
    stream.set_nonblocking(false).unwrap();
    answered
}

#[test]
fn five_hundred_stalled_connections_do_not_keep_a_survivor_out() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let cap = 50;
    let server = Server::start(dir.path(), &coalition, &format!("max_concurrent_uploads = {cap}"));
    // Past the size kept in memory: each stalled upload shows as a temp file. Larger
    // than a testimony without files, so it takes an upload slot.
    let body = multipart_body(&[
        text("testimony", "stalled"),
        file("evidence", "a.jpg", "image/jpeg", &noise(400_000, 1)),
    ]);

    // 500 connections held open: some silent, some with half a request head, and as many
    // stalled uploads as leave one upload slot free.
    let mut held = Vec::new();
    for i in 0..(500 - (cap - 1)) {
        let mut stream = connect(server.addr);
        if i % 2 == 0 {
            stream.write_all(b"POST /api/v1/submissions HTTP/1.1\r\nHost: x\r\nContent-").unwrap();
        }
        held.push(stream);
    }
    for _ in 0..cap - 1 {
        held.push(partial_upload(server.addr, &body, 150_000));
    }
    wait_until("the stalled uploads are being received", || server.temp_files().len() == cap - 1);

    // Health checks and a survivor's submission still get through.
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let started = Instant::now();
        assert_eq!(get(server.addr, "/healthz").status, 200);
        worst = worst.max(started.elapsed());
    }
    let started = Instant::now();
    normal_submission_works(&server);
    let submission = started.elapsed();
    let open = held.iter().filter(|s| still_open(s)).count();
    println!(
        "flood: held={} still_open={open} healthz_worst_ms={} submission_ms={} server_peak_kib={}",
        held.len(),
        worst.as_millis(),
        submission.as_millis(),
        peak_memory_kib(server.pid())
    );

    // The last slot taken, the next upload with files is refused at once, with a time to
    // come back, and /healthz says so; a testimony without files still gets in.
    let _last = partial_upload(server.addr, &body, 150_000);
    wait_until("the last slot is taken", || server.temp_files().len() == cap);
    let refused = post_multipart(
        server.addr,
        "/api/v1/submissions",
        &[text("testimony", "t"), file("evidence", "b.jpg", "image/jpeg", &noise(400_000, 2))],
    );
    assert_refused(&refused, 503, "busy");
    assert!(refused.header("retry-after").is_some_and(|s| s.parse::<u64>().is_ok()));
    let health = get(server.addr, "/healthz");
    assert_eq!(health.status, 503, "{}", health.text());
    assert!(health.text().starts_with("busy"), "{}", health.text());
    let status = amanat(&["status", "--json", "--data-dir", server.data_dir.to_str().unwrap()]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["intake"]["uploads_in_progress"], cap as u64, "{status}");
    let text_only = post_multipart(
        server.addr,
        "/api/v1/submissions",
        &[text("testimony", "No photos: they took my phone.")],
    );
    assert_eq!(text_only.status, 201, "a survivor without files is never refused as busy");
    let page = get(server.addr, "/ru/submit");
    assert_eq!(page.status, 200, "pages still load while uploads are refused");

    // A stalled upload that gives up frees its slot, and nothing of it stays.
    drop(held);
    wait_until("abandoned uploads are cleaned up", || server.temp_files().len() == 1);
    normal_submission_works(&server);
}

#[test]
fn an_upload_that_trickles_forever_meets_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server =
        Server::start(dir.path(), &coalition, "idle_timeout_secs = 2\nupload_deadline_secs = 3");
    let body = multipart_body(&[
        text("testimony", "slow"),
        file("evidence", "a.jpg", "image/jpeg", &noise(100_000, 2)),
    ]);
    let mut stream = connect(server.addr);
    stream.write_all(upload_head(&format!("Content-Length: {}", body.len())).as_bytes()).unwrap();
    // 50 bytes at a time, each well within the idle timeout: the whole would take minutes.
    let mut writer = stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        for byte in body.chunks(50) {
            if writer.write_all(byte).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let response = read_response(&mut stream);
    assert_refused(&response, 408, "upload_too_slow");
    drop(stream);
    sender.join().unwrap();
    wait_until("nothing of it is kept", || {
        server.stored_objects().is_empty() && server.temp_files().is_empty()
    });
    normal_submission_works(&server);
}

#[test]
fn the_storage_quota_refuses_with_507_before_anything_is_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let mut server = Server::start(dir.path(), &coalition, "storage_quota_bytes = 3000000");
    let send = |server: &Server, size: usize, seed: u64| {
        post_multipart(
            server.addr,
            "/api/v1/submissions",
            &[text("testimony", "t"), file("evidence", "v.mp4", "video/mp4", &noise(size, seed))],
        )
    };
    let kept = send(&server, 1_000_000, 1);
    assert_eq!(kept.status, 201);
    let kept_objects = receipt_objects(&kept.json());

    // Declared too large: refused before a byte of the body is read.
    assert_refused(&send(&server, 2_500_000, 2), 507, "storage_full");
    // Chunked, so no size is declared: refused while it streams.
    let body = multipart_body(&[
        text("testimony", "t"),
        file("evidence", "v.mp4", "video/mp4", &noise(2_500_000, 3)),
    ]);
    let mut framed: Vec<u8> = body.chunks(64 * 1024).flat_map(chunked).collect();
    framed.extend_from_slice(&chunked(b""));
    let mut stream = connect(server.addr);
    stream.write_all(upload_head("Transfer-Encoding: chunked").as_bytes()).unwrap();
    let _ = stream.write_all(&framed);
    assert_refused(&read_response(&mut stream), 507, "storage_full");
    wait_until("the refused uploads leave nothing", || {
        server.temp_files().is_empty() && server.stored_objects().len() == kept_objects.len()
    });

    // What fits is still taken, and the count survives a restart.
    assert_eq!(send(&server, 1_000_000, 4).status, 201);
    server.restart();
    assert_refused(&send(&server, 1_500_000, 5), 507, "storage_full");
    // The index counts too (sled keeps at least one 512 KiB segment after a restart).
    assert_eq!(send(&server, 200_000, 6).status, 201);
    for object in &kept_objects {
        let bytes = server.object(object);
        decrypt(&bytes, &coalition.identities[0]);
    }
}

#[test]
fn trickling_uploads_lose_their_slots_and_a_testimony_without_files_is_never_refused_as_busy() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let limits = "max_concurrent_uploads = 4\nmin_upload_bytes_per_sec = 2000\nslow_upload_grace_secs = 3\nidle_timeout_secs = 30";
    let server = Server::start(dir.path(), &coalition, limits);
    let body = multipart_body(&[
        text("testimony", "trickle"),
        file("evidence", "a.jpg", "image/jpeg", &noise(2_000_000, 9)),
    ]);
    // Four uploads a byte every half second: never idle long enough to time out.
    let tricklers: Vec<_> = (0..4)
        .map(|i| {
            let mut stream = connect(server.addr);
            let body = body.clone();
            std::thread::spawn(move || {
                let head = upload_head(&format!("Content-Length: {}", body.len()));
                stream.write_all(head.as_bytes()).unwrap();
                for byte in body.iter().skip(i) {
                    if stream.write_all(std::slice::from_ref(byte)).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(500));
                    if answered(&stream) {
                        break;
                    }
                }
                try_read_response(&mut stream).ok()
            })
        })
        .collect();
    wait_until("the tricklers hold every upload slot", || {
        get(server.addr, "/healthz").status == 503
    });
    let health = get(server.addr, "/healthz").text();
    assert!(health.starts_with("busy") && !health.contains("uploads"), "no counts: {health}");
    let status = amanat(&["status", "--json", "--data-dir", server.data_dir.to_str().unwrap()]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["intake"]["saturated"], true, "{status}");

    // While they hold them: a testimony without files gets in; one with files waits.
    let text_only = post_multipart(
        server.addr,
        "/api/v1/submissions",
        &[text("testimony", "I have no photos, only what I remember.")],
    );
    assert_eq!(text_only.status, 201, "{}", text_only.text());
    let with_file = post_multipart(
        server.addr,
        "/api/v1/submissions",
        &[text("testimony", "t"), file("evidence", "b.jpg", "image/jpeg", &noise(500_000, 3))],
    );
    assert_refused(&with_file, 503, "busy");

    // Past their grace, the tricklers are refused for their pace and the slots free.
    for trickler in tricklers {
        let response = trickler.join().unwrap().expect("the server answers the trickler");
        assert_refused(&response, 408, "upload_rate_too_low");
    }
    wait_until("the slots are free", || get(server.addr, "/healthz").status == 200);
    let with_file = post_multipart(
        server.addr,
        "/api/v1/submissions",
        &[text("testimony", "t"), file("evidence", "b.jpg", "image/jpeg", &noise(500_000, 3))],
    );
    assert_eq!(with_file.status, 201);
}

#[test]
fn the_quota_counts_the_index_so_tiny_submissions_cannot_fill_the_disk_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let quota = 2_000_000u64;
    let server = Server::start(dir.path(), &coalition, &format!("storage_quota_bytes = {quota}"));
    let testimony = "x".repeat(1500);
    let mut refused = false;
    for _ in 0..3000 {
        let response =
            post_multipart(server.addr, "/api/v1/submissions", &[text("testimony", &testimony)]);
        if response.status == 507 {
            assert_refused(&response, 507, "storage_full");
            refused = true;
            break;
        }
        assert_eq!(response.status, 201, "{}", response.text());
    }
    assert!(refused, "tiny submissions reached the quota");
    let on_disk: u64 = all_files(&server.data_dir)
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum();
    // sled grows its file a 512 KiB segment at a time: one segment past the quota at most.
    let slack = 512 * 1024 + 64 * 1024;
    assert!(on_disk <= quota + slack, "{on_disk} bytes on disk under a quota of {quota}");
}
