//! What a seized copy of the data directory gives against the coalition's replies:
//! nothing, however its stored values are fed through HMAC and HKDF; the codename alone
//! opens them. And a store from before v2 keys (whose replies *were* exposed) is
//! upgraded at its survivor's next sign-in.

use crate::common::*;
use crate::followup::{first_submission, followup, reply, reply_command, write_reply};
use crate::review::{export, open};
use ring::{hkdf, hmac};
use serde_json::json;
use std::collections::BTreeSet;
use std::path::Path;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// An age identity from 32 bytes used as an X25519 secret.
fn identity_of(secret: &[u8; 32]) -> age::x25519::Identity {
    let hrp = bech32::Hrp::parse("age-secret-key-").unwrap();
    let text = bech32::encode::<bech32::Bech32>(hrp, secret).unwrap().to_uppercase();
    text.parse().unwrap()
}

fn hkdf32(salt: &[u8], ikm: &[u8], info: &[u8]) -> [u8; 32] {
    struct Len;
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            32
        }
    }
    let mut out = [0u8; 32];
    hkdf::Salt::new(hkdf::HKDF_SHA256, salt)
        .extract(ikm)
        .expand(&[info], Len)
        .unwrap()
        .fill(&mut out)
        .unwrap();
    out
}

fn hmac32(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), message).as_ref());
    out
}

/// Every 32- and 16-byte value a copy of the data directory holds: raw values of every
/// sled tree, every run of hex in keys and values, every age recipient's key bytes, the
/// instance secret, and every 32-byte window of the signing key's file.
fn stored_values(data: &Path) -> (BTreeSet<[u8; 32]>, BTreeSet<Vec<u8>>) {
    let mut v32 = BTreeSet::new();
    let mut v16 = BTreeSet::new();
    let mut take = |bytes: &[u8]| {
        if let Ok(v) = <[u8; 32]>::try_from(bytes) {
            v32.insert(v);
        }
        let text = String::from_utf8_lossy(bytes);
        for run in text.split(|c: char| !c.is_ascii_hexdigit()) {
            for width in [64, 32].into_iter().filter(|&w| run.len() >= w) {
                for start in 0..=run.len() - width {
                    if let Ok(decoded) = hex::decode(&run[start..start + width]) {
                        match decoded.len() {
                            32 => drop(v32.insert(decoded.try_into().unwrap())),
                            _ => drop(v16.insert(decoded)),
                        }
                    }
                }
            }
        }
        for word in text.split(|c: char| !c.is_ascii_alphanumeric()) {
            if let Ok((_, key)) = bech32::decode(word) {
                if let Ok(v) = <[u8; 32]>::try_from(key.as_slice()) {
                    v32.insert(v);
                }
            }
        }
    };
    let db = sled::open(data.join("index")).unwrap();
    for name in db.tree_names() {
        let tree = db.open_tree(&name).unwrap();
        for item in &tree {
            let (k, v) = item.unwrap();
            take(&k);
            take(&v);
        }
    }
    drop(db);
    let secret = std::fs::read(data.join("instance.secret")).unwrap();
    take(&secret);
    let signing = std::fs::read(data.join("signing.key")).unwrap();
    for window in signing.windows(32) {
        take(window);
    }
    (v32, v16)
}

/// Every identity a seizing party could make from those values with the obvious
/// derivations: each value as an X25519 secret, as an HMAC key and HKDF PRK or input,
/// under every label amanat uses, with the instance secret, each stored 16-byte value
/// and nothing as salt.
fn derived_identities(data: &Path) -> Vec<age::x25519::Identity> {
    let (v32, v16) = stored_values(data);
    let secret = std::fs::read(data.join("instance.secret")).unwrap();
    let labels: [&[u8]; 5] = [
        b"amanat/v1 reply identity",
        b"amanat/v2 reply identity",
        b"amanat/v2 codename lookup tag",
        b"amanat/v2 codename salt",
        b"",
    ];
    let mut salts: Vec<Vec<u8>> = v16.into_iter().collect();
    salts.push(secret.clone());
    salts.push(Vec::new());
    let mut out = Vec::new();
    for v in &v32 {
        out.push(identity_of(v));
        for label in labels {
            let mut expand = label.to_vec();
            expand.push(1);
            out.push(identity_of(&hmac32(v, &expand)));
            out.push(identity_of(&hmac32(v, label)));
            out.push(identity_of(&hkdf32(v, &secret, label)));
            for salt in &salts {
                out.push(identity_of(&hkdf32(salt, v, label)));
            }
        }
    }
    out
}

fn opens_with_any(ciphertext: &[u8], identities: &[age::x25519::Identity]) -> bool {
    let decryptor = age::Decryptor::new(ciphertext).expect("an age file");
    decryptor.decrypt(identities.iter().map(|i| i as &dyn age::Identity)).is_ok()
}

#[test]
fn a_copy_of_the_data_directory_opens_no_reply_and_the_codename_does() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let mut server = Server::start(dir.path(), &coalition, "");
    let (case, codename) = first_submission(&server);
    let cases = dir.path().join("cases");
    let b1 = dir.path().join("b1.tar");
    export(&server, &b1, false);
    assert!(open(&[&b1], &coalition.identity_files[0], &cases).0);
    let before: BTreeSet<String> = server.stored_objects().into_iter().collect();
    let answer = "We will meet you at the bus station on Tuesday 10:00.";
    reply(dir.path(), &server, &coalition, &cases, &case, answer);
    let added: Vec<String> =
        server.stored_objects().into_iter().filter(|id| !before.contains(id)).collect();
    assert_eq!(added.len(), 1, "one reply object");
    let ciphertext = server.object(&added[0]);

    // The seizing party's copy: the whole data directory, taken with the server down.
    server.kill();
    let seized = dir.path().join("seized");
    copy_dir(&server.data_dir, &seized);
    let candidates = derived_identities(&seized);
    assert!(candidates.len() > 1000, "{} candidate identities", candidates.len());
    assert!(
        !opens_with_any(&ciphertext, &candidates),
        "a value stored on the server yields the reply key"
    );
    assert!(opens_with_any(&ciphertext, &coalition.identities), "the coalition reads its reply");

    // With the codename, the survivor reads it, once: then it is gone from the server.
    server.restart();
    let opened = followup(&server, &codename).json();
    assert_eq!(opened["replies"][0]["text"], answer);
    assert_eq!(followup(&server, &codename).json()["replies"], json!([]));
    assert!(!server.stored_objects().contains(&added[0]), "a read reply is deleted");
    let status = status(&server);
    assert_eq!(
        (status["replies_waiting"].clone(), status["replies_exposed"].clone()),
        (json!(0), json!(0))
    );
}

fn status(server: &Server) -> serde_json::Value {
    let out = amanat(&["status", "--json", "--data-dir", s(&server.data_dir)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else if kind.is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// `tests/data/v1-store`: a data directory written before v2 keys, with one reply.
#[test]
fn a_store_from_before_v2_keys_is_upgraded_at_the_survivors_next_sign_in() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/v1-store");
    let facts: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture.join("case.json")).unwrap()).unwrap();
    let (case, codename, old_reply) = (
        facts["case"].as_str().unwrap(),
        facts["codename"].as_str().unwrap(),
        facts["reply"].as_str().unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    copy_dir(&fixture.join("data"), &data);
    // The coalition of the fixture: one test key.
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::copy(fixture.join("recipients.txt"), keys.join("recipients.txt")).unwrap();
    let identity_file = dir.path().join("holder.txt");
    std::fs::copy(fixture.join("holder.txt"), &identity_file).unwrap();
    let identity: age::x25519::Identity = std::fs::read_to_string(&identity_file)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap()
        .parse()
        .unwrap();
    let coalition = Coalition {
        identities: vec![identity],
        identity_files: vec![identity_file.clone()],
        recipients_file: keys.join("recipients.txt"),
    };

    // What issue 15 found, on this store: its reply opens from the index alone.
    let exposed_reply = {
        let db = sled::open(data.join("index")).unwrap();
        let replies = db.open_tree("replies").unwrap();
        let (_, record) = replies.iter().next().unwrap().unwrap();
        let record: serde_json::Value = serde_json::from_slice(&record).unwrap();
        record["object"].as_str().unwrap().to_string()
    };
    let server = Server::start_with_data(dir.path(), &data, &coalition, "");
    let ciphertext = server.object(&exposed_reply);
    drop(server);
    assert!(opens_with_any(&ciphertext, &derived_identities(&data)), "v1 replies are exposed");

    let server = Server::start_with_data(dir.path(), &data, &coalition, "");
    let before = status(&server);
    assert_eq!(
        (before["cases_on_v1_keys"].clone(), before["replies_exposed"].clone()),
        (json!(1), json!(1))
    );

    // A reviewer who opened the case before still holds its old reply key: the server
    // refuses a reply sealed to it.
    let cases = dir.path().join("cases");
    let b1 = fixture.join("b1.tar");
    let state = dir.path().join("state.json");
    open_with_state(&b1, &identity_file, &cases, &state);
    let refused =
        write_and_import_reply(dir.path(), &server, &coalition, &cases, case, "first try");
    assert!(refused.contains("reply key it was given before v2"), "{refused}");

    // The survivor signs in: the old reply is shown once, the case gets new keys, and
    // nothing exposed is left.
    let signed_in = followup(&server, codename).json();
    assert_eq!(signed_in["replies"][0]["text"], old_reply);
    assert_eq!(signed_in["replies"][0]["received_at"], facts["reply_received_at"], "its hour kept");
    let after = status(&server);
    assert_eq!(
        (
            after["cases_on_v1_keys"].clone(),
            after["replies_exposed"].clone(),
            after["replies_waiting"].clone(),
            after["replies_exposed_before_upgrade"].clone()
        ),
        (json!(0), json!(0), json!(0), json!(1)),
        "no reply is sealed to an old key any more; the one that was is counted"
    );
    assert!(!server.stored_objects().contains(&exposed_reply));

    // The old tag is gone from the index, and after the next start from sled's very
    // files, which kept its bytes until then.
    let secret = std::fs::read(data.join("instance.secret")).unwrap();
    let normalized = amanat::codename::normalize(codename);
    let v1_tag = hex::encode(hmac32(&secret, normalized.as_bytes()));
    let raw_index = |data: &Path| -> Vec<u8> {
        all_files(&data.join("index")).iter().flat_map(|p| std::fs::read(p).unwrap()).collect()
    };
    let mut server = server;
    server.restart();
    assert!(!contains(&raw_index(&data), v1_tag.as_bytes()), "the v1 tag is still on the disk");

    // Another server the reviewers also take bundles from claims a key for this case:
    // refused, its log is not the one the case came from.
    let other_dir = dir.path().join("other");
    std::fs::create_dir_all(&other_dir).unwrap();
    let mut other = Server::start(&other_dir, &coalition, "");
    first_submission(&other);
    other.kill();
    inject_reply_key(
        &other.data_dir,
        case,
        &age::x25519::Identity::generate().to_public().to_string(),
    );
    other.restart();
    let foreign = dir.path().join("foreign.tar");
    export(&other, &foreign, false);
    let opened = open_in(&foreign, &identity_file, &cases, &state);
    let stdout = String::from_utf8_lossy(&opened.stdout);
    assert!(
        !opened.status.success() && stdout.contains("not from the server log the case came from"),
        "{stdout}"
    );
    assert!(!cases.join(case).join("reply-key.json").exists());

    // The next export carries the new key in the signed log, though no new submission
    // came (the survivor only read): open records it, and the reviewer's next reply is
    // sealed to it and accepted.
    let b2 = dir.path().join("b2.tar");
    let summary = export(&server, &b2, false);
    assert_eq!(summary["submissions"], 0, "{summary}");
    let opened = open_in(&b2, &identity_file, &cases, &state);
    assert!(opened.status.success(), "{}", String::from_utf8_lossy(&opened.stdout));
    assert!(String::from_utf8_lossy(&opened.stdout).contains("\"reply_key_changed\""));
    let key: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cases.join(case).join("reply-key.json")).unwrap())
            .unwrap();
    assert!(key["recipient"].as_str().unwrap().starts_with("age1"));
    let accepted =
        write_and_import_reply(dir.path(), &server, &coalition, &cases, case, "Second try.");
    assert!(accepted.is_empty(), "{accepted}");

    // A seized copy now opens no stored object, the new reply among them, however its
    // values are derived.
    let stored: Vec<Vec<u8>> = server.stored_objects().iter().map(|id| server.object(id)).collect();
    assert!(stored.iter().any(|o| opens_with_any(o, &coalition.identities)));
    server.kill();
    let seized = dir.path().join("seized");
    copy_dir(&data, &seized);
    let candidates = derived_identities(&seized);
    for object in &stored {
        assert!(!opens_with_any(object, &candidates), "an object opens from the copy");
    }
    server.restart();
    assert_eq!(followup(&server, codename).json()["replies"][0]["text"], "Second try.");

    // A second, different change for the same case (only a server's key holder could
    // log one): replies to the case stop until the coalition has checked.
    server.kill();
    inject_reply_key(&data, case, &age::x25519::Identity::generate().to_public().to_string());
    server.restart();
    let b3 = dir.path().join("b3.tar");
    export(&server, &b3, false);
    let opened = open_in(&b3, &identity_file, &cases, &state);
    assert!(!opened.status.success());
    assert!(cases.join(case).join("reply-key.refused").exists());
    assert!(!cases.join(case).join("reply-key.json").exists(), "the first change withdrawn too");
    let out = reply_command(dir.path(), &coalition, &cases, case, "Are you safe?");
    assert!(!out.status.success(), "no reply is sealed to either key");
    assert!(String::from_utf8_lossy(&out.stderr).contains("stopped"));
}

/// What only someone writing the index directly (a server's operator, or whoever holds
/// its data directory and signing key) can do: claim a new reply key for `case`, which
/// the server then logs at its next export.
fn inject_reply_key(data: &Path, case: &str, recipient: &str) {
    let db = sled::open(data.join("index")).unwrap();
    let change = json!({ "case": case, "recipient": recipient, "log_index": null });
    let tree = db.open_tree("reply_keys").unwrap();
    tree.insert(case.as_bytes(), serde_json::to_vec(&change).unwrap()).unwrap();
    db.flush().unwrap();
}

/// A server (or whoever holds its signing key) claims a new reply key for a case whose
/// key is of the v2 kind: reviewers refuse it and keep sealing to the case's own key.
#[test]
fn a_reviewer_refuses_a_reply_key_change_the_server_may_not_make() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let mut server = Server::start(dir.path(), &coalition, "");
    let (case, _) = first_submission(&server);
    let cases = dir.path().join("cases");
    let b1 = dir.path().join("b1.tar");
    export(&server, &b1, false);
    assert!(open(&[&b1], &coalition.identity_files[0], &cases).0);
    let manifest_key: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cases.join(&case).join("testimony.json")).unwrap())
            .unwrap();
    let own = manifest_key["reply_recipient"].as_str().unwrap().to_string();

    // The operator writes a change of their own into the index; the server logs it.
    server.kill();
    let attacker = age::x25519::Identity::generate().to_public().to_string();
    inject_reply_key(&server.data_dir, &case, &attacker);
    server.restart();
    let b2 = dir.path().join("b2.tar");
    export(&server, &b2, true);
    let (ok, outcomes) = open(&[&b2], &coalition.identity_files[0], &cases);
    assert!(!ok, "the refusal shows in the exit code");
    let reason = outcomes[&case]["reason"].as_str().unwrap_or("").to_string();
    assert!(reason.contains("refused"), "{outcomes:?}");
    assert!(!cases.join(&case).join("reply-key.json").exists());
    // The next reply is still sealed to the case's own key.
    let bundle = write_reply(dir.path(), &coalition, &cases, &case, "Still to you.");
    let mut archive = tar::Archive::new(std::fs::File::open(&bundle).unwrap());
    let mut entry = archive.entries().unwrap().next().unwrap().unwrap();
    let mut index = String::new();
    std::io::Read::read_to_string(&mut entry, &mut index).unwrap();
    assert!(index.contains(&own) && !index.contains(&attacker), "{index}");
}

/// `amanat reply` then `amanat import-replies`: the import's error, or "" when stored.
fn write_and_import_reply(
    dir: &Path,
    server: &Server,
    coalition: &Coalition,
    cases: &Path,
    case: &str,
    text: &str,
) -> String {
    let bundle = write_reply(dir, coalition, cases, case, text);
    let out = amanat(&["import-replies", s(&bundle), "--data-dir", s(&server.data_dir)]);
    if out.status.success() {
        String::new()
    } else {
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

/// `amanat open --json` of one bundle with a state file of its own.
fn open_in(bundle: &Path, identity: &Path, cases: &Path, state: &Path) -> std::process::Output {
    let state = s(state);
    amanat(&[
        "open",
        s(bundle),
        "--identity",
        s(identity),
        "--out",
        s(cases),
        "--state",
        state,
        "--json",
    ])
}

/// `open_in`, which must verify everything.
fn open_with_state(bundle: &Path, identity: &Path, cases: &Path, state: &Path) {
    let opened = open_in(bundle, identity, cases, state);
    assert!(opened.status.success(), "{}", String::from_utf8_lossy(&opened.stdout));
}
