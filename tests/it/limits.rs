//! Every limit answers with its status and stable code, stops reading the body, keeps
//! nothing of the refused request, and leaves the server ready for the next one.

use crate::common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const SMALL_LIMITS: &str = "max_submission_bytes = 1048576\nmax_files = 2\n\
                            max_text_bytes = 1024\nmax_fields = 4\nidle_timeout_secs = 1";

fn assert_nothing_stored(server: &Server) {
    wait_until("a refused request leaves no files", || {
        server.stored_objects().is_empty() && server.temp_files().is_empty()
    });
}

#[test]
fn each_limit_is_refused_with_its_code_and_nothing_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, SMALL_LIMITS);
    let api = "/api/v1/submissions";
    let small = |n: u8| file("evidence", &format!("{n}.jpg"), "image/jpeg", &[n; 1000]);

    let r =
        post_multipart(server.addr, api, &[text("testimony", "t"), small(1), small(2), small(3)]);
    assert_refused(&r, 413, "too_many_files");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("at most 2"));

    let r = post_multipart(server.addr, api, &[text("testimony", &"x".repeat(2000))]);
    assert_refused(&r, 413, "text_too_large");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("1 KiB"));

    let many: Vec<Part> = (0..6).map(|i| text(&format!("f{i}"), "v")).collect();
    assert_refused(&post_multipart(server.addr, api, &many), 413, "too_many_fields");

    // Two files that each fit but together pass the submission limit, streamed.
    let r = post_multipart(
        server.addr,
        api,
        &[
            text("testimony", "t"),
            file("evidence", "a.mp4", "video/mp4", &noise(700_000, 1)),
            file("evidence", "b.mp4", "video/mp4", &noise(700_000, 2)),
        ],
    );
    assert_refused(&r, 413, "submission_too_large");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("1 MiB"));

    assert_refused(
        &request(server.addr, "POST", api, &[("Content-Type", "application/json")], b"{}"),
        415,
        "not_multipart",
    );
    assert_refused(
        &post_multipart(server.addr, api, &[text("where", "Almaty")]),
        400,
        "testimony_missing",
    );
    assert_refused(
        &post_multipart(server.addr, api, &[text("testimony", " \n ")]),
        400,
        "testimony_missing",
    );
    assert_refused(
        &post_multipart(server.addr, api, &[text("testimony", "a"), text("testimony", "b")]),
        400,
        "duplicate_testimony",
    );
    assert_refused(
        &post_multipart(
            server.addr,
            api,
            &[text("testimony", "t"), file("photo", "a.jpg", "image/jpeg", b"x")],
        ),
        400,
        "unexpected_file",
    );
    let long_name = "x".repeat(100_000);
    assert_refused(
        &post_multipart(
            server.addr,
            api,
            &[text("testimony", "t"), file("evidence", &long_name, "image/jpeg", b"x")],
        ),
        413,
        "part_headers_too_large",
    );
    let mut invalid = multipart_body(&[text("testimony", "ok")]);
    let at = invalid.windows(2).position(|w| w == b"ok").unwrap();
    invalid[at] = 0xff;
    assert_refused(
        &request(server.addr, "POST", api, &[("Content-Type", &multipart_type())], &invalid),
        400,
        "invalid_utf8",
    );
    let r = request(
        server.addr,
        "POST",
        api,
        &[("Content-Type", "multipart/form-data; boundary=other")],
        &multipart_body(&[text("testimony", "t")]),
    );
    assert_eq!(r.status, 400, "a wrong boundary is malformed input: {}", r.text());

    assert_nothing_stored(&server);
    normal_submission_works(&server);
}

#[test]
fn form_refusals_are_pages_that_name_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, SMALL_LIMITS);
    let r = post_multipart(server.addr, "/submit", &[text("testimony", &"x".repeat(2000))]);
    assert_eq!(r.status, 413);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    let page = r.text();
    assert!(page.contains("data-code=\"text_too_large\""));
    assert!(page.contains("1 KiB"), "the page names the limit: {page}");
    assert_nothing_stored(&server);
}

/// Sends request headers, then body bytes from `body` until the server answers;
/// returns the response and how much the client had sent when the answer arrived.
/// (After answering, actix discards input for at most `client_disconnect_timeout` so the
/// client reads the refusal instead of a TCP reset; a real client stops sending then.)
fn stream_until_answered(
    server: &Server,
    headers: &str,
    body: impl Iterator<Item = Vec<u8>> + Send + 'static,
) -> (Response, usize) {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let mut stream = connect(server.addr);
    stream.write_all(headers.as_bytes()).unwrap();
    let mut writer: TcpStream = stream.try_clone().unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicBool::new(false));
    let sender = {
        let (sent, answered) = (sent.clone(), answered.clone());
        std::thread::spawn(move || {
            for chunk in body.take(1 << 16) {
                if answered.load(Ordering::SeqCst) || writer.write_all(&chunk).is_err() {
                    break;
                }
                sent.fetch_add(chunk.len(), Ordering::SeqCst);
            }
        })
    };
    let response = read_response(&mut stream);
    let sent_when_answered = sent.load(Ordering::SeqCst);
    answered.store(true, Ordering::SeqCst);
    drop(stream);
    sender.join().unwrap();
    (response, sent_when_answered)
}

#[test]
fn a_huge_upload_is_refused_without_being_read_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, SMALL_LIMITS);
    let file_head = part_head(&file("evidence", "video.mp4", "video/mp4", b""));

    // Declared 2 GiB: refused before the body is read at all.
    let declared = upload_head("Content-Length: 2147483648");
    let first = file_head.clone();
    let body = std::iter::once(first).chain(std::iter::repeat(vec![0u8; 65536]));
    let (response, sent) = stream_until_answered(&server, &declared, body);
    assert_refused(&response, 413, "submission_too_large");
    assert!(sent < 32 << 20, "the client had sent {sent} bytes when the refusal came");

    // Chunked, so the size is unknown until it is crossed: refused once past 1 MiB.
    let streamed = upload_head("Transfer-Encoding: chunked");
    let body = std::iter::once(chunked(&file_head))
        .chain(std::iter::repeat_with(|| chunked(&noise(65536, 9))));
    let (response, sent) = stream_until_answered(&server, &streamed, body);
    assert_refused(&response, 413, "submission_too_large");
    assert!(sent < 32 << 20, "the refusal of a 1 MiB limit came only after {sent} bytes");

    assert_nothing_stored(&server);
    normal_submission_works(&server);
}

#[test]
fn a_stalled_upload_is_refused_and_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, SMALL_LIMITS);
    let body = multipart_body(&[
        text("testimony", "t"),
        file("evidence", "a.jpg", "image/jpeg", &noise(500_000, 5)),
    ]);
    let mut stream = connect(server.addr);
    let length = body.len();
    stream.write_all(upload_head(&format!("Content-Length: {length}")).as_bytes()).unwrap();
    stream.write_all(&body[..300_000]).unwrap();
    // Then nothing more: the server gives up after idle_timeout_secs (1 s).
    let response = read_response(&mut stream);
    assert_refused(&response, 408, "upload_stalled");
    let mut rest = Vec::new();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = stream.read_to_end(&mut rest);
    assert!(rest.is_empty(), "the connection is closed after the refusal");
    assert_nothing_stored(&server);
    normal_submission_works(&server);
}

#[test]
fn a_full_disk_is_refused_with_507_and_the_server_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let mount = dir.path().join("small-disk");
    std::fs::create_dir(&mount).unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=12m", "tmpfs"])
        .arg(&mount)
        .status()
        .expect("mount runs (the tests run as root)");
    assert!(status.success(), "mounting a small tmpfs needs root");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount.clone());
    let mut server = Server::start_with_data(dir.path(), &mount.join("data"), &coalition, "");
    let kept = post_multipart(
        server.addr,
        "/api/v1/submissions",
        &[text("testimony", "first"), file("evidence", "a.jpg", "image/jpeg", &noise(1 << 20, 1))],
    );
    assert_eq!(kept.status, 201);
    let kept_objects = receipt_objects(&kept.json());

    let r = post_multipart(
        server.addr,
        "/api/v1/submissions",
        &[text("testimony", "t"), file("evidence", "v.mp4", "video/mp4", &noise(20 << 20, 2))],
    );
    assert_refused(&r, 507, "storage_full");
    wait_until("the refused upload's partial object is removed", || {
        server.temp_files().is_empty() && server.stored_objects().len() == kept_objects.len()
    });
    assert_eq!(get(server.addr, "/healthz").status, 200, "space is free again");
    normal_submission_works(&server);

    // Something else fills the disk to the last byte: even a few words are refused
    // with 507, the server keeps answering, and once space is freed it accepts again.
    let filler = mount.join("filler");
    {
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let mut byte = [0u8; 1];
        while f.write_all(&byte[..]).is_ok() {
            byte[0] = byte[0].wrapping_add(1);
        }
    }
    let full = post_multipart(
        server.addr,
        "/api/v1/submissions",
        &[text("testimony", "a few words on a full disk")],
    );
    assert_refused(&full, 507, "storage_full");
    assert_eq!(get(server.addr, "/healthz").status, 503, "health says the store is full");
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(get(server.addr, "/healthz").status, 200);
    normal_submission_works(&server);

    // After a restart the index opens cleanly and everything acknowledged is there.
    server.restart();
    normal_submission_works(&server);
    for object in &kept_objects {
        let bytes = server.object(object);
        decrypt(&bytes, &coalition.identities[0]);
    }
}
