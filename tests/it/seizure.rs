//! What a seized server shows, and what a stranger on the network can do to what it
//! holds (issue 15): no exact times or sizes on disk or in the default log, no
//! acknowledged evidence deleted through a shared object, no genuine sealed file refused
//! because someone took its id, no forged lines in the log, no receipt oracle.

use crate::common::*;
use crate::fieldkit::{members, post_sealed, seal, tar_of};
use crate::review::{export, open};
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::time::UNIX_EPOCH;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Seconds and nanoseconds of a time since the epoch.
fn at(time: std::time::SystemTime) -> (u64, u32) {
    let d = time.duration_since(UNIX_EPOCH).unwrap();
    (d.as_secs(), d.subsec_nanos())
}

#[test]
fn object_files_carry_only_the_hour_and_the_default_log_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "");
    let photo = noise(300_001, 1);
    let response = post_multipart(
        server.addr,
        "/api/v1/submissions",
        &[text("testimony", "Taken at night."), file("evidence", "a.jpg", "image/jpeg", &photo)],
    );
    assert_eq!(response.status, 201);
    assert_refused(
        &post_multipart(server.addr, "/api/v1/submissions", &[]),
        400,
        "testimony_missing",
    );

    let files = server.object_files();
    assert_eq!(files.len(), 1, "the photo is a file");
    // The directory's access time moves whenever it is listed: only its modification
    // time is kept to the hour.
    let dir_meta = std::fs::metadata(server.objects_dir()).unwrap();
    let (secs, nanos) = at(dir_meta.modified().unwrap());
    assert!(secs % 3600 == 0 && nanos == 0, "objects/ modified at {secs}.{nanos}");
    for path in &files {
        let meta = std::fs::metadata(path).unwrap();
        for (what, time) in [("modified", meta.modified()), ("accessed", meta.accessed())] {
            let (secs, nanos) = at(time.unwrap());
            assert!(
                secs % 3600 == 0 && nanos == 0,
                "{what} time of {} is {secs}.{nanos}",
                path.display()
            );
        }
    }

    // The default level: no line per request, and no line with a finer time than the hour.
    let logs = server.logs();
    assert!(!logs.is_empty());
    for line in logs.lines() {
        assert!(!line.contains("route=") && !line.contains("bytes_in"), "a request line: {line}");
        let stamp = line.split_whitespace().next().unwrap_or("");
        assert!(
            stamp.len() == 20 && stamp.ends_with(":00:00Z"),
            "a log line with a time finer than the hour: {line}"
        );
    }
}

#[test]
fn an_objects_size_does_not_give_its_files_and_stock_age_gives_the_file_back() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "");
    // Two photos 499 bytes apart: their objects are the same size.
    let (a, b) = (noise(300_001, 2), noise(300_500, 3));
    let response = post_multipart(
        server.addr,
        "/api/v1/submissions",
        &[
            text("testimony", "Two photos of the bruises."),
            file("evidence", "a.jpg", "image/jpeg", &a),
            file("evidence", "b.jpg", "image/jpeg", &b),
        ],
    );
    assert_eq!(response.status, 201);
    let objects = receipt_objects(&response.json());
    // An age file: its header (a few hundred bytes, of varying length: age adds a random
    // stanza), a 16-byte nonce, then each 64 KiB chunk and its 16-byte tag.
    let payload = |object: &[u8]| {
        let header = object.windows(5).position(|w| w == b"\n--- ").unwrap() + 5 + 43 + 1;
        object.len() - header - 16
    };
    let (ca, cb) = (server.object(&objects[0]), server.object(&objects[1]));
    assert_eq!(payload(&ca), payload(&cb), "the stored size gives only the bucket");
    let unpadded = 300_001 + 16 * 300_001usize.div_ceil(64 * 1024);
    assert!(payload(&ca) > unpadded, "{} bytes of payload for 300,001", payload(&ca));

    // The stock tool, as VERIFY.txt and the demo say: the manifest's size and SHA-256.
    let manifest = manifest(&server, &objects, &coalition.identities[0]);
    for (i, original) in [&a, &b].into_iter().enumerate() {
        let attachment = &manifest["attachments"][i];
        let path = server.object_file(&objects[i]);
        let script = format!(
            "age -d -i {} {} | head -c {} | sha256sum",
            s(&coalition.identity_files[0]),
            s(&path),
            attachment["size"]
        );
        let out = std::process::Command::new("sh").args(["-c", &script]).output().unwrap();
        let printed = String::from_utf8_lossy(&out.stdout);
        assert!(printed.starts_with(attachment["sha256"].as_str().unwrap()), "{printed}");
        assert_eq!(attachment["sha256"], sha256_hex(original));
    }
    // And `open` gives back the files themselves.
    let bundle = dir.path().join("b.tar");
    export(&server, &bundle, false);
    let cases = dir.path().join("cases");
    assert!(open(&[&bundle], &coalition.identity_files[0], &cases).0);
    let id = response.json()["id"].as_str().unwrap().to_string();
    assert!(std::fs::read(cases.join(&id).join("evidence/a.jpg")).unwrap() == a);
    assert!(std::fs::read(cases.join(&id).join("evidence/b.jpg")).unwrap() == b);
}

/// A sealed file a stranger makes from a genuine one seen in transit: its own manifest
/// (anyone can encrypt to the coalition's public keys), the genuine file's first
/// attachment, and `submission` as given.
fn strangers_file(
    genuine: &[(String, Vec<u8>)],
    own: &[(String, Vec<u8>)],
    submission: &str,
) -> Vec<(String, Vec<u8>)> {
    let shared = genuine[1].clone();
    let manifest = own.last().unwrap().clone();
    let mut index: Value = serde_json::from_slice(&own[0].1).unwrap();
    let id = |member: &(String, Vec<u8>)| {
        member.0.trim_start_matches("objects/").trim_end_matches(".age").to_string()
    };
    index["attachments"] = serde_json::json!([id(&shared)]);
    index["submission"] = submission.into();
    vec![(own[0].0.clone(), serde_json::to_vec_pretty(&index).unwrap()), shared, manifest]
}

#[test]
fn a_stranger_sharing_an_object_cannot_delete_acknowledged_evidence_or_block_exports() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "idle_timeout_secs = 2");
    let genuine = seal(dir.path(), &coalition, "genuine");
    let genuine_members = members(&genuine.path);
    let own = members(&seal(dir.path(), &coalition, "stranger").path);
    let stranger_members = strangers_file(&genuine_members, &own, &"5".repeat(32));
    let stranger = tar_of(&stranger_members);
    let shared_id = genuine_members[1].0.trim_start_matches("objects/").trim_end_matches(".age");

    // The stranger's upload stops right after the shared object (each tar member: a
    // 512-byte header, then its bytes padded to 512), which is then stored.
    let member = |data: &[u8]| 512 + data.len().div_ceil(512) * 512;
    let cut = member(&stranger_members[0].1) + member(&stranger_members[1].1);
    let mut stalled = connect(server.addr);
    let head = format!(
        "POST /api/v1/sealed HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\n\r\n",
        stranger.len()
    );
    stalled.write_all(head.as_bytes()).unwrap();
    stalled.write_all(&stranger[..cut]).unwrap();
    wait_until("the shared object is stored for the stranger's upload", || {
        server.object_files().iter().any(|p| p.file_name().unwrap() == shared_id)
    });

    // The genuine file arrives whole and is acknowledged, sharing that object.
    let accepted = post_sealed(&server, &std::fs::read(&genuine.path).unwrap());
    assert_eq!(accepted.status, 201, "{}", accepted.text());
    // The stranger's upload is then dropped, abandoned by the server.
    let refused = read_response(&mut stalled);
    assert_refused(&refused, 408, "upload_stalled");
    drop(stalled);

    // The acknowledged evidence is all there, and every export still works.
    assert!(server.stored_objects().iter().any(|id| id == shared_id), "the shared object stays");
    let bundle = dir.path().join("b.tar");
    let summary = export(&server, &bundle, true);
    assert_eq!(summary["submissions"], 1);
    let cases = dir.path().join("cases");
    let (ok, outcomes) = open(&[&bundle], &coalition.identity_files[0], &cases);
    assert!(ok, "{outcomes:?}");
    let id = accepted.json()["id"].as_str().unwrap().to_string();
    for (name, data) in &genuine.files {
        assert!(std::fs::read(cases.join(&id).join("evidence").join(name)).unwrap() == *data);
    }

    // Should an object go missing all the same (a disk fault), the export names its
    // record and still carries every other one.
    let other = post_multipart(
        server.addr,
        "/api/v1/submissions",
        &[
            text("testimony", "Another one."),
            file("evidence", "c.jpg", "image/jpeg", &noise(200_000, 7)),
        ],
    );
    assert_eq!(other.status, 201);
    let lost = receipt_objects(&other.json())[0].clone();
    std::fs::remove_file(server.objects_dir().join(&lost)).unwrap();
    let partial = dir.path().join("partial.tar");
    let out = amanat(&["export", "--data-dir", s(&server.data_dir), "--out", s(&partial), "--all"]);
    assert!(!out.status.success(), "an incomplete export says so in its exit code");
    let other_id = other.json()["id"].as_str().unwrap().to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&other_id) && stderr.contains(&lost), "{stderr}");
    let (ok, outcomes) = open(&[&partial], &coalition.identity_files[0], &dir.path().join("c2"));
    assert!(ok && outcomes.contains_key(&id) && !outcomes.contains_key(&other_id), "{outcomes:?}");
    let status = amanat(&["status", "--json", "--data-dir", s(&server.data_dir)]);
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["submissions_missing_objects"], serde_json::json!([other_id]));
}

#[test]
fn a_sealed_files_id_is_its_content_so_a_squatter_cannot_get_it_refused() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "");
    let genuine = seal(dir.path(), &coalition, "genuine");
    let genuine_members = members(&genuine.path);
    let claimed: Value = serde_json::from_slice(&genuine_members[0].1).unwrap();
    let claimed = claimed["submission"].as_str().unwrap().to_string();
    // Someone who saw the file in transit posts other content under its id first.
    let own = members(&seal(dir.path(), &coalition, "squatter").path);
    let squat = post_sealed(&server, &tar_of(&strangers_file(&genuine_members, &own, &claimed)));
    assert_eq!(squat.status, 201, "{}", squat.text());
    assert_ne!(squat.json()["id"], claimed.as_str(), "stored under the id its content gives");
    // The genuine file is taken, under the id it claims, which its content gives.
    let accepted = post_sealed(&server, &std::fs::read(&genuine.path).unwrap());
    assert_eq!(accepted.status, 201, "{}", accepted.text());
    assert_eq!(accepted.json()["id"], claimed.as_str());
    assert_eq!(genuine.id, claimed, "the field kit names it by its content");
    // The reviewer opens the genuine one; the squatter's fails its own manifest.
    let bundle = dir.path().join("b.tar");
    export(&server, &bundle, false);
    let (_, outcomes) = open(&[&bundle], &coalition.identity_files[0], &dir.path().join("cases"));
    assert_eq!(outcomes[&claimed]["status"], "opened");
    let squat_id = squat.json()["id"].as_str().unwrap().to_string();
    assert_eq!(outcomes[&squat_id]["status"], "failed");
}

#[test]
fn a_sealed_file_cannot_write_lines_of_its_own_into_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "");
    let sealed = seal(dir.path(), &coalition, "kit");
    let good = members(&sealed.path);
    let log_size = |server: &Server| {
        let out = amanat(&["status", "--json", "--data-dir", s(&server.data_dir)]);
        serde_json::from_slice::<Value>(&out.stdout).unwrap()["log_size"].as_u64().unwrap()
    };
    let before = log_size(&server);
    for forged in [
        "ab\nreceived 2022-01-05T03:00:00Z\nkind export".to_string(),
        "a".repeat(10_000),
        "A".repeat(64),
    ] {
        let mut altered = good.clone();
        let mut index: Value = serde_json::from_slice(&altered[0].1).unwrap();
        index["recipients"] = forged.clone().into();
        altered[0].1 = serde_json::to_vec_pretty(&index).unwrap();
        let response = post_sealed(&server, &tar_of(&altered));
        assert_refused(&response, 400, "sealed_field_invalid");
        assert_eq!(log_size(&server), before, "nothing logged for {forged:.30?}");
    }
    assert!(server.temp_files().is_empty());
    assert_eq!(post_sealed(&server, &std::fs::read(&sealed.path).unwrap()).status, 201);
}

#[test]
fn already_imported_is_said_only_to_whoever_sends_every_object() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "");
    let sealed = seal(dir.path(), &coalition, "kit");
    let whole = std::fs::read(&sealed.path).unwrap();
    assert_eq!(post_sealed(&server, &whole).status, 201);
    let good = members(&sealed.path);
    // sealed.json alone, as anyone holding the receipt could write it: no answer about
    // the record.
    let probe = post_sealed(&server, &tar_of(&good[..1]));
    assert_refused(&probe, 400, "incomplete_upload");
    let again = post_sealed(&server, &whole);
    assert_eq!((again.status, again.json()["already_imported"].clone()), (200, Value::Bool(true)));

    // A web submission's receipt gives its ids; posting them says nothing either.
    let web = post_multipart(
        server.addr,
        "/api/v1/submissions",
        &[
            text("testimony", "Through the form."),
            file("evidence", "d.jpg", "image/jpeg", &noise(9_000, 4)),
        ],
    );
    let receipt = web.json();
    let objects = receipt_objects(&receipt);
    let index = serde_json::json!({
        "schema": "amanat/sealed/v1",
        "submission": receipt["id"],
        "manifest": objects.last().unwrap(),
        "attachments": &objects[..objects.len() - 1],
        "recipients": "0".repeat(64),
    });
    let probe = post_sealed(
        &server,
        &tar_of(&[("sealed.json".into(), serde_json::to_vec(&index).unwrap())]),
    );
    assert_refused(&probe, 400, "incomplete_upload");
}

#[test]
fn the_codename_is_a_plain_field_phones_do_not_save_and_practice_takes_only_our_own_posts() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "");
    let page = get(server.addr, "/en/followup").text();
    let field = page.split("<input id=\"codename\"").nth(1).unwrap().split('>').next().unwrap();
    for attribute in
        ["type=\"text\"", "autocomplete=\"off\"", "autocapitalize=\"none\"", "spellcheck=\"false\""]
    {
        assert!(field.contains(attribute), "{attribute} in {field}");
    }
    assert!(!page.contains("type=\"password\""));
    let form =
        "codename=bafoki+mudero+salive+tokuma+genira&typed=x&id=0&received_at=x&files=0&receipt=x";
    let headers =
        [("Content-Type", "application/x-www-form-urlencoded"), ("Sec-Fetch-Site", "cross-site")];
    let cross = request(server.addr, "POST", "/en/receipt/practice", &headers, form.as_bytes());
    assert_eq!(cross.status, 403, "{}", cross.text());
    assert!(!cross.text().contains("bafoki"), "another site's codename is never shown");
}
