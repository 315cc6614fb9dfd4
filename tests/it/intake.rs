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
    let canary: Vec<u8> = b"CANARY-BYTES-"
        .iter()
        .copied()
        .cycle()
        .take(4096)
        .collect();
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
            text(
                "testimony",
                "They took me from the hospital bed on 6 January.",
            ),
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
    let mut plaintexts = Vec::new();
    for object in &objects {
        let path = server.objects_dir().join(object);
        let ciphertext = std::fs::read(&path).unwrap();
        assert_eq!(
            &sha256_hex(&ciphertext),
            object,
            "object id is the ciphertext's SHA-256"
        );
        let first = decrypt(&ciphertext, &coalition.identities[0]);
        for (identity, file) in coalition.identities.iter().zip(&coalition.identity_files) {
            assert_eq!(decrypt(&ciphertext, identity), first);
            assert_eq!(decrypt_with_age_cli(&path, file), first);
        }
        plaintexts.push(first);
    }
    assert_eq!(plaintexts[0], photo, "the photo comes back bit for bit");
    assert_eq!(plaintexts[1], letter);

    let manifest: serde_json::Value = serde_json::from_slice(&plaintexts[2]).unwrap();
    assert_eq!(manifest["schema"], "amanat/manifest/v1");
    assert_eq!(manifest["submission"], id);
    assert_eq!(manifest["origin"], "api");
    assert_eq!(
        manifest["testimony"],
        "They took me from the hospital bed on 6 January."
    );
    assert_eq!(
        manifest["fields"],
        serde_json::json!([
            {"name": "where", "value": "Almaty, city hospital No. 4"},
            {"name": "when", "value": "2022-01-06"},
        ])
    );
    let attachments = manifest["attachments"].as_array().unwrap();
    for (attachment, (original, (name, media_type))) in
        attachments.iter().zip([&photo, &letter].into_iter().zip([
            ("IMG_0042.jpg", "image/jpeg"),
            ("certificate.pdf", "application/pdf"),
        ]))
    {
        assert_eq!(attachment["name"], name);
        assert_eq!(attachment["media_type"], media_type);
        assert_eq!(attachment["size"], original.len() as u64);
        assert_eq!(
            attachment["sha256"],
            sha256_hex(original),
            "manifest hash of {name}"
        );
    }
    assert_eq!(attachments[0]["object"], objects[0].as_str());
    assert_eq!(attachments[1]["object"], objects[1].as_str());
}

#[test]
fn survivor_submits_through_the_html_form_and_gets_a_codename() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "");

    let form = get(server.addr, "/submit");
    assert_eq!(form.status, 200);
    let html = form.text();
    assert!(html.contains("enctype=\"multipart/form-data\""));
    assert!(html.contains("name=\"testimony\"") && html.contains("type=\"file\""));
    assert!(
        !html.to_lowercase().contains("<script"),
        "the form needs no JavaScript"
    );
    let csp = form.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'"));
    assert_eq!(form.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(form.header("cache-control"), Some("no-store"));
    assert!(
        form.header("set-cookie").is_none(),
        "no cookies on the submit path"
    );

    let photo = noise(300_000, 7);
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
            file("evidence", "scar.jpg", "image/jpeg", &photo),
            file("evidence", "", "application/octet-stream", b""),
        ],
    );
    assert_eq!(response.status, 200, "{}", response.text());
    let page = response.text();
    assert!(
        page.contains("class=\"codename\""),
        "the receipt page shows the codename"
    );
    assert!(response.header("set-cookie").is_none());

    // The stored submission: one photo and the manifest.
    let files = server.object_files();
    assert_eq!(files.len(), 2);
    let mut manifest = None;
    for path in &files {
        let plain = decrypt(&std::fs::read(path).unwrap(), &coalition.identities[0]);
        if plain == photo {
            continue;
        }
        manifest = Some(serde_json::from_slice::<serde_json::Value>(&plain).unwrap());
    }
    let manifest = manifest.expect("a manifest object");
    assert_eq!(manifest["origin"], "web");
    assert_eq!(manifest["language"], "en");
    assert_eq!(manifest["testimony"], "Они били меня дубинками в РОВД.");
    assert_eq!(manifest["attachments"].as_array().unwrap().len(), 1);
    assert_eq!(manifest["attachments"][0]["sha256"], sha256_hex(&photo));
    let codename_shown = page
        .split("class=\"codename\" id=\"codename\">")
        .nth(1)
        .unwrap();
    let codename_shown = codename_shown.split('<').next().unwrap();
    assert_eq!(codename_shown.split(' ').count(), 5);
}

#[test]
fn plaintext_never_reaches_the_disk_or_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 2);
    let mut server = Server::start(dir.path(), &coalition, "max_submission_bytes = 8388608");
    let (photo, byte_canary) = photo_with_canary(3 * 1024 * 1024);
    let parts = |testimony: &str| {
        vec![
            text("testimony", testimony),
            text("where", FIELD_CANARY),
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
    too_big.push(file(
        "evidence",
        NAME_CANARY,
        "image/jpeg",
        &noise(6 * 1024 * 1024, 3),
    ));
    let refused = post_multipart(server.addr, "/api/v1/submissions", &too_big);
    assert_eq!(refused.status, 413);

    // Abandoned: the connection drops halfway through the photo.
    let body = multipart_body(&parts(TEXT_CANARY));
    let mut stream = connect(server.addr);
    write!(
        stream,
        "POST /api/v1/submissions HTTP/1.1\r\nHost: x\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
        multipart_type(),
        body.len()
    )
    .unwrap();
    stream.write_all(&body[..body.len() * 2 / 3]).unwrap();
    drop(stream);

    // The server stays up and cleans up after the refused and the abandoned request.
    assert_eq!(get(server.addr, "/healthz").status, 200);
    wait_until("refused uploads are cleaned up", || {
        server.temp_files().is_empty() && server.object_files().len() == 4
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
    assert!(
        files.len() >= 4,
        "the store holds objects and an index: {files:?}"
    );
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        for (what, needle) in &needles {
            assert!(
                !contains(&bytes, needle),
                "{what} found in plaintext in {}",
                path.display()
            );
        }
    }
    assert_eq!(
        server.object_files().len(),
        4,
        "two accepted submissions, nothing else"
    );
    assert!(server.temp_files().is_empty());

    let logs = server.logs();
    assert!(
        logs.contains("route=/api/v1/submissions status=201"),
        "requests are logged:\n{logs}"
    );
    assert!(logs.contains("status=413"));
    for (what, needle) in &needles {
        assert!(
            !contains(logs.as_bytes(), needle),
            "{what} in the logs:\n{logs}"
        );
    }
    assert!(
        !logs.contains(CLIENT_IP),
        "a client address is in the logs:\n{logs}"
    );
    assert!(!logs.to_lowercase().contains("user-agent"));
}
