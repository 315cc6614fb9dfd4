//! Offline review: bundles in, readable case folders out. Never opens a socket.
//!
//! Every object is decrypted with `envelope::open_object`, which also hashes the
//! ciphertext: a case is written only when every object matches its id, every file
//! matches the manifest's size and SHA-256, and the manifest matches the record. A case
//! is assembled in a hidden staging folder and renamed into place only when all of that
//! holds; on any failure the staging folder, plaintext and all, is deleted.

pub mod bench;
pub mod disclose;
pub mod media;
mod names;
mod replica;
pub mod reply;
mod report;
pub mod verify;

pub use names::{safe_name, TakenNames};

/// Why a review step refused, in words for the reviewer or the lawyer reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviewError {
    /// A bundle or package that cannot be read as one.
    Package(String),
    /// Bytes that are not what their id, record or manifest says: altered or swapped.
    Altered(String),
    /// The server's log does not vouch for it.
    NotInLog(String),
    /// An identity, key or recipient that cannot be used.
    Key(String),
    /// The reviewer's own disk.
    Io(String),
    /// A request that cannot be carried out as asked (a case not opened, no consent,
    /// a reply to a case whose replies are stopped...).
    Refused(String),
}

impl std::fmt::Display for ReviewError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReviewError::Package(why)
            | ReviewError::Altered(why)
            | ReviewError::NotInLog(why)
            | ReviewError::Key(why)
            | ReviewError::Io(why)
            | ReviewError::Refused(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ReviewError {}

/// A reason in words that fits no narrower kind: a request refused as asked.
impl From<String> for ReviewError {
    fn from(why: String) -> Self {
        ReviewError::Refused(why)
    }
}

impl From<crate::bundle::reply::ReplyError> for ReviewError {
    fn from(e: crate::bundle::reply::ReplyError) -> Self {
        ReviewError::Refused(e.to_string())
    }
}

impl From<&str> for ReviewError {
    fn from(why: &str) -> Self {
        ReviewError::Refused(why.into())
    }
}

use crate::bundle::Opened;
use crate::envelope::{self, Manifest, ObjectId, MANIFEST_SCHEMA};
use crate::log::{BundleLog, LogLeaf, ReviewState, VerifiedLog};
use crate::record::SubmissionRecord;
use serde::Serialize;
use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// A manifest is a few KiB of JSON; anything near this is not one of ours.
const MAX_MANIFEST_BYTES: u64 = 16 << 20;
const STAGING_PREFIX: &str = ".opening-";

/// What happened to one submission.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The submission id, or the bundle's path when the bundle could not be read at all.
    pub submission: String,
    pub status: Status,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub files: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// The case the submission belongs to (its own id for a first submission).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Opened,
    /// The case folder already exists from an earlier open: left as it is.
    AlreadyOpen,
    /// Not a submission: the bundle's server key was seen here for the first time.
    NewServerKey,
    /// Not a submission: a case's reply key was replaced (its upgrade from v1 keys);
    /// `amanat reply` seals to the new one from now on.
    ReplyKeyChanged,
    /// Not a submission: a replica holds less of a server's log than this laptop
    /// verified before (it lags, or lost entries).
    ReplicaBehind,
    /// A submission the server deleted from the replica after its export, under its
    /// signed purge notice: it is in that export, not here.
    PurgedFromReplica,
    Failed,
}

impl Outcome {
    pub fn verified(&self) -> bool {
        self.status != Status::Failed
    }
}

/// An outcome that is not a submission but something the reviewer must read.
pub(super) fn note(label: &str, status: Status, reason: String) -> Outcome {
    Outcome {
        submission: label.to_string(),
        status,
        reason: Some(reason),
        files: 0,
        path: None,
        case: None,
    }
}

impl Status {
    /// A note for the reviewer rather than a submission opened or failed.
    pub fn is_note(self) -> bool {
        matches!(
            self,
            Status::NewServerKey
                | Status::ReplyKeyChanged
                | Status::ReplicaBehind
                | Status::PurgedFromReplica
        )
    }
}

/// Opens every submission of every bundle into `out`, then rewrites `out/index.html`.
/// `progress` receives ciphertext bytes processed and the total.
pub fn open_bundles(
    bundles: &[PathBuf],
    identities: &[age::x25519::Identity],
    out: &Path,
    state: &mut ReviewState,
    reviewer: crate::i18n::Lang,
    mut progress: impl FnMut(u64, u64),
) -> io::Result<Vec<Outcome>> {
    fs::create_dir_all(out)?;
    remove_stale_staging(out)?;
    // A sealed file from a field kit is in no server's log: nothing to check it against.
    let mut opened: Vec<(Opened, Option<VerifiedLog>)> = Vec::new();
    let mut outcomes = Vec::new();
    for path in bundles {
        // A replica's pull file gives one bundle per server, rebuilt from its journal
        // against what this laptop verified up to now (the bundles before it included).
        let servers = replica::servers_in(path);
        for n in 0..servers.unwrap_or(1) {
            // A replica's notes are told only once its log is verified below.
            let mut notes = Vec::new();
            let (label, candidate) = match servers {
                Some(_) => {
                    let (label, candidate) = replica::candidate(path, n, identities, state);
                    let candidate = candidate.map(|(bundle, replica_notes)| {
                        notes = replica_notes;
                        bundle
                    });
                    (label, candidate.map_err(|e| e.to_string()))
                }
                None => (path.display().to_string(), Opened::open(path).map_err(|e| e.to_string())),
            };
            // The whole bundle is refused when its log does not hold together or does not
            // agree with what this laptop verified before.
            match candidate.and_then(|b| {
                // Attestations are not needed to open: files past the limits are left to
                // `verify` to name, and the bundle opens on its own log.
                let attestations = b.attestations().unwrap_or_default();
                let verified =
                    b.log().map(|log| state.check_attested(log, &attestations)).transpose();
                Ok((b, verified.map_err(|e| e.to_string())?))
            }) {
                Ok(pair) => {
                    if let Some(verified) = pair.1.as_ref().filter(|v| v.new_server) {
                        let reason = format!(
                            "first bundle from server key {}: compare it with the key `amanat \
                             status` prints on the server; from now on this laptop holds that \
                             server to its log",
                            verified.server_key
                        );
                        outcomes.push(note(&label, Status::NewServerKey, reason));
                    }
                    outcomes.extend(replica::outcomes_of(&label, notes, out));
                    opened.push(pair);
                }
                Err(reason) => outcomes.push(Outcome {
                    submission: label,
                    status: Status::Failed,
                    reason: Some(reason),
                    files: 0,
                    path: None,
                    case: None,
                }),
            }
        }
    }
    let total: u64 = opened
        .iter()
        .flat_map(|(b, _)| b.objects().into_iter().filter_map(|id| b.package().object_len(&id)))
        .sum();
    let mut done = 0u64;
    let mut seen = HashSet::new();
    for (bundle, log) in &opened {
        for record in bundle.submissions() {
            let server_key = log.as_ref().map(|l| l.server_key.as_str());
            let outcome = if !record.id.is_well_formed() {
                failed("<invalid id>", "the bundle names a submission with an invalid id")
            } else if let Some(why) = (!seen.contains(&record.id))
                .then(|| {
                    report::another_submission(&out.join(&record.id), server_key, record.log_index)
                })
                .flatten()
            {
                failed(record.id.as_str(), why)
            } else if seen.contains(&record.id) || out.join(&record.id).is_dir() {
                Outcome {
                    submission: record.id.to_string(),
                    status: Status::AlreadyOpen,
                    reason: None,
                    files: 0,
                    path: Some(out.join(&record.id)),
                    case: Some(record.case.to_string()),
                }
            } else {
                let logged = match (log, bundle.log()) {
                    (Some(log), Some(evidence)) => in_log(evidence, log, record),
                    _ if record.id.is_well_formed() => Ok(()),
                    _ => Err("the sealed file names an invalid submission id".into()),
                };
                match logged.and_then(|()| open_case(bundle, record, identities, out, reviewer)) {
                    Ok(files) => {
                        // Only a verified copy counts: a damaged one must not hide a
                        // good copy of the same submission in a later bundle.
                        seen.insert(record.id.clone());
                        Outcome {
                            submission: record.id.to_string(),
                            status: Status::Opened,
                            reason: matches!(bundle, Opened::Sealed(_)).then(|| {
                                "sealed offline and opened directly: in no server's log yet, \
                                 so only the device vouches for its time"
                                    .to_string()
                            }),
                            files,
                            path: Some(out.join(&record.id)),
                            case: Some(record.case.to_string()),
                        }
                    }
                    Err(reason) => failed(&record.id, reason),
                }
            };
            done += record
                .object_ids()
                .iter()
                .filter_map(|id| bundle.package().object_len(id))
                .sum::<u64>();
            progress(done, total);
            outcomes.push(outcome);
        }
    }
    for (bundle, log) in &opened {
        if let (Some(log), Some(evidence)) = (log, bundle.log()) {
            outcomes.extend(record_reply_keys(evidence, log, out));
        }
    }
    report::write_index(out)?;
    Ok(outcomes)
}

/// Where a case's replies are sealed since its reply key changed (`amanat reply` reads
/// it before the key in the first submission's manifest).
pub const REPLY_KEY_FILE: &str = "reply-key.json";

/// Where a case's replies are refused since two different reply keys were claimed
/// for it: `amanat reply` seals nothing until the coalition has checked with the
/// survivor and removed it.
pub const REPLY_KEY_REFUSED_FILE: &str = "reply-key.refused";

/// Writes each logged reply-key change into its case folder, when the case is opened
/// here and the change is one the server may make: the one upgrade of a case whose
/// first manifest predates v2 keys and carries a reply key, logged by the very key whose
/// log the case was opened from, a leaf of the bundle's verified log. Anything else is
/// refused and reported; a second, different change withdraws the first and stops all
/// replies to the case: a server (or whoever holds its signing key) must not quietly
/// send a survivor's replies elsewhere.
fn record_reply_keys(evidence: &BundleLog, log: &VerifiedLog, out: &Path) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for change in &evidence.reply_keys {
        let dir = out.join(&change.case);
        let opened = fs::read(dir.join("testimony.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<report::Case>(&b).ok());
        let Some(opened) = opened.filter(|_| crate::record::is_submission_id(&change.case)) else {
            continue;
        };
        let path = dir.join(REPLY_KEY_FILE);
        let verdict = (|| {
            let leaf = change.log_leaf();
            leaf.validate().map_err(|e| e.to_string())?;
            crate::log::check_inclusion(
                &leaf,
                change.log_index,
                &change.inclusion_proof,
                &log.checkpoint,
            )
            .map_err(|e| format!("not in the server's signed log: {e}"))?;
            if opened.reply_key_version.is_some() || opened.reply_recipient.is_none() {
                return Err("the case has no reply key that may be replaced".to_string());
            }
            // The log the case was opened from, by its key; a folder opened before keys
            // were recorded, by the server's name, from a key this laptop knew already.
            let same_log = match &opened.server_key {
                Some(key) => *key == log.server_key,
                None => {
                    !log.new_server && log.checkpoint.origin == format!("amanat/{}", opened.server)
                }
            };
            if !same_log {
                return Err("it is not from the server log the case came from".into());
            }
            if dir.join(REPLY_KEY_REFUSED_FILE).exists() {
                return Err("its replies are stopped after two different reply keys".into());
            }
            let known = match fs::read(&path) {
                Ok(b) => Some(serde_json::from_slice::<ReplyKey>(&b).map_err(|e| e.to_string())?),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(e.to_string()),
            };
            match known {
                Some(k) if k.recipient == change.recipient => Ok(false),
                Some(k) => {
                    // Fail closed: neither key is trusted any more.
                    let both = format!("{}\n{}\n", k.recipient, change.recipient);
                    crate::durable::replace(&dir.join(REPLY_KEY_REFUSED_FILE), both.as_bytes())
                        .and_then(|()| fs::remove_file(&path))
                        .map_err(|e| e.to_string())?;
                    Err("a second, different reply key was claimed: replies to this case are \
                         stopped (reply-key.refused)"
                        .into())
                }
                None => Ok(true),
            }
        })();
        match verdict {
            Ok(false) => {}
            Ok(true) => {
                let key = ReplyKey {
                    case: change.case.clone(),
                    recipient: change.recipient.clone(),
                    log_index: change.log_index,
                };
                let written = serde_json::to_vec_pretty(&key)
                    .map_err(io::Error::other)
                    .and_then(|json| crate::durable::replace(&path, &json));
                outcomes.push(match written {
                    Ok(()) => Outcome {
                        submission: change.case.clone(),
                        status: Status::ReplyKeyChanged,
                        reason: Some(format!(
                            "case {}: the server replaced its reply key at its survivor's sign-in \
                             (the upgrade from keys of before v2); replies are sealed to {} from \
                             now on. If in doubt, check with the survivor",
                            change.case, change.recipient
                        )),
                        files: 0,
                        path: Some(path.clone()),
                        case: Some(change.case.clone()),
                    },
                    Err(e) => failed(&change.case, format!("cannot record its new reply key: {e}")),
                });
            }
            Err(why) => outcomes.push(failed(
                &change.case,
                format!(
                    "the bundle claims a new reply key for case {}, refused ({why}); tell the \
                     coalition's operator",
                    change.case
                ),
            )),
        }
    }
    outcomes
}

/// `reply-key.json` in a case folder.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct ReplyKey {
    pub case: String,
    pub recipient: String,
    pub log_index: u64,
}

/// The record must be a leaf of the bundle's signed checkpoint: otherwise it did not
/// come from the server's log (forged, or edited after the fact).
fn in_log(
    evidence: &BundleLog,
    log: &VerifiedLog,
    record: &SubmissionRecord,
) -> Result<(), ReviewError> {
    let not_in_log =
        |why: &str| ReviewError::NotInLog(format!("not in the server's signed log: {why}"));
    if !record.id.is_well_formed() || !record.case.is_well_formed() {
        return Err(not_in_log("its id is not one the server makes"));
    }
    let index = record.log_index.ok_or_else(|| not_in_log("no leaf index"))?;
    let proof = evidence.inclusion.get(record.id.as_str()).ok_or_else(|| not_in_log("no proof"))?;
    crate::log::check_inclusion(&LogLeaf::from(record), index, proof, &log.checkpoint)
        .map_err(|e| not_in_log(&e.to_string()))
}

fn failed(submission: &str, reason: impl ToString) -> Outcome {
    Outcome {
        submission: submission.into(),
        status: Status::Failed,
        reason: Some(reason.to_string()),
        files: 0,
        path: None,
        case: None,
    }
}

/// Plaintext left by an `open` that was interrupted: never a case, always removed.
fn remove_stale_staging(out: &Path) -> io::Result<()> {
    for entry in fs::read_dir(out)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(STAGING_PREFIX) {
            fs::remove_dir_all(entry.path())?;
        }
    }
    Ok(())
}

/// One verified case, or the reason there is none (and no plaintext left behind).
fn open_case(
    bundle: &Opened,
    record: &SubmissionRecord,
    identities: &[age::x25519::Identity],
    out: &Path,
    reviewer: crate::i18n::Lang,
) -> Result<usize, ReviewError> {
    let staging = out.join(format!("{STAGING_PREFIX}{}", record.id));
    let result = (|| {
        fs::create_dir(&staging)
            .map_err(|e| format!("cannot create {}: {e}", staging.display()))?;
        let files = write_case(bundle, record, identities, &staging, reviewer)?;
        fs::rename(&staging, out.join(&record.id))
            .map_err(|e| format!("cannot finish the case: {e}"))?;
        Ok(files)
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    result
}

fn write_case(
    bundle: &Opened,
    record: &SubmissionRecord,
    identities: &[age::x25519::Identity],
    dir: &Path,
    reviewer: crate::i18n::Lang,
) -> Result<usize, ReviewError> {
    let manifest = read_manifest(bundle, record, identities)?;
    let evidence = dir.join("evidence");
    fs::create_dir(&evidence).map_err(|e| e.to_string())?;
    let working = dir.join("working");
    if !manifest.attachments.is_empty() {
        fs::create_dir(&working).map_err(|e| e.to_string())?;
    }
    let mut taken = TakenNames::default();
    let mut files = Vec::new();
    for attachment in &manifest.attachments {
        let id = ObjectId::parse(&attachment.object)
            .ok_or_else(|| "the manifest names an invalid object id".to_string())?;
        let saved_as = safe_name(&attachment.name, &mut taken);
        let path = evidence.join(&saved_as);
        let file = File::create(&path).map_err(|e| format!("cannot write {saved_as}: {e}"))?;
        let sink = BufWriter::new(file);
        let (_, opened) =
            decrypt_object(bundle, &id, identities, sink, "a file", Some(attachment.size))?;
        if opened.plaintext_sha256 != attachment.sha256 || opened.plaintext_len != attachment.size {
            return Err(format!(
                "file {saved_as} does not match the manifest's SHA-256 and size: altered"
            )
            .into());
        }
        let mut file = report::CaseFile::new(attachment, format!("evidence/{saved_as}"));
        // What it says about itself, and a copy that says less, beside the evidence.
        file.embedded = Some(media::read_embedded(&path));
        let copy = format!("working/{saved_as}");
        file.working = Some(media::write_working_copy(&path, &working.join(&saved_as), &copy));
        files.push(file);
    }
    let case = report::Case::new(bundle, record, &manifest, files);
    case.write(dir, reviewer).map_err(|e| format!("cannot write the case: {e}"))?;
    Ok(manifest.attachments.len())
}

/// Decrypts and checks the manifest against the record that names it.
fn read_manifest(
    bundle: &Opened,
    record: &SubmissionRecord,
    identities: &[age::x25519::Identity],
) -> Result<Manifest, ReviewError> {
    let plaintext = Zeroizing::new(Vec::new());
    let limited = LimitedWriter { inner: plaintext, left: MAX_MANIFEST_BYTES };
    let (limited, _) =
        decrypt_object(bundle, &record.manifest, identities, limited, "the manifest", None)?;
    let manifest: Manifest = serde_json::from_slice(&limited.inner)
        .map_err(|e| format!("the manifest is not valid: {e}"))?;
    check_manifest(&manifest, record)?;
    Ok(manifest)
}

/// A decrypted manifest against the logged record that names it: the same submission,
/// hour and files. Shared by `open` and `verify`.
pub fn check_manifest(manifest: &Manifest, record: &SubmissionRecord) -> Result<(), ReviewError> {
    if manifest.schema != MANIFEST_SCHEMA {
        return Err(ReviewError::Altered(format!(
            "the manifest has an unknown schema {:?}",
            manifest.schema
        )));
    }
    // A sealed file's id is bound to its objects (`sealed::submission_id`), so its
    // manifest, sealed before the id existed, carries the kit's own: the binding is
    // what ties them.
    let sealed_offline = manifest.origin == crate::envelope::Origin::Fieldkit;
    let bound = sealed_offline
        && record.case.as_str() == record.id.as_str()
        && record.id == crate::bundle::sealed::submission_id(&record.manifest, &record.attachments);
    if !bound && manifest.case != record.case {
        return Err(ReviewError::Altered(
            "the manifest belongs to another case: the bundle was edited".into(),
        ));
    }
    if !bound && manifest.submission != record.id {
        return Err(ReviewError::Altered(
            "the manifest belongs to another submission: objects were swapped".into(),
        ));
    }
    // The hour the server recorded is also sealed inside the manifest: a bundle.json
    // edited to move a submission in time disagrees with it. A field kit seals before
    // any server sees it: its manifest has no hour of receipt, only the device's time.
    if sealed_offline && !manifest.received_at.is_empty() {
        return Err(ReviewError::Altered(
            "a field-kit manifest claims an hour of receipt: not one amanat made".into(),
        ));
    }
    if !sealed_offline && manifest.received_at != record.received_at {
        return Err(ReviewError::Altered(
            "the record's hour of receipt differs from the manifest's: the bundle was edited"
                .into(),
        ));
    }
    let named: Vec<&str> = manifest.attachments.iter().map(|a| a.object.as_str()).collect();
    let recorded: Vec<&str> = record.attachments.iter().map(ObjectId::as_str).collect();
    if named != recorded {
        return Err(ReviewError::Altered(
            "the record and the manifest list different files: the bundle was edited".into(),
        ));
    }
    if named.iter().collect::<HashSet<_>>().len() != named.len() {
        return Err(ReviewError::Altered(
            "the manifest names one object twice: not a submission amanat made".into(),
        ));
    }
    Ok(())
}

/// Decrypts one object of the bundle into `sink`, checking it is whole and is the
/// object its id names. `what` names it in errors; `size` is a file's size, to cut
/// its padding off (`envelope::open_file`), None for a manifest.
fn decrypt_object<W: Write + Send>(
    bundle: &Opened,
    id: &ObjectId,
    identities: &[age::x25519::Identity],
    sink: W,
    what: &str,
    size: Option<u64>,
) -> Result<(W, envelope::OpenedObject), ReviewError> {
    let package = bundle.package();
    let reader = if let Some(reader) = package.object(id) {
        reader.map_err(|e| format!("cannot read {what} ({id}): {e}"))?
    } else {
        let hint = package.damaged.as_deref().map(|d| format!(" ({d})")).unwrap_or_default();
        return Err(format!("{what} ({id}) is missing from the bundle{hint}").into());
    };
    let opened = match size {
        Some(size) => envelope::open_file(reader, identities, sink, size),
        None => envelope::open_object(reader, identities, sink),
    };
    let swapped = || {
        ReviewError::Altered(format!(
            "{what} ({id}) does not match its id: it was altered or swapped"
        ))
    };
    let (mut sink, opened) = match opened {
        Ok(done) => done,
        // Bytes that are not the object named explain any other failure: say that.
        Err(e) => {
            let checked = package
                .object(id)
                .and_then(std::result::Result::ok)
                .map(|r| envelope::check_object(r, id));
            return Err(match checked {
                Some(Err(envelope::ObjectCheckError::Mismatch)) => swapped(),
                _ => ReviewError::Altered(format!("{what} ({id}): {e}")),
            });
        }
    };
    sink.flush().map_err(|e| format!("cannot write {what}: {e}"))?;
    opened.check_id(id).map_err(|_| swapped())?;
    Ok((sink, opened))
}

/// Collects plaintext in memory up to a bound (a manifest is small; a forged one may
/// not be), wiped on drop.
struct LimitedWriter {
    inner: Zeroizing<Vec<u8>>,
    left: u64,
}

impl LimitedWriter {
    fn new(max: u64) -> Self {
        LimitedWriter { inner: Zeroizing::new(Vec::new()), left: max }
    }

    fn bytes(&self) -> &[u8] {
        &self.inner
    }
}

impl Write for LimitedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() as u64 > self.left {
            return Err(io::Error::other("too large for a manifest"));
        }
        self.left -= buf.len() as u64;
        self.inner.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Decrypts a standalone age file to `out` with the same function `open` uses, deleting
/// `out` if anything fails. For checks against outside vectors and for single objects.
pub fn decrypt_file(
    ciphertext: impl Read + Send,
    identities: &[age::x25519::Identity],
    out: &Path,
) -> Result<envelope::OpenedObject, envelope::OpenError> {
    let file = File::create(out).map_err(envelope::OpenError::Output)?;
    let result = envelope::open_object(ciphertext, identities, BufWriter::new(file)).and_then(
        |(mut w, opened)| w.flush().map(|()| opened).map_err(envelope::OpenError::Output),
    );
    if result.is_err() {
        let _ = fs::remove_file(out);
    }
    result
}
