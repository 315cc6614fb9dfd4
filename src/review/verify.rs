//! `amanat verify`: a lawyer's check of a disclosure package, offline, trusting neither
//! the coalition nor the server operator: only the server's published key.

use super::disclose::{
    key_member, Custody, DisclosureIndex, CUSTODY_NAME, CUSTODY_SIGNATURE_NAME, DISCLOSURE_SCHEMA,
    INDEX_NAME, VERIFY_NAME,
};
use super::{safe_name, TakenNames};
use crate::bundle::{is_id_member, object_member, Package};
use crate::envelope::{self, Manifest, ObjectId};
use crate::keys::VerifierKey;
use crate::log::{self, merkle, Checkpoint};
use serde::Serialize;
use std::fs;
use std::io::{self, Read};
use std::path::Path;
use zeroize::Zeroizing;

/// One thing checked, and how it went.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub what: String,
    pub ok: bool,
    /// What it proved, or why it failed.
    pub detail: String,
    /// What it does not prove, in words for the person relying on it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub not_proved: String,
}

/// What the person verifying knows from elsewhere, and chooses to accept.
#[derive(Debug, Default, Clone, Copy)]
pub struct Trust<'a> {
    /// The server key the coalition published: required for a pass.
    pub server_key: Option<&'a str>,
    /// The disclosing reviewer's custody key: required for a pass, like the server key,
    /// since a custody record anyone re-signed with a key of their own would otherwise
    /// verify.
    pub custody_key: Option<&'a str>,
    /// Accept a custody record that is unsigned, or signed by a key not compared with
    /// the reviewer's (the report says so).
    pub accept_unverified_custody: bool,
}

/// One disclosed file.
#[derive(Debug, Clone, Serialize)]
pub struct VerifiedFile {
    pub submission: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saved_as: Option<String>,
    pub size: Option<u64>,
    pub ciphertext_sha256: String,
    pub plaintext_sha256: Option<String>,
    pub received_at: String,
    pub log_index: Option<u64>,
    pub checkpoint_size: u64,
    pub verified: bool,
}

#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub case: String,
    pub server_key: String,
    pub signer: Option<String>,
    pub checks: Vec<Check>,
    pub files: Vec<VerifiedFile>,
    /// Whether the server key was compared with one the user gave (`--server-key`).
    /// Without that, the checks prove the package is what *some* key signed; only the
    /// published key ties it to the coalition's server, and there is no pass.
    pub server_key_pinned: bool,
    /// Who the survivor said may read the case, as the custody record states it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consent: Option<String>,
    /// The reviewer's reason for disclosing against that consent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consent_override: Option<String>,
    /// The custody record is unsigned, or its signer was not compared with the
    /// reviewer's key, and it was accepted by `--accept-unverified-custody`.
    pub accepted_unverified_custody: bool,
    pub verified: bool,
}

impl VerifyReport {
    fn check(&mut self, what: impl Into<String>, result: Result<String, String>) -> bool {
        self.check_limited(what, result, "")
    }

    /// A check, and what it does not prove even when it holds.
    fn check_limited(
        &mut self,
        what: impl Into<String>,
        result: Result<String, String>,
        not_proved: &str,
    ) -> bool {
        let (ok, detail) = match result {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        self.checks.push(Check { what: what.into(), ok, detail, not_proved: not_proved.into() });
        ok
    }

    /// The verdict in one line.
    pub fn verdict(&self) -> &'static str {
        if self.verified {
            "EVERY CHECK PASSED"
        } else if !self.server_key_pinned && self.checks.iter().filter(|c| !c.ok).count() == 1 {
            "NOT VERIFIED: the server key was not compared with the published one"
        } else {
            "VERIFICATION FAILED"
        }
    }

    /// What the verdict rests on that the reader should know, in words for them.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if !self.server_key_pinned {
            notes.push(format!(
                "The package names server key {}. Run verify again with --server-key and the key \
                 the coalition published for its server: only that comparison ties these files \
                 to its log, and without it there is no pass.",
                self.server_key
            ));
        }
        if self.accepted_unverified_custody {
            notes.push(
                "The custody record was accepted without a signature by the reviewer's known \
                 key, because --accept-unverified-custody was given: who disclosed this, to whom \
                 and when, and the survivor's consent, rest on no signature you checked."
                    .into(),
            );
        }
        if let Some(reason) = &self.consent_override {
            notes.push(format!(
                "The survivor's consent ({}) does not include a lawyer. The reviewer disclosed \
                 the case anyway, giving this reason under their signature: {reason}",
                self.consent.as_deref().unwrap_or("not stated")
            ));
        }
        notes
    }

    /// The old one-line caveat, kept for the HTML report.
    pub fn caveat(&self) -> Option<String> {
        let notes = self.notes();
        (!notes.is_empty()).then(|| notes.join(" "))
    }

    fn all_ok(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }

    /// Compares the server key with the published one; without one there is no pass.
    /// Added last, after every check the package can be held to by itself.
    fn pin(&mut self, expected: Option<&str>) {
        let what = "server key is the one the coalition published";
        let Some(expected) = expected else {
            self.check(
                what,
                Err("not compared: give --server-key with the key the coalition published".into()),
            );
            return;
        };
        self.server_key_pinned = true;
        let result = if self.server_key == expected.trim() {
            Ok("matches --server-key".to_string())
        } else {
            Err(format!("it is {}, not the key you gave", self.server_key))
        };
        self.check_limited(
            what,
            result,
            "that the key you gave is the coalition's: check where you got it",
        );
    }

    /// The final verdict: every check, the server key's comparison included.
    fn conclude(&mut self, trust: &Trust<'_>) {
        self.pin(trust.server_key);
        self.verified = self.all_ok();
    }
}

const MAX_SMALL: u64 = 64 << 20;

/// What `amanat verify` was given, by its first bytes: a receipt (JSON), a bundle or a
/// disclosure package (tar).
pub fn verify_any(
    path: &Path,
    identities: Option<&[age::x25519::Identity]>,
    out: Option<&Path>,
    trust: &Trust<'_>,
) -> Result<VerifyReport, String> {
    let head = {
        let mut head = Vec::new();
        fs::File::open(path)
            .and_then(|f| f.take(512).read_to_end(&mut head))
            .map_err(|e| e.to_string())?;
        head
    };
    if head.trim_ascii_start().starts_with(b"{") {
        verify_receipt(path, trust)
    } else if head.starts_with(b"bundle.json") {
        verify_bundle(path, trust)
    } else {
        verify_disclosure(path, identities, out, trust)
    }
}

fn empty_report(case: &str, server_key: &str) -> VerifyReport {
    VerifyReport {
        case: case.into(),
        server_key: server_key.into(),
        signer: None,
        checks: Vec::new(),
        files: Vec::new(),
        server_key_pinned: false,
        consent: None,
        consent_override: None,
        accepted_unverified_custody: false,
        verified: false,
    }
}

/// What a log inclusion check does not prove.
const NOT_PROVED_BY_LOG: &str = "when it happened or who sent it; and the hour of receipt is \
                                 the server's own clock, not an outside party's";

/// A receipt on its own: its leaf, leaf hash, inclusion proof and signed checkpoint.
fn verify_receipt(path: &Path, trust: &Trust<'_>) -> Result<VerifyReport, String> {
    let bytes = fs::read(path).map_err(|e| e.to_string())?;
    let receipt: log::Receipt =
        serde_json::from_slice(&bytes).map_err(|e| format!("not an amanat receipt: {e}"))?;
    let mut report = empty_report(&receipt.submission, &receipt.server_key);
    let result = receipt
        .server_key
        .parse::<VerifierKey>()
        .and_then(|key| receipt.verify_standalone(&key))
        .map(|cp| {
            format!(
                "leaf {} in the log of {} entries, signed by the server",
                receipt.leaf_index, cp.size
            )
        });
    report.check_limited(
        format!("submission {} is in the server's log", receipt.submission),
        result,
        NOT_PROVED_BY_LOG,
    );
    report.conclude(trust);
    Ok(report)
}

/// A bundle on its own: its log holds together, every record is in it, every object is
/// the one its id names. (Decryption is `amanat open`'s job.)
fn verify_bundle(path: &Path, trust: &Trust<'_>) -> Result<VerifyReport, String> {
    let bundle = crate::bundle::Bundle::open(path).map_err(|e| e.to_string())?;
    let mut report = empty_report(&bundle.index.bundle, &bundle.index.log.server_key);
    let log = super::state::ReviewState::ephemeral().check(&bundle.index.log);
    let ok = report.check(
        "the bundle's checkpoint and its earlier checkpoints",
        log.as_ref().map(|l| format!("log size {}", l.checkpoint.size)).map_err(Clone::clone),
    );
    if let (true, Ok(log)) = (ok, &log) {
        for record in &bundle.index.submissions {
            let included = super::in_log(&bundle, log, record)
                .map(|()| format!("received {}", record.received_at));
            report.check(format!("submission {} is in the server's log", record.id), included);
        }
    }
    for id in bundle.index.objects() {
        let same = match bundle.object(&id) {
            None => Err("missing from the bundle".to_string()),
            Some(r) => {
                r.and_then(envelope::object_id_of).map_err(|e| e.to_string()).and_then(|actual| {
                    if actual == id {
                        Ok("bit-identical".into())
                    } else {
                        Err("altered".into())
                    }
                })
            }
        };
        report.check(format!("object {id}"), same);
    }
    report.conclude(trust);
    Ok(report)
}

/// Verifies a disclosure package; with `identities`, also decrypts and checks every
/// file, writing them under `out` only when everything holds.
pub fn verify_disclosure(
    path: &Path,
    identities: Option<&[age::x25519::Identity]>,
    out: Option<&Path>,
    trust: &Trust<'_>,
) -> Result<VerifyReport, String> {
    let package = Package::read(path, INDEX_NAME, |name| {
        is_id_member(name, "objects/")
            || is_id_member(name, "keys/")
            || [CUSTODY_NAME, CUSTODY_SIGNATURE_NAME, VERIFY_NAME].contains(&name)
    })
    .map_err(|e| e.to_string())?;
    let index: DisclosureIndex = serde_json::from_slice(&package.index)
        .map_err(|e| format!("disclosure.json is not valid: {e}"))?;
    if index.schema != DISCLOSURE_SCHEMA {
        return Err(format!("not a disclosure package (schema {:?})", index.schema));
    }
    let mut report = empty_report(&index.case, &index.server_key);
    let key: Option<VerifierKey> = index.server_key.parse().ok();
    report.check(
        "server key",
        key.as_ref().map(|_| index.server_key.clone()).ok_or("not a server key".into()),
    );
    report.check("what the package discloses", package_shape(&index));

    // The log: each submission is a leaf under a checkpoint signed by the server key.
    let mut sizes = std::collections::HashMap::new();
    for s in &index.submissions {
        let id = &s.record.id;
        let checkpoint = key
            .as_ref()
            .ok_or("no server key".to_string())
            .and_then(|k| Checkpoint::verify(&s.checkpoint, k));
        let cp_size = checkpoint.as_ref().map(|c| c.size).unwrap_or(0);
        sizes.insert(id.clone(), cp_size);
        report.check(
            format!("checkpoint of submission {id} signed by the server"),
            checkpoint.as_ref().map(|c| format!("log size {}", c.size)).map_err(Clone::clone),
        );
        let included = checkpoint.and_then(|c| {
            let proof = log::decode_hashes(&s.inclusion_proof)?;
            let index = s.record.log_index.ok_or("no leaf index")?;
            merkle::verify_inclusion(
                &s.record.log_leaf().canonical_bytes(),
                index,
                c.size,
                &c.root,
                &proof,
            )
            .map(|()| format!("leaf {index}, received {}", s.record.received_at))
        });
        report.check_limited(
            format!("submission {id} is in the server's log"),
            included,
            NOT_PROVED_BY_LOG,
        );
    }

    // The objects: each exactly the bytes the server logged.
    let objects = index.objects();
    for id in &objects {
        let same = match package.member(&object_member(id)) {
            None => Err("missing from the package".to_string()),
            Some(reader) => reader
                .and_then(envelope::object_id_of)
                .map_err(|e| e.to_string())
                .and_then(|actual| {
                    if actual == *id {
                        Ok("bit-identical".into())
                    } else {
                        Err("altered".into())
                    }
                }),
        };
        report.check(format!("object {id}"), same);
    }

    // The custody record, and the instructions it covers.
    check_custody(&package, &index, &objects, trust, &mut report);

    // The plaintext, with the lawyer's key; only from a package whose every check so
    // far held (a forged index must not steer what is decrypted or where it is written).
    let sound = report.all_ok();
    if identities.is_some() && !sound {
        report.check(
            "files",
            Err("not decrypted: the checks above failed, so nothing in this package is trusted"
                .into()),
        );
    }
    if let (Some(identities), true) = (identities, sound) {
        let staging = out.map(|o| o.join(".verifying"));
        if let Some(dir) = &staging {
            let _ = fs::remove_dir_all(dir);
            fs::create_dir_all(dir).map_err(|e| format!("cannot write {}: {e}", dir.display()))?;
        }
        for s in &index.submissions {
            decrypt_submission(&package, s, identities, staging.as_deref(), &sizes, &mut report);
        }
        report.conclude(trust);
        if let (Some(staging), Some(out)) = (&staging, out) {
            let moved = if report.verified { move_into(staging, out) } else { Ok(()) };
            // Nothing decrypted stays behind when anything failed.
            let _ = fs::remove_dir_all(staging);
            moved.map_err(|e| format!("cannot write the files to {}: {e}", out.display()))?;
        }
    } else {
        for s in &index.submissions {
            for id in s.record.object_ids() {
                report.files.push(VerifiedFile {
                    submission: s.record.id.clone(),
                    name: if id == s.record.manifest {
                        "(manifest)".into()
                    } else {
                        "(encrypted)".into()
                    },
                    saved_as: None,
                    size: None,
                    ciphertext_sha256: id.to_string(),
                    plaintext_sha256: None,
                    received_at: s.record.received_at.clone(),
                    log_index: s.record.log_index,
                    checkpoint_size: sizes.get(&s.record.id).copied().unwrap_or(0),
                    verified: report.all_ok(),
                });
            }
        }
        report.conclude(trust);
    }
    if let Some(out) = out {
        fs::create_dir_all(out).map_err(|e| e.to_string())?;
        fs::write(out.join("report.txt"), report_text(&report)).map_err(|e| e.to_string())?;
        let html = ReportPage { report: &report }.render().map_err(|e| e.to_string())?;
        fs::write(out.join("report.html"), html).map_err(|e| e.to_string())?;
    }
    Ok(report)
}

/// The index itself must describe one case of submissions the server could have made:
/// at least one, ids that cannot be paths, each once, all of the case.
fn package_shape(index: &DisclosureIndex) -> Result<String, String> {
    if index.submissions.is_empty() {
        return Err("no submissions: an empty package proves nothing".into());
    }
    if !super::is_submission_id(&index.case) {
        return Err("the case id is not one amanat makes".into());
    }
    let mut seen = std::collections::HashSet::new();
    for s in &index.submissions {
        let record = &s.record;
        if !super::is_submission_id(&record.id) || !seen.insert(record.id.as_str()) {
            return Err(format!("submission id {:?} is invalid or repeated", record.id));
        }
        if record.case != index.case {
            return Err(format!("submission {} belongs to another case", record.id));
        }
    }
    Ok(format!("{} submission(s) of case {}", index.submissions.len(), index.case))
}

/// Moves each verified submission folder from the staging folder into `out`.
fn move_into(staging: &Path, out: &Path) -> io::Result<()> {
    for entry in fs::read_dir(staging)? {
        let entry = entry?;
        let target = out.join(entry.file_name());
        if target.exists() {
            fs::remove_dir_all(&target)?;
        }
        fs::rename(entry.path(), target)?;
    }
    Ok(())
}

fn check_custody(
    package: &Package,
    index: &DisclosureIndex,
    objects: &[ObjectId],
    trust: &Trust<'_>,
    report: &mut VerifyReport,
) {
    let bytes = match package.read_member(CUSTODY_NAME, MAX_SMALL) {
        Some(Ok(b)) => b,
        _ => {
            report.check("custody record", Err("missing".into()));
            return;
        }
    };
    let custody: Custody = match serde_json::from_slice(&bytes) {
        Ok(c) => c,
        Err(e) => {
            report.check("custody record", Err(format!("not valid: {e}")));
            return;
        }
    };
    let mut listed: Vec<String> = objects.iter().map(ToString::to_string).collect();
    listed.sort();
    report.check_limited(
        "custody record names exactly the disclosed objects",
        if custody.objects == listed && custody.case == index.case {
            Ok(format!("to {} at {}", custody.to, custody.disclosed_at))
        } else {
            Err("it names other objects or another case".into())
        },
        "who disclosed it, to whom or when, unless its signature below holds",
    );
    report.signer = custody.by.clone();
    report.consent = (!custody.consent.is_empty()).then(|| custody.consent.clone());
    report.consent_override = custody.consent_override.clone();
    let signature = package.read_member(CUSTODY_SIGNATURE_NAME, 4096);
    let accept = trust.accept_unverified_custody;
    let mut accepted = || {
        report.accepted_unverified_custody = true;
    };
    let result = match (&custody.by, signature) {
        (None, None) if trust.custody_key.is_some() => {
            Err("not signed, though you gave the reviewer's custody key".into())
        }
        (None, None) if accept => {
            accepted();
            Ok("not signed; accepted because --accept-unverified-custody was given".into())
        }
        (None, None) => Err("not signed: anyone could have written this record (who disclosed \
                             the case, to whom, when, and the survivor's consent). Ask the \
                             reviewer for a signed package, or accept it as it is with \
                             --accept-unverified-custody (the report will say so)"
            .into()),
        (Some(by), Some(Ok(sig))) => {
            let key: Result<VerifierKey, String> = by.parse();
            let sig = base64::Engine::decode(
                &base64::engine::general_purpose::STANDARD,
                sig.trim_ascii(),
            );
            match (key, sig) {
                (Ok(key), Ok(sig)) if key.verify(&bytes, &sig) => match trust.custody_key {
                    Some(expected) if expected.trim() != by => {
                        Err(format!("signed by {by}, not by the custody key you gave"))
                    }
                    Some(_) => Ok(format!("signed by {by}, the custody key you gave")),
                    None if accept => {
                        accepted();
                        Ok(format!(
                            "signed by {by}, not compared with the reviewer's key; accepted \
                             because --accept-unverified-custody was given"
                        ))
                    }
                    None => Err(format!(
                        "signed by {by}, a key not compared with the reviewer's: anyone can \
                         re-sign an altered record with a key of their own. Run again with \
                         --custody-key and the key the reviewer gave you"
                    )),
                },
                _ => Err("the custody signature does not verify: the record was altered".into()),
            }
        }
        (Some(_), None) => {
            Err("the custody record names a signer but its signature is missing".into())
        }
        _ => Err("custody signature and signer do not match".into()),
    };
    report.check("custody signature", result);

    // VERIFY.txt: covered by the signed record's hash, or (a package from before that)
    // the text this package's index gives, word for word.
    let text = package.read_member(VERIFY_NAME, MAX_SMALL);
    let result = match (text, &custody.verify_txt_sha256) {
        (Some(Ok(text)), Some(hash)) if ObjectId::of(&text).as_str() == hash => {
            Ok("covered by the custody record".to_string())
        }
        (Some(Ok(_)), Some(_)) => Err("it was rewritten after the package was made".into()),
        (Some(Ok(text)), None) if text == super::disclose::verify_text(index).as_bytes() => {
            Ok("the instructions amanat writes for this package".into())
        }
        (Some(Ok(_)), None) => Err("it is not the text amanat writes for this package".into()),
        _ => Err("missing".into()),
    };
    report.check("VERIFY.txt", result);
}

fn decrypt_submission(
    package: &Package,
    s: &super::disclose::DisclosedSubmission,
    identities: &[age::x25519::Identity],
    staging: Option<&Path>,
    sizes: &std::collections::HashMap<String, u64>,
    report: &mut VerifyReport,
) {
    let id = &s.record.id;
    let manifest = open_small(package, &s.record.manifest, identities).and_then(|plain| {
        serde_json::from_slice::<Manifest>(&plain)
            .map_err(|e| format!("the manifest is not valid: {e}"))
    });
    let manifest = manifest
        .and_then(|m| super::check_manifest(&m, &s.record).map(|()| m))
        .map_err(|e| report.check(format!("manifest of submission {id}"), Err(e)));
    let Ok(manifest) = manifest else { return };
    report.check(
        format!("manifest of submission {id}"),
        Ok("decrypted with its disclosed key; names exactly the logged files".into()),
    );
    let dir = staging.map(|d| d.join(id));
    if let Some(dir) = &dir {
        let _ = fs::create_dir_all(dir.join("evidence"));
        let _ = fs::write(
            dir.join("testimony.json"),
            serde_json::to_vec_pretty(&manifest).unwrap_or_default(),
        );
    }
    let mut taken = TakenNames::default();
    for attachment in &manifest.attachments {
        let saved_as = safe_name(&attachment.name, &mut taken);
        let result = ObjectId::parse(&attachment.object)
            .ok_or("invalid object id".to_string())
            .and_then(|oid| {
                let key = file_key(package, &oid, identities)?;
                let reader = package
                    .member(&object_member(&oid))
                    .ok_or("object missing")?
                    .map_err(|e| e.to_string())?;
                let sink: Box<dyn io::Write + Send> = match &dir {
                    Some(d) => Box::new(io::BufWriter::new(
                        fs::File::create(d.join("evidence").join(&saved_as))
                            .map_err(|e| e.to_string())?,
                    )),
                    None => Box::new(io::sink()),
                };
                let (mut sink, opened) =
                    envelope::open_object_with_file_key(reader, &key, sink, Some(attachment.size))
                        .map_err(|e| e.to_string())?;
                sink.flush().map_err(|e| e.to_string())?;
                if opened.id != oid {
                    return Err("the object does not match its id".into());
                }
                if opened.plaintext_sha256 != attachment.sha256
                    || opened.plaintext_len != attachment.size
                {
                    return Err("the file does not match the manifest's SHA-256 and size".into());
                }
                Ok(opened)
            });
        let ok = report.check(
            format!("file {saved_as:?} of submission {id}"),
            result
                .as_ref()
                .map(|o| format!("{} bytes, sha256 {}", o.plaintext_len, o.plaintext_sha256))
                .map_err(Clone::clone),
        );
        report.files.push(VerifiedFile {
            submission: id.clone(),
            name: attachment.name.clone(),
            saved_as: dir.as_ref().map(|_| format!("{id}/evidence/{saved_as}")),
            size: Some(attachment.size),
            ciphertext_sha256: attachment.object.clone(),
            plaintext_sha256: Some(attachment.sha256.clone()),
            received_at: manifest.received_at.clone(),
            log_index: s.record.log_index,
            checkpoint_size: sizes.get(id).copied().unwrap_or(0),
            verified: ok,
        });
    }
}

use std::io::Write as _;

/// The disclosed file key of one object, decrypted with the lawyer's identity.
fn file_key(
    package: &Package,
    id: &ObjectId,
    identities: &[age::x25519::Identity],
) -> Result<Zeroizing<[u8; 16]>, String> {
    let sealed = package
        .member(&key_member(id))
        .ok_or("its file key is missing")?
        .map_err(|e| e.to_string())?;
    let mut plain = Zeroizing::new(Vec::new());
    envelope::open_object(sealed, identities, &mut *plain)
        .map_err(|e| format!("its file key cannot be read with your identity: {e}"))?;
    let bytes: [u8; 16] =
        plain.as_slice().try_into().map_err(|_| "the file key is not 16 bytes".to_string())?;
    Ok(Zeroizing::new(bytes))
}

/// A small object (a manifest) decrypted with its disclosed key, in memory.
fn open_small(
    package: &Package,
    id: &ObjectId,
    identities: &[age::x25519::Identity],
) -> Result<Zeroizing<Vec<u8>>, String> {
    let key = file_key(package, id, identities)?;
    let reader = package
        .member(&object_member(id))
        .ok_or("the manifest object is missing")?
        .map_err(|e| e.to_string())?;
    let mut limited = Vec::new();
    reader.take(MAX_SMALL).read_to_end(&mut limited).map_err(|e| e.to_string())?;
    let mut plain = Zeroizing::new(Vec::new());
    let (_, opened) = envelope::open_object_with_file_key(&limited[..], &key, &mut *plain, None)
        .map_err(|e| e.to_string())?;
    if opened.id != *id {
        return Err("the manifest object does not match its id".into());
    }
    Ok(plain)
}

fn report_text(report: &VerifyReport) -> String {
    let mut t = format!(
        "amanat verification report\ncase {}\nserver key {}\ncustody signer {}\nconsent {}\nverdict: {}\n\n",
        report.case,
        report.server_key,
        report.signer.as_deref().unwrap_or("(unsigned)"),
        report.consent.as_deref().unwrap_or("(not stated)"),
        report.verdict()
    );
    for note in report.notes() {
        t.push_str(&format!("NOTE: {note}\n"));
    }
    t.push_str("\nCHECKS\n");
    for c in &report.checks {
        t.push_str(&format!("[{}] {}: {}\n", if c.ok { "ok" } else { "FAIL" }, c.what, c.detail));
        if !c.not_proved.is_empty() {
            t.push_str(&format!("     does not prove: {}\n", c.not_proved));
        }
    }
    t.push_str("\nFILES\n");
    for f in &report.files {
        t.push_str(&format!(
            "{} {:?} size {} ciphertext sha256 {} plaintext sha256 {} received {} leaf {} checkpoint size {}\n",
            if f.verified { "ok  " } else { "FAIL" },
            f.name,
            f.size.map(|s| s.to_string()).unwrap_or("-".into()),
            f.ciphertext_sha256,
            f.plaintext_sha256.as_deref().unwrap_or("-"),
            f.received_at,
            f.log_index.map(|i| i.to_string()).unwrap_or("-".into()),
            f.checkpoint_size
        ));
    }
    t
}

use askama::Template;

#[derive(Template)]
#[template(path = "verification.html")]
struct ReportPage<'a> {
    report: &'a VerifyReport,
}
