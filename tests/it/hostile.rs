//! The hostile corpus (tests/data/hostile/cases.toml): malformed, oversized and tricky
//! requests, each refused with a 4xx and its stable code, nothing stored, memory bounded,
//! and the next normal request served.

use crate::common::*;
use std::io::Write;
use std::net::Shutdown;

#[derive(serde::Deserialize)]
struct Corpus {
    case: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    /// A raw request in tests/data/hostile/, or the name of a generator below.
    file: Option<String>,
    generate: Option<String>,
    status: u16,
    /// amanat's stable code; absent when the HTTP layer refuses before amanat runs
    /// (its status is then the code).
    code: Option<String>,
}

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/hostile");

/// A corpus file: lines end in CRLF on the wire, `\xNN` writes any byte, and a
/// Content-Length is added when the head frames nothing itself.
fn load(file: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(format!("{DIR}/{file}")).unwrap().replace('\n', "\r\n");
    let mut bytes = Vec::new();
    let raw = text.as_bytes();
    let mut i = 0;
    while i < raw.len() {
        if raw[i..].starts_with(b"\\x") {
            bytes.push(
                u8::from_str_radix(std::str::from_utf8(&raw[i + 2..i + 4]).unwrap(), 16).unwrap(),
            );
            i += 4;
        } else {
            bytes.push(raw[i]);
            i += 1;
        }
    }
    let split = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let (head, body) = bytes.split_at(split);
    let head_text = String::from_utf8_lossy(head).to_ascii_lowercase();
    if head_text.contains("content-length:") || head_text.contains("transfer-encoding:") {
        return bytes;
    }
    let mut framed = head[..head.len() - 2].to_vec();
    framed.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    framed.extend_from_slice(body);
    framed
}

fn api_head(extra: &str) -> String {
    format!("POST /api/v1/submissions HTTP/1.1\r\nHost: x\r\n{extra}\r\n")
}

/// The requests too large to keep as files, made the same way every time.
fn generate(name: &str) -> Vec<u8> {
    let multipart = |body: Vec<u8>| api_upload(&body);
    match name {
        "header-of-one-megabyte" => {
            let mut out = api_head(&format!("X-Junk: {}\r\n", "a".repeat(1 << 20))).into_bytes();
            out.extend_from_slice(b"\r\n");
            out
        }
        "hundred-thousand-parts" => {
            let parts: Vec<Part> = (0..100_000).map(|i| text(&format!("f{i}"), "x")).collect();
            multipart(multipart_body(&parts))
        }
        "field-ten-thousand-times" => {
            let mut parts = vec![text("testimony", "words")];
            parts.extend((0..10_000).map(|_| text("place_of_arrest", "x")));
            multipart(multipart_body(&parts))
        }
        "thousand-headers" => {
            let headers: String = (0..1000).fold(String::new(), |mut all, i| {
                all.push_str(&format!("X-H{i}: v\r\n"));
                all
            });
            let mut out = api_head(&headers).into_bytes();
            out.extend_from_slice(b"\r\n");
            out
        }
        "part-headers-of-one-megabyte" => {
            let body = format!(
                "--{b}\r\nContent-Disposition: form-data; name=\"evidence\"; filename=\"{}\"\r\n\r\nx\r\n--{b}--\r\n",
                "n".repeat(1 << 20),
                b = BOUNDARY
            )
            .into_bytes();
            multipart(body)
        }
        other => panic!("no generator {other}"),
    }
}

/// Sends a request; `half` stops after half of it and closes the sending side.
fn send(server: &Server, request: &[u8], half: bool) -> Response {
    let mut stream = connect(server.addr);
    let writer = stream.try_clone().unwrap();
    let to_send = if half { request[..request.len() / 2].to_vec() } else { request.to_vec() };
    let sender = std::thread::spawn(move || {
        let mut writer = writer;
        let _ = writer.write_all(&to_send);
        if half {
            let _ = writer.shutdown(Shutdown::Write);
        }
    });
    let response = read_response(&mut stream);
    // Then the server closes the connection: the unread rest of a refused request can
    // never be taken for the next request on it (actix-web #3194).
    stream.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    let mut rest = Vec::new();
    let closed = match std::io::Read::read_to_end(&mut stream, &mut rest) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    assert!(closed, "the connection stays open after a refusal");
    drop(stream);
    let _ = sender.join();
    response
}

#[test]
fn every_hostile_request_is_refused_with_its_code_and_the_server_stays_well() {
    let corpus: Corpus =
        toml::from_str(&std::fs::read_to_string(format!("{DIR}/cases.toml")).unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "");
    let baseline = peak_memory_kib(server.pid());
    let mut report = Vec::new();
    let mut wrong = Vec::new();
    for case in &corpus.case {
        let (request, half) = match (&case.file, &case.generate) {
            (Some(file), None) => (load(file), false),
            (None, Some(g)) if g == "half-of-a-photo-upload" => {
                let body = multipart_body(&[
                    text("testimony", "t"),
                    file("evidence", "a.jpg", "image/jpeg", &noise(1 << 20, 1)),
                ]);
                (api_upload(&body), true)
            }
            (None, Some(g)) => (generate(g), false),
            _ => panic!("{}: give file or generate", case.name),
        };
        let stored_before = server.stored_objects().len();
        let response = send(&server, &request, half);
        let code = if response.header("content-type") == Some("application/json") {
            Some(response.error_code())
        } else {
            None
        };
        let got = (response.status, code);
        let want = (case.status, case.code.clone());
        let stored = server.stored_objects().len() != stored_before;
        report.push(format!("{} -> {} {}", case.name, got.0, got.1.as_deref().unwrap_or("-")));
        if got != want || !(400..500).contains(&got.0) || stored {
            wrong.push(format!(
                "{}: got {got:?}, want {want:?}{}: {}",
                case.name,
                if stored { ", and something was stored" } else { "" },
                response.text()
            ));
        }
        normal_submission_works(&server);
    }
    wait_until("no temp file is left", || server.temp_files().is_empty());
    let peak = peak_memory_kib(server.pid());
    println!(
        "hostile: cases={} peak_kib={peak} (at start {baseline})\n  {}",
        corpus.case.len(),
        report.join("\n  ")
    );
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(peak < 128 * 1024, "memory stays bounded: peak {peak} KiB");
}
