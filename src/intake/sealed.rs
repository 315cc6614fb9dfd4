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

/// The largest sealed file `limits` let in: the objects, the manifest, and a tar
/// header and padding for each member.
pub fn max_sealed_bytes(limits: &Limits) -> u64 {
    limits.max_submission_bytes + (8 << 20) + (limits.max_files as u64 + 2) * 2048
}

/// Reads a sealed file from `input` (an HTTP body or the admin socket) and stores it
/// like any submission, checking without a key: members only `sealed.json` then the
/// objects it lists, regular files, each once; each object's bytes match its id and
/// begin with an age header; sizes within `limits`. On any refusal nothing is kept.
pub fn ingest(store: &Store, limits: &Limits, input: impl Read) -> Result<Ingested, IntakeError> {
    let pending = PendingObjects::default();
    let result = stage(store, limits, input, &pending)
        .and_then(|staged| commit(store, staged, &pending, || Ok(())));
    if !matches!(result, Ok(ref i) if !i.already_imported) {
        pending.abandon();
    }
    result
}

/// A sealed file read whole and checked, its objects persisted into the request's
/// pending objects but named by no record yet (a resumable upload waits so, for its
/// `/api/v1/sealed`).
#[derive(Clone)]
pub struct Staged {
    index: SealedIndex,
    total_bytes: u64,
    /// Its submission, when that was stored already as it was read: its objects were
    /// then only checked, never stored.
    already: Option<SubmissionRecord>,
}

/// The first half of `ingest`: reads and checks `input`, persisting its objects into
/// `pending` (the caller abandons them if nothing commits).
pub fn stage(
    store: &Store,
    limits: &Limits,
    input: impl Read,
    pending: &PendingObjects,
) -> Result<Staged, IntakeError> {
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
            already = stored_before(store, &parsed)?;
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
    Ok(Staged { index, total_bytes, already })
}

/// The submission of a sealed file with this index, if it is stored: under its bound
/// id, or under the random id a file from before bound ids was stored with.
fn stored_before(
    store: &Store,
    index: &SealedIndex,
) -> Result<Option<SubmissionRecord>, IntakeError> {
    let id = submission_id(&index.manifest, &index.attachments);
    let same =
        |r: &SubmissionRecord| r.manifest == index.manifest && r.attachments == index.attachments;
    let mut found = store.submission(&id).map_err(internal)?.filter(same);
    if found.is_none() && index.submission != id {
        found = store.submission(&index.submission).map_err(internal)?.filter(same);
    }
    Ok(found)
}

/// The second half of `ingest`: records a staged sealed file, its objects in
/// `pending`, or gives the first receipt when it was stored meanwhile (the caller then
/// abandons `pending`: a committed record's objects are never deleted by that).
/// `gather` puts the objects into `pending` once this import is the only one under way
/// (an upload's objects stay the upload's when it is refused as busy).
pub fn commit(
    store: &Store,
    staged: Staged,
    pending: &PendingObjects,
    gather: impl FnOnce() -> io::Result<()>,
) -> Result<Ingested, IntakeError> {
    let Staged { index, total_bytes, already } = staged;
    let id = submission_id(&index.manifest, &index.attachments);
    // One import of a sealed file records it at a time.
    let _claim = store.claim_import(&id).ok_or(IntakeError::Busy)?;
    gather().map_err(|e| IntakeError::from_io(&e))?;
    let found = stored_before(store, &index)?;
    if let Some(existing) = found {
        return imported_before(store, existing);
    }
    if already.is_some() {
        // Stored when it was read, gone since (purged): its objects were only checked,
        // so this copy cannot be recorded. Sent again, it is stored whole.
        return Err(IntakeError::Busy);
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

/// The receipt of a sealed file's submission recorded before (an `amanat send` asking
/// again after its answer was lost).
pub fn receipt_of(store: &Store, submission: &str) -> Result<Ingested, IntakeError> {
    let record =
        store.submission(submission).map_err(internal)?.ok_or(IntakeError::UploadNotFound)?;
    imported_before(store, record)
}

/// The answer for a sealed file recorded before: its record and first receipt.
fn imported_before(store: &Store, record: SubmissionRecord) -> Result<Ingested, IntakeError> {
    let leaf = record.log_index.ok_or(IntakeError::Internal)?;
    let receipt = store.receipt(&record.id, leaf, &LogLeaf::from(&record)).map_err(internal)?;
    Ok(Ingested { record, receipt, already_imported: true })
}

fn internal(e: io::Error) -> IntakeError {
    IntakeError::from_io(&e)
}
