//! When the internet is cut: a volunteer's laptop seals testimonies offline; the sealed
//! files reach the server later (HTTP or `amanat import`) or a reviewer directly.

use crate::common::*;
use crate::review::{export, open};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const TESTIMONY: &str = "Нас задержали у акимата 5 января, держали трое суток без воды.";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

pub(crate) struct Sealed {
    pub path: PathBuf,
    pub id: String,
    pub files: Vec<(String, Vec<u8>)>,
}

/// `amanat seal` with two photos and two answers.
pub(crate) fn seal(dir: &Path, coalition: &Coalition, name: &str) -> Sealed {
    let files = vec![
        ("bruises-day2.jpg".to_string(), noise(700_000, 41)),
        ("detention-record.pdf".to_string(), noise(90_000, 42)),
    ];
    seal_files(dir, coalition, name, files)
}

/// `amanat seal` with `files` and two answers.
pub(crate) fn seal_files(
    dir: &Path,
    coalition: &Coalition,
    name: &str,
    files: Vec<(String, Vec<u8>)>,
) -> Sealed {
    let work = dir.join(format!("kit-{name}"));
    std::fs::create_dir_all(&work).unwrap();
    let testimony = work.join("testimony.txt");
    std::fs::write(&testimony, TESTIMONY).unwrap();
    let mut args = vec![
        "seal".to_string(),
        "--recipients".into(),
        s(&coalition.recipients_file).into(),
        "--testimony-file".into(),
        s(&testimony).into(),
        "--field".into(),
        "where=Алматы, ИВС".into(),
        "--field".into(),
        "when=2022-01-05".into(),
        "--language".into(),
        "ru".into(),
    ];
    for (file_name, data) in &files {
        let path = work.join(file_name);
        std::fs::write(&path, data).unwrap();
        args.extend(["--evidence".into(), s(&path).into()]);
    }
    let out = dir.join(format!("{name}.sealed"));
    args.extend(["--out".into(), s(&out).into(), "--json".into()]);
    let output = Command::new(BIN).args(&args).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(!work.join("..").join(format!("{name}.sealing")).exists(), "staging removed");
    Sealed { path: out, id: summary["submission"].as_str().unwrap().into(), files }
}

pub(crate) fn post_sealed(server: &Server, body: &[u8]) -> Response {
    request(server.addr, "POST", "/api/v1/sealed", &[("Content-Type", "application/x-tar")], body)
}

pub(crate) fn check_case(cases: &Path, sealed: &Sealed, received_by_server: bool) {
    let dir = cases.join(&sealed.id);
    let case: Value =
        serde_json::from_slice(&std::fs::read(dir.join("testimony.json")).unwrap()).unwrap();
    assert_eq!(case["testimony"], TESTIMONY);
    assert_eq!(case["origin"], "fieldkit");
    assert_eq!(case["language"], "ru");
    assert_eq!(
        case["fields"],
        serde_json::json!([{"name": "where", "value": "Алматы, ИВС"}, {"name": "when", "value": "2022-01-05"}])
    );
    assert!(case["declared_at"].as_str().unwrap().ends_with(":00Z"), "{case}");
    assert_eq!(case["received_at"].as_str().unwrap().is_empty(), !received_by_server);
    for (name, data) in &sealed.files {
        assert!(std::fs::read(dir.join("evidence").join(name)).unwrap() == *data, "{name}");
    }
    let text = std::fs::read_to_string(dir.join("testimony.txt")).unwrap();
    assert!(text.contains("declared by the device"));
}

#[test]
fn sealed_offline_then_uploaded_exported_and_opened_is_identical_and_imports_once() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 2);
    let server = Server::start(dir.path(), &coalition, "");
    let sealed = seal(dir.path(), &coalition, "a");
    let body = std::fs::read(&sealed.path).unwrap();

    let first = post_sealed(&server, &body);
    assert_eq!(first.status, 201, "{}", first.text());
    let first = first.json();
    assert_eq!(first["id"], sealed.id.as_str());
    assert_eq!(first["already_imported"], false);
    assert!(first["receipt"]["leaf"].as_str().unwrap().contains(&sealed.id));
    // The same file again (a second USB copy, a resent message): one submission.
    let again = post_sealed(&server, &body);
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(again.json()["already_imported"], true);
    assert_eq!(again.json()["receipt"], first["receipt"]);
    let out = amanat(&["import", s(&sealed.path), "--data-dir", s(&server.data_dir), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap()["already_imported"], true);
    let status = amanat(&["status", "--data-dir", s(&server.data_dir), "--json"]);
    assert_eq!(serde_json::from_slice::<Value>(&status.stdout).unwrap()["submissions"], 1);

    let bundle = dir.path().join("b.tar");
    export(&server, &bundle, false);
    let cases = dir.path().join("cases");
    let (ok, outcomes) = open(&[&bundle], &coalition.identity_files[1], &cases);
    assert!(ok, "{outcomes:?}");
    check_case(&cases, &sealed, true);
    let report = std::fs::read_to_string(cases.join(&sealed.id).join("report.html")).unwrap();
    assert!(report.contains("declared by the device") && report.contains("server's clock"));
}

#[test]
fn a_reviewer_opens_a_sealed_file_directly_and_age_opens_every_object() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let sealed = seal(dir.path(), &coalition, "direct");
    let cases = dir.path().join("cases");
    let (ok, outcomes) = open(&[&sealed.path], &coalition.identity_files[0], &cases);
    assert!(ok, "{outcomes:?}");
    assert!(outcomes[&sealed.id]["reason"].as_str().unwrap().contains("in no server's log"));
    check_case(&cases, &sealed, false);

    // The stock age CLI opens every object; together they are the files and a manifest.
    let unpacked = dir.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    let tar_ok = Command::new("tar")
        .arg("-xf")
        .arg(&sealed.path)
        .arg("-C")
        .arg(&unpacked)
        .status()
        .unwrap()
        .success();
    assert!(tar_ok);
    let mut plaintexts = Vec::new();
    for object in files_in(&unpacked.join("objects")) {
        plaintexts.push(decrypt_with_age_cli(&object, &coalition.identity_files[0]));
    }
    assert_eq!(plaintexts.len(), 3);
    for (_, data) in &sealed.files {
        assert!(plaintexts.iter().any(|p| is_padded(p, data)));
    }
    assert!(plaintexts.iter().any(|p| contains(p, TESTIMONY.as_bytes())));
}

#[test]
fn a_sealed_file_reveals_no_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let sealed = seal(dir.path(), &coalition, "quiet");
    let bytes = std::fs::read(&sealed.path).unwrap();
    for needle in
        // Long enough that random ciphertext cannot contain them by chance (a three-byte
        // needle did, about once in twenty runs).
        [
            "акимата",
            "Алматы",
            "bruises-day2",
            "detention-record",
            "2022-01-05",
            "\"language\"",
        ]
    {
        assert!(!contains(&bytes, needle.as_bytes()), "{needle:?} is readable in the sealed file");
    }
    // sealed.json: ids and a fingerprint, no sizes, names or times.
    let mut archive = tar::Archive::new(&bytes[..]);
    let mut first = archive.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(first.path().unwrap().to_str().unwrap(), "sealed.json");
    let mut json = String::new();
    std::io::Read::read_to_string(&mut first, &mut json).unwrap();
    let index: Value = serde_json::from_str(&json).unwrap();
    let mut keys: Vec<&str> = index.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["attachments", "manifest", "recipients", "schema", "submission"]);
}

/// A tar written by hand, so that hostile names and entry types can be made.
pub(crate) fn raw_tar(members: &[(&[u8], u8, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, data) in members {
        let mut header = tar::Header::new_ustar();
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.set_entry_type(tar::EntryType::new(*kind));
        header.set_size(data.len() as u64);
        header.set_mode(0o600);
        if *kind == b'2' {
            header.set_link_name("/etc/passwd").unwrap();
        }
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// The members of a sealed file, to rebuild it altered.
pub(crate) fn members(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(std::fs::File::open(path).unwrap());
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            (e.path().unwrap().to_string_lossy().into_owned(), data)
        })
        .collect()
}

pub(crate) fn tar_of(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let list: Vec<(&[u8], u8, &[u8])> =
        members.iter().map(|(n, d)| (n.as_bytes(), b'0', &d[..])).collect();
    raw_tar(&list)
}

/// Replaces an object by `data` under its new id, and says so in sealed.json.
fn swap_object(members: &mut [(String, Vec<u8>)], data: Vec<u8>) {
    let old = members[1].0.trim_start_matches("objects/").trim_end_matches(".age").to_string();
    let new = sha256_hex(&data);
    members[1] = (format!("objects/{new}.age"), data);
    members[0].1 =
        String::from_utf8(members[0].1.clone()).unwrap().replace(&old, &new).into_bytes();
}

#[test]
fn malformed_sealed_files_are_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server =
        Server::start(dir.path(), &coalition, "max_files = 2\nmax_submission_bytes = 1000000");
    let sealed = seal(dir.path(), &coalition, "base");
    let good = members(&sealed.path);
    let index = good[0].clone();
    let whole = std::fs::read(&sealed.path).unwrap();

    let mut cases: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    cases.push(("truncated", whole[..whole.len() / 2].to_vec(), "incomplete_upload"));
    cases.push(("not a tar", noise(20_000, 1), "not_a_sealed_file"));
    cases.push((
        "json, not a tar",
        b"{\"schema\":\"amanat/sealed/v1\"}".to_vec(),
        "not_a_sealed_file",
    ));
    let mut outside = good.clone();
    outside.insert(1, ("notes.txt".into(), b"hello".to_vec()));
    cases.push(("member outside objects/", tar_of(&outside), "sealed_member_refused"));
    for name in ["../../etc/cron.d/x", "/etc/passwd", "objects/../../x.age"] {
        let mut m = good.clone();
        m.insert(1, (name.into(), b"x".to_vec()));
        cases.push(("a path that escapes", tar_of(&m), "sealed_member_refused"));
    }
    let id = &good[1].0;
    for (what, kind) in [
        ("symlink", b'2'),
        ("hard link", b'1'),
        ("char device", b'3'),
        ("fifo", b'6'),
        ("pax header", b'x'),
        ("gnu long name", b'L'),
    ] {
        let tar = raw_tar(&[(index.0.as_bytes(), b'0', &index.1), (id.as_bytes(), kind, b"")]);
        cases.push((what, tar, "sealed_member_refused"));
    }
    let mut not_age = good.clone();
    swap_object(&mut not_age, noise(5000, 3));
    cases.push(("an object that is not age", tar_of(&not_age), "sealed_object_not_age"));
    let mut altered = good.clone();
    let mid = altered[1].1.len() / 2;
    altered[1].1[mid] ^= 1;
    cases.push(("an id that does not match", tar_of(&altered), "sealed_object_mismatch"));
    let mut twice = good.clone();
    twice.insert(2, twice[1].clone());
    cases.push(("an object twice", tar_of(&twice), "sealed_member_refused"));
    let mut missing = good.clone();
    missing.remove(1);
    cases.push(("an object missing", tar_of(&missing), "incomplete_upload"));
    // Three attachments where the server allows two.
    let mut many = good.clone();
    let extra = many[1].clone();
    let extra_id = extra.0.trim_start_matches("objects/").trim_end_matches(".age").to_string();
    let json = String::from_utf8(many[0].1.clone()).unwrap();
    let json =
        json.replacen("\"attachments\": [", &format!("\"attachments\": [\n    \"{extra_id}\","), 1);
    many[0].1 = json.into_bytes();
    cases.push(("more objects than allowed", tar_of(&many), "too_many_files"));
    let mut big = good.clone();
    let mut age_like = whole.clone();
    age_like.truncate(0);
    age_like.extend_from_slice(&good[1].1);
    age_like.extend(noise(1_200_000, 5));
    swap_object(&mut big, age_like);
    cases.push(("an oversized member", tar_of(&big), "submission_too_large"));
    let tiny: Vec<(String, Vec<u8>)> = std::iter::once(index.clone())
        .chain(
            (0..5_000u64)
                .map(|i| (format!("objects/{}.age", sha256_hex(&i.to_le_bytes())), vec![1u8])),
        )
        .collect();
    cases.push(("a tar of many tiny members", tar_of(&tiny), "sealed_member_refused"));

    let objects_before = server.stored_objects().len();
    for (what, body, code) in cases {
        let response = post_sealed(&server, &body);
        assert!(
            (400..500).contains(&response.status),
            "{what}: {} {}",
            response.status,
            response.text()
        );
        assert_eq!(response.error_code(), code, "{what}: {}", response.text());
        assert!(!response.json()["error"]["message"].as_str().unwrap().is_empty());
        assert_eq!(server.stored_objects().len(), objects_before, "{what}: nothing stored");
        assert!(server.temp_files().is_empty(), "{what}: no temporary file left");
        assert_eq!(get(server.addr, "/healthz").status, 200, "{what}: still up");
    }
    // Through the admin socket, the same refusals.
    let bad = dir.path().join("bad.sealed");
    std::fs::write(&bad, tar_of(&altered)).unwrap();
    let out = amanat(&["import", s(&bad), "--data-dir", s(&server.data_dir)]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("does not match its id"));
    assert_eq!(server.stored_objects().len(), objects_before);
    // And the good one still goes in.
    let out = amanat(&["import", s(&sealed.path), "--data-dir", s(&server.data_dir)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(server.stored_objects().len(), objects_before + 3);
}

#[test]
fn the_field_kit_asks_the_questions_when_no_testimony_file_is_given() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let out = dir.path().join("asked.sealed");
    let mut child = Command::new(BIN)
        .args(["seal", "--recipients", s(&coalition.recipients_file), "--out", s(&out), "--json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            "Меня били дубинками.\nПотом отпустили.\n.\n6 января\n\n\nбили, угрожали\n\n"
                .as_bytes(),
        )
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stderr).contains("What happened"));
    let id = serde_json::from_slice::<Value>(&output.stdout).unwrap()["submission"]
        .as_str()
        .unwrap()
        .to_string();
    let cases = dir.path().join("cases");
    assert!(open(&[&out], &coalition.identity_files[0], &cases).0);
    let case: Value =
        serde_json::from_slice(&std::fs::read(cases.join(&id).join("testimony.json")).unwrap())
            .unwrap();
    assert_eq!(case["testimony"], "Меня били дубинками.\nПотом отпустили.\n");
    assert_eq!(
        case["fields"],
        serde_json::json!([{"name": "when", "value": "6 января"}, {"name": "acts_detail", "value": "били, угрожали"}])
    );
}
