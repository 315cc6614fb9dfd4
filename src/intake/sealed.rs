//! Sealed files arriving at the server (over HTTP or the admin socket): stored like
//! any submission after checking what can be checked without a key. The format is
//! `bundle::sealed`'s; sealing is the field kit's.

use super::error::IntakeError;
use crate::bundle::object_member_id;
use crate::bundle::sealed::{
    submission_id, SealedIndex, SealedIndexError, INDEX_NAME, MAX_INDEX_BYTES,
};
use crate::config::Limits;
use crate::envelope::{self, ObjectId};
use crate::log::{LogLeaf, Receipt};
use crate::record::SubmissionRecord;
use crate::store::{CaseChoice, PendingObjects, Store};
use std::collections::HashSet;
use std::io::{self, BufWriter, Read};

/// A manifest object: the text limit, file names, and an age header, with room.
const MAX_MANIFEST_OBJECT_BYTES: u64 = 4 << 20;

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
            parsed.check(limits.max_files).map_err(|e| match e {
                SealedIndexError::Schema => IntakeError::NotASealedFile,
                SealedIndexError::Field => IntakeError::SealedFieldInvalid,
                SealedIndexError::TooManyFiles => IntakeError::TooManyFiles,
                SealedIndexError::Duplicate => IntakeError::SealedMemberRefused,
            })?;
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
        let id = object_member_id(&name).ok_or(IntakeError::SealedMemberRefused)?;
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
        let receipt =
            store.receipt(&existing.id, leaf, &LogLeaf::from(&existing)).map_err(internal)?;
        return Ok(Ingested { record: existing, receipt, already_imported: true });
    }
    let record = index.record(&crate::record::Hour::now(), total_bytes);
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

/// `envelope::copy_checked` for one tar member: the tar reader ends a member quietly
/// where the input ends, so a short member is a cut-off upload.
fn copy_checked<W: io::Write>(
    entry: &mut impl Read,
    size: u64,
    id: &ObjectId,
    out: W,
) -> Result<W, StoreError> {
    envelope::copy_checked(entry, id, Some(size), out).map_err(|e| match e {
        envelope::ObjectCheckError::Io(e) => StoreError::Io(e),
        envelope::ObjectCheckError::Length { .. } => {
            StoreError::Refused(IntakeError::IncompleteUpload)
        }
        envelope::ObjectCheckError::Mismatch => {
            StoreError::Refused(IntakeError::SealedObjectMismatch)
        }
    })
}

fn internal(e: io::Error) -> IntakeError {
    IntakeError::from_io(&e)
}
