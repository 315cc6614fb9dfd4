//! Resumable uploads (tus 1.0, `/api/v1/uploads`) held to a client not written here:
//! `tuspy` from the Python package index (tests/run-all.sh installs it), through a proxy that cuts the
//! connection several times; and every way a stranger or a broken client can misuse an
//! upload, each refused with its code and nothing stored.

use crate::common::*;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The Python with tuspy that tests/run-all.sh prepares.
fn tus_python() -> PathBuf {
    let python = std::env::var_os("AMANAT_TUS_PYTHON").map_or_else(
        || {
            {
                let home = || PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache");
                std::env::var_os("XDG_CACHE_HOME").map_or_else(home, PathBuf::from)
            }
            .join("amanat-py/bin/python")
        },
        PathBuf::from,
    );
    assert!(python.exists(), "{} is missing: tests/run-all.sh installs tuspy", python.display());
    python
}

/// A loopback proxy to `upstream` that cuts the connection (both ways, mid-request)
/// each time the bytes sent through it pass the next of `cuts`, calling `at_cut` first.
pub(crate) struct CuttingProxy {
    pub addr: SocketAddr,
    pub cut: Arc<AtomicUsize>,
    /// Bytes the client sent through it, in all.
    pub sent: Arc<AtomicU64>,
    /// tus `PATCH` requests it carried.
    patches: Arc<AtomicUsize>,
}

pub(crate) fn cutting_proxy(
    upstream: SocketAddr,
    cuts: Vec<u64>,
    at_cut: impl Fn() + Send + Sync + 'static,
) -> CuttingProxy {
    cutting_proxy_to(Arc::new(Mutex::new(upstream)), cuts, at_cut)
}

/// `cutting_proxy` to wherever `upstream` says at each new connection.
pub(crate) fn cutting_proxy_to(
    upstream: Arc<Mutex<SocketAddr>>,
    cuts: Vec<u64>,
    at_cut: impl Fn() + Send + Sync + 'static,
) -> CuttingProxy {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let cut = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let cuts = Arc::new(Mutex::new(cuts));
    let at_cut = Arc::new(at_cut);
    let (counted, total_sent) = (cut.clone(), sent.clone());
    let patches = Arc::new(AtomicUsize::new(0));
    let patches_seen = patches.clone();
    let target = upstream;
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { continue };
            let to = *target.lock().unwrap();
            let Ok(mut server) = TcpStream::connect(to) else { continue };
            let (mut back_from, mut back_to) =
                (server.try_clone().unwrap(), client.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut back_from, &mut back_to);
                let _ = back_to.shutdown(Shutdown::Write);
            });
            let (sent, cuts, at_cut, counted) =
                (sent.clone(), cuts.clone(), at_cut.clone(), counted.clone());
            let patches = patches.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = match client.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let total = sent.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
                    // A request's head comes first on its connection, in one piece.
                    if buf[..n].starts_with(b"PATCH /api/v1/uploads/") {
                        patches.fetch_add(1, Ordering::SeqCst);
                    }
                    let due = {
                        let mut cuts = cuts.lock().unwrap();
                        let due = cuts.first().is_some_and(|&at| total >= at);
                        if due {
                            cuts.remove(0);
                        }
                        due
                    };
                    if due {
                        at_cut();
                        counted.fetch_add(1, Ordering::SeqCst);
                        let _ = client.shutdown(Shutdown::Both);
                        let _ = server.shutdown(Shutdown::Both);
                        return;
                    }
                    if server.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = server.shutdown(Shutdown::Write);
            });
        }
    });
    CuttingProxy { addr, cut, sent: total_sent, patches: patches_seen }
}

/// A file of `len` bytes: pseudo-random, with `canary` written at every MiB, so that a
/// plaintext piece of it anywhere on disk is found.
fn evidence_file(path: &Path, len: usize, canary: &[u8]) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut block = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for word in block.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes()[..word.len()]);
        }
        block[..canary.len()].copy_from_slice(canary);
        let n = left.min(block.len());
        out.write_all(&block[..n]).unwrap();
        left -= n;
    }
    out.flush().unwrap();
}

/// No file under `dir` holds `canary`.
pub(crate) fn assert_no_plaintext(dir: &Path, canary: &[u8]) {
    for file in all_files(dir) {
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(!contains(&bytes, canary), "plaintext in {}", file.display());
    }
}

#[test]
fn tuspy_resumes_a_200_mib_video_across_cut_connections_and_it_decrypts_with_stock_age() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "");
    let canary = format!("CANARY-{}", std::process::id()).into_bytes();
    let video = dir.path().join("injuries.mp4");
    let len = 200 << 20;
    evidence_file(&video, len, &canary);

    // Cut three times, mid-chunk (tuspy sends 5 MiB a request), and each time look
    // through the data directory for plaintext while the upload is partial.
    let data_dir = server.data_dir.clone();
    let watched = canary.clone();
    let cuts = vec![(23 << 20) + 12_345, (81 << 20) + 777, (150 << 20) + 4_321];
    let proxy = cutting_proxy(server.addr, cuts, move || assert_no_plaintext(&data_dir, &watched));
    let script = dir.path().join("upload.py");
    std::fs::write(
        &script,
        "import sys\nfrom tusclient import client\n\
         uploader = client.TusClient(sys.argv[1]).uploader(sys.argv[2], \
         chunk_size=5 * 1024 * 1024, retries=20, retry_delay=0, store_url=False, \
         metadata={'filename': 'injuries.mp4', 'filetype': 'video/mp4'})\n\
         uploader.upload()\nprint(uploader.url)\n",
    )
    .unwrap();
    let uploaded = Command::new(tus_python())
        .arg(&script)
        .arg(format!("http://{}/api/v1/uploads", proxy.addr))
        .arg(&video)
        .output()
        .unwrap();
    assert!(uploaded.status.success(), "{}", String::from_utf8_lossy(&uploaded.stderr));
    assert_eq!(proxy.cut.load(Ordering::SeqCst), 3, "the proxy cut the upload three times");
    let url = String::from_utf8(uploaded.stdout).unwrap();
    let id = url.trim().rsplit('/').next().unwrap().to_string();
    assert_eq!(id.len(), 32, "128 random bits: {url}");
    assert_no_plaintext(&server.data_dir, &canary);

    let sent = post_multipart(
        server.addr,
        "/api/v1/submissions",
        &[text("testimony", "Видео моих травм, снятое в больнице."), text("upload", &id)],
    );
    assert_eq!(sent.status, 201, "{}", sent.text());
    let objects: Vec<String> = sent.json()["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap().to_string())
        .collect();
    assert_eq!(objects.len(), 2, "the manifest and the video");
    assert_no_plaintext(&server.data_dir, &canary);

    assert_largest_object_opens_to(&server, &coalition, &objects, &video);

    // Used once: a second submission naming it is refused and stores nothing.
    let before = (server.stored_objects(), recorded(&server));
    let again = post_multipart(
        server.addr,
        "/api/v1/submissions",
        &[text("testimony", "again"), text("upload", &id)],
    );
    assert_refused(&again, 404, "upload_not_found");
    assert_eq!((server.stored_objects(), recorded(&server)), before);
    assert!(server.temp_files().is_empty(), "{:?}", server.temp_files());
    let logs = server.logs();
    assert!(!logs.contains(&id) && !logs.contains("injuries"), "{logs}");
}

/// The largest of `objects`, decrypted by the stock age tool, is the bytes of `sent`,
/// then the padding's zeros.
fn assert_largest_object_opens_to(
    server: &Server,
    coalition: &Coalition,
    objects: &[String],
    sent: &Path,
) {
    let video_object = objects
        .iter()
        .map(|id| server.object_file(id))
        .max_by_key(|f| std::fs::metadata(f).unwrap().len())
        .unwrap();
    let opened = sent.with_extension("opened");
    let age = Command::new("age")
        .args(["-d", "-i"])
        .arg(&coalition.identity_files[0])
        .arg("-o")
        .arg(&opened)
        .arg(&video_object)
        .output()
        .unwrap();
    assert!(age.status.success(), "{}", String::from_utf8_lossy(&age.stderr));
    let opened = std::fs::read(&opened).unwrap();
    let original = std::fs::read(sent).unwrap();
    assert!(opened.len() >= original.len());
    assert!(opened[..original.len()] == original[..], "the bytes sent, in order");
    assert!(opened[original.len()..].iter().all(|&b| b == 0), "then padding");
}

#[test]
fn a_browser_with_scripts_sends_a_100_mib_video_resumably_across_a_cut_link() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "");
    let canary = format!("CANARY-BROWSER-{}", std::process::id()).into_bytes();
    let video = dir.path().join("injuries.mp4");
    evidence_file(&video, 100 << 20, &canary);
    let (data_dir, watched) = (server.data_dir.clone(), canary.clone());
    let proxy = cutting_proxy(server.addr, vec![(37 << 20) + 4_321], move || {
        assert_no_plaintext(&data_dir, &watched);
    });

    let browser = crate::browser::Browser::start_with_scripts(&dir.path().join("profile"));
    browser.open(&format!("http://{}/ru/submit", proxy.addr));
    browser.type_into("#testimony", "Видео побоев, снятое на телефон в больнице.");
    browser.click("#readers-coalition");
    browser.type_into("#evidence", video.to_str().unwrap());
    browser.click("button[type=submit]");
    // The script uploads the video in 5 MiB requests, resumes after the cut, and then
    // sends the form with the upload's id: the receipt page, as without scripts.
    let minutes = |n: u64| std::time::Duration::from_secs(60 * n);
    wait_within(minutes(3), "the receipt page", || browser.exists("#codename"));
    browser.screenshot("resumable-receipt");
    let codename = browser.text_of("#codename");
    assert_eq!(proxy.cut.load(Ordering::SeqCst), 1, "the link was cut once");
    // Resumed, not sent again from the start: little more than the video crossed the
    // link (a browser without scripts sends the whole form again after a cut).
    let crossed = proxy.sent.load(Ordering::SeqCst);
    assert!(crossed < (100 << 20) + (6 << 20), "{crossed} bytes crossed the link");
    assert_eq!(recorded(&server).0, 1);
    assert_largest_object_opens_to(&server, &coalition, &server.stored_objects(), &video);
    assert_no_plaintext(&server.data_dir, &canary);

    // Days later, with the codename: a second video added to the case, resumably too.
    let second = dir.path().join("later.mp4");
    evidence_file(&second, 20 << 20, &canary);
    let (before, patches) =
        (proxy.sent.load(Ordering::SeqCst), proxy.patches.load(Ordering::SeqCst));
    browser.open(&format!("http://{}/ru/followup", proxy.addr));
    browser.type_into("#codename", &codename);
    browser.click("button[type=submit]");
    crate::common::wait_until("the case page", || browser.exists("#received"));
    browser.type_into("#testimony", "Ещё одно видео.");
    browser.type_into("#evidence", second.to_str().unwrap());
    browser.click("form[action$='/followup/add'] button");
    wait_within(minutes(2), "the addition is confirmed", || browser.exists("#added"));
    assert_eq!(recorded(&server).0, 2);
    let crossed = proxy.sent.load(Ordering::SeqCst) - before;
    assert!(crossed < (20 << 20) + (1 << 20), "{crossed} bytes: the video went once");
    let pieces = proxy.patches.load(Ordering::SeqCst) - patches;
    assert!(pieces >= 4, "the video went in 5 MiB tus requests, not in the form: {pieces}");
    assert_no_plaintext(&server.data_dir, &canary);
}

/// `method` on `path` with tus's version header and `headers`.
pub(crate) fn tus(
    server: &Server,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut all = vec![("Tus-Resumable", "1.0.0")];
    all.extend_from_slice(headers);
    request(server.addr, method, path, &all, body)
}

/// A new upload of `len` bytes: its path.
pub(crate) fn create(server: &Server, len: usize) -> String {
    let created =
        tus(server, "POST", "/api/v1/uploads", &[("Upload-Length", &len.to_string())], b"");
    assert_eq!(created.status, 201, "{}", created.text());
    created.header("location").unwrap().to_string()
}

pub(crate) fn patch(server: &Server, path: &str, offset: usize, body: &[u8]) -> Response {
    let offset = offset.to_string();
    let headers =
        [("Content-Type", "application/offset+octet-stream"), ("Upload-Offset", offset.as_str())];
    tus(server, "PATCH", path, &headers, body)
}

/// `HEAD` on an upload: its status and `Upload-Offset` (a HEAD answer has no body,
/// whatever its Content-Length says).
pub(crate) fn head(server: &Server, path: &str) -> (u16, Option<String>) {
    use std::io::BufRead;
    let mut stream = connect(server.addr);
    let request = format!(
        "HEAD {path} HTTP/1.1\r\nHost: {}\r\nTus-Resumable: 1.0.0\r\nConnection: close\r\n\r\n",
        server.addr
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut lines = std::io::BufReader::new(stream).lines().map(Result::unwrap);
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let offset = lines.take_while(|l| !l.is_empty()).find_map(|l| {
        l.to_ascii_lowercase().strip_prefix("upload-offset:").map(|v| v.trim().to_string())
    });
    (status, offset)
}

/// Submissions recorded and leaves in the intake log, as `amanat status` counts them.
pub(crate) fn recorded(server: &Server) -> (u64, u64) {
    let data_dir = server.data_dir.to_str().unwrap();
    let output = amanat(&["status", "--json", "--data-dir", data_dir]);
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    (status["submissions"].as_u64().unwrap(), status["log_size"].as_u64().unwrap())
}

pub(crate) fn id_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap()
}

#[test]
fn a_misused_upload_gets_its_clear_error_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let settings = "[uploads]\nmax_upload_bytes = 4194304\nmax_held = 3\n";
    let mut server = Server::start(dir.path(), &coalition, settings);
    let nothing = recorded(&server);

    // What the server speaks.
    let options = request(server.addr, "OPTIONS", "/api/v1/uploads", &[], b"");
    assert_eq!(options.status, 204);
    assert_eq!(options.header("tus-version"), Some("1.0.0"));
    assert_eq!(options.header("tus-max-size"), Some("4194304"));
    assert!(options.header("tus-extension").unwrap().contains("termination"));
    // Creation: without the version, without a length, too large, empty.
    let bare = request(server.addr, "POST", "/api/v1/uploads", &[("Upload-Length", "10")], b"");
    assert_refused(&bare, 412, "tus_version_unsupported");
    let no_length = tus(&server, "POST", "/api/v1/uploads", &[("Upload-Defer-Length", "1")], b"");
    assert_refused(&no_length, 400, "upload_length_required");
    let large = tus(&server, "POST", "/api/v1/uploads", &[("Upload-Length", "4194305")], b"");
    assert_refused(&large, 413, "upload_too_large");
    let empty = tus(&server, "POST", "/api/v1/uploads", &[("Upload-Length", "0")], b"");
    assert_refused(&empty, 400, "upload_empty");
    for metadata in ["filename ***", "filename YQ==,filename Yg==", "filename YQ== extra"] {
        let headers = [("Upload-Length", "10"), ("Upload-Metadata", metadata)];
        let refused = tus(&server, "POST", "/api/v1/uploads", &headers, b"");
        assert_refused(&refused, 400, "upload_metadata_invalid");
    }
    let signed = tus(&server, "POST", "/api/v1/uploads", &[("Upload-Length", "+10")], b"");
    assert_refused(&signed, 400, "upload_length_required");

    // An upload resumed wrongly: a wrong offset, a body that is not tus's, too many bytes,
    // an id nobody was given.
    let path = create(&server, 1_000_000);
    let first = patch(&server, &path, 0, &vec![7; 400_000]);
    assert_eq!(first.header("upload-offset"), Some("400000"));
    assert!(first.header("upload-expires").is_some());
    assert_refused(&patch(&server, &path, 0, &[7; 100]), 409, "upload_offset_mismatch");
    for offset in [None, Some("+400000"), Some("-0"), Some("four")] {
        let mut headers = vec![("Content-Type", "application/offset+octet-stream")];
        headers.extend(offset.map(|o| ("Upload-Offset", o)));
        let refused = tus(&server, "PATCH", &path, &headers, &[7; 10]);
        assert_refused(&refused, 400, "upload_offset_missing");
    }
    let wrong_type = [("Upload-Offset", "400000"), ("Content-Type", "application/octet-stream")];
    assert_refused(
        &tus(&server, "PATCH", &path, &wrong_type, &[7; 10]),
        415,
        "upload_content_type",
    );
    assert_refused(&patch(&server, &path, 400_000, &vec![7; 600_001]), 413, "upload_overrun");
    let foreign = format!("/api/v1/uploads/{}", "ab".repeat(16));
    assert_refused(&patch(&server, &foreign, 0, &[7; 10]), 404, "upload_not_found");
    assert_eq!(head(&server, &foreign), (404, None));
    assert_eq!(head(&server, &path), (200, Some("400000".to_string())));

    // A link that died unseen (its connection still open, silent): the client's next
    // request takes the upload over at once, from what the server counted.
    let stalled = create(&server, 1_000_000);
    let mut silent = connect(server.addr);
    let opening = format!(
        "PATCH {stalled} HTTP/1.1\r\nHost: {}\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n\
         Content-Type: application/offset+octet-stream\r\nContent-Length: 1000000\r\n\r\n",
        server.addr
    );
    silent.write_all(opening.as_bytes()).unwrap();
    silent.write_all(&vec![5; 300_000]).unwrap();
    wait_until("the bytes before the stall are counted", || {
        head(&server, &stalled) == (200, Some("300000".to_string()))
    });
    let resumed = patch(&server, &stalled, 300_000, &vec![5; 700_000]);
    assert_eq!(resumed.status, 204, "{}", resumed.text());
    assert_eq!(resumed.header("upload-offset"), Some("1000000"));
    drop(silent);
    assert_eq!(tus(&server, "DELETE", &stalled, &[], b"").status, 204);

    // A submission naming an unfinished upload, or one nobody made: refused, nothing kept.
    let unfinished = post_multipart(
        server.addr,
        "/api/v1/submissions",
        &[text("testimony", "not yet"), text("upload", id_of(&path))],
    );
    assert_refused(&unfinished, 409, "upload_incomplete");
    let unknown = post_multipart(
        server.addr,
        "/api/v1/submissions",
        &[text("testimony", "nobody's"), text("upload", &"cd".repeat(16))],
    );
    assert_refused(&unknown, 404, "upload_not_found");

    // Finished, then named by a submission that is refused: the upload is still there
    // for the survivor's next try, which is stored.
    // The last bytes arrive, then the link drops before the request's end (a chunked
    // body without its last chunk): what arrived completes the upload all the same.
    let mut cut = connect(server.addr);
    let last = format!(
        "PATCH {path} HTTP/1.1\r\nHost: {}\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 400000\r\n\
         Content-Type: application/offset+octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
        server.addr
    );
    cut.write_all(last.as_bytes()).unwrap();
    cut.write_all(&chunked(&vec![7; 600_000])).unwrap();
    wait_until("the last bytes are counted", || {
        head(&server, &path).1.as_deref() == Some("1000000")
    });
    drop(cut);
    let refused =
        post_multipart(server.addr, "/api/v1/submissions", &[text("upload", id_of(&path))]);
    assert_refused(&refused, 400, "testimony_missing");
    assert_eq!(recorded(&server), nothing, "nothing of a refused submission is recorded");
    let kept = post_multipart(
        server.addr,
        "/api/v1/submissions",
        &[text("testimony", "with the file"), text("upload", id_of(&path))],
    );
    assert_eq!(kept.status, 201, "{}", kept.text());
    let stored = server.stored_objects();

    // Held uploads are capped; termination deletes an upload's bytes.
    let paused: Vec<String> = (0..3).map(|_| create(&server, 500_000)).collect();
    let fourth = tus(&server, "POST", "/api/v1/uploads", &[("Upload-Length", "500000")], b"");
    assert_refused(&fourth, 503, "too_many_uploads");
    assert!(fourth.header("retry-after").is_some());
    patch(&server, &paused[0], 0, &vec![1; 300_000]);
    wait_until("the upload's ciphertext is in objects/tmp", || !server.temp_files().is_empty());
    assert_eq!(tus(&server, "DELETE", &paused[0], &[], b"").status, 204);
    assert_refused(&patch(&server, &paused[0], 300_000, &[1; 10]), 404, "upload_not_found");
    wait_until("a terminated upload's ciphertext is deleted", || server.temp_files().is_empty());

    for path in &paused[1..] {
        assert_eq!(tus(&server, "DELETE", path, &[], b"").status, 204);
    }

    // After a restart: every unfinished upload is gone, its ciphertext swept.
    let path = create(&server, 1_000_000);
    patch(&server, &path, 0, &vec![9; 300_000]);
    wait_until("the upload's ciphertext is in objects/tmp", || !server.temp_files().is_empty());
    server.restart();
    assert_refused(&patch(&server, &path, 300_000, &[9; 10]), 404, "upload_not_found");
    assert!(server.temp_files().is_empty(), "{:?}", server.temp_files());
    assert_eq!(server.stored_objects(), stored);
    normal_submission_works(&server);
}

/// Pseudo-random bytes made as they are sent, never stored: `len` of them to `out`.
fn send_generated(out: &mut impl Write, state: &mut u64, len: u64) {
    let mut block = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        for word in block[..n].chunks_mut(8) {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            word.copy_from_slice(&state.to_le_bytes()[..word.len()]);
        }
        out.write_all(&block[..n]).unwrap();
        left -= n as u64;
    }
}

#[test]
fn a_5_gib_upload_completes_in_memory_that_does_not_grow_with_its_size() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "");
    let len: u64 = 5 << 30;
    let path = create(&server, len as usize);
    // In ten requests of 512 MiB, as a client resuming after each would.
    let piece: u64 = 512 << 20;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for n in 0..len / piece {
        let mut stream = connect(server.addr);
        let head = format!(
            "PATCH {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: {}\r\n\
             Content-Type: application/offset+octet-stream\r\nContent-Length: {piece}\r\n\r\n",
            server.addr,
            n * piece
        );
        stream.write_all(head.as_bytes()).unwrap();
        send_generated(&mut stream, &mut state, piece);
        let answer = read_response(&mut stream);
        assert_eq!(answer.status, 204, "{}", answer.text());
    }
    assert_eq!(head(&server, &path), (200, Some(len.to_string())));
    let sent = post_multipart(
        server.addr,
        "/api/v1/submissions",
        &[text("testimony", "five gibibytes"), text("upload", id_of(&path))],
    );
    assert_eq!(sent.status, 201, "{}", sent.text());
    let peak = peak_memory_kib(server.pid());
    assert!(peak < 64 * 1024, "the server's VmHWM was {peak} KiB for a 5 GiB upload");
}

#[test]
fn an_upload_is_kept_only_while_it_makes_progress() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let settings = "[uploads]\nmax_held = 3\nresume_window_secs = 8\nevict_idle_secs = 1\n";
    let server = Server::start(dir.path(), &coalition, settings);

    // A new upload that receives nothing goes after evict_idle_secs, however often it is
    // sent empty requests.
    let idle = create(&server, 500_000);
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(patch(&server, &idle, 0, b"").status, 204);
    }
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(head(&server, &idle), (404, None));

    // Every place taken: the upload idle for longest makes room; the others stay.
    let held: Vec<String> = (0..3).map(|_| create(&server, 500_000)).collect();
    for path in &held {
        assert_eq!(patch(&server, path, 0, &vec![3; 200_000]).status, 204);
    }
    std::thread::sleep(Duration::from_millis(1500));
    let newcomer = create(&server, 500_000);
    assert_eq!(head(&server, &held[0]), (404, None), "the oldest made room");
    assert_eq!(head(&server, &held[1]), (200, Some("200000".to_string())));
    assert_eq!(head(&server, &newcomer), (200, Some("0".to_string())));

    // After its time to resume with no progress: gone, its ciphertext deleted.
    std::thread::sleep(Duration::from_secs(9));
    assert_refused(&patch(&server, &held[1], 200_000, &[3; 10]), 404, "upload_not_found");
    wait_until("expired uploads' ciphertext is deleted", || {
        head(&server, &held[2]);
        server.temp_files().is_empty()
    });
}

#[test]
fn a_browser_told_the_server_restarted_sends_the_video_again_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let mut server = Server::start(dir.path(), &coalition, "");
    let video = dir.path().join("injuries.mp4");
    evidence_file(&video, 30 << 20, b"CANARY-RESTART");
    // At the first cut the server is restarted (its unfinished uploads die with it); at
    // the second, well into the new upload, the test reads the page while the link waits.
    let upstream = Arc::new(Mutex::new(server.addr));
    let (at_cut, cut) = std::sync::mpsc::channel::<()>();
    let (go_on, resume) = std::sync::mpsc::channel::<()>();
    let resume = Mutex::new(resume);
    let mib = 1u64 << 20;
    let proxy =
        cutting_proxy_to(upstream.clone(), vec![12 * mib, 12 * mib + 20 * mib], move || {
            at_cut.send(()).unwrap();
            resume.lock().unwrap().recv().unwrap();
        });
    let browser = crate::browser::Browser::start_with_scripts(&dir.path().join("profile"));
    browser.open(&format!("http://{}/ru/submit", proxy.addr));
    browser.type_into("#testimony", "Видео из больницы.");
    browser.click("#readers-coalition");
    browser.type_into("#evidence", video.to_str().unwrap());
    browser.click("button[type=submit]");
    let minutes = |n: u64| std::time::Duration::from_secs(60 * n);
    cut.recv_timeout(minutes(2)).expect("the upload reached the first cut");
    server.restart();
    *upstream.lock().unwrap() = server.addr;
    go_on.send(()).unwrap();
    cut.recv_timeout(minutes(2)).expect("the new upload reached the second cut");
    let words = browser.text_of("#upload-words");
    go_on.send(()).unwrap();
    assert!(words.contains("Сервер перезапустился"), "{words}");
    wait_within(minutes(3), "the receipt page", || browser.exists("#codename"));
    assert_eq!(recorded(&server).0, 1);
    assert_largest_object_opens_to(&server, &coalition, &server.stored_objects(), &video);
}
