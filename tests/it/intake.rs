//! A survivor submits; every key holder can read exactly what was sent; the server
//! keeps nothing readable.

use crate::common::*;
use std::io::Write;

const TEXT_CANARY: &str = "CANARY-TESTIMONY-4f1c9e";
const NAME_CANARY: &str = "CANARY-NAME-8d2b.jpg";
const FIELD_CANARY: &str = "CANARY-WHERE-Almaty-71ac";

/// A photo-sized file with a recognizable run of plaintext bytes in the middle.
fn photo_with_canary(len: usize) -> (Vec<u8>, Vec<u8>) {
    let mut data = noise(len, 42);
    let canary: Vec<u8> = b"CANARY-BYTES-".iter().copied().cycle().take(4096).collect();
    data[len / 2..len / 2 + canary.len()].copy_from_slice(&canary);
    (data, canary[..64].to_vec())
}

fn assert_is_hour(received_at: &str) {
    assert!(
        received_at.len() == 20 && received_at.ends_with(":00:00Z"),
        "received_at must be coarsened to the hour: {received_at}"
    );
}

#[test]
fn survivor_submits_testimony_and_photos_through_the_api_and_every_key_holder_decrypts_them() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 3);
    let server = Server::start(dir.path(), &coalition, "");
    let (photo, _) = photo_with_canary(6 * 1024 * 1024 + 123);
    let letter = b"%PDF-1.4 medical certificate that was refused".to_vec();

    let response = post_multipart(
        server.addr,
        "/api/v1/submissions",
        &[
            text("testimony", "They took me from the hospital bed on 6 January."),
            text("where", "Almaty, city hospital No. 4"),
            file("evidence", "IMG_0042.jpg", "image/jpeg", &photo),
            text("when", "2022-01-06"),
            file("evidence", "certificate.pdf", "application/pdf", &letter),
        ],
    );
    assert_eq!(response.status, 201, "{}", response.text());
    let receipt = response.json();
    let id = receipt["id"].as_str().unwrap();
    assert_eq!(id.len(), 32, "a random 128-bit id in hex");
    let codename = receipt["codename"].as_str().unwrap();
    assert_eq!(codename.split(' ').count(), 5, "codename: {codename}");
    assert_is_hour(receipt["received_at"].as_str().unwrap());
    let objects = receipt_objects(&receipt);
    assert_eq!(objects.len(), 3, "two files and the manifest");

    // Every object is on disk under the hash of its ciphertext, and every key holder
    // reads the same plaintext, with the age crate and with the stock age tool.
    let plaintexts = every_holder_reads(&server, &coalition, &objects);
    // Padded so the stored size does not give the file's: the manifest has the size.
    assert_eq!(unpadded(&plaintexts[0], photo.len()), &photo[..], "the photo, bit for bit");
    assert_eq!(unpadded(&plaintexts[1], letter.len()), &letter[..]);

    let manifest: serde_json::Value = serde_json::from_slice(&plaintexts[2]).unwrap();
    assert_eq!(manifest["schema"], "amanat/manifest/v1");
    assert_eq!(manifest["submission"], id);
    assert_eq!(manifest["origin"], "api");
    assert_eq!(manifest["testimony"], "They took me from the hospital bed on 6 January.");
    assert_eq!(
        manifest["fields"],
        serde_json::json!([
            {"name": "where", "value": "Almaty, city hospital No. 4"},
            {"name": "when", "value": "2022-01-06"},
        ])
    );
    let attachments = manifest["attachments"].as_array().unwrap();
    for (attachment, (original, (name, media_type))) in attachments.iter().zip(
        [&photo, &letter]
            .into_iter()
            .zip([("IMG_0042.jpg", "image/jpeg"), ("certificate.pdf", "application/pdf")]),
    ) {
        assert_eq!(attachment["name"], name);
        assert_eq!(attachment["media_type"], media_type);
        assert_eq!(attachment["size"], original.len() as u64);
        assert_eq!(attachment["sha256"], sha256_hex(original), "manifest hash of {name}");
    }
    assert_eq!(attachments[0]["object"], objects[0].as_str());
    assert_eq!(attachments[1]["object"], objects[1].as_str());
}

#[test]
fn survivor_submits_through_the_html_form_and_gets_a_codename() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 3);
    let server = Server::start(dir.path(), &coalition, "");

    // The bare path sends the browser to its language.
    let bare =
        request(server.addr, "GET", "/submit", &[("Accept-Language", "kk-KZ,ru;q=0.8")], b"");
    assert_eq!((bare.status, bare.header("location")), (303, Some("/kk/submit")));
    let form = get(server.addr, "/en/submit");
    assert_eq!(form.status, 200);
    let html = form.text();
    assert!(html.contains("enctype=\"multipart/form-data\""));
    assert!(html.contains("name=\"testimony\"") && html.contains("type=\"file\""));
    // It works without JavaScript; its only scripts (for resumable uploads) are its own,
    // pinned by their hashes.
    assert!(!html.to_lowercase().contains("<script>"), "no inline script");
    let csp = form.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"));
    assert_eq!(form.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(form.header("cache-control"), Some("no-store"));
    assert!(form.header("set-cookie").is_none(), "no cookies on the submit path");

    let video = noise(5 * 1024 * 1024 + 17, 7);
    let photo = noise(300_000, 8);
    // What a browser sends: every field, and an empty file part for an unused input.
    let response = post_multipart(
        server.addr,
        "/submit",
        &[
            text("language", "en"),
            text("testimony", "Они били меня дубинками в РОВД."),
            text("when", "январь 2022"),
            text("where", ""),
            text("contact", ""),
            text("consent_readers", "lawyers"),
            file("evidence", "arrest.mp4", "video/mp4", &video),
            file("evidence", "scar.jpg", "image/jpeg", &photo),
            file("evidence", "", "application/octet-stream", b""),
        ],
    );
    assert_eq!(response.status, 200, "{}", response.text());
    let page = response.text();
    assert!(response.header("set-cookie").is_none());
    let codename = page.split("id=\"codename\">").nth(1).unwrap().split('<').next().unwrap();
    assert_eq!(codename.split(' ').count(), 5, "the receipt page shows the codename");
    let reference = page.split("id=\"submission-id\">").nth(1).unwrap().split('<').next().unwrap();

    // Stored: two files and the manifest, each readable by every key holder.
    let objects = server.stored_objects();
    assert_eq!(objects.len(), 3);
    let plaintexts = every_holder_reads(&server, &coalition, &objects);
    let manifest = plaintexts
        .iter()
        .find_map(|p| serde_json::from_slice::<serde_json::Value>(p).ok())
        .expect("a manifest object");
    assert_eq!(manifest["submission"], reference);
    assert_eq!(manifest["origin"], "web");
    assert_eq!(manifest["language"], "en");
    assert_eq!(manifest["testimony"], "Они били меня дубинками в РОВД.");
    assert_eq!(
        manifest["fields"],
        serde_json::json!([
            {"name": "when", "value": "январь 2022"},
            {"name": "consent_readers", "value": "lawyers"}
        ]),
        "skipped questions are not stored as answers"
    );
    let attachments = manifest["attachments"].as_array().unwrap();
    assert_eq!(attachments.len(), 2);
    for (attachment, original) in attachments.iter().zip([&video, &photo]) {
        assert_eq!(attachment["sha256"], sha256_hex(original));
        let object = attachment["object"].as_str().unwrap();
        let index = objects.iter().position(|o| o == object).expect("attachment stored");
        let plain = unpadded(&plaintexts[index], original.len());
        assert_eq!(plain, &original[..], "the file comes back bit for bit");
    }
}

#[test]
fn memory_stays_bounded_whatever_the_upload_size() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 3);
    let server = Server::start(dir.path(), &coalition, "");
    let size: usize = 300 << 20;
    let head = part_head(&file("evidence", "long-video.mp4", "video/mp4", b""));
    let testimony = multipart_body(&[text("testimony", "a long video")]);
    let testimony = &testimony[..testimony.len() - BOUNDARY.len() - 6]; // without the closing
    let tail = format!("\r\n--{BOUNDARY}--\r\n");
    let mut stream = connect(server.addr);
    let length = testimony.len() + head.len() + size + tail.len();
    stream.write_all(upload_head(&format!("Content-Length: {length}")).as_bytes()).unwrap();
    stream.write_all(testimony).unwrap();
    stream.write_all(&head).unwrap();
    let block = noise(1 << 20, 11);
    for _ in 0..size >> 20 {
        stream.write_all(&block).unwrap();
    }
    stream.write_all(tail.as_bytes()).unwrap();
    let response = read_response(&mut stream);
    assert_eq!(response.status, 201, "{}", response.text());
    let peak = peak_memory_kib(server.pid());
    println!("peak server memory after a 300 MiB upload: {peak} KiB");
    assert!(peak < 48 * 1024, "server peak memory {peak} KiB for a 300 MiB upload");
    let manifest = manifest(&server, &receipt_objects(&response.json()), &coalition.identities[2]);
    assert_eq!(manifest["attachments"][0]["size"], size as u64);
}

#[test]
fn plaintext_never_reaches_the_disk_or_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 2);
    // At `debug`, the one level that logs each request: even then, nothing of who or what.
    let data = dir.path().join("data");
    let limits = "max_submission_bytes = 8388608";
    let mut server =
        Server::start_configured(dir.path(), &data, &coalition, "log_level = \"debug\"", limits);
    let (photo, byte_canary) = photo_with_canary(3 * 1024 * 1024);
    let parts = |testimony: &str| {
        vec![
            text("testimony", testimony),
            text("where", FIELD_CANARY),
            text("consent_readers", "coalition"),
            file("evidence", NAME_CANARY, "image/jpeg", &photo),
        ]
    };

    // Accepted, through both doors.
    let api = post_multipart(server.addr, "/api/v1/submissions", &parts(TEXT_CANARY));
    assert_eq!(api.status, 201);
    let codename = api.json()["codename"].as_str().unwrap().to_string();
    let form = post_multipart(server.addr, "/submit", &parts(TEXT_CANARY));
    assert_eq!(form.status, 200);

    // Refused: too large, after the canary bytes were already streamed and encrypted.
    let mut too_big = parts(TEXT_CANARY);
    too_big.push(file("evidence", NAME_CANARY, "image/jpeg", &noise(6 * 1024 * 1024, 3)));
    let refused = post_multipart(server.addr, "/api/v1/submissions", &too_big);
    assert_eq!(refused.status, 413);

    // Abandoned: the connection drops halfway through the photo.
    let body = multipart_body(&parts(TEXT_CANARY));
    let mut stream = connect(server.addr);
    let length = body.len();
    stream.write_all(upload_head(&format!("Content-Length: {length}")).as_bytes()).unwrap();
    stream.write_all(&body[..body.len() * 2 / 3]).unwrap();
    drop(stream);

    // The server stays up and cleans up after the refused and the abandoned request.
    assert_eq!(get(server.addr, "/healthz").status, 200);
    wait_until("the abandoned upload is refused", || {
        server.logs().contains("code=\"incomplete_upload\"")
    });
    wait_until("refused uploads are cleaned up: two accepted submissions, nothing else", || {
        server.temp_files().is_empty() && server.stored_objects().len() == 4
    });
    server.kill();

    let needles: Vec<(&str, Vec<u8>)> = vec![
        ("testimony text", TEXT_CANARY.as_bytes().to_vec()),
        ("file name", NAME_CANARY.as_bytes().to_vec()),
        ("form field", FIELD_CANARY.as_bytes().to_vec()),
        ("file bytes", byte_canary.clone()),
        ("codename", codename.as_bytes().to_vec()),
    ];
    let files = all_files(&server.data_dir);
    assert!(files.len() >= 4, "the store holds objects and an index: {files:?}");
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        for (what, needle) in &needles {
            assert!(!contains(&bytes, needle), "{what} found in plaintext in {}", path.display());
        }
    }
    assert!(server.temp_files().is_empty());

    let logs = server.logs();
    assert!(logs.contains("route=/api/v1/submissions status=201"), "requests are logged:\n{logs}");
    assert!(logs.contains("status=413"));
    for (what, needle) in &needles {
        assert!(!contains(logs.as_bytes(), needle), "{what} in the logs:\n{logs}");
    }
    assert!(!logs.contains(CLIENT_IP), "a client address is in the logs:\n{logs}");
    assert!(!logs.to_lowercase().contains("user-agent"));
}
