//! A partner organisation's witness (C2SP tlog-witness): the real `amanat witness` on
//! loopback, held to the request sequence and statuses of torchwood's litewitness test
//! (FiloSottile/torchwood, cmd/litewitness/testdata/litewitness.txt: its log key,
//! checkpoints and proofs, vendored below), its cosignatures read by Cloudflare's
//! `signed_note` with an ed25519-dalek verifier, and its memory kept across a SIGKILL.

use crate::common::*;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

/// torchwood's test log: origin and signed-note verifier key.
const ORIGIN: &str =
    "sigsum.org/v1/tree/4d6d8825a6bb689d459628312889dfbb0bcd41b5211d9e1ce768b0ff0309e562";
const LOG_KEY: &str = "sigsum.org/v1/tree/4d6d8825a6bb689d459628312889dfbb0bcd41b5211d9e1ce768b0ff0309e562+5202289b+Af/cLU2Y5BJNP+r3iMDC+av9eWCD0fBJVDfzAux5zxAP";
/// Its checkpoints of sizes 1, 3 and 5: root and the log's signature.
const CP1: (&str, &str) = (
    "KgAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "UgIom7fPZTqpxWWhyjWduBvTvGVqsokMbqTArsQilegKoFBJQjUFAmQ0+YeSPM3wfUQMFSzVnnNuWRTYrajXpNUbIQY=",
);
const CP3: (&str, &str) = (
    "RcCI1Nk56ZcSmIEfIn0SleqtV7uvrlXNccFx595Iwl0=",
    "UgIom2VbtIcdFbwFAy1n7s6IkAxIY6J/GQOTuZF2ORV39d75cbAj2aQYwyJre36kezNobZs4SUUdrcawfAB8WVrx6go=",
);
const CP5: (&str, &str) = (
    "QrtXrQZCCvpIgsSmOsah7HdICzMLLyDfxToMql9WTjY=",
    "UgIomw/EOJmWi0i1FQsOj+etB7F8IccFam/jgd6wzRns4QPVmyEZtdvl1U2KEmLOZ/ASRcWJi0tW90dJWAShei7sDww=",
);
/// The size-3 signature with its last character changed.
const CP3_TAMPERED: &str =
    "UgIom2VbtIcdFbwFAy1n7s6IkAxIY6J/GQOTuZF2ORV39d75cbAj2aQYwyJre36kezNobZs4SUUdrcawfAB8WVrx6gx=";
const PROOF_1_3: &[&str] = &[
    "KgEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "KgIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
];
const BAD_PROOF_1_3: &[&str] = &[
    "KgEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "KgIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABA=",
];
const PROOF_1_5: &[&str] = &[
    "KgEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "+fUDV+k970B4I3uKrqJM4aP1lloPZP8mvr2Z4wRw2LI=",
    "KgQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
];
const PROOF_3_5: &[&str] = &[
    "KgIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "KgMAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "wgiIFdZfYNv6WU1OllBKsWnLYIS/DBMqt8Uh/S4OukE=",
    "KgQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
];

fn note(origin: &str, size: u64, (root, signature): (&str, &str)) -> String {
    format!("{origin}\n{size}\n{root}\n\n\u{2014} {origin} {signature}\n")
}

fn body(old: u64, proof: &[&str], note: &str) -> Vec<u8> {
    let mut body = format!("old {old}\n");
    for line in proof {
        body.push_str(line);
        body.push('\n');
    }
    body.push('\n');
    body.push_str(note);
    body.into_bytes()
}

pub(crate) struct Witness {
    child: std::process::Child,
    pub(crate) addr: std::net::SocketAddr,
    config: std::path::PathBuf,
    log: Arc<Mutex<String>>,
}

impl Witness {
    pub(crate) fn start(config: &Path) -> Witness {
        let log = Arc::new(Mutex::new(String::new()));
        let mut command = Command::new(BIN);
        command.args(["witness", "serve", "--config", config.to_str().unwrap()]);
        let (child, addr) = spawn_command(command, &log);
        Witness { child, addr, config: config.to_path_buf(), log }
    }

    fn add(&self, body: &[u8]) -> Response {
        request(self.addr, "POST", "/add-checkpoint", &[], body)
    }

    fn kill_and_restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        *self = Witness::start(&self.config);
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A cosignature/v1 verifier for `signed_note`: ed25519-dalek over
/// `cosignature/v1\ntime <ts>\n` and the note text (C2SP tlog-cosignature).
struct Cosignature {
    name: String,
    id: u32,
    key: ed25519_dalek::VerifyingKey,
}

impl Cosignature {
    fn from_vkey(vkey: &str) -> Cosignature {
        use base64::Engine;
        let mut parts = vkey.splitn(3, '+');
        let (name, _, key) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap());
        let key = base64::engine::general_purpose::STANDARD.decode(key).unwrap();
        assert_eq!(key[0], 0x04, "a cosignature/v1 key");
        Cosignature {
            name: name.into(),
            id: signed_note::key_id(name, &key),
            key: ed25519_dalek::VerifyingKey::from_bytes(&key[1..].try_into().unwrap()).unwrap(),
        }
    }
}

impl signed_note::Verifier for Cosignature {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.id
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(sig) = <&[u8; 72]>::try_from(sig) else { return false };
        let time = u64::from_be_bytes(sig[..8].try_into().unwrap());
        let mut message = format!("cosignature/v1\ntime {time}\n").into_bytes();
        message.extend_from_slice(msg);
        let signature = ed25519_dalek::Signature::from_bytes(sig[8..].try_into().unwrap());
        time > 0 && self.key.verify_strict(&message, &signature).is_ok()
    }
}

/// The note with the witness's answer appended, read by `signed_note`: both the log's
/// signature and the witness's cosignature must verify.
fn assert_cosigned(note: &str, answer: &Response, witness_key: &str) {
    assert_eq!(answer.status, 200, "{}", answer.text());
    let cosigned = format!("{note}{}", answer.text());
    let parsed = signed_note::Note::from_bytes(cosigned.as_bytes()).expect("a signed note");
    let verifiers = signed_note::VerifierList::new(vec![
        Box::new(signed_note::StandardVerifier::new(LOG_KEY).unwrap()),
        Box::new(Cosignature::from_vkey(witness_key)),
    ]);
    let (verified, unknown) = parsed.verify(&verifiers).expect("every signature verifies");
    assert_eq!(verified.len(), 2, "the log's signature and the witness's cosignature");
    assert!(unknown.is_empty());
    // amanat's own reading of the cosignature agrees with signed_note's.
    let ours: amanat::keys::CosignatureVerifier = witness_key.parse().unwrap();
    let text = &note[..=note.find("\n\n").unwrap()];
    assert!(ours.verify(text, &answer.text()).is_ok());
}

/// `amanat witness keygen` and a `witness.toml` for one log in `dir`: the
/// configuration's path and the witness's verifier key (keygen's last line).
pub(crate) fn set_up(
    dir: &Path,
    name: &str,
    origin: &str,
    log_key: &str,
) -> (std::path::PathBuf, String) {
    let key = dir.join("witness.key");
    let made = amanat(&["witness", "keygen", "--name", name, "--out", key.to_str().unwrap()]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let witness_key = String::from_utf8(made.stdout).unwrap().lines().last().unwrap().to_string();
    let config = dir.join("witness.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\nname = \"{name}\"\n\
             signing_key = \"{}\"\n{ROOT_OK}[[log]]\norigin = \"{origin}\"\nkey = \"{log_key}\"\n",
            dir.join("witness-data").display(),
            key.display()
        ),
    )
    .unwrap();
    (config, witness_key)
}

#[test]
fn a_witness_cosigns_only_checkpoints_that_extend_what_it_holds_also_after_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let (config, witness_key) = set_up(dir.path(), "example.com/witness", ORIGIN, LOG_KEY);
    assert!(witness_key.starts_with("example.com/witness+"), "{witness_key}");
    let key = dir.path().join("witness.key");
    let again = amanat(&[
        "witness",
        "keygen",
        "--name",
        "example.com/witness",
        "--out",
        key.to_str().unwrap(),
    ]);
    assert!(!again.status.success(), "an existing key is never overwritten");
    let mut witness = Witness::start(&config);
    let second = amanat(&["witness", "serve", "--config", config.to_str().unwrap()]);
    assert!(!second.status.success(), "one witness per data directory");
    assert!(String::from_utf8_lossy(&second.stderr).contains("another witness"), "{second:?}");

    // torchwood's sequence, with the statuses C2SP tlog-witness gives.
    let first = note(ORIGIN, 1, CP1);
    assert_cosigned(&first, &witness.add(&body(0, &[], &first)), &witness_key);
    let tampered = note(ORIGIN, 3, (CP3.0, CP3_TAMPERED));
    assert_eq!(witness.add(&body(1, PROOF_1_3, &tampered)).status, 403, "not the log's signature");
    let other = ORIGIN.replace("e562", "e563");
    assert_eq!(witness.add(&body(1, PROOF_1_3, &note(&other, 3, CP3))).status, 404, "unknown log");
    let third = note(ORIGIN, 3, CP3);
    assert_eq!(witness.add(&body(1, &[], &third)).status, 422, "no proof");
    assert_eq!(witness.add(&body(1, BAD_PROOF_1_3, &third)).status, 422, "a wrong proof");
    assert_cosigned(&third, &witness.add(&body(1, PROOF_1_3, &third)), &witness_key);
    let fifth = note(ORIGIN, 5, CP5);
    let stale = witness.add(&body(1, PROOF_1_5, &fifth));
    assert_eq!((stale.status, stale.text().as_str()), (409, "3\n"));
    assert_eq!(stale.header("content-type"), Some("text/x.tlog.size"));

    // What it holds survives a SIGKILL: the old size is still 3.
    witness.kill_and_restart();
    let stale = witness.add(&body(1, PROOF_1_5, &fifth));
    assert_eq!((stale.status, stale.text().as_str()), (409, "3\n"));
    assert_cosigned(&fifth, &witness.add(&body(3, PROOF_3_5, &fifth)), &witness_key);
    let again = witness.add(&body(0, &[], &fifth));
    assert_eq!((again.status, again.text().as_str()), (409, "5\n"));

    // A rollback (an older tree after a newer one) and a fork (same size, other root).
    assert_eq!(witness.add(&body(5, PROOF_1_3, &third)).status, 400, "old size above the tree");
    assert_eq!(
        witness.add(&body(5, &[], &note(ORIGIN, 5, CP5))).status,
        200,
        "the same head again"
    );
    // Malformed bodies change nothing.
    for junk in [&b"old 01\n\n"[..], b"nonsense", b"old 5\nnot-base64\n\n", &[0xff, 0xfe]] {
        assert_eq!(witness.add(junk).status, 400, "{:?}", String::from_utf8_lossy(junk));
    }
    let huge = vec![b'a'; 200 * 1024];
    assert_eq!(witness.add(&huge).status, 413, "bounded bodies");
    let stale = witness.add(&body(1, PROOF_1_5, &fifth));
    assert_eq!(stale.text(), "5\n", "still holds size 5");
    // Other spellings of a tree it holds are not cosigned: a size with a leading zero
    // (the signature would not verify anyway) or a carriage return.
    let zero = fifth.replacen("\n5\n", "\n05\n", 1);
    assert_eq!(witness.add(&body(5, &[], &zero)).status, 403);
    let cr = fifth.replacen("\n5\n", "\n5\r\n", 1);
    assert_eq!(witness.add(&body(5, &[], &cr)).status, 403);
    // The log says what happened, never what was sent.
    let log = witness.log.lock().unwrap().clone();
    assert!(log.contains("size_conflict") && !log.contains(ORIGIN), "{log}");

    // A witness whose held checkpoint is gone (an unmounted volume, a restored backup)
    // refuses to start rather than cosign anew from size 0.
    drop(witness);
    for held in std::fs::read_dir(dir.path().join("witness-data").join("logs")).unwrap() {
        std::fs::remove_file(held.unwrap().path()).unwrap();
    }
    let refused = amanat(&["witness", "serve", "--config", config.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("retired"), "{refused:?}");
}

/// The intake's own checkpoints, witnessed: a bundle's signed note, read by
/// `signed_note` (an outside check of the server's note format), is cosigned from
/// size 0, then the next export's from the first with the bundle's consistency proof.
#[test]
fn a_partner_witnesses_the_intake_log_from_two_exports() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "");
    normal_submission_works(&server);
    let first_bundle = dir.path().join("b1.tar");
    crate::review::export(&server, &first_bundle, false);
    normal_submission_works(&server);
    normal_submission_works(&server);
    let second_bundle = dir.path().join("b2.tar");
    crate::review::export(&server, &second_bundle, false);
    let first = amanat::bundle::Bundle::open(&first_bundle).unwrap().index.log;
    let second = amanat::bundle::Bundle::open(&second_bundle).unwrap().index.log;
    let origin = first.server_key.split('+').next().unwrap().to_string();

    let (config, witness_key) = set_up(dir.path(), "partner.example", &origin, &first.server_key);
    let witness = Witness::start(&config);
    let verify = |note: &str, answer: &Response| {
        assert_eq!(answer.status, 200, "{}", answer.text());
        let cosigned = format!("{note}{}", answer.text());
        let verifiers = signed_note::VerifierList::new(vec![
            Box::new(signed_note::StandardVerifier::new(&first.server_key).unwrap()),
            Box::new(Cosignature::from_vkey(&witness_key)),
        ]);
        let parsed = signed_note::Note::from_bytes(cosigned.as_bytes()).unwrap();
        assert_eq!(parsed.verify(&verifiers).unwrap().0.len(), 2);
    };
    verify(&first.checkpoint, &witness.add(&body(0, &[], &first.checkpoint)));
    let first_size: u64 = first.checkpoint.lines().nth(1).unwrap().parse().unwrap();
    let earlier = second.earlier.iter().find(|e| e.size == first_size).expect("a proof from b1");
    let proof: Vec<&str> = earlier.proof.iter().map(String::as_str).collect();
    verify(&second.checkpoint, &witness.add(&body(first_size, &proof, &second.checkpoint)));
}

pub(crate) fn status(server: &Server) -> serde_json::Value {
    let out = amanat(&["status", "--json", "--data-dir", server.data_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The size each witness cosigned, by name, as `amanat status` shows it.
fn cosigned(server: &Server) -> Vec<(String, u64, bool)> {
    let status = status(server);
    status["witnesses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["name"].as_str().unwrap().to_string(),
                w["size"].as_u64().unwrap(),
                w["last_error"].is_string(),
            )
        })
        .collect()
}

/// The intake asks two partners' witnesses every interval; a witness that is down
/// delays no survivor, is shown as failing, and catches up when it is back.
#[test]
fn the_intake_has_its_log_cosigned_by_two_witnesses_and_goes_on_when_one_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let mut server = Server::start(dir.path(), &coalition, "");
    let server_key = status(&server)["server_key"].as_str().unwrap().to_string();
    let origin = server_key.split('+').next().unwrap().to_string();
    let mut witnesses = Vec::new();
    let mut keys = Vec::new();
    for name in ["tbilisi.example", "vilnius.example"] {
        let home = dir.path().join(name);
        std::fs::create_dir_all(&home).unwrap();
        let (config, key) = set_up(&home, name, &origin, &server_key);
        witnesses.push(Witness::start(&config));
        keys.push(key);
    }
    let mut attestation = String::from("\n[attestation]\ninterval_secs = 1\n");
    for (w, k) in witnesses.iter().zip(&keys) {
        attestation.push_str(&format!(
            "[[attestation.witness]]\nurl = \"http://{}/\"\nkey = \"{k}\"\n",
            w.addr
        ));
    }
    std::fs::write(&server.config, std::fs::read_to_string(&server.config).unwrap() + &attestation)
        .unwrap();
    server.restart();
    normal_submission_works(&server);
    normal_submission_works(&server);
    let size = |server: &Server| status(server)["log_size"].as_u64().unwrap();
    wait_until("both witnesses cosign the log", || {
        let now = size(&server);
        let c = cosigned(&server);
        c.len() == 2 && c.iter().all(|(_, s, failing)| *s == now && !failing)
    });

    // One witness goes down: survivors are answered as before.
    let down = witnesses.remove(1);
    let (down_config, down_addr) = (down.config.clone(), down.addr);
    drop(down);
    for _ in 0..3 {
        normal_submission_works(&server);
    }
    wait_until("the live witness catches up, the other is shown failing", || {
        let now = size(&server);
        let c = cosigned(&server);
        c.iter().any(|(n, s, f)| n == "tbilisi.example" && *s == now && !f)
            && c.iter().any(|(n, s, f)| n == "vilnius.example" && *s < now && *f)
    });
    let printed = amanat(&["status", "--data-dir", server.data_dir.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&printed.stdout).contains("LAST REQUEST FAILED"));

    // Back on its address, it is proven forward from the size it holds.
    let text = std::fs::read_to_string(&down_config).unwrap();
    let text = text.replace("listen = \"127.0.0.1:0\"", &format!("listen = \"{down_addr}\""));
    std::fs::write(&down_config, text).unwrap();
    witnesses.push(Witness::start(&down_config));
    wait_until("the returned witness catches up", || {
        let now = size(&server);
        cosigned(&server).iter().all(|(_, s, f)| *s == now && !f)
    });
}
