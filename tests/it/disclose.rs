//! A lawyer receives one case and proves, with only the server's public key, that each
//! file is bit-identical to what the server received in a given hour.

use crate::common::*;
use crate::review::{export, open, submit, submit_with};
use std::path::{Path, PathBuf};
use std::process::Command;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Keygen returning the printed public form (last stdout line).
fn keygen(args: &[&str]) -> String {
    let out = amanat(args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().last().unwrap().to_string()
}

struct Setup {
    dir: tempfile::TempDir,
    coalition: Coalition,
    package: PathBuf,
    lawyer_key: PathBuf,
    case: String,
    files: Vec<(String, Vec<u8>)>,
    /// The key `amanat status` prints: what the coalition publishes.
    server_key: String,
    /// The reviewer's custody key, as `amanat keygen --signing` printed it.
    custody_key: String,
    _server: Server,
}

/// The server key as `amanat status` prints it (what the coalition publishes).
fn published_key(server: &Server) -> String {
    let out = amanat(&["status", "--json", "--data-dir", s(&server.data_dir)]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    status["server_key"].as_str().unwrap().to_string()
}

fn disclosed_case() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "");
    let files = [("injury-1.jpg", 400_000), ("certificate.jpg", 50_000)];
    let sent = submit_with(&server, 1, &files, &[("consent_readers", "lawyers")]);
    submit(&server, 2, &[("unrelated.jpg", 10_000)]);
    let bundle = dir.path().join("b.tar");
    export(&server, &bundle, false);
    let Disclosed { package, lawyer_key, custody_key } =
        disclose_case(dir.path(), &coalition, &bundle, &sent.id);
    Setup {
        case: sent.id.clone(),
        files: sent.files,
        dir,
        coalition,
        package,
        lawyer_key,
        server_key: published_key(&server),
        custody_key,
        _server: server,
    }
}

/// What `disclose_case` made: the package, the lawyer's identity file and the
/// reviewer's custody key (as printed).
pub(crate) struct Disclosed {
    pub package: PathBuf,
    pub lawyer_key: PathBuf,
    pub custody_key: String,
}

/// A reviewer's whole path from a bundle to a lawyer's package, in `dir`: open the
/// bundle, make the lawyer's and the custody keys, disclose `case`.
pub(crate) fn disclose_case(
    dir: &Path,
    coalition: &Coalition,
    bundle: &Path,
    case: &str,
) -> Disclosed {
    let cases = dir.join("cases");
    assert!(open(&[bundle], &coalition.identity_files[0], &cases).0);
    std::fs::create_dir(dir.join("lawyer")).unwrap();
    let lawyer_key = dir.join("lawyer/key.txt");
    let lawyer = keygen(&["keygen", "--no-passphrase", "--out", s(&lawyer_key)]);
    let signer = dir.join("offline/custody.key");
    let custody_key = keygen(&["keygen", "--signing", "--out", s(&signer)]);
    let package = dir.join("case.tar");
    let out = amanat(&[
        "disclose",
        "--cases",
        s(&cases),
        "--case",
        case,
        "--bundle",
        s(bundle),
        "--identity",
        s(&coalition.identity_files[0]),
        "--to",
        &lawyer,
        "--signer",
        s(&signer),
        "--out",
        s(&package),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Disclosed { package, lawyer_key, custody_key }
}

/// `amanat verify --json` with the published server key and the reviewer's custody key,
/// as VERIFY.txt says, and `extra` arguments (a later `--custody-key` wins).
fn verify_with(
    setup: &Setup,
    package: &Path,
    key: Option<&Path>,
    out: &Path,
    extra: &[&str],
) -> (bool, serde_json::Value) {
    let mut args = vec!["verify", s(package), "--out", s(out), "--json"];
    args.extend(["--server-key", &setup.server_key]);
    if !extra.contains(&"--custody-key") && !extra.contains(&"--accept-unverified-custody") {
        args.extend(["--custody-key", &setup.custody_key]);
    }
    if let Some(key) = key {
        args.extend(["--identity", s(key)]);
    }
    args.extend(extra);
    let output = amanat(&args);
    let report = serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
    (output.status.success(), report)
}

fn failed_checks(report: &serde_json::Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter(|c| c["ok"] == false)
                .map(|c| c["what"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_lawyer_verifies_a_disclosed_case_and_gets_the_files_bit_for_bit() {
    let setup = disclosed_case();
    let out = setup.dir.path().join("lawyer/out");
    let (ok, report) = verify_with(&setup, &setup.package, Some(&setup.lawyer_key), &out, &[]);
    assert!(ok, "{report:#}");
    assert_eq!(report["verified"], true);
    assert!(failed_checks(&report).is_empty());
    assert!(report["signer"].as_str().unwrap().starts_with("amanat-custody+"));
    for (name, data) in &setup.files {
        let saved = std::fs::read(out.join(&setup.case).join("evidence").join(name)).unwrap();
        assert!(saved == *data, "{name} is bit-identical");
    }
    let files = report["files"].as_array().unwrap();
    assert_eq!(files.len(), 2, "only the disclosed case");
    assert!(files.iter().all(|f| f["verified"] == true && f["log_index"].is_u64()));
    let text = std::fs::read_to_string(out.join("report.txt")).unwrap();
    assert!(text.contains("EVERY CHECK PASSED"));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("Every check passed") && !html.to_lowercase().contains("<script"));
    // The unrelated submission was not disclosed.
    assert!(!std::fs::read_to_string(out.join(&setup.case).join("testimony.json"))
        .unwrap()
        .contains("Testimony 2"));
}

#[test]
fn tampering_with_any_part_of_a_package_is_caught_and_named() {
    let setup = disclosed_case();
    type Edit = Box<dyn Fn(&mut Vec<(String, Vec<u8>)>)>;
    let find = |entries: &mut Vec<(String, Vec<u8>)>, prefix: &str| -> usize {
        entries.iter().position(|(n, _)| n.starts_with(prefix)).unwrap()
    };
    let edit_index = |f: fn(&mut serde_json::Value)| -> Edit {
        Box::new(move |entries| {
            let (_, data) = entries.iter_mut().find(|(n, _)| n == "disclosure.json").unwrap();
            let mut v: serde_json::Value = serde_json::from_slice(data).unwrap();
            f(&mut v);
            *data = serde_json::to_vec(&v).unwrap();
        })
    };
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "an object byte",
            Box::new(move |e| {
                let i = find(e, "objects/");
                let n = e[i].1.len();
                e[i].1[n / 2] ^= 1;
            }),
            "object",
        ),
        (
            "a file key",
            Box::new(move |e| {
                let keys: Vec<usize> = e
                    .iter()
                    .enumerate()
                    .filter(|(_, (n, _))| n.starts_with("keys/"))
                    .map(|(i, _)| i)
                    .collect();
                let other = e[keys[1]].1.clone();
                e[keys[0]].1 = other;
            }),
            "of submission",
        ),
        (
            "a receipt (the record)",
            edit_index(|v| {
                v["submissions"][0]["record"]["received_at"] = "2022-01-05T10:00:00Z".into();
            }),
            "is in the server's log",
        ),
        (
            "a checkpoint signature",
            edit_index(|v| {
                let cp = v["submissions"][0]["checkpoint"].as_str().unwrap().to_string();
                let at = cp.len() - 10;
                let flipped = if &cp[at..=at] == "A" { "B" } else { "A" };
                v["submissions"][0]["checkpoint"] =
                    format!("{}{}{}", &cp[..at], flipped, &cp[at + 1..]).into();
            }),
            "signed by the server",
        ),
        (
            "a proof node",
            edit_index(|v| {
                v["submissions"][0]["inclusion_proof"][0] =
                    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into();
            }),
            "is in the server's log",
        ),
        (
            "the custody signature",
            Box::new(move |e| {
                let i = find(e, "custody.json");
                let text = String::from_utf8(e[i].1.clone())
                    .unwrap()
                    .replace("\"to\": \"age1", "\"to\": \"age1x");
                e[i].1 = text.into_bytes();
            }),
            "custody signature",
        ),
        (
            "a submission id that is a path",
            edit_index(|v| {
                v["submissions"][0]["record"]["id"] = "../../escaped".into();
            }),
            "what the package discloses",
        ),
        (
            "the case, everywhere in the index",
            edit_index(|v| {
                let other = "0123456789abcdef0123456789abcdef";
                v["case"] = other.into();
                for s in v["submissions"].as_array_mut().unwrap() {
                    s["record"]["case"] = other.into();
                }
            }),
            "is in the server's log",
        ),
        (
            "every submission removed",
            edit_index(|v| {
                v["submissions"] = serde_json::json!([]);
            }),
            "what the package discloses",
        ),
    ];
    for (what, edit, expected) in cases {
        let tampered = setup.dir.path().join("tampered.tar");
        rewrite_tar(&setup.package, &tampered, edit);
        let out = setup.dir.path().join(format!("out-{}", what.replace(' ', "-")));
        let (ok, report) = verify_with(&setup, &tampered, Some(&setup.lawyer_key), &out, &[]);
        assert!(!ok, "{what}: verify must fail");
        let failed = failed_checks(&report);
        assert!(failed.iter().any(|f| f.contains(expected)), "{what}: failed checks {failed:?}");
        assert!(
            !out.join(&setup.case).exists(),
            "{what}: no plaintext written when something failed"
        );
        assert!(std::fs::read_to_string(out.join("report.txt")).unwrap().contains("FAILED"));
    }
    assert!(!setup.dir.path().join("escaped").exists(), "nothing written outside --out");
}

#[test]
fn without_the_published_server_key_there_is_no_pass_and_another_key_fails() {
    let setup = disclosed_case();
    let published = setup.server_key.clone();
    let run = |pin: &str, out: &str| {
        let out = setup.dir.path().join(out);
        let mut args = vec!["verify", s(&setup.package), "--identity", s(&setup.lawyer_key)];
        args.extend(["--out", s(&out), "--custody-key", &setup.custody_key]);
        if !pin.is_empty() {
            args.extend(["--server-key", pin]);
        }
        let output = amanat(&args);
        (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned(), out)
    };
    // Without the published key: every other check runs and holds, but the verdict is
    // no pass (exit 1), it says why and names the key to compare, and no decrypted file
    // is left behind.
    let (ok, stdout, out) = run("", "unpinned");
    assert!(!ok, "{stdout}");
    assert!(stdout.contains("NOT VERIFIED") && stdout.contains(&published), "{stdout}");
    assert!(!stdout.contains("EVERY CHECK PASSED"));
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("class=\"note\"") && html.contains(&published));
    assert!(!out.join(&setup.case).exists(), "nothing decrypted is kept without a pass");
    // With it: the pass, and each check says what it does not prove.
    let (ok, stdout, _) = run(&published, "pinned");
    assert!(ok && stdout.contains("EVERY CHECK PASSED"), "{stdout}");
    assert!(stdout.contains("does not prove: when it happened or who sent it"), "{stdout}");
    // Another key: nothing decrypted, nothing written but the report.
    let stranger = setup.dir.path().join("stranger.key");
    let other = keygen(&["keygen", "--signing", "--out", s(&stranger)]);
    let (ok, stdout, out) = run(&other, "other-key");
    assert!(!ok && stdout.contains("server key is the one the coalition published"), "{stdout}");
    assert!(!out.join(&setup.case).exists());
    // A bundle is held to the same rule.
    let bundle = setup.dir.path().join("b.tar");
    let output = amanat(&["verify", s(&bundle)]);
    assert!(!output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
    let output = amanat(&["verify", s(&bundle), "--server-key", &published]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
}

#[test]
fn a_custody_record_unsigned_or_rewritten_and_rewritten_instructions_fail_by_name() {
    let setup = disclosed_case();
    let lawyer = Some(setup.lawyer_key.as_path());
    // custody.sig removed, the recipient and the date forged: a failure that says why.
    let unsigned = setup.dir.path().join("unsigned.tar");
    rewrite_tar(&setup.package, &unsigned, |entries| {
        entries.retain(|(name, _)| name != "custody.sig");
        let (_, data) = entries.iter_mut().find(|(n, _)| n == "custody.json").unwrap();
        let mut custody: serde_json::Value = serde_json::from_slice(data).unwrap();
        custody["by"] = serde_json::Value::Null;
        custody["to"] = "age1forgedforgedforgedforgedforgedforgedforgedforgedforgedfo".into();
        custody["disclosed_at"] = "2022-01-05T03:00:00Z".into();
        *data = serde_json::to_vec_pretty(&custody).unwrap();
    });
    let out = setup.dir.path().join("out-unsigned");
    let (ok, report) = verify_with(&setup, &unsigned, lawyer, &out, &[]);
    assert!(!ok && failed_checks(&report) == ["custody signature", "files"], "{report:#}");
    assert!(!out.join(&setup.case).exists());
    // Accepted only when the lawyer says so, and the report says it was.
    let out = setup.dir.path().join("out-accepted");
    let (ok, report) =
        verify_with(&setup, &unsigned, lawyer, &out, &["--accept-unverified-custody"]);
    assert!(ok, "{report:#}");
    assert_eq!(report["accepted_unverified_custody"], true);
    let text = std::fs::read_to_string(out.join("report.txt")).unwrap();
    assert!(text.contains("--accept-unverified-custody"), "{text}");
    // Given the reviewer's key, an unsigned record fails whatever else is said.
    let out = setup.dir.path().join("out-unsigned-pinned");
    let extra = ["--accept-unverified-custody", "--custody-key", &setup.custody_key];
    let (ok, report) = verify_with(&setup, &unsigned, lawyer, &out, &extra);
    assert!(!ok && failed_checks(&report) == ["custody signature", "files"], "{report:#}");

    // Re-signed with a key of the forger's own: without the reviewer's key to compare,
    // no pass.
    let forger_key = setup.dir.path().join("forger.key");
    let forger = keygen(&["keygen", "--signing", "--out", s(&forger_key)]);
    let resigned = setup.dir.path().join("resigned.tar");
    let forger_signing =
        amanat::keys::SigningKey::load_or_create(&forger_key, "amanat-custody").unwrap();
    rewrite_tar(&setup.package, &resigned, |entries| {
        let (_, data) = entries.iter_mut().find(|(n, _)| n == "custody.json").unwrap();
        let mut custody: serde_json::Value = serde_json::from_slice(data).unwrap();
        custody["by"] = forger.clone().into();
        custody["consent"] = "lawyers".into();
        *data = serde_json::to_vec_pretty(&custody).unwrap();
        let signature = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            forger_signing.sign(data),
        );
        let (_, sig) = entries.iter_mut().find(|(n, _)| n == "custody.sig").unwrap();
        *sig = signature.into_bytes();
    });
    let out = setup.dir.path().join("out-resigned");
    let (ok, report) = verify_with(&setup, &resigned, lawyer, &out, &["--custody-key", &forger]);
    assert!(ok, "signed by the key given: {report:#}");
    let no_key = amanat(&["verify", s(&resigned), "--server-key", &setup.server_key, "--json"]);
    assert!(!no_key.status.success(), "{}", String::from_utf8_lossy(&no_key.stdout));
    let report: serde_json::Value = serde_json::from_slice(&no_key.stdout).unwrap();
    assert!(failed_checks(&report).contains(&"custody signature".to_string()), "{report:#}");
    let (ok, _) = verify_with(&setup, &resigned, lawyer, &setup.dir.path().join("o2"), &[]);
    assert!(!ok, "not the reviewer's key");

    // A rewritten VERIFY.txt fails, signed or not.
    let rewritten = setup.dir.path().join("rewritten.tar");
    rewrite_tar(&setup.package, &rewritten, |entries| {
        let (_, data) = entries.iter_mut().find(|(n, _)| n == "VERIFY.txt").unwrap();
        *data = b"Trust us: no need to check anything.\n".to_vec();
    });
    let out = setup.dir.path().join("out-rewritten");
    let (ok, report) = verify_with(&setup, &rewritten, lawyer, &out, &[]);
    assert!(!ok && failed_checks(&report) == ["VERIFY.txt", "files"], "{report:#}");

    // The reviewer's custody key, when the lawyer has it, is held to it.
    let stranger = setup.dir.path().join("stranger-custody.key");
    let other = keygen(&["keygen", "--signing", "--out", s(&stranger)]);
    let out = setup.dir.path().join("out-custody-key");
    let (ok, report) =
        verify_with(&setup, &setup.package, lawyer, &out, &["--custody-key", &other]);
    assert!(!ok && failed_checks(&report) == ["custody signature", "files"], "{report:#}");
    let signer = report["signer"].as_str().unwrap().to_string();
    let out = setup.dir.path().join("out-custody-key-right");
    let (ok, report) =
        verify_with(&setup, &setup.package, lawyer, &out, &["--custody-key", &signer]);
    assert!(ok, "{report:#}");
}

#[test]
fn a_case_whose_survivor_did_not_consent_to_lawyers_is_disclosed_only_with_a_signed_reason() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "");
    let only_coalition =
        submit_with(&server, 1, &[("injury.jpg", 20_000)], &[("consent_readers", "coalition")]);
    let unstated = submit(&server, 2, &[("scar.jpg", 20_000)]);
    let bundle = dir.path().join("b.tar");
    export(&server, &bundle, false);
    let cases = dir.path().join("cases");
    assert!(open(&[&bundle], &coalition.identity_files[0], &cases).0);
    let lawyer_key = dir.path().join("lawyer.txt");
    let lawyer = keygen(&["keygen", "--no-passphrase", "--out", s(&lawyer_key)]);
    let signer = dir.path().join("offline/custody.key");
    let custody_key = keygen(&["keygen", "--signing", "--out", s(&signer)]);
    let disclose = |case: &str, out: &Path, reason: Option<&str>| {
        let mut args = vec!["disclose", "--cases", s(&cases), "--case", case];
        args.extend(["--bundle", s(&bundle), "--identity", s(&coalition.identity_files[0])]);
        args.extend(["--to", &lawyer, "--signer", s(&signer), "--out", s(out)]);
        if let Some(reason) = reason {
            args.extend(["--override-consent", reason]);
        }
        amanat(&args)
    };
    for (case, said) in [(&only_coalition.id, "\"coalition\""), (&unstated.id, "did not say")] {
        let package = dir.path().join(format!("{case}.tar"));
        let refused = disclose(case, &package, None);
        assert!(!refused.status.success());
        let why = String::from_utf8_lossy(&refused.stderr);
        assert!(why.contains(said) && why.contains("--override-consent"), "{why}");
        assert!(!package.exists(), "nothing written");
    }
    let reason =
        "Court hearing on 14 March; the survivor asked by phone, no way to reach them since.";
    let package = dir.path().join("override.tar");
    let done = disclose(&only_coalition.id, &package, Some(reason));
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let out = dir.path().join("lawyer-out");
    let key = published_key(&server);
    let output = amanat(&[
        "verify",
        s(&package),
        "--identity",
        s(&lawyer_key),
        "--server-key",
        &key,
        "--custody-key",
        &custody_key,
        "--out",
        s(&out),
        "--json",
    ]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        (report["consent"].as_str(), report["consent_override"].as_str()),
        (Some("coalition"), Some(reason))
    );
    let text = std::fs::read_to_string(out.join("report.txt")).unwrap();
    assert!(text.contains(reason) && text.contains("does not include a lawyer"), "{text}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("disclosed against it"), "the lawyer's report names the override");

    // A survivor who said "lawyers" at first and "only the coalition" later: leaving the
    // later submission's bundle out does not bring back the first answer.
    let first = submit_with(&server, 3, &[("a.jpg", 5_000)], &[("consent_readers", "lawyers")]);
    let early = dir.path().join("early.tar");
    export(&server, &early, false);
    let codename = first.codename.clone();
    let later = post_multipart(
        server.addr,
        "/api/v1/followup/submissions",
        &[
            crate::common::text("codename", &codename),
            crate::common::text("testimony", "I changed my mind: only the coalition."),
            crate::common::text("consent_readers", "coalition"),
        ],
    );
    assert_eq!(later.status, 201, "{}", later.text());
    let late = dir.path().join("late.tar");
    export(&server, &late, false);
    assert!(open(&[&early, &late], &coalition.identity_files[0], &cases).0);
    let only_early = {
        let mut args = vec!["disclose", "--cases", s(&cases), "--case", &first.id];
        args.extend(["--bundle", s(&early), "--identity", s(&coalition.identity_files[0])]);
        let out = dir.path().join("early-only.tar");
        args.extend(["--to", &lawyer, "--signer", s(&signer), "--out", s(&out)]);
        amanat(&args)
    };
    assert!(!only_early.status.success());
    let why = String::from_utf8_lossy(&only_early.stderr);
    assert!(why.contains("is in none of the bundles"), "{why}");
    let both = {
        let mut args = vec!["disclose", "--cases", s(&cases), "--case", &first.id];
        args.extend(["--bundle", s(&early), "--bundle", s(&late)]);
        args.extend(["--identity", s(&coalition.identity_files[0])]);
        let out = dir.path().join("both.tar");
        args.extend(["--to", &lawyer, "--signer", s(&signer), "--out", s(&out)]);
        amanat(&args)
    };
    assert!(!both.status.success());
    assert!(String::from_utf8_lossy(&both.stderr).contains("\"coalition\""));
}

#[test]
fn a_package_opened_with_another_key_reveals_nothing() {
    let setup = disclosed_case();
    let out = setup.dir.path().join("stranger-out");
    // The coalition's own key is not the lawyer's: the file keys were sealed to the lawyer.
    let key = Some(setup.coalition.identity_files[0].as_path());
    let (ok, report) = verify_with(&setup, &setup.package, key, &out, &[]);
    assert!(!ok);
    let reasons: Vec<String> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["detail"].as_str().unwrap().to_string())
        .collect();
    assert!(reasons.iter().any(|r| r.contains("cannot be read with your identity")), "{reasons:?}");
    assert!(!out.join(&setup.case).exists());
    let written: Vec<PathBuf> = all_files(&out);
    assert!(
        written.iter().all(|p| p.file_name().unwrap().to_str().unwrap().starts_with("report.")),
        "{written:?}"
    );
}

#[test]
fn the_checkpoint_in_a_package_verifies_with_openssl_alone() {
    let setup = disclosed_case();
    let work = setup.dir.path().join("std");
    std::fs::create_dir(&work).unwrap();
    assert!(Command::new("tar")
        .arg("-xf")
        .arg(&setup.package)
        .arg("-C")
        .arg(&work)
        .status()
        .unwrap()
        .success());
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.join("disclosure.json")).unwrap()).unwrap();
    let key_b64 = index["server_key"].as_str().unwrap().splitn(3, '+').nth(2).unwrap();
    let checkpoint = index["submissions"][0]["checkpoint"].as_str().unwrap();
    let (body, signature) = checkpoint.split_once("\n\n").unwrap();
    std::fs::write(work.join("body.txt"), format!("{body}\n")).unwrap();
    let script = format!(
        "set -e; cd {dir}; echo '{key}' | base64 -d | tail -c 32 > key.raw; \
         (printf '\\060\\052\\060\\005\\006\\003\\053\\145\\160\\003\\041\\000'; cat key.raw) > key.der; \
         openssl pkey -pubin -inform DER -in key.der -out key.pem; \
         echo '{sig}' | base64 -d | tail -c 64 > sig.bin; \
         openssl pkeyutl -verify -pubin -inkey key.pem -rawin -in body.txt -sigfile sig.bin",
        dir = work.display(),
        key = key_b64,
        sig = signature.trim().rsplit(' ').next().unwrap()
    );
    let out = Command::new("sh").args(["-c", &script]).output().expect("sh and openssl");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Signature Verified Successfully"));
}

#[test]
fn an_edited_bundle_cannot_slip_another_survivors_submission_into_a_disclosure() {
    let setup = disclosed_case();
    let bundle = setup.dir.path().join("b.tar");
    let edited = setup.dir.path().join("edited.tar");
    let case = setup.case.clone();
    rewrite_tar(&bundle, &edited, move |entries| {
        let (_, data) = entries.iter_mut().find(|(n, _)| n == "bundle.json").unwrap();
        let mut index: serde_json::Value = serde_json::from_slice(data).unwrap();
        for record in index["submissions"].as_array_mut().unwrap() {
            record["case"] = case.clone().into();
        }
        *data = serde_json::to_vec(&index).unwrap();
    });
    let lawyer = keygen(&["keygen", "--no-passphrase", "--out", s(&setup.dir.path().join("l2"))]);
    let package = setup.dir.path().join("leak.tar");
    let out = amanat(&[
        "disclose",
        "--cases",
        s(&setup.dir.path().join("cases")),
        "--case",
        &setup.case,
        "--bundle",
        s(&edited),
        "--identity",
        s(&setup.coalition.identity_files[0]),
        "--to",
        &lawyer,
        "--out",
        s(&package),
    ]);
    assert!(!out.status.success(), "the other survivor's submission was disclosed");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not in the server's signed log"));
    assert!(!package.exists());
}
