//! The intake log: every acknowledged submission carries a receipt that anyone can
//! check against the server's public key, without trusting the operator.

use crate::common::*;
use amanat::keys::{Recipients, VerifierKey};
use amanat::log::{Checkpoint, LogLeaf, Receipt};
use std::process::Command;

fn server_key(server: &Server) -> VerifierKey {
    let out = Command::new(BIN)
        .args(["status", "--json", "--data-dir", server.data_dir.to_str().unwrap()])
        .output()
        .unwrap();
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    status["server_key"].as_str().unwrap().parse().expect("a signed-note verifier key")
}

/// The leaf a receipt must prove, rebuilt from what the survivor was told and what the
/// coalition knows (its own public keys).
fn leaf_for(response: &serde_json::Value, coalition: &Coalition) -> LogLeaf {
    let mut objects = receipt_objects(response);
    let manifest = objects.pop().unwrap();
    let recipients = std::fs::read_to_string(&coalition.recipients_file).unwrap();
    LogLeaf::Submission {
        submission: response["id"].as_str().unwrap().into(),
        // A first submission opens its own case.
        case: response["id"].as_str().unwrap().into(),
        received_at: response["received_at"].as_str().unwrap().into(),
        manifest,
        attachments: objects,
        recipients: Recipients::parse(&recipients).unwrap().fingerprint().into(),
    }
}

#[test]
fn every_receipt_proves_its_submission_in_the_signed_log() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 2);
    let server = Server::start(dir.path(), &coalition, "");
    let mut responses = Vec::new();
    for i in 0..5u64 {
        let r = post_multipart(
            server.addr,
            "/api/v1/submissions",
            &[
                text("testimony", &format!("t{i}")),
                file("evidence", "p.jpg", "image/jpeg", &noise(1000, i)),
            ],
        );
        assert_eq!(r.status, 201);
        responses.push(r.json());
    }
    let key = server_key(&server);
    let mut sizes = Vec::new();
    for (i, response) in responses.iter().enumerate() {
        let receipt: Receipt = serde_json::from_value(response["receipt"].clone()).unwrap();
        assert_eq!(receipt.leaf_index, i as u64);
        let checkpoint =
            receipt.verify(&leaf_for(response, &coalition), &key).expect("receipt verifies");
        sizes.push(checkpoint.size);

        // Another submission's leaf does not pass with this receipt.
        let other = &responses[(i + 1) % responses.len()];
        assert!(receipt.verify(&leaf_for(other, &coalition), &key).is_err());
        // Nor does a forged checkpoint, or a stranger's key.
        let mut forged = receipt.clone();
        forged.checkpoint = forged.checkpoint.replacen('\n', "\nX", 1);
        assert!(forged.verify(&leaf_for(response, &coalition), &key).is_err());
    }
    assert_eq!(sizes, vec![1, 2, 3, 4, 5]);
    let stranger_dir = tempfile::tempdir().unwrap();
    let stranger =
        amanat::keys::SigningKey::load_or_create(&stranger_dir.path().join("k"), &key.name)
            .unwrap();
    let receipt: Receipt = serde_json::from_value(responses[0]["receipt"].clone()).unwrap();
    assert!(Checkpoint::verify(&receipt.checkpoint, &stranger.verifier()).is_err());
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    let status = Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap();
    assert!(status.success());
}

#[test]
fn a_forked_log_is_refused_by_the_reviewer() {
    use crate::review::{export, open, submit};
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let key = &coalition.identity_files[0];
    let a_dir = dir.path().join("a");
    std::fs::create_dir(&a_dir).unwrap();
    let mut a = Server::start(&a_dir, &coalition, "");
    submit(&a, 1, &[]);
    submit(&a, 2, &[]);
    let a1 = dir.path().join("a1.tar");
    export(&a, &a1, false);
    let (ok, _) = open(&[&a1], key, &dir.path().join("cases"));
    assert!(ok);

    // Someone copies the server (its key and log included) and runs the copy apart.
    a.kill();
    let b_dir = dir.path().join("b");
    std::fs::create_dir(&b_dir).unwrap();
    copy_dir(&a.data_dir, &b_dir.join("data"));
    a.restart();
    let b = Server::start_with_data(&b_dir, &b_dir.join("data"), &coalition, "");
    submit(&a, 3, &[]);
    submit(&b, 4, &[]);
    let (a2, b2) = (dir.path().join("a2.tar"), dir.path().join("b2.tar"));
    export(&a, &a2, false);
    export(&b, &b2, false);

    // Each copy's own bundle is internally consistent, and the first one seen is taken.
    let (ok, _) = open(&[&a2], key, &dir.path().join("cases"));
    assert!(ok);
    let (ok, outcomes) = open(&[&b2], key, &dir.path().join("cases"));
    assert!(!ok, "a forked log must be refused");
    let refusal = &outcomes[b2.to_str().unwrap()];
    assert_eq!(refusal["status"], "failed");
    assert!(refusal["reason"].as_str().unwrap().contains("FORKED"), "{refusal}");

    // An older bundle from the same history still opens (say, on a second reading).
    let (ok, outcomes) = open(&[&a1], key, &dir.path().join("cases-again"));
    assert!(ok, "a bundle whose tree head was verified before is accepted: {outcomes:?}");

    // The server's signing key replaced: the same log under a new key would let whoever
    // holds it start a new history. Refused by name.
    a.kill();
    std::fs::remove_file(a.data_dir.join("signing.key")).unwrap();
    a.restart();
    submit(&a, 5, &[]);
    let a3 = dir.path().join("a3.tar");
    export(&a, &a3, false);
    let (ok, outcomes) = open(&[&a3], key, &dir.path().join("cases"));
    assert!(!ok, "a new key for a known server must be refused");
    let refusal = &outcomes[a3.to_str().unwrap()];
    assert!(refusal["reason"].as_str().unwrap().contains("SERVER KEY CHANGED"), "{refusal}");
}

#[test]
fn the_receipt_page_offers_a_receipt_that_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "");
    let page = post_multipart(
        server.addr,
        "/en/submit",
        &[text("testimony", "through the form"), text("consent_readers", "coalition")],
    );
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(html.contains("Anything you keep can be found"), "the page warns before offering it");
    let value = html.split("name=\"receipt\" value=\"").nth(1).unwrap().split('"').next().unwrap();
    // What the browser sends back: the attribute as text, form-encoded.
    let json = value
        .replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    let body = format!("receipt={}", percent_encode(&json));
    let download = request(
        server.addr,
        "POST",
        "/receipt",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    );
    assert_eq!(download.status, 200, "{}", download.text());
    assert!(download.header("content-disposition").unwrap().starts_with("attachment"));
    let receipt: Receipt = serde_json::from_slice(&download.body).unwrap();
    let id = html.split("id=\"submission-id\">").nth(1).unwrap().split('<').next().unwrap();
    assert_eq!(receipt.submission, id);
    let key = server_key(&server);
    Checkpoint::verify(&receipt.checkpoint, &key).expect("signed by the server");

    // Anything that is not a receipt is not echoed back.
    let junk = request(
        server.addr,
        "POST",
        "/receipt",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"receipt=%3Cscript%3E",
    );
    assert_eq!(junk.status, 400);
    assert!(!junk.text().contains("<script>"));
}

fn verify_cli(file: &std::path::Path, extra: &[&str]) -> (bool, serde_json::Value) {
    let mut args = vec!["verify", file.to_str().unwrap(), "--json"];
    args.extend(extra);
    let out = Command::new(BIN).args(&args).output().unwrap();
    (out.status.success(), serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null))
}

#[test]
fn verify_checks_a_receipt_and_a_bundle_on_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "");
    let response = post_multipart(
        server.addr,
        "/api/v1/submissions",
        &[
            text("testimony", "kept receipt"),
            file("evidence", "a.jpg", "image/jpeg", &noise(5000, 1)),
        ],
    );
    let receipt = response.json()["receipt"].clone();
    let receipt_file = dir.path().join("receipt.json");
    std::fs::write(&receipt_file, serde_json::to_vec_pretty(&receipt).unwrap()).unwrap();
    let key = server_key(&server).to_string();

    let (ok, report) = verify_cli(&receipt_file, &["--server-key", &key]);
    assert!(ok, "{report:#}");
    let stranger =
        amanat::keys::SigningKey::load_or_create(&dir.path().join("other"), "amanat/x").unwrap();
    let (ok, report) =
        verify_cli(&receipt_file, &["--server-key", &stranger.verifier().to_string()]);
    assert!(!ok, "a receipt from another server key is not the one expected: {report:#}");
    let mut forged = receipt.clone();
    forged["leaf"] = forged["leaf"].as_str().unwrap().replace("received 2", "received 1").into();
    std::fs::write(&receipt_file, serde_json::to_vec(&forged).unwrap()).unwrap();
    assert!(!verify_cli(&receipt_file, &[]).0, "a receipt whose leaf was edited fails");

    let bundle = dir.path().join("b.tar");
    crate::review::export(&server, &bundle, false);
    let (ok, report) = verify_cli(&bundle, &["--server-key", &key]);
    assert!(ok, "{report:#}");
    let tampered = dir.path().join("t.tar");
    rewrite_tar(&bundle, &tampered, |entries| {
        let (_, data) = entries.iter_mut().find(|(n, _)| n.starts_with("objects/")).unwrap();
        let mid = data.len() / 2;
        data[mid] ^= 1;
    });
    let (ok, report) = verify_cli(&tampered, &[]);
    assert!(!ok);
    let failed: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["what"].as_str().unwrap())
        .collect();
    assert!(failed.iter().any(|w| w.starts_with("object ")), "{failed:?}");
}
