//! A lawyer's check of a disclosure package: every hash, signature and proof; with the
//! lawyer's identity, every file decrypted with its disclosed key and checked against
//! the sealed manifest.

use super::{
    empty_report, report_text, same_object, ReportPage, Trust, VerifiedFile, VerifyReport,
};
use super::{MAX_SMALL, NOT_PROVED_BY_LOG};
use crate::bundle::disclosure::{
    self, key_member, Custody, DisclosedSubmission, DisclosureIndex, CUSTODY_NAME,
    CUSTODY_SIGNATURE_NAME, VERIFY_NAME,
};
use crate::bundle::Package;
use crate::envelope::{self, Manifest, ObjectId};
use crate::keys::VerifierKey;
use crate::log::{self, Checkpoint, LogError, LogLeaf};
use crate::review::{safe_name, ReviewError, TakenNames};
use askama::Template;
use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::Path;
use zeroize::Zeroizing;

/// Verifies a disclosure package; with `identities`, also decrypts and checks every
/// file, writing them under `out` only when everything holds.
pub fn verify_disclosure(
    path: &Path,
    identities: Option<&[age::x25519::Identity]>,
    out: Option<&Path>,
    trust: &Trust<'_>,
) -> Result<VerifyReport, ReviewError> {
    let (package, index) =
        disclosure::read(path).map_err(|e| ReviewError::Package(e.to_string()))?;
    let mut report = empty_report(&index.case, &index.server_key);
    let key: Option<VerifierKey> = index.server_key.parse().ok();
    report.check(
        "server key",
        key.as_ref().map(|_| index.server_key.clone()).ok_or("not a server key"),
    );
    report.check("what the package discloses", package_shape(&index));

    // The log: each submission is a leaf under a checkpoint signed by the server key.
    let mut sizes = HashMap::new();
    let mut heads = Vec::new();
    for s in &index.submissions {
        let id = &s.record.id;
        let checkpoint = key
            .as_ref()
            .ok_or_else(|| LogError::Key("no server key".into()))
            .and_then(|k| Checkpoint::verify(&s.checkpoint, k));
        let cp_size = checkpoint.as_ref().map_or(0, |c| c.size);
        sizes.insert(id.to_string(), cp_size);
        report.check(
            format!("checkpoint of submission {id} signed by the server"),
            checkpoint.as_ref().map(|c| format!("log size {}", c.size)).map_err(Clone::clone),
        );
        let included = checkpoint.and_then(|c| {
            let index =
                s.record.log_index.ok_or_else(|| LogError::Proof("no leaf index".into()))?;
            log::check_inclusion(&LogLeaf::from(&s.record), index, &s.inclusion_proof, &c)?;
            // Only a leaf proven in the log gets a time bracket.
            heads.push((id.to_string(), index, c));
            Ok(format!("leaf {index}, received {}", s.record.received_at))
        });
        report.check_limited(
            format!("submission {id} is in the server's log"),
            included,
            NOT_PROVED_BY_LOG,
        );
    }

    // Time: the outside parties' word on when the log held each submission.
    if let Some(key) = &key {
        match package.attestations() {
            Ok(members) => super::times::check_times(&members, key, &heads, trust, &mut report),
            Err(e) => {
                report.check("attestations", Err(format!("unreadable: {e}")));
            }
        }
    }

    // The objects: each exactly the bytes the server logged.
    let objects = index.objects();
    for id in &objects {
        report.check(format!("object {id}"), same_object(package.object(id), id, "package"));
    }

    // The custody record, and the instructions it covers.
    check_custody(&package, &index, &objects, trust, &mut report);

    // The plaintext, with the lawyer's key; only from a package whose every check so
    // far held (a forged index must not steer what is decrypted or where it is written).
    let sound = report.all_ok();
    if identities.is_some() && !sound {
        report.check(
            "files",
            Err("not decrypted: the checks above failed, so nothing in this package is trusted"),
        );
    }
    if let (Some(identities), true) = (identities, sound) {
        let staging = out.map(|o| o.join(".verifying"));
        if let Some(dir) = &staging {
            let _ = fs::remove_dir_all(dir);
            fs::create_dir_all(dir)
                .map_err(|e| ReviewError::Io(format!("cannot write {}: {e}", dir.display())))?;
        }
        for s in &index.submissions {
            decrypt_submission(&package, s, identities, staging.as_deref(), &sizes, &mut report);
        }
        report.attach_times();
        report.conclude(trust);
        if let (Some(staging), Some(out)) = (&staging, out) {
            let moved = if report.verified { move_into(staging, out) } else { Ok(()) };
            // Nothing decrypted stays behind when anything failed.
            let _ = fs::remove_dir_all(staging);
            moved.map_err(|e| {
                ReviewError::Io(format!("cannot write the files to {}: {e}", out.display()))
            })?;
        }
    } else {
        for s in &index.submissions {
            for id in s.record.object_ids() {
                report.files.push(VerifiedFile {
                    submission: s.record.id.to_string(),
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
                    checkpoint_size: sizes.get(s.record.id.as_str()).copied().unwrap_or(0),
                    attested: String::new(),
                    verified: report.all_ok(),
                });
            }
        }
        report.attach_times();
        report.conclude(trust);
    }
    if let Some(out) = out {
        let io = |e: io::Error| ReviewError::Io(format!("{}: {e}", out.display()));
        fs::create_dir_all(out).map_err(io)?;
        fs::write(out.join("report.txt"), report_text(&report)).map_err(io)?;
        let html = ReportPage { report: &report }.render().map_err(|e| io(io::Error::other(e)))?;
        fs::write(out.join("report.html"), html).map_err(io)?;
    }
    Ok(report)
}

/// The index itself must describe one case of submissions the server could have made:
/// at least one, ids that cannot be paths, each once, all of the case.
fn package_shape(index: &DisclosureIndex) -> Result<String, ReviewError> {
    let wrong = |why: String| Err(ReviewError::Package(why));
    if index.submissions.is_empty() {
        return wrong("no submissions: an empty package proves nothing".into());
    }
    if !crate::record::is_submission_id(&index.case) {
        return wrong("the case id is not one amanat makes".into());
    }
    let mut seen = std::collections::HashSet::new();
    for s in &index.submissions {
        let record = &s.record;
        if !record.id.is_well_formed() || !seen.insert(record.id.as_str()) {
            return wrong(format!("submission id {:?} is invalid or repeated", record.id));
        }
        if record.case != index.case {
            return wrong(format!("submission {} belongs to another case", record.id));
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
    let Some(Ok(bytes)) = package.read_member(CUSTODY_NAME, MAX_SMALL) else {
        report.check("custody record", Err("missing"));
        return;
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
            Err("it names other objects or another case".to_string())
        },
        "who disclosed it, to whom or when, unless its signature below holds",
    );
    report.signer.clone_from(&custody.by);
    report.consent = (!custody.consent.is_empty()).then(|| custody.consent.clone());
    report.consent_override.clone_from(&custody.consent_override);
    let signature = package.read_member(CUSTODY_SIGNATURE_NAME, 4096);
    let accept = trust.accept_unverified_custody;
    let mut accepted = || {
        report.accepted_unverified_custody = true;
    };
    let result = match (&custody.by, signature) {
        (None, None) if trust.custody_key.is_some() => {
            Err("not signed, though you gave the reviewer's custody key".to_string())
        }
        (None, None) if accept => {
            accepted();
            Ok("not signed; accepted because --accept-unverified-custody was given".into())
        }
        (None, None) => Err("not signed: anyone could have written this record (who disclosed \
                             the case, to whom, when, and the survivor's consent). Ask the \
                             reviewer for a signed package, or accept it as it is with \
                             --accept-unverified-custody (the report will say so)"
            .to_string()),
        (Some(by), Some(Ok(sig))) => {
            let key = by.parse::<VerifierKey>();
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
                _ => {
                    Err("the custody signature does not verify: the record was altered".to_string())
                }
            }
        }
        (Some(_), None) => {
            Err("the custody record names a signer but its signature is missing".to_string())
        }
        _ => Err("custody signature and signer do not match".to_string()),
    };
    report.check("custody signature", result);

    // VERIFY.txt: covered by the signed record's hash, or (a package from before that)
    // the text this package's index gives, word for word.
    let text = package.read_member(VERIFY_NAME, MAX_SMALL);
    let result = match (text, &custody.verify_txt_sha256) {
        (Some(Ok(text)), Some(hash)) if ObjectId::of(&text).as_str() == hash => {
            Ok("covered by the custody record".to_string())
        }
        (Some(Ok(_)), Some(_)) => Err("it was rewritten after the package was made".to_string()),
        (Some(Ok(text)), None)
            if text == crate::review::disclose::verify_text(index).as_bytes() =>
        {
            Ok("the instructions amanat writes for this package".into())
        }
        (Some(Ok(_)), None) => Err("it is not the text amanat writes for this package".to_string()),
        _ => Err("missing".to_string()),
    };
    report.check("VERIFY.txt", result);

    // The attestation files: exactly those the signed record lists, byte for byte.
    let carried = package.attestations().map(|members| {
        members
            .iter()
            .map(|(name, bytes)| (name.clone(), ObjectId::of(bytes).to_string()))
            .collect::<std::collections::BTreeMap<_, _>>()
    });
    let result = match (carried, &custody.attestations) {
        (Err(e), _) => Err(format!("unreadable: {e}")),
        (Ok(carried), None) if carried.is_empty() => return,
        (Ok(_), None) => {
            Err("the package carries attestations its custody record does not list".to_string())
        }
        (Ok(carried), Some(listed)) if carried == *listed => {
            Ok(format!("{} file(s), as the custody record lists them", carried.len()))
        }
        (Ok(carried), Some(listed)) => {
            let names = |a: &std::collections::BTreeMap<String, String>,
                         b: &std::collections::BTreeMap<String, String>| {
                a.iter()
                    .filter(|(name, hash)| b.get(*name) != Some(hash))
                    .map(|(name, _)| name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            Err(format!(
                "they differ from the custody record: not as listed or not listed [{}]; listed \
                 but missing or changed [{}]",
                names(&carried, listed),
                names(listed, &carried)
            ))
        }
    };
    report.check("attestation files", result);
}

fn decrypt_submission(
    package: &Package,
    s: &DisclosedSubmission,
    identities: &[age::x25519::Identity],
    staging: Option<&Path>,
    sizes: &HashMap<String, u64>,
    report: &mut VerifyReport,
) {
    let id = &s.record.id;
    let manifest = open_small(package, &s.record.manifest, identities).and_then(|plain| {
        serde_json::from_slice::<Manifest>(&plain)
            .map_err(|e| ReviewError::Altered(format!("the manifest is not valid: {e}")))
    });
    let manifest = manifest
        .and_then(|m| crate::review::check_manifest(&m, &s.record).map(|()| m))
        .map_err(|e| report.check(format!("manifest of submission {id}"), Err(e)));
    let Ok(manifest) = manifest else { return };
    report.check(
        format!("manifest of submission {id}"),
        Ok::<_, String>("decrypted with its disclosed key; names exactly the logged files".into()),
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
        let altered = |why: &str| ReviewError::Altered(why.into());
        let io = |e: io::Error| ReviewError::Io(e.to_string());
        let result = ObjectId::parse(&attachment.object)
            .ok_or_else(|| altered("invalid object id"))
            .and_then(|oid| {
                let key = file_key(package, &oid, identities)?;
                let reader = package.object(&oid).ok_or_else(|| altered("object missing"))?;
                let sink: Box<dyn io::Write + Send> = match &dir {
                    Some(d) => Box::new(io::BufWriter::new(
                        fs::File::create(d.join("evidence").join(&saved_as)).map_err(io)?,
                    )),
                    None => Box::new(io::sink()),
                };
                let (mut sink, opened) = envelope::open_object_with_file_key(
                    reader.map_err(io)?,
                    &key,
                    sink,
                    Some(attachment.size),
                )
                .map_err(|e| ReviewError::Altered(e.to_string()))?;
                sink.flush().map_err(io)?;
                opened.check_id(&oid).map_err(|_| altered("the object does not match its id"))?;
                if opened.plaintext_sha256 != attachment.sha256
                    || opened.plaintext_len != attachment.size
                {
                    return Err(altered("the file does not match the manifest's SHA-256 and size"));
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
            submission: id.to_string(),
            name: attachment.name.clone(),
            saved_as: dir.as_ref().map(|_| format!("{id}/evidence/{saved_as}")),
            size: Some(attachment.size),
            ciphertext_sha256: attachment.object.clone(),
            plaintext_sha256: Some(attachment.sha256.clone()),
            received_at: manifest.received_at.clone(),
            log_index: s.record.log_index,
            checkpoint_size: sizes.get(id.as_str()).copied().unwrap_or(0),
            attested: String::new(),
            verified: ok,
        });
    }
}

/// The disclosed file key of one object, decrypted with the lawyer's identity.
fn file_key(
    package: &Package,
    id: &ObjectId,
    identities: &[age::x25519::Identity],
) -> Result<Zeroizing<[u8; 16]>, ReviewError> {
    let key = |why: String| ReviewError::Key(why);
    let sealed = package
        .member(&key_member(id))
        .ok_or_else(|| key("its file key is missing".into()))?
        .map_err(|e| ReviewError::Io(e.to_string()))?;
    let mut plain = Zeroizing::new(Vec::new());
    envelope::open_object(sealed, identities, &mut *plain)
        .map_err(|e| key(format!("its file key cannot be read with your identity: {e}")))?;
    let bytes: [u8; 16] =
        plain.as_slice().try_into().map_err(|_| key("the file key is not 16 bytes".into()))?;
    Ok(Zeroizing::new(bytes))
}

/// A small object (a manifest) decrypted with its disclosed key, in memory.
fn open_small(
    package: &Package,
    id: &ObjectId,
    identities: &[age::x25519::Identity],
) -> Result<Zeroizing<Vec<u8>>, ReviewError> {
    let key = file_key(package, id, identities)?;
    let altered = |why: String| ReviewError::Altered(why);
    let reader = package
        .object(id)
        .ok_or_else(|| altered("the manifest object is missing".into()))?
        .map_err(|e| ReviewError::Io(e.to_string()))?;
    let mut limited = Vec::new();
    reader.take(MAX_SMALL).read_to_end(&mut limited).map_err(|e| ReviewError::Io(e.to_string()))?;
    let mut plain = Zeroizing::new(Vec::new());
    let (_, opened) = envelope::open_object_with_file_key(&limited[..], &key, &mut *plain, None)
        .map_err(|e| altered(e.to_string()))?;
    opened.check_id(id).map_err(|_| altered("the manifest object does not match its id".into()))?;
    Ok(plain)
}
