//! The field kit's `amanat send`: sealed files over the server's resumable uploads,
//! through a SOCKS5 proxy as through Tor and a link that keeps failing, to their
//! receipts; started over when the server restarted; nothing sent that is not sealed.
//! And the server's side of a sealed upload, held to raw tus requests: checked as it
//! arrives, recorded once, used nowhere else.

use crate::common::*;
use crate::fieldkit::{check_case, post_sealed, seal, seal_files, Sealed};
use crate::resumable::{
    assert_no_plaintext, create, cutting_proxy, cutting_proxy_to, head, id_of, patch, recorded, tus,
};
use crate::review::{export, open};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A sealed file with a video of `mib` MiB and a photo.
fn sealed_video(dir: &Path, coalition: &Coalition, name: &str, mib: usize) -> Sealed {
    let files = vec![
        ("video-day1.mp4".to_string(), noise(mib << 20, 7)),
        ("bruises.jpg".to_string(), noise(300_000, 8)),
    ];
    seal_files(dir, coalition, name, files)
}

fn send_command(files: &[&Path], to: SocketAddr, extra: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command.arg("send");
    for file in files {
        command.arg(file);
    }
    command.args(["--to", &format!("http://{to}"), "--json"]).args(extra);
    command
}

/// Each line `amanat send --json` printed, by file.
fn answers(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn amanat_send_carries_sealed_files_through_a_socks_proxy_and_cut_links_to_their_receipts() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "");
    let video = sealed_video(dir.path(), &coalition, "video", 24);
    let small = seal(dir.path(), &coalition, "small");
    let mib = 1u64 << 20;
    let proxy = cutting_proxy(server.addr, vec![3 * mib, 9 * mib, 15 * mib], || {});
    let port = free_port();
    let _socks = Socks::start(port);
    let socks = format!("socks5h://127.0.0.1:{port}");
    let output = send_command(
        &[&video.path, &small.path],
        proxy.addr,
        &["--proxy", &socks, "--piece-mib", "2"],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}\n{}", String::from_utf8_lossy(&output.stdout));
    assert_eq!(proxy.cut.load(Ordering::SeqCst), 3, "the link was cut three times");
    assert!(stderr.contains("carrying on"), "{stderr}");
    let sent = answers(&output.stdout);
    assert_eq!(sent.len(), 2, "{sent:?}");
    for (answer, sealed) in sent.iter().zip([&video, &small]) {
        assert_eq!(answer["id"], sealed.id.as_str(), "{answer}");
        assert_eq!(answer["already_imported"], false);
        assert!(answer["receipt"]["leaf"].as_str().unwrap().contains(&sealed.id), "{answer}");
    }
    assert_eq!(recorded(&server).0, 2);
    // Everything the volunteer sealed is what the coalition opens.
    let bundle = dir.path().join("b.tar");
    export(&server, &bundle, false);
    let cases = dir.path().join("cases");
    let (ok, outcomes) = open(&[&bundle], &coalition.identity_files[0], &cases);
    assert!(ok, "{outcomes:?}");
    check_case(&cases, &video, true);
    check_case(&cases, &small, true);

    // Sent again (a volunteer unsure it went): the same submission and its first receipt.
    let again = send_command(&[&small.path], server.addr, &[]).output().unwrap();
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    let again = answers(&again.stdout);
    assert_eq!(again[0]["already_imported"], true);
    assert_eq!(again[0]["receipt"], sent[1]["receipt"]);
    assert_eq!(recorded(&server).0, 2);
}

#[test]
fn amanat_send_starts_over_after_a_server_restart_and_sends_nothing_that_is_not_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let mut server = Server::start(dir.path(), &coalition, "");
    let video = sealed_video(dir.path(), &coalition, "video", 16);
    // At the cut, 6 MiB in, the server is restarted (SIGKILL, as on power loss): the
    // partial upload is gone with it.
    let upstream = Arc::new(Mutex::new(server.addr));
    let (at_cut, cut) = mpsc::channel::<()>();
    let (restarted, resume) = mpsc::channel::<()>();
    let resume = Mutex::new(resume);
    let proxy = cutting_proxy_to(upstream.clone(), vec![6 << 20], move || {
        at_cut.send(()).unwrap();
        resume.lock().unwrap().recv().unwrap();
    });
    let child = send_command(&[&video.path], proxy.addr, &["--piece-mib", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    cut.recv_timeout(Duration::from_secs(120)).expect("the upload reached the cut");
    server.restart();
    *upstream.lock().unwrap() = server.addr;
    restarted.send(()).unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("sending it again from the start"), "{stderr}");
    assert_eq!(answers(&output.stdout)[0]["id"], video.id.as_str());
    assert_eq!(recorded(&server).0, 1);
    assert!(server.temp_files().is_empty(), "{:?}", server.temp_files());

    // A file that is not sealed never leaves the laptop: no byte reaches the server.
    let photo = dir.path().join("injury.jpg");
    let canary = b"PLAINTEXT-PHOTO-CANARY";
    std::fs::write(&photo, [canary.as_slice(), &noise(100_000, 3)].concat()).unwrap();
    let before = proxy.sent.load(Ordering::SeqCst);
    let refused = send_command(&[&photo], proxy.addr, &[]).output().unwrap();
    assert!(!refused.status.success());
    let said = answers(&refused.stdout);
    assert!(said[0]["error"].as_str().unwrap().contains("not a sealed file"), "{said:?}");
    assert_eq!(proxy.sent.load(Ordering::SeqCst), before, "nothing was sent");
    assert_no_plaintext(&server.data_dir, canary);
    // Nor does a sealed file cut short on its way to the laptop (a USB copy interrupted).
    let cut_short = dir.path().join("cut-short.sealed");
    let whole = std::fs::read(&video.path).unwrap();
    std::fs::write(&cut_short, &whole[..whole.len() / 2]).unwrap();
    let refused = send_command(&[&cut_short], proxy.addr, &[]).output().unwrap();
    assert!(!refused.status.success());
    let said = answers(&refused.stdout);
    assert!(said[0]["error"].as_str().unwrap().contains("damaged"), "{said:?}");
    assert_eq!(proxy.sent.load(Ordering::SeqCst), before, "nothing was sent");

    // Addresses that would show the network where the laptop sends are refused.
    let onion = format!("http://{}.onion", "a".repeat(56));
    for (to, proxy_url, why) in [
        ("http://203.0.113.9:8080", None, "onion address"),
        ("https://example.org", None, "onion address"),
        // A user part before the host: the request would go to evil.example.
        ("http://127.0.0.1@evil.example", None, "onion address"),
        ("http://127.0.0.1:1@evil.example/", None, "onion address"),
        ("http://127.0.0.1.evil.example", None, "onion address"),
        ("http://abcdefghijklmnop.onion", None, "onion address"),
        (onion.as_str(), None, "give --proxy"),
        (onion.as_str(), Some("socks5://127.0.0.1:9050"), "socks5h"),
        (onion.as_str(), Some("socks5h://10.0.0.5:9050"), "on this machine"),
    ] {
        let mut args = vec!["send", s(&video.path), "--to", to];
        if let Some(url) = proxy_url {
            args.extend(["--proxy", url]);
        }
        let out = amanat(&args);
        assert!(!out.status.success(), "{to}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(why), "{to}: {stderr}");
    }
}

/// A tus upload of a sealed file (`kind sealed`), created and sent whole.
fn sealed_upload(server: &Server, body: &[u8]) -> String {
    let length = body.len().to_string();
    let headers = [("Upload-Length", length.as_str()), ("Upload-Metadata", "kind c2VhbGVk")];
    let created = tus(server, "POST", "/api/v1/uploads", &headers, b"");
    assert_eq!(created.status, 201, "{}", created.text());
    let path = created.header("location").unwrap().to_string();
    let done = patch(server, &path, 0, body);
    assert_eq!(done.status, 204, "{}", done.text());
    path
}

fn record_upload(server: &Server, json: &str) -> Response {
    request(
        server.addr,
        "POST",
        "/api/v1/sealed",
        &[("Content-Type", "application/json")],
        json.as_bytes(),
    )
}

#[test]
fn a_sealed_upload_is_checked_as_it_arrives_recorded_once_and_used_nowhere_else() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "");
    let sealed = seal(dir.path(), &coalition, "a");
    let body = std::fs::read(&sealed.path).unwrap();

    // A photo declared sealed is refused at its first bytes, and none of it is kept.
    let canary = b"PLAINTEXT-DECLARED-SEALED";
    let photo = [canary.as_slice(), &noise(200_000, 5)].concat();
    let length = photo.len().to_string();
    let headers = [("Upload-Length", length.as_str()), ("Upload-Metadata", "kind c2VhbGVk")];
    let created = tus(&server, "POST", "/api/v1/uploads", &headers, b"");
    let path = created.header("location").unwrap().to_string();
    assert_refused(&patch(&server, &path, 0, &photo), 400, "not_a_sealed_file");
    assert_eq!(head(&server, &path).0, 404);
    assert_no_plaintext(&server.data_dir, canary);
    // A kind this server does not know, and a sealed file larger than any it takes.
    let odd = [("Upload-Length", "10"), ("Upload-Metadata", "kind Ym9vaw==")];
    assert_refused(
        &tus(&server, "POST", "/api/v1/uploads", &odd, b""),
        400,
        "upload_metadata_invalid",
    );
    let huge = [("Upload-Length", "999999999999"), ("Upload-Metadata", "kind c2VhbGVk")];
    assert_refused(&tus(&server, "POST", "/api/v1/uploads", &huge, b""), 413, "upload_too_large");

    let upload = sealed_upload(&server, &body);
    let id = id_of(&upload).to_string();
    // Not a survivor's file: a submission cannot name it.
    let named = post_multipart(
        server.addr,
        "/api/v1/submissions",
        &[text("testimony", "mine"), text("upload", &id)],
    );
    assert_refused(&named, 409, "upload_wrong_kind");
    // And a survivor's finished file is not a sealed file.
    let file = create(&server, 1000);
    assert_eq!(patch(&server, &file, 0, &noise(1000, 9)).status, 204);
    let wrong = record_upload(&server, &format!("{{\"upload\": \"{}\"}}", id_of(&file)));
    assert_refused(&wrong, 409, "upload_wrong_kind");
    for bad in ["{}", "{\"upload\": 7}", "not json", "{\"upload\": \"x\", \"more\": 1}"] {
        assert_refused(&record_upload(&server, bad), 400, "sealed_request_invalid");
    }
    assert_refused(&record_upload(&server, "{\"upload\": \"0000\"}"), 404, "upload_not_found");
    assert_eq!(recorded(&server).0, 0, "nothing refused was recorded");

    let first = record_upload(&server, &format!("{{\"upload\": \"{id}\"}}"));
    assert_eq!(first.status, 201, "{}", first.text());
    assert_eq!(first.json()["id"], sealed.id.as_str());
    // Asked again (the answer lost on the way): the same receipt, recorded once.
    let again = record_upload(&server, &format!("{{\"upload\": \"{id}\"}}"));
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.json()["already_imported"], true);
    assert_eq!(again.json()["receipt"], first.json()["receipt"]);
    // The same file posted whole, and through another upload: still one submission.
    assert_eq!(post_sealed(&server, &body).status, 200);
    let other = sealed_upload(&server, &body);
    let other = record_upload(&server, &format!("{{\"upload\": \"{}\"}}", id_of(&other)));
    assert_eq!(other.status, 200, "{}", other.text());
    assert_eq!(recorded(&server).0, 1);
    assert!(server.temp_files().is_empty(), "{:?}", server.temp_files());
}

#[test]
fn a_refused_form_keeps_the_uploads_it_named_for_the_next_try() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "");
    let video = noise(300_000, 11);
    let upload = create(&server, video.len());
    assert_eq!(patch(&server, &upload, 0, &video).status, 204);
    let id = id_of(&upload);
    // As the form's script sends it: the upload's id first, then the answers; here
    // without the consent question answered.
    let form = |consent: bool| {
        let mut parts = vec![text("upload", id), text("testimony", "Нас били в ИВС.")];
        if consent {
            parts.push(text("consent_readers", "coalition"));
        }
        post_multipart(server.addr, "/ru/submit", &parts)
    };
    let refused = form(false);
    assert_eq!(refused.status, 400, "{}", refused.text());
    let page = refused.text();
    assert!(
        page.contains(&format!("<input type=\"hidden\" name=\"upload\" value=\"{id}\">")),
        "{page}"
    );
    assert!(page.contains("сохранён вместе с формой"), "{page}");
    assert_eq!(recorded(&server).0, 0);
    // Sent again with nothing chosen: the kept upload goes with it.
    let accepted = form(true);
    assert_eq!(accepted.status, 200, "{}", accepted.text());
    assert_eq!(recorded(&server).0, 1);
    assert_eq!(head(&server, &upload).0, 404, "the upload is used up");
}

/// A loopback proxy to `upstream` that carries every request, but loses the answer to
/// the first `times` requests whose head starts with `prefix` (the server did the work;
/// the client never hears of it), counting the bytes clients sent.
fn answer_losing_proxy(
    upstream: SocketAddr,
    prefix: &'static [u8],
    times: usize,
) -> (SocketAddr, Arc<std::sync::atomic::AtomicU64>) {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpListener, TcpStream};
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let left = Arc::new(AtomicUsize::new(times));
    let sent = Arc::new(AtomicU64::new(0));
    let counted = sent.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { continue };
            let Ok(mut server) = TcpStream::connect(upstream) else { continue };
            let lose = Arc::new(AtomicBool::new(false));
            let (mut from, mut to, losing) =
                (server.try_clone().unwrap(), client.try_clone().unwrap(), lose.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n @ 1..) = from.read(&mut buf) {
                    if losing.load(Ordering::SeqCst) {
                        let _ = to.shutdown(Shutdown::Both);
                        return;
                    }
                    if to.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
                let _ = to.shutdown(Shutdown::Write);
            });
            let (left, sent) = (left.clone(), sent.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n @ 1..) = client.read(&mut buf) {
                    sent.fetch_add(n as u64, Ordering::SeqCst);
                    let take = |n: usize| n.checked_sub(1);
                    if buf[..n].starts_with(prefix)
                        && left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, take).is_ok()
                    {
                        lose.store(true, Ordering::SeqCst);
                    }
                    if server.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = server.shutdown(Shutdown::Write);
            });
        }
    });
    (addr, counted)
}

#[test]
fn amanat_send_whose_receipt_was_lost_asks_again_instead_of_sending_the_file_again() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "");
    let video = sealed_video(dir.path(), &coalition, "video", 8);
    let len = std::fs::metadata(&video.path).unwrap().len();
    // The server records the file, and its answer never reaches the laptop (twice).
    let (proxy, sent) = answer_losing_proxy(server.addr, b"POST /api/v1/sealed", 2);
    let output = send_command(&[&video.path], proxy, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("carrying on"), "{stderr}");
    assert!(!stderr.contains("again from the start"), "{stderr}");
    let answer = &answers(&output.stdout)[0];
    assert_eq!(answer["id"], video.id.as_str());
    assert!(answer["receipt"]["leaf"].as_str().unwrap().contains(&video.id), "{answer}");
    let crossed = sent.load(Ordering::SeqCst);
    assert!(crossed < len + (1 << 20), "{crossed} bytes for a {len}-byte file: sent once");
    assert_eq!(recorded(&server).0, 1);
}
