//! Disclosure packages: one case for one lawyer. The package carries the objects exactly
//! as the server received them, each with its age file key encrypted to the lawyer (so
//! the lawyer decrypts the very bytes the server logged; nothing is re-encrypted), the
//! log evidence (server key, signed checkpoints, inclusion proofs), and a custody record
//! signed by the disclosing reviewer.

use super::ReviewError;
use crate::bundle::disclosure::{
    key_member, Custody, DisclosedSubmission, DisclosureIndex, CUSTODY_NAME, CUSTODY_SCHEMA,
    CUSTODY_SIGNATURE_NAME, DISCLOSURE_SCHEMA, INDEX_NAME, VERIFY_NAME,
};
use crate::bundle::{object_member, Bundle, PackageWriter};
use crate::durable::NewFile;
use crate::envelope;
use crate::keys::{Recipients, SigningKey};
use crate::log::ReviewState;
use serde::Serialize;
use std::fs;
use std::path::{Path, PathBuf};

/// What `amanat disclose` made.
#[derive(Debug, Serialize)]
pub struct DisclosureSummary {
    pub case: String,
    pub submissions: usize,
    pub objects: usize,
    pub bytes: u64,
}

pub struct DiscloseRequest<'a> {
    pub bundles: &'a [PathBuf],
    pub identities: &'a [age::x25519::Identity],
    /// The reviewer's opened cases: a case is disclosed only once it was opened here.
    pub cases: &'a Path,
    pub case: &'a str,
    /// The lawyer's age recipient.
    pub to: &'a str,
    pub signer: Option<&'a SigningKey>,
    pub out: &'a Path,
    /// Disclose although the survivor's consent does not cover a lawyer, for this
    /// reason (it goes into the signed custody record and the lawyer's report).
    pub override_consent: Option<&'a str>,
}

/// One opened submission of a case, as its folder's testimony.json says.
struct OpenedSubmission {
    id: String,
    /// Its place in the log (folders opened before it was recorded have none).
    log_index: Option<u64>,
    received_at: String,
    consent: Option<String>,
}

/// Every submission of `case` opened into `cases`.
fn opened_submissions(cases: &Path, case: &str) -> Result<Vec<OpenedSubmission>, ReviewError> {
    let mut out = Vec::new();
    let entries = fs::read_dir(cases).map_err(|e| format!("{}: {e}", cases.display()))?;
    for entry in entries.flatten() {
        let Ok(bytes) = fs::read(entry.path().join("testimony.json")) else { continue };
        let Ok(opened) = serde_json::from_slice::<super::report::Case>(&bytes) else { continue };
        if opened.case != case {
            continue;
        }
        let consent = opened
            .fields
            .iter()
            .find(|f| f.name == crate::form::CONSENT_FIELD)
            .map(|f| f.value.clone());
        out.push(OpenedSubmission {
            id: opened.submission,
            log_index: opened.log_index,
            received_at: opened.received_at,
            consent,
        });
    }
    Ok(out)
}

/// The survivor's latest consent answer among the opened submissions (by their place
/// in the log, else their hour).
fn latest_consent(opened: &[OpenedSubmission]) -> Option<String> {
    opened
        .iter()
        .filter(|o| o.consent.is_some())
        .max_by(|a, b| (a.log_index, &a.received_at).cmp(&(b.log_index, &b.received_at)))
        .and_then(|o| o.consent.clone())
}

pub fn disclose(
    req: &DiscloseRequest<'_>,
    state: &mut ReviewState,
) -> Result<DisclosureSummary, ReviewError> {
    if !crate::record::is_submission_id(req.case) {
        return Err(format!("{:?} is not a case id (32 hex characters)", req.case).into());
    }
    if !req.cases.join(req.case).join("testimony.json").is_file() {
        return Err(format!(
            "case {} is not among the opened cases in {}: open and read it before disclosing",
            req.case,
            req.cases.display()
        )
        .into());
    }
    let lawyer = Recipients::parse(req.to)
        .ok()
        .filter(|r| r.len() == 1)
        .ok_or("--to must be one age recipient (age1...)")?;
    if req.out.exists() {
        return Err(
            format!("{} exists; a package never overwrites a file", req.out.display()).into()
        );
    }

    // Every submission of the case, from bundles whose log verifies.
    let mut bundles = Vec::new();
    for path in req.bundles {
        // A replica's pull file gives each server's bundle, rebuilt from its journal.
        let opened = match super::replica::bundles_in(path, req.identities, state) {
            Some(rebuilt) => rebuilt.map_err(|e| format!("{}: {e}", path.display()))?,
            None => vec![Bundle::open(path).map_err(|e| format!("{}: {e}", path.display()))?],
        };
        for bundle in opened {
            let attestations =
                bundle.attestations().map_err(|e| format!("{}: {e}", path.display()))?;
            let verified = state
                .check_attested(&bundle.index.log, &attestations)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            bundles.push((bundle, verified));
        }
    }
    let mut server_key = None;
    let mut submissions: Vec<(usize, DisclosedSubmission)> = Vec::new();
    for (n, (bundle, verified)) in bundles.iter().enumerate() {
        for record in &bundle.index.submissions {
            // The case is part of the logged leaf, so in_log below also proves the
            // submission belongs to this case.
            if record.case != req.case || submissions.iter().any(|(_, s)| s.record.id == record.id)
            {
                continue;
            }
            super::in_log(&bundle.index.log, verified, record)?;
            if !req.cases.join(&record.id).join("testimony.json").is_file() {
                return Err(format!(
                    "submission {} of case {} was not opened in {}: open and read it before \
                     disclosing",
                    record.id,
                    req.case,
                    req.cases.display()
                )
                .into());
            }
            if server_key.get_or_insert_with(|| verified.server_key.clone()) != &verified.server_key
            {
                return Err("the bundles come from different servers".into());
            }
            submissions.push((
                n,
                DisclosedSubmission {
                    record: record.clone(),
                    checkpoint: bundle.index.log.checkpoint.clone(),
                    inclusion_proof: bundle
                        .index
                        .log
                        .inclusion
                        .get(record.id.as_str())
                        .cloned()
                        .unwrap_or_default(),
                },
            ));
        }
    }
    let server_key =
        server_key.ok_or_else(|| format!("case {} is in none of the bundles", req.case))?;
    // Every submission of the case opened here goes into the package: a bundle left
    // out must not leave out the survivor's latest word on who may read it.
    let opened = opened_submissions(req.cases, req.case)?;
    for OpenedSubmission { id, .. } in &opened {
        if !submissions.iter().any(|(_, s)| s.record.id == *id) {
            return Err(format!(
                "submission {id} of case {} was opened in {} but is in none of the bundles \
                 given: pass its bundle too, so that the package holds the whole case and the \
                 survivor's latest consent",
                req.case,
                req.cases.display()
            )
            .into());
        }
    }
    let consent = latest_consent(&opened);
    let allowed = consent.as_deref().is_some_and(crate::form::consent_lets_lawyers_read);
    let consent_override = match (allowed, req.override_consent.map(str::trim)) {
        (true, _) => None,
        (false, Some(reason))
            if reason.chars().count() >= 10 && !reason.chars().any(char::is_control) =>
        {
            Some(reason.to_string())
        }
        (false, Some(_)) => {
            return Err("--override-consent needs a reason of at least 10 characters, on one \
                        line: it goes into the signed custody record and the lawyer's report"
                .into())
        }
        (false, None) => {
            return Err(match &consent {
                Some(c) => format!(
                    "the survivor of case {} said who may read it: {c:?}, which does not include \
                     a lawyer. Nothing was written. Ask the survivor, or if there is a reason \
                     that outweighs it, give it: --override-consent \"REASON\" (it is signed \
                     into the package and shown to the lawyer)",
                    req.case
                )
                .into(),
                None => format!(
                    "the survivor of case {} did not say whether a lawyer may read it (no \
                     consent answer in any of its submissions). Nothing was written. Ask the \
                     survivor, or give the reason to disclose anyway: --override-consent \
                     \"REASON\"",
                    req.case
                )
                .into(),
            })
        }
    };
    let index = DisclosureIndex {
        schema: DISCLOSURE_SCHEMA.into(),
        case: req.case.into(),
        server_key,
        submissions: submissions.iter().map(|(_, s)| s.clone()).collect(),
    };
    let mut objects: Vec<String> = index.objects().iter().map(ToString::to_string).collect();
    objects.sort();
    // The attestations bracketing each submission, from the bundle that proves it.
    // Exports first: where two bundles carry a file of one name, the server's own copy
    // is kept over one from a bucket anyone holding it can write.
    let mut attestations = std::collections::BTreeMap::new();
    let mut in_order: Vec<&(usize, DisclosedSubmission)> = submissions.iter().collect();
    in_order.sort_by_key(|(n, _)| bundles[*n].0.from_replica());
    for (n, submission) in in_order {
        let (bundle, verified) = &bundles[*n];
        let members = bundle.attestations().map_err(|e| e.to_string())?;
        let leaves = submission.record.log_index;
        for (name, bytes) in
            crate::log::attested::select_members(&members, leaves, verified.checkpoint.size)
        {
            // The same checkpoint from two bundles: the witnesses' cosignatures of both
            // (a later export may carry more); of any other file, the first copy.
            match attestations.entry(name) {
                std::collections::btree_map::Entry::Vacant(entry) => {
                    entry.insert(bytes);
                }
                std::collections::btree_map::Entry::Occupied(mut entry)
                    if entry.key().ends_with(".cosigned") =>
                {
                    if let Some(merged) = crate::log::attested::merge_cosigned(entry.get(), &bytes)
                    {
                        entry.insert(merged);
                    }
                }
                std::collections::btree_map::Entry::Occupied(_) => {}
            }
        }
    }
    let verify_txt = verify_text_with_attestations(&index, attestations.keys());
    let custody = Custody {
        schema: CUSTODY_SCHEMA.into(),
        case: req.case.into(),
        disclosed_at: crate::record::Hour::now(),
        to: req.to.trim().into(),
        by: req.signer.map(|k| k.verifier().to_string()),
        objects,
        consent: consent.unwrap_or_else(|| "not stated".into()),
        consent_override,
        verify_txt_sha256: Some(crate::envelope::ObjectId::of(verify_txt.as_bytes()).to_string()),
        attestations: Some(
            attestations
                .iter()
                .map(|(name, bytes)| {
                    (name.clone(), crate::envelope::ObjectId::of(bytes).to_string())
                })
                .collect(),
        ),
    };
    let custody_bytes = serde_json::to_vec_pretty(&custody).map_err(|e| e.to_string())?;

    let io_err = |e: std::io::Error| format!("writing the package {}: {e}", req.out.display());
    let mut package = PackageWriter::new(NewFile::create(req.out).map_err(io_err)?);
    let json = serde_json::to_vec_pretty(&index).map_err(|e| e.to_string())?;
    package.bytes(INDEX_NAME, &json).map_err(io_err)?;
    package.bytes(CUSTODY_NAME, &custody_bytes).map_err(io_err)?;
    if let Some(signer) = req.signer {
        let signature = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            signer.sign(&custody_bytes),
        );
        package.bytes(CUSTODY_SIGNATURE_NAME, signature.as_bytes()).map_err(io_err)?;
    }
    package.bytes(VERIFY_NAME, verify_txt.as_bytes()).map_err(io_err)?;
    for (name, bytes) in &attestations {
        package.bytes(name, bytes).map_err(io_err)?;
    }
    for (n, submission) in &submissions {
        let bundle = &bundles[*n].0;
        for id in submission.record.object_ids() {
            let read = || {
                bundle
                    .object(&id)
                    .ok_or(format!("object {id} is missing from the bundle"))?
                    .map_err(|e| e.to_string())
            };
            envelope::check_object(read()?, &id)
                .map_err(|e| format!("object {id} in the bundle: {e}"))?;
            let file_key = envelope::file_key_of(read()?, req.identities)
                .map_err(|e| format!("object {id}: {e}"))?;
            let (sealed_key, _) = envelope::seal_bytes(&lawyer, &file_key[..], Vec::new())
                .map_err(|e| e.to_string())?;
            let len = bundle.object_len(&id).unwrap_or(0);
            package.reader(&object_member(&id), len, read()?).map_err(io_err)?;
            package.bytes(&key_member(&id), &sealed_key).map_err(io_err)?;
        }
    }
    // Published only whole: dropped on any error above, the side file goes with it.
    let bytes = package.finish().and_then(NewFile::publish).map_err(io_err)?;
    Ok(DisclosureSummary {
        case: req.case.into(),
        submissions: index.submissions.len(),
        objects: index.objects().len(),
        bytes,
    })
}

/// How to check the package, with amanat and with standard tools only.
pub(super) fn verify_text(index: &DisclosureIndex) -> String {
    let first = index.submissions.first().map_or("", |s| s.record.id.as_str());
    format!(
        "amanat disclosure package: case {case}

WITH AMANAT (offline)
  amanat verify THIS-FILE.tar --identity YOUR-KEY.txt --out DIR \\
      --server-key 'THE SERVER KEY THE COALITION PUBLISHED' \\
      --custody-key 'THE CUSTODY KEY OF THE REVIEWER WHO DISCLOSED IT'
Checks every hash, signature and proof, decrypts every file with its disclosed key,
compares each with the sealed manifest, and writes the files and DIR/report.html.
It passes (exit 0) only with both keys: the keys inside the package could be anyone's;
only the key the coalition published ties the files to its server, and only the
reviewer's own key ties the custody record (who, to whom, when, the consent) to them.
The report says, for each check, what it proved and what it does not.

WITH STANDARD TOOLS (tar, sha256sum, age, openssl, base64)
1. Unpack:            tar -xf THIS-FILE.tar
2. Each object is named by the SHA-256 of its bytes, exactly as the server stored it:
     sha256sum objects/*.age
   On every line the hash must equal the file's name (without .age).
3. Each object's age file key is in keys/<id>.age, encrypted to you:
     age -d -i YOUR-KEY.txt keys/<id>.age | od -An -tx1
   The object itself was not re-encrypted for you: it is still encrypted to the
   coalition, and its 16-byte file key opens it. The stock age tool cannot open a file
   with a bare file key; amanat verify does, and so can any age library that accepts a
   file key (the age format specification defines the step).
   What an object decrypts to is padded, so that its stored size does not give the
   file's size away: a manifest is JSON followed by spaces; a file is the file's bytes
   followed by zero bytes. The manifest gives each file's true \"size\" and \"sha256\";
   with a key that opens the object (a coalition key holder's, with stock age):
     age -d -i KEY objects/<id>.age | head -c SIZE | sha256sum
   prints that SHA-256.
4. The server key is in disclosure.json (\"server_key\": name+keyid+BASE64). Compare it
   with the key the coalition published. Its last part, base64-decoded, is 0x01 followed
   by the 32-byte Ed25519 public key:
     echo BASE64 | base64 -d | tail -c 32 > key.raw
     (printf '\\060\\052\\060\\005\\006\\003\\053\\145\\160\\003\\041\\000'; cat key.raw) > key.der
     openssl pkey -pubin -inform DER -in key.der -out key.pem
5. Each checkpoint (\"checkpoint\" in disclosure.json) is a signed note: three lines
   (origin, tree size, base64 root), a blank line, and a line starting with an em dash,
   the origin, then BASE64(4-byte key id || 64-byte signature). Put the three lines with
   their newlines in body.txt, and the signature in sig.bin:
     echo SIGNATURE-BASE64 | base64 -d | tail -c 64 > sig.bin
     openssl pkeyutl -verify -pubin -inkey key.pem -rawin -in body.txt -sigfile sig.bin
6. Each submission's log leaf is this text (values from its record in disclosure.json;
   attachment ids sorted and space-separated), and its leaf hash is SHA-256 of a 0x00
   byte followed by it, e.g. for submission {first}:
     printf 'amanat/leaf/v1\\nkind submission\\nsubmission ID\\ncase CASE\\nreceived HOUR\\nmanifest ID\\nattachments IDS\\nrecipients FP\\n' > leaf.txt
     (printf '\\000'; cat leaf.txt) | sha256sum
   The inclusion proof (RFC 9162, leaf to root) then leads from that hash to the
   checkpoint's root: each step is SHA-256(0x01 || left || right).
   The received hour is the server's clock, written into the log when the submission
   arrived; the signed log proves what was received and in which order, and that no
   entry was changed afterwards.
7. custody.json says who disclosed which objects to whom and when, what the survivor
   consented to (\"consent\"), and, if the reviewer disclosed against it, why
   (\"consent_override\"); its \"verify_txt_sha256\" is the SHA-256 of this file.
   custody.sig is the Ed25519 signature of custody.json's exact bytes by the key in its
   \"by\" field: compare that key with the one the reviewer gave you. A package without
   custody.sig proves nothing about who disclosed it.
",
        case = index.case,
        first = first
    )
}

/// `verify_text` and the stock-tool check of each attestation the package carries.
pub(super) fn verify_text_with_attestations<'a>(
    index: &DisclosureIndex,
    attestations: impl IntoIterator<Item = &'a String>,
) -> String {
    let mut text = verify_text(index);
    text.push_str(
        "8. attestations/ holds outside parties' word on when the log held each submission:
   <size>.checkpoint is a checkpoint of the log (a signed note, as in step 5), each
   <size>.<tsa>.tsr an RFC 3161 time-stamp token over that file's exact bytes, from a
   time-stamping authority (TSA); <size>.cosigned the same note with witnesses'
   cosignature lines (C2SP tlog-cosignature); <a>-<b>.consistency the RFC 9162 proof
   that the log of a entries is the start of the log of b. A submission with leaf
   index i was received after the latest attested checkpoint of size <= i and before
   the earliest of size > i. With the TSA's certificate chain from the TSA itself:
",
    );
    let mut tokens = 0;
    for name in attestations {
        let Some((checkpoint, _tsa)) = name.strip_suffix(".tsr").and_then(|s| s.split_once('.'))
        else {
            continue;
        };
        tokens += 1;
        text.push_str(&format!(
            "     openssl ts -verify -data {checkpoint}.checkpoint -in {name} -CAfile TSA-CHAIN.pem\n"
        ));
    }
    if tokens == 0 {
        text.push_str(
            "   This package carries no time-stamp token: the received hours rest on the\n   \
             server's clock alone.\n",
        );
    }
    text
}
