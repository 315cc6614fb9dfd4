//! Sealed files: testimonies sealed offline by the field kit when the internet is cut.
//!
//! A sealed file is a tar: `sealed.json` first (schema `amanat/sealed/v1`: the submission
//! id, object ids and the recipients fingerprint; no name, no size, no text), then
//! `objects/<id>.age`, each object made by the same sealing function the server uses.
//! The server stores the objects as they are after checking what it can without a key;
//! a reviewer can also open a sealed file directly.

use crate::config::Limits;
use crate::envelope::{self, Attachment, Manifest, ObjectId, Origin, TextField};
use crate::intake::error::IntakeError;
use crate::keys::Recipients;
use crate::log::Receipt;
use crate::store::{CaseChoice, PendingObjects, Store, SubmissionRecord};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

pub const SEALED_SCHEMA: &str = "amanat/sealed/v1";
pub const INDEX_NAME: &str = "sealed.json";
/// `sealed.json` lists ids only: a few KiB at most.
const MAX_INDEX_BYTES: u64 = 64 * 1024;
/// A manifest object: the text limit, file names, and an age header, with room.
const MAX_MANIFEST_OBJECT_BYTES: u64 = 4 << 20;

/// `sealed.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedIndex {
    pub schema: String,
    /// The submission's id: `submission_id` of the objects below (files from before
    /// that rule carry a random id, which the server does not use). The manifest inside
    /// carries the kit's own random id.
    pub submission: String,
    pub manifest: ObjectId,
    pub attachments: Vec<ObjectId>,
    /// Fingerprint of the recipients the kit sealed to.
    pub recipients: String,
}

impl SealedIndex {
    /// The submission record a sealed file stands for, received at `received_at` (a
    /// server's hour, or empty when a reviewer opens the file directly).
    pub fn record(&self, received_at: &str, total_bytes: u64) -> SubmissionRecord {
        let id = submission_id(&self.manifest, &self.attachments);
        SubmissionRecord {
            case: id.clone(),
            id,
            received_at: received_at.into(),
            manifest: self.manifest.clone(),
            attachments: self.attachments.clone(),
            total_bytes,
            recipients: self.recipients.clone(),
            log_index: None,
        }
    }

    /// Structure only: valid ids and fingerprint, no object twice, not too many.
    fn check(&self, limits: &Limits) -> Result<(), IntakeError> {
        if self.schema != SEALED_SCHEMA {
            return Err(IntakeError::NotASealedFile);
        }
        let fingerprint = self.recipients.len() == 64
            && self.recipients.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !crate::review::is_submission_id(&self.submission) || !fingerprint {
            return Err(IntakeError::SealedFieldInvalid);
        }
        if self.attachments.len() > limits.max_files {
            return Err(IntakeError::TooManyFiles);
        }
        let mut seen = HashSet::new();
        if !self.objects().iter().all(|id| seen.insert(id.clone())) {
            return Err(IntakeError::SealedMemberRefused);
        }
        Ok(())
    }

    pub fn objects(&self) -> Vec<ObjectId> {
        let mut ids = self.attachments.clone();
        ids.push(self.manifest.clone());
        ids
    }
}

/// The id of the submission a sealed file holds: the first 128 bits of SHA-256 over
/// its object ids, so that it is bound to the sealed content. Whoever sees a sealed
/// file in transit can post other content under its id only as another submission, and
/// can never make the genuine file be refused.
pub fn submission_id(manifest: &ObjectId, attachments: &[ObjectId]) -> String {
    let mut text = String::from("amanat/sealed-id/v1\n");
    text.push_str(manifest.as_str());
    for id in attachments {
        text.push('\n');
        text.push_str(id.as_str());
    }
    ObjectId::of(text.as_bytes()).as_str()[..32].to_string()
}

// ---------- Sealing (the field kit, offline) ----------

/// What to seal.
pub struct SealRequest<'a> {
    pub recipients: &'a Recipients,
    pub testimony: Zeroizing<String>,
    pub fields: Vec<TextField>,
    pub evidence: &'a [PathBuf],
    pub language: String,
    pub out: &'a Path,
}

#[derive(Debug, Serialize)]
pub struct SealSummary {
    pub submission: String,
    pub files: usize,
    pub bytes: u64,
}

/// Seals a testimony and its files into a sealed file, streaming each file through the
/// same sealer the server uses (memory stays bounded whatever the sizes). Ciphertext is
/// staged in a private folder beside `out` and removed on success or failure.
/// `progress` gets plaintext bytes sealed and the total.
pub fn seal(
    req: SealRequest<'_>,
    mut progress: impl FnMut(u64, u64),
) -> Result<SealSummary, String> {
    if req.testimony.trim().is_empty() {
        return Err("the testimony is empty: it is the one thing a submission needs".into());
    }
    if req.out.exists() {
        return Err(format!("{} exists; a sealed file never overwrites a file", req.out.display()));
    }
    let mut sizes = Vec::new();
    for path in req.evidence {
        let meta = fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        if !meta.is_file() {
            return Err(format!("{} is not a file", path.display()));
        }
        sizes.push(meta.len());
    }
    let total: u64 = sizes.iter().sum();
    let rng = ring::rand::SystemRandom::new();
    let submission = crate::store::random_hex(&rng, 16);
    let staging = req.out.with_extension("sealing");
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .map_err(|e| format!("cannot create {}: {e}", staging.display()))?;
    let result = (|| {
        let mut attachments = Vec::new();
        let mut done = 0u64;
        for path in req.evidence {
            let sealed = seal_file(req.recipients, path, &staging, |n| {
                done += n;
                progress(done, total);
            })?;
            let name =
                path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            attachments.push(Attachment {
                object: sealed.id.to_string(),
                media_type: media_type_of(&name).into(),
                name,
                size: sealed.plaintext_len,
                sha256: sealed.plaintext_sha256,
            });
        }
        let manifest = Manifest {
            schema: envelope::MANIFEST_SCHEMA.into(),
            submission: submission.clone(),
            case: submission.clone(),
            reply_recipient: None,
            reply_key_version: None,
            received_at: String::new(),
            declared_at: Some(device_time()),
            language: req.language.clone(),
            origin: Origin::Fieldkit,
            testimony: req.testimony.to_string(),
            fields: req.fields.clone(),
            attachments: attachments.clone(),
        };
        let plaintext = manifest.to_plaintext().map_err(|e| e.to_string())?;
        let (ciphertext, sealed) = envelope::seal_document(req.recipients, &plaintext, Vec::new())
            .map_err(|e| e.to_string())?;
        drop(plaintext);
        fs::write(staging.join(sealed.id.as_str()), &ciphertext).map_err(|e| e.to_string())?;
        let attachments: Vec<ObjectId> =
            attachments.iter().map(|a| ObjectId::parse(&a.object).expect("ids we made")).collect();
        let index = SealedIndex {
            schema: SEALED_SCHEMA.into(),
            submission: submission_id(&sealed.id, &attachments),
            manifest: sealed.id,
            attachments,
            recipients: req.recipients.fingerprint().into(),
        };
        write_sealed_file(&index, &staging, req.out).map(|bytes| (index.submission, bytes))
    })();
    let _ = fs::remove_dir_all(&staging);
    let (submission, bytes) = result?;
    Ok(SealSummary { submission, files: req.evidence.len(), bytes })
}

/// One evidence file, streamed through the sealer into `staging/<id>`.
fn seal_file(
    recipients: &Recipients,
    path: &Path,
    staging: &Path,
    mut progress: impl FnMut(u64),
) -> Result<envelope::SealedObject, String> {
    let mut input = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let temp = staging.join("partial");
    let out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .map_err(|e| e.to_string())?;
    // Blocks shared with the plaintext-hashing thread by reference count, wiped when
    // the last holder drops them.
    let chunks = std::iter::from_fn(|| {
        let mut block = Zeroizing::new(vec![0u8; 256 * 1024]);
        loop {
            return match input.read(&mut block) {
                Ok(0) => None,
                Ok(n) => {
                    block.truncate(n);
                    progress(n as u64);
                    Some(Ok(Block(std::sync::Arc::new(block))))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Some(Err(io::Error::new(e.kind(), format!("{}: {e}", path.display())))),
            };
        }
    });
    let (_, sealed) =
        envelope::seal_parallel(recipients, out, chunks).map_err(|e| e.to_string())?;
    fs::rename(&temp, staging.join(sealed.id.as_str())).map_err(|e| e.to_string())?;
    Ok(sealed)
}

/// A block of a file being sealed, shared between the sealing threads.
#[derive(Clone)]
struct Block(std::sync::Arc<Zeroizing<Vec<u8>>>);

impl AsRef<[u8]> for Block {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// The tar: `sealed.json`, then the objects; written beside `out`, fsynced, then moved
/// into place without replacing anything.
fn write_sealed_file(index: &SealedIndex, staging: &Path, out: &Path) -> Result<u64, String> {
    let partial = out.with_extension("partial");
    let result = (|| -> io::Result<u64> {
        let file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&partial)?;
        let mut tar = tar::Builder::new(BufWriter::new(file));
        let json = serde_json::to_vec_pretty(index).map_err(io::Error::other)?;
        tar.append(&crate::bundle::header(INDEX_NAME, json.len() as u64)?, &json[..])?;
        for id in index.objects() {
            let object = File::open(staging.join(id.as_str()))?;
            let len = object.metadata()?.len();
            tar.append(&crate::bundle::header(&crate::bundle::object_member(&id), len)?, object)?;
        }
        let file = tar.into_inner()?.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        let len = file.metadata()?.len();
        if out.exists() {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "appeared meanwhile"));
        }
        fs::rename(&partial, out)?;
        Ok(len)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&partial);
        format!("cannot write {}: {e}", out.display())
    })
}

/// The device clock, to the minute: what the volunteer's laptop says, recorded as its
/// word, apart from the hour a server later receives the file.
fn device_time() -> String {
    let now = time::OffsetDateTime::now_utc();
    let minute = now.replace_time(
        time::Time::from_hms(now.hour(), now.minute(), 0).expect("a valid time of day"),
    );
    minute.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// A media type from the file name, for the reviewer's report (the bytes stay as they
/// are; the report never trusts this for anything but display).
fn media_type_of(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "heic" => "image/heic",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "mp4" => "video/mp4",
        "mov" => "video/quicktime",
        "3gp" => "video/3gpp",
        "m4a" => "audio/mp4",
        "ogg" | "opus" => "audio/ogg",
        "mp3" => "audio/mpeg",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        _ => "application/octet-stream",
    }
}

// ---------- Intake (the server) ----------

/// What importing a sealed file did.
pub struct Ingested {
    pub record: SubmissionRecord,
    pub receipt: Receipt,
    /// True when this sealed file was imported before: nothing new was stored.
    pub already_imported: bool,
}

/// Reads a sealed file from `input` (an HTTP body or the admin socket) and stores it
/// like any submission, checking without a key: members only `sealed.json` then the
/// objects it lists, regular files, each once; each object's bytes match its id and
/// begin with an age header; sizes within `limits`. On any refusal nothing is kept.
pub fn ingest(store: &Store, limits: &Limits, input: impl Read) -> Result<Ingested, IntakeError> {
    let pending = PendingObjects::default();
    let result = ingest_into(store, limits, input, &pending);
    if !matches!(result, Ok(ref i) if !i.already_imported) {
        pending.abandon();
    }
    result
}

fn ingest_into(
    store: &Store,
    limits: &Limits,
    input: impl Read,
    pending: &PendingObjects,
) -> Result<Ingested, IntakeError> {
    let mut archive = tar::Archive::new(input);
    // Raw: long-name and PAX extension members come to us as members (and are
    // refused) instead of being read whole into memory by the tar reader.
    let mut entries = archive.entries().map_err(|_| IntakeError::NotASealedFile)?.raw(true);
    let mut index: Option<SealedIndex> = None;
    // Set when this file's submission is stored already: its bytes are then only
    // checked, never stored, and "already imported" is the answer only to a request
    // that carried every one of them (a receipt alone must not tell whether a record is
    // still on the server).
    let mut already: Option<SubmissionRecord> = None;
    let mut _claim = None;
    let mut stored: HashSet<ObjectId> = HashSet::new();
    let mut file_bytes = 0u64;
    let mut total_bytes = 0u64;
    let io_refusal = |e: io::Error| match e.kind() {
        io::ErrorKind::UnexpectedEof => IntakeError::IncompleteUpload,
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => IntakeError::StorageFull,
        io::ErrorKind::TimedOut => IntakeError::UploadStalled,
        _ => IntakeError::NotASealedFile,
    };
    loop {
        let mut entry = match entries.next() {
            None => break,
            Some(entry) => entry.map_err(io_refusal)?,
        };
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(IntakeError::SealedMemberRefused);
        }
        let name = entry
            .path()
            .map_err(|_| IntakeError::SealedMemberRefused)?
            .to_string_lossy()
            .into_owned();
        let size = entry.size();
        let Some(current) = &index else {
            if name != INDEX_NAME || size > MAX_INDEX_BYTES {
                return Err(IntakeError::NotASealedFile);
            }
            let mut json = Vec::new();
            entry.read_to_end(&mut json).map_err(io_refusal)?;
            let parsed: SealedIndex =
                serde_json::from_slice(&json).map_err(|_| IntakeError::NotASealedFile)?;
            parsed.check(limits)?;
            let id = submission_id(&parsed.manifest, &parsed.attachments);
            _claim = Some(store.claim_import(&id).ok_or(IntakeError::Busy)?);
            let same = |r: &SubmissionRecord| {
                r.manifest == parsed.manifest && r.attachments == parsed.attachments
            };
            // The same sealed file again, under its bound id, or under the random id a
            // file from before bound ids was stored with.
            already = store.submission(&id).map_err(internal)?.filter(same);
            if already.is_none() && parsed.submission != id {
                already = store.submission(&parsed.submission).map_err(internal)?.filter(same);
            }
            index = Some(parsed);
            continue;
        };
        let id = crate::bundle::object_member_id(&name).ok_or(IntakeError::SealedMemberRefused)?;
        if !current.objects().contains(&id) || stored.contains(&id) {
            return Err(IntakeError::SealedMemberRefused);
        }
        if id == current.manifest {
            if size > MAX_MANIFEST_OBJECT_BYTES {
                return Err(IntakeError::SubmissionTooLarge);
            }
        } else {
            file_bytes += size;
            if file_bytes > limits.max_submission_bytes {
                return Err(IntakeError::SubmissionTooLarge);
            }
        }
        let checked = match already {
            Some(_) => check_object(&mut entry, size, &id),
            None => store_object(store, &mut entry, size, &id, pending),
        };
        checked.map_err(|e| match e {
            StoreError::Refused(e) => e,
            StoreError::Io(e) => io_refusal(e),
        })?;
        total_bytes += size;
        stored.insert(id);
    }
    let index = index.ok_or(IntakeError::NotASealedFile)?;
    if stored.len() != index.objects().len() {
        return Err(IntakeError::IncompleteUpload);
    }
    if let Some(existing) = already {
        let leaf = existing.log_index.ok_or(IntakeError::Internal)?;
        let receipt = store.receipt(&existing.id, leaf, &existing.log_leaf()).map_err(internal)?;
        return Ok(Ingested { record: existing, receipt, already_imported: true });
    }
    let record = index.record(&crate::intake::upload::received_hour(), total_bytes);
    let receipt =
        store.commit(pending, &record, CaseChoice::WithoutCodename).map_err(|e| {
            match e.kind() {
                io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
                    IntakeError::StorageFull
                }
                _ => internal(e),
            }
        })?;
    let log_index = receipt.leaf_index;
    Ok(Ingested {
        record: SubmissionRecord { log_index: Some(log_index), ..record },
        receipt,
        already_imported: false,
    })
}

enum StoreError {
    Refused(IntakeError),
    Io(io::Error),
}

/// Streams one object into the store, hashing as it goes; refuses it unless its bytes
/// hash to `id` and begin with an age header.
fn store_object(
    store: &Store,
    entry: &mut impl Read,
    size: u64,
    id: &ObjectId,
    pending: &PendingObjects,
) -> Result<(), StoreError> {
    let object = store.create_object(pending);
    let buffered = copy_checked(entry, size, id, BufWriter::with_capacity(256 * 1024, object))?;
    let object = buffered.into_inner().map_err(|e| StoreError::Io(e.into_error()))?;
    if envelope::check_header(object.written().map_err(StoreError::Io)?).is_err() {
        return Err(StoreError::Refused(IntakeError::SealedObjectNotAge));
    }
    object.persist(id, pending).map_err(StoreError::Io)
}

/// Reads one object of a file already stored, checking its bytes against `id` without
/// keeping them.
fn check_object(entry: &mut impl Read, size: u64, id: &ObjectId) -> Result<(), StoreError> {
    copy_checked(entry, size, id, io::sink()).map(drop)
}

/// Copies one tar member into `out`, refusing it unless it is whole (`size` bytes) and
/// its bytes hash to `id`.
fn copy_checked<W: io::Write>(
    entry: &mut impl Read,
    size: u64,
    id: &ObjectId,
    out: W,
) -> Result<W, StoreError> {
    let mut writer = envelope::HashingWriter::new(out);
    io::copy(entry, &mut writer).map_err(StoreError::Io)?;
    let (out, hash, len) = writer.finish();
    // The tar reader ends a member quietly where the input ends: a cut-off file.
    if len != size {
        return Err(StoreError::Refused(IntakeError::IncompleteUpload));
    }
    if hex::encode(hash) != id.as_str() {
        return Err(StoreError::Refused(IntakeError::SealedObjectMismatch));
    }
    Ok(out)
}

fn internal(e: io::Error) -> IntakeError {
    IntakeError::from_io(&e)
}
