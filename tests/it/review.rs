//! The reviewer's path: export a bundle from the running server, open it offline into
//! case folders, and trust nothing in between.

use crate::common::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

pub(crate) fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `amanat export --json`; returns the summary.
pub fn export(server: &Server, out: &Path, all: bool) -> serde_json::Value {
    let mut args =
        vec!["export", "--data-dir", path_str(&server.data_dir), "--out", path_str(out), "--json"];
    if all {
        args.push("--all");
    }
    let output = amanat(&args);
    assert!(output.status.success(), "export failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("export --json prints JSON")
}

/// `amanat open --json`: (exit success, outcome per submission id).
pub fn open(
    bundles: &[&Path],
    identity: &Path,
    out: &Path,
) -> (bool, HashMap<String, serde_json::Value>) {
    let mut args = vec!["open"];
    args.extend(bundles.iter().map(|b| path_str(b)));
    args.extend(["--identity", path_str(identity), "--out", path_str(out), "--json"]);
    let output = amanat(&args);
    let outcomes = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("one JSON line each");
            (v["submission"].as_str().unwrap().to_string(), v)
        })
        .collect();
    (output.status.success(), outcomes)
}

pub struct Sent {
    pub id: String,
    pub codename: String,
    testimony: String,
    fields: Vec<(String, String)>,
    pub files: Vec<(String, Vec<u8>)>,
}

impl Sent {
    /// A testimony sent without files, by its id.
    pub fn text_only(id: &str) -> Sent {
        Sent {
            id: id.to_string(),
            codename: String::new(),
            testimony: String::new(),
            fields: Vec::new(),
            files: Vec::new(),
        }
    }
}

pub fn submit(server: &Server, n: u64, files: &[(&str, usize)]) -> Sent {
    submit_with(server, n, files, &[])
}

/// `submit`, with more answers (such as the consent question).
pub fn submit_with(
    server: &Server,
    n: u64,
    files: &[(&str, usize)],
    more: &[(&str, &str)],
) -> Sent {
    let testimony = format!("Testimony {n}: held for three days, beaten, refused a doctor.");
    let mut fields =
        vec![("when".to_string(), format!("2022-01-0{n}")), ("where".to_string(), "Алматы".into())];
    fields.extend(more.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let files: Vec<(String, Vec<u8>)> = files
        .iter()
        .enumerate()
        .map(|(i, (name, len))| (name.to_string(), noise(*len, n * 10 + i as u64)))
        .collect();
    let mut parts = vec![text("testimony", &testimony)];
    parts.extend(fields.iter().map(|(k, v)| text(k, v)));
    parts.extend(files.iter().map(|(name, data)| file("evidence", name, "image/jpeg", data)));
    let response = post_multipart(server.addr, "/api/v1/submissions", &parts);
    assert_eq!(response.status, 201, "{}", response.text());
    let body = response.json();
    Sent {
        id: body["id"].as_str().unwrap().to_string(),
        codename: body["codename"].as_str().unwrap_or("").to_string(),
        testimony,
        fields,
        files,
    }
}

fn case_dirs(out: &Path) -> Vec<String> {
    let mut dirs: Vec<String> = std::fs::read_dir(out)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    dirs
}

/// The page loads nothing from outside its case folder and runs nothing.
fn assert_self_contained(html: &str) {
    let lower = html.to_lowercase();
    assert!(!lower.contains("<script"), "a script in a report");
    for attr in ["src=\"", "href=\""] {
        for target in lower.split(attr).skip(1) {
            let target = target.split('"').next().unwrap();
            assert!(
                !target.contains(':') && !target.starts_with('/') && !target.starts_with("//"),
                "a reference outside the case folder: {target}"
            );
        }
    }
    assert!(!lower.contains("url("), "no CSS references");
}

#[test]
fn reviewer_exports_and_opens_every_file_and_field_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 2);
    let server = Server::start(dir.path(), &coalition, "");
    let sent = vec![
        submit(&server, 1, &[("IMG_0001.jpg", 3 << 20), ("scan.jpg", 40_000)]),
        submit(&server, 2, &[]),
        submit(&server, 3, &[("IMG.jpg", 100_000), ("IMG.jpg", 100_001)]),
    ];

    // The admin socket is only for the server's own user.
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let socket = std::fs::metadata(server.data_dir.join("admin.sock")).unwrap();
    assert!(socket.file_type().is_socket());
    assert_eq!(socket.permissions().mode() & 0o777, 0o600);

    let bundle = dir.path().join("usb/bundle-1.tar");
    std::fs::create_dir_all(bundle.parent().unwrap()).unwrap();
    let summary = export(&server, &bundle, false);
    assert_eq!(summary["submissions"], 3);
    assert_eq!(summary["bytes"], std::fs::metadata(&bundle).unwrap().len());

    // Anyone can list it, and the stock age tool reads every object in it.
    let listing = Command::new("tar").arg("-tf").arg(&bundle).output().unwrap();
    let listing = String::from_utf8(listing.stdout).unwrap();
    assert_eq!(listing.lines().next(), Some("bundle.json"));
    let objects: Vec<&str> = listing.lines().filter(|l| l.starts_with("objects/")).collect();
    assert_eq!(objects.len(), (2 + 1) + 1 + (2 + 1), "every object once: files and manifests");
    let extracted = dir.path().join("extracted");
    std::fs::create_dir(&extracted).unwrap();
    assert!(Command::new("tar")
        .arg("-xf")
        .arg(&bundle)
        .arg("-C")
        .arg(&extracted)
        .status()
        .unwrap()
        .success());
    for object in &objects {
        let path = extracted.join(object);
        let stored = std::fs::read(&path).unwrap();
        assert_eq!(format!("objects/{}.age", sha256_hex(&stored)), *object);
        assert_eq!(
            decrypt_with_age_cli(&path, &coalition.identity_files[1]),
            decrypt(&stored, &coalition.identities[0])
        );
    }

    // Nothing new: no second file.
    let again = dir.path().join("usb/bundle-2.tar");
    assert_eq!(export(&server, &again, false)["submissions"], 0);
    assert!(!again.exists());

    let out = dir.path().join("cases");
    let (ok, outcomes) = open(&[&bundle], &coalition.identity_files[0], &out);
    assert!(ok, "{outcomes:?}");
    // The first bundle from a server names its key, to compare with `amanat status`.
    let note = &outcomes[bundle.to_str().unwrap()];
    assert_eq!(note["status"], "new_server_key");
    assert!(note["reason"].as_str().unwrap().contains("amanat/"));
    for s in &sent {
        assert_eq!(outcomes[&s.id]["status"], "opened");
        let case = out.join(&s.id);
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(case.join("testimony.json")).unwrap()).unwrap();
        assert_eq!(json["testimony"], s.testimony.as_str());
        let fields: Vec<(String, String)> = json["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["name"].as_str().unwrap().into(), f["value"].as_str().unwrap().into()))
            .collect();
        assert_eq!(fields, s.fields);
        let files = json["files"].as_array().unwrap();
        assert_eq!(files.len(), s.files.len());
        for (file, (name, data)) in files.iter().zip(&s.files) {
            assert_eq!(file["original_name"], name.as_str());
            let saved = std::fs::read(case.join(file["saved_as"].as_str().unwrap())).unwrap();
            assert!(saved == *data, "{name} comes back byte for byte");
        }
        let text = std::fs::read_to_string(case.join("testimony.txt")).unwrap();
        // The story first, then the form's questions under its headings, then answers
        // the form does not know.
        let what = text.find(&s.testimony).unwrap();
        let when = text.find("== When and where ==\nWhen did it happen?").unwrap();
        let other = text.find("== Other answers ==\nwhere\n").unwrap();
        assert!(what < when && when < other, "in the order asked:\n{text}");
        assert_self_contained(&std::fs::read_to_string(case.join("report.html")).unwrap());
    }
    assert_eq!(
        std::fs::read_dir(out.join(&sent[2].id).join("evidence")).unwrap().count(),
        2,
        "duplicate names are numbered, not overwritten"
    );
    let index = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert_self_contained(&index);
    assert!(sent.iter().all(|s| index.contains(&format!("{}/report.html", s.id))));

    // Overlapping bundles leave one case each.
    let all = dir.path().join("usb/bundle-all.tar");
    assert_eq!(export(&server, &all, true)["submissions"], 3);
    let (ok, outcomes) = open(&[&bundle, &all], &coalition.identity_files[1], &out);
    assert!(ok);
    assert!(outcomes.values().all(|o| o["status"] == "already_open"));
    assert_eq!(case_dirs(&out).len(), 3);

    // A folder of the same id from another log (a planted server's decoy opened
    // earlier) does not pass for this submission: it is failed by name, not skipped.
    let testimony = out.join(&sent[0].id).join("testimony.json");
    let genuine = std::fs::read(&testimony).unwrap();
    let mut decoy: serde_json::Value = serde_json::from_slice(&genuine).unwrap();
    decoy["server_key"] = "amanat/decoy+01020304+AAAA".into();
    std::fs::write(&testimony, serde_json::to_vec(&decoy).unwrap()).unwrap();
    let (ok, outcomes) = open(&[&all], &coalition.identity_files[1], &out);
    assert!(!ok);
    let refused = &outcomes[&sent[0].id];
    assert_eq!(refused["status"], "failed", "{outcomes:#?}");
    assert!(refused["reason"].as_str().unwrap().contains("another submission of this id"));
    std::fs::write(&testimony, genuine).unwrap();

    let status = amanat(&["status", "--data-dir", path_str(&server.data_dir), "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["submissions"], 3);
    assert_eq!(status["exported"], 3);
    assert_eq!(status["last_export"]["submissions"], 3);
}

/// Rewrites a bundle, letting `edit` change bundle.json and the objects.
fn rewrite_bundle(
    from: &Path,
    to: &Path,
    edit: impl FnOnce(&mut serde_json::Value, &mut Vec<(String, Vec<u8>)>),
) {
    let mut archive = tar::Archive::new(std::fs::File::open(from).unwrap());
    let mut index = serde_json::Value::Null;
    let mut objects = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        if name == "bundle.json" {
            index = serde_json::from_slice(&data).unwrap();
        } else {
            objects.push((name, data));
        }
    }
    edit(&mut index, &mut objects);
    let mut builder = tar::Builder::new(std::fs::File::create(to).unwrap());
    let json = serde_json::to_vec(&index).unwrap();
    let mut add = |name: &str, data: &[u8]| {
        let mut header = tar::Header::new_ustar();
        header.set_path(name).unwrap();
        header.set_size(data.len() as u64);
        header.set_mode(0o600);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    };
    add("bundle.json", &json);
    for (name, data) in &objects {
        add(name, data);
    }
    builder.finish().unwrap();
}

fn object_name(index: &serde_json::Value, submission: usize, attachment: usize) -> String {
    format!(
        "objects/{}.age",
        index["submissions"][submission]["attachments"][attachment].as_str().unwrap()
    )
}

#[test]
fn tampered_bundles_are_refused_per_submission_and_the_rest_still_open() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "");
    let a = submit(&server, 1, &[("a.jpg", 200_000)]);
    let b = submit(&server, 2, &[("b.jpg", 300_000)]);
    let original = dir.path().join("original.tar");
    export(&server, &original, false);
    let key = &coalition.identity_files[0];
    // Records are in id order in the bundle; find which index is `a`.
    let index: serde_json::Value = {
        let mut archive = tar::Archive::new(std::fs::File::open(&original).unwrap());
        let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        serde_json::from_slice(&data).unwrap()
    };
    let ia = usize::from(index["submissions"][0]["id"] != a.id.as_str());
    let ib = 1 - ia;
    let name_a = object_name(&index, ia, 0);
    let name_b = object_name(&index, ib, 0);

    type Edit = Box<dyn Fn(&mut serde_json::Value, &mut Vec<(String, Vec<u8>)>)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "a flipped byte",
            {
                let n = name_a.clone();
                Box::new(move |_, objects| {
                    let o = objects.iter_mut().find(|(name, _)| *name == n).unwrap();
                    let at = o.1.len() / 2;
                    o.1[at] ^= 0x01;
                })
            },
            "altered",
        ),
        (
            "a removed object",
            {
                let n = name_a.clone();
                Box::new(move |_, objects| objects.retain(|(name, _)| *name != n))
            },
            "missing",
        ),
        (
            "an object swapped for another submission's",
            {
                let (na, nb) = (name_a.clone(), name_b.clone());
                Box::new(move |_, objects| {
                    let other = objects.iter().find(|(name, _)| *name == nb).unwrap().1.clone();
                    objects.iter_mut().find(|(name, _)| *name == na).unwrap().1 = other;
                })
            },
            "does not match its id",
        ),
        (
            "bundle.json edited",
            Box::new(move |index, _| {
                index["submissions"][ia]["attachments"] = serde_json::json!([]);
            }),
            "not in the server's signed log",
        ),
        (
            "the hour of receipt moved in bundle.json",
            Box::new(move |index, _| {
                index["submissions"][ia]["received_at"] = serde_json::json!("2022-01-05T10:00:00Z");
            }),
            "not in the server's signed log",
        ),
    ];
    for (what, edit, expected) in cases {
        let tampered = dir.path().join("tampered.tar");
        rewrite_bundle(&original, &tampered, edit);
        let out = dir.path().join(format!("out-{}", what.replace(' ', "-")));
        let (ok, outcomes) = open(&[&tampered], key, &out);
        assert!(!ok, "{what}: the exit code says something failed");
        assert_eq!(outcomes[&a.id]["status"], "failed", "{what}");
        let reason = outcomes[&a.id]["reason"].as_str().unwrap();
        assert!(reason.contains(expected), "{what}: {reason}");
        assert!(!out.join(&a.id).exists(), "{what}: no plaintext for the tampered submission");
        assert_eq!(case_dirs(&out), vec![b.id.clone()], "{what}: the untouched one still opens");
        assert!(!contains(
            &std::fs::read(out.join(&b.id).join("testimony.txt")).unwrap(),
            a.testimony.as_bytes()
        ));
    }

    // A copy cut short: what is whole still opens.
    let bytes = std::fs::read(&original).unwrap();
    let truncated = dir.path().join("truncated.tar");
    std::fs::write(&truncated, &bytes[..bytes.len() - 150_000]).unwrap();
    let out = dir.path().join("out-truncated");
    let (ok, outcomes) = open(&[&truncated], key, &out);
    assert!(!ok);
    let failed: Vec<&String> =
        outcomes.iter().filter(|(_, o)| o["status"] == "failed").map(|(k, _)| k).collect();
    assert_eq!(failed.len(), 1, "{outcomes:?}");
    assert!(outcomes[failed[0]]["reason"].as_str().unwrap().contains("missing"));
    assert_eq!(case_dirs(&out).len(), 1);
    assert!(std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .all(|e| !e.file_name().to_string_lossy().starts_with('.')));

    // The damaged copy first, a good copy after: the good one is opened, not skipped.
    let (ok, outcomes) = open(&[&truncated, &original], key, &out);
    assert!(!ok, "the damaged copy is still reported");
    assert_eq!(case_dirs(&out).len(), 2, "{outcomes:?}");
}

#[test]
fn a_passphrase_protected_identity_opens_with_its_passphrase_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("offline/holder.age");
    let pass = dir.path().join("offline/pass.txt");
    std::fs::create_dir_all(dir.path().join("offline")).unwrap();
    std::fs::create_dir_all(dir.path().join("keys")).unwrap();
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    let made = amanat(&["keygen", "--passphrase-file", path_str(&pass), "--out", path_str(&key)]);
    assert!(made.status.success());
    let recipient = String::from_utf8(made.stdout).unwrap().lines().last().unwrap().to_string();
    let recipients = dir.path().join("keys/recipients.txt");
    std::fs::write(&recipients, format!("{recipient}\n")).unwrap();
    let coalition = Coalition {
        identities: Vec::new(),
        identity_files: Vec::new(),
        recipients_file: recipients,
    };
    let server = Server::start(dir.path(), &coalition, "");
    let sent = submit(&server, 4, &[("a.jpg", 5_000)]);
    let bundle = dir.path().join("b.tar");
    export(&server, &bundle, false);

    let out = dir.path().join("out");
    let output = amanat(&[
        "open",
        path_str(&bundle),
        "--identity",
        path_str(&key),
        "--passphrase-file",
        path_str(&pass),
        "--out",
        path_str(&out),
        "--json",
    ]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(out.join(&sent.id).join("testimony.txt").exists());

    std::fs::write(&pass, "wrong\n").unwrap();
    let out = dir.path().join("out-wrong");
    let output = amanat(&[
        "open",
        path_str(&bundle),
        "--identity",
        path_str(&key),
        "--passphrase-file",
        path_str(&pass),
        "--out",
        path_str(&out),
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("wrong passphrase"));
    assert!(!out.exists(), "nothing written");
}

#[test]
fn a_wrong_identity_opens_nothing_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "");
    let sent = submit(&server, 1, &[("a.jpg", 10_000)]);
    let bundle = dir.path().join("b.tar");
    export(&server, &bundle, false);
    let stranger = Coalition::new(&dir.path().join("stranger"), 1);
    let out = dir.path().join("out");
    let (ok, outcomes) = open(&[&bundle], &stranger.identity_files[0], &out);
    assert!(!ok);
    let reason = outcomes.get(&sent.id).unwrap_or_else(|| panic!("{outcomes:?}"))["reason"].clone();
    assert!(reason.as_str().unwrap().contains("wrong key"), "{reason}");
    assert!(case_dirs(&out).is_empty(), "nothing written");
}

#[test]
fn hostile_file_names_land_inside_the_case_folder() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "");
    let long = "n".repeat(5000);
    let names = [
        "../../x",
        "/etc/passwd",
        "a\u{202E}gnp.exe",
        long.as_str(),
        "IMG.jpg",
        "IMG.jpg",
        "..",
        "page.html",
    ];
    // A NUL cannot travel in an HTTP header: the intake refuses it as malformed (names
    // with NUL from other sources are covered by review::names' unit tests).
    let nul = post_multipart(
        server.addr,
        "/api/v1/submissions",
        &[text("testimony", "nul"), file("evidence", "nul\0name.jpg", "image/jpeg", b"x")],
    );
    assert_eq!(nul.status, 400);
    assert!(server.stored_objects().is_empty());
    let parts: Vec<Part> = std::iter::once(text("testimony", "names"))
        .chain(
            names
                .iter()
                .enumerate()
                .map(|(i, n)| file("evidence", n, "image/jpeg", &noise(1000, i as u64))),
        )
        .collect();
    let response = post_multipart(server.addr, "/api/v1/submissions", &parts);
    assert_eq!(response.status, 201, "{}", response.text());
    let id = response.json()["id"].as_str().unwrap().to_string();
    let bundle = dir.path().join("b.tar");
    export(&server, &bundle, false);
    let out = dir.path().join("out");
    let (ok, _) = open(&[&bundle], &coalition.identity_files[0], &out);
    assert!(ok);

    let evidence = out.join(&id).join("evidence");
    let saved: Vec<PathBuf> =
        all_files(dir.path()).into_iter().filter(|p| p.starts_with(&evidence)).collect();
    assert_eq!(saved.len(), names.len(), "every file saved, none overwritten: {saved:?}");
    for path in &saved {
        assert_eq!(path.parent().unwrap(), evidence, "{path:?} escaped");
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(name.len() <= 150 && !name.starts_with('.'), "{name}");
        assert!(
            !name.chars().any(|c| c.is_control() || ('\u{202A}'..='\u{202E}').contains(&c)),
            "{name:?}"
        );
        assert!(
            !name.ends_with(".exe") && !name.ends_with(".html"),
            "{name}: would run when clicked"
        );
    }
    // Nothing landed outside the output folder.
    assert!(!dir.path().join("x").exists() && !out.join("x").exists());
    for (i, _) in names.iter().enumerate() {
        assert!(saved.iter().any(|p| std::fs::read(p).unwrap() == noise(1000, i as u64)));
    }
}

#[test]
fn purge_removes_exactly_the_exported_ciphertext() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "");
    submit(&server, 1, &[("a.jpg", 50_000)]);
    submit(&server, 2, &[("b.jpg", 60_000)]);
    let bundle = dir.path().join("b.tar");
    export(&server, &bundle, false);
    let before = server.stored_objects();
    let late = submit(&server, 3, &[("c.jpg", 70_000)]);
    let late_objects: Vec<String> =
        server.stored_objects().into_iter().filter(|p| !before.contains(p)).collect();
    assert_eq!(late_objects.len(), 2);

    let output = amanat(&[
        "purge",
        "--data-dir",
        path_str(&server.data_dir),
        "--exported-before",
        "0",
        "--json",
    ]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["purged_submissions"], 2);
    assert_eq!(
        server.stored_objects(),
        late_objects,
        "only the unexported submission's objects remain"
    );

    // The exported bundle still opens (it is the copy now); the server still works,
    // and exports only what it still holds.
    let (ok, _) = open(&[&bundle], &coalition.identity_files[0], &dir.path().join("out"));
    assert!(ok);
    let status: serde_json::Value = serde_json::from_slice(
        &amanat(&["status", "--data-dir", path_str(&server.data_dir), "--json"]).stdout,
    )
    .unwrap();
    assert_eq!((status["submissions"].as_u64(), status["purged"].as_u64()), (Some(3), Some(2)));
    // Custody is logged: 3 submissions, 1 export, 1 purge.
    assert_eq!(status["log_size"], 5);
    let all = dir.path().join("all.tar");
    assert_eq!(export(&server, &all, true)["submissions"], 1);
    let (ok, outcomes) = open(&[&all], &coalition.identity_files[0], &dir.path().join("out"));
    assert!(ok && outcomes.contains_key(&late.id));
}

/// Malformed files the age crate (0.12.1) decrypts although the format says they must be
/// refused: headers whose last stanza lacks its final short line, which rage still reads
/// for compatibility with files from age's beta versions (Go age refuses them). The
/// header MAC still authenticates them and an object's id pins its bytes, so nothing
/// altered gets through. Listed so that a changed crate shows up here and any new
/// disagreement fails the test.
const KNOWN_AGE_CRATE_DEVIATIONS: [&str; 2] = ["stanza_missing_body", "stanza_missing_final_line"];

#[test]
fn the_decryption_function_agrees_with_the_c2sp_age_vectors() {
    let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cctv-age");
    let scratch = tempfile::tempdir().unwrap();
    let (mut checked, mut skipped, mut disagreements) = (0, Vec::new(), Vec::<String>::new());
    let mut names: Vec<PathBuf> =
        std::fs::read_dir(&vectors).unwrap().flatten().map(|e| e.path()).collect();
    names.sort();
    for path in names {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".md") {
            continue;
        }
        let raw = std::fs::read(&path).unwrap();
        let split = raw.windows(2).position(|w| w == b"\n\n").expect("a header");
        let header = String::from_utf8(raw[..split].to_vec()).unwrap();
        let mut body = raw[split + 2..].to_vec();
        let mut keys: HashMap<&str, Vec<&str>> = HashMap::new();
        for line in header.lines() {
            let (k, v) = line.split_once(": ").unwrap();
            keys.entry(k).or_default().push(v);
        }
        let skip = if keys.contains_key("armored") {
            Some("armored (objects are binary age files)")
        } else if keys.contains_key("passphrase") {
            Some("passphrase (objects use X25519 recipients only)")
        } else {
            None
        };
        // A vector without an identity fails before any key matters: any key will do.
        let identities: Option<Vec<age::x25519::Identity>> = match keys.get("identity") {
            Some(ids) => ids.iter().map(|i| i.parse().ok()).collect(),
            None => Some(vec![age::x25519::Identity::generate()]),
        };
        let (Some(identities), None) = (identities, skip) else {
            skipped.push(format!("{name}: {}", skip.unwrap_or("not an X25519 identity")));
            continue;
        };
        if keys.get("compressed") == Some(&vec!["zlib"]) {
            let mut inflated = Vec::new();
            std::io::Read::read_to_end(
                &mut flate2::read::ZlibDecoder::new(&body[..]),
                &mut inflated,
            )
            .unwrap();
            body = inflated;
        }
        let out = scratch.path().join(&name);
        let result = amanat::review::decrypt_file(&body[..], &identities, &out);
        let agrees = if keys["expect"] == ["success"] {
            let opened = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(opened.plaintext_sha256, keys["payload"][0], "{name}");
            assert_eq!(sha256_hex(&std::fs::read(&out).unwrap()), keys["payload"][0], "{name}");
            true
        } else {
            if result.is_err() {
                assert!(!out.exists(), "{name}: plaintext left behind after a failure");
            }
            result.is_err()
        };
        if !agrees {
            disagreements.push(name.clone());
        }
        checked += 1;
    }
    println!(
        "age vectors: {checked} checked, {} skipped:\n  {}",
        skipped.len(),
        skipped.join("\n  ")
    );
    assert!(checked >= 60, "too few vectors checked: {checked}");
    assert_eq!(disagreements, KNOWN_AGE_CRATE_DEVIATIONS, "vectors where decryption disagrees");
}
