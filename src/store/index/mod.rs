//! The sled index: submission records, cases, the log, and small objects. Nothing big
//! lives here: sled writes any page over 128 KiB (a leaf of up to ~20 entries, whole) to
//! a blob file it never fsyncs (sled #1077), so every value is kept to a few KiB and
//! small objects are stored in chunks.

mod cases;
mod exports;
mod flush;
mod journal;

pub(super) use exports::UNEXPORTED_THROUGH;
use journal::journal_key;
pub(super) use journal::{JournalValue, RawJournalLeaf};

use super::objects::InlineObject;
use super::records::{CaseRecord, ExportMark, ReplyKeyChange, ReplyRecord, TaggedCase};
use crate::log::{merkle, LogLeaf};
use crate::record::{ObjectId, SubmissionRecord};
use flush::GroupFlush;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;
use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::path::Path;

/// Bytes of the codename tag used as the lookup prefix.
const TAG_PREFIX: usize = 8;

/// Where a submission goes: a new case (its codename tag and case record), or an
/// existing one.
pub enum CaseChoice<'a> {
    New {
        tag: &'a [u8; 32],
        case: &'a CaseRecord,
    },
    /// A new case without a codename (sealed offline by the field kit: a codename's tag
    /// needs the server's instance secret). It can take no replies.
    WithoutCodename,
    Existing,
}

pub(super) struct Index {
    db: sled::Db,
    /// sled's own log file, fsynced by us: on Linux sled 0.34 makes writes "stable" with
    /// `sync_file_range`, which flushes neither the file's size nor the disk's cache.
    log_file: File,
    submissions: sled::Tree,
    /// First 8 bytes of the codename tag, then the case id -> the full tag and the case
    /// record. Lookups find candidates by the short prefix, then compare the full tag in
    /// constant time.
    cases: sled::Tree,
    /// Case id -> case record.
    case_records: sled::Tree,
    /// `<case>/<submission>` -> nothing: a case's submissions.
    case_members: sled::Tree,
    /// `<case>/<object>` -> reply record.
    replies: sled::Tree,
    /// Case id -> its latest `ReplyKeyChange`.
    reply_keys: sled::Tree,
    exports: sled::Tree,
    /// Submission id -> its record, for those never exported: an export reads what is
    /// new, together, and not the whole store. Kept in the transactions that record and
    /// mark them (a record is never changed once recorded).
    unexported: sled::Tree,
    meta: sled::Tree,
    /// The Merkle log: perfect-subtree hashes by (level, index), and its size.
    log: sled::Tree,
    /// Small objects: the log index of the leaf that stored them (u64, big-endian),
    /// `<id>`, chunk number (u16, big-endian) -> at most `CHUNK` bytes of ciphertext.
    /// Keyed in arrival order so that writing touches only the newest leaf: random keys
    /// would pull and rewrite old leaves of ciphertext through sled's cache on every
    /// commit. Written only in transactions, which sled runs one at a time, so no leaf
    /// outgrows sled's split threshold between checks.
    inline_objects: sled::Tree,
    /// `<id>` -> where its chunks start (u64, big-endian) and its length (u64, BE).
    inline_ids: sled::Tree,
    flush: GroupFlush,
}

/// Bytes of one small object's chunk: ~20 of them, a full leaf, stay far below the size
/// at which sled would write the leaf to an unsynced blob.
const CHUNK: usize = 4096;

/// How many small objects the index holds, and their bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct InlineTotals {
    pub objects: u64,
    pub bytes: u64,
}

/// How a commit failed: before the record was applied (nothing to keep), or after
/// (the record may still reach the disk, so its objects must stay for the sweep).
pub(super) enum CommitError {
    NotRecorded(io::Error),
    NotDurable(io::Error),
}

impl CommitError {
    /// The error, and whether the objects must be kept: a record that was applied may
    /// still reach the disk (the next start-up sweep removes them if it did not).
    pub(super) fn kept(self) -> (io::Error, bool) {
        match self {
            CommitError::NotRecorded(e) => (e, false),
            CommitError::NotDurable(e) => (e, true),
        }
    }
}

impl Index {
    pub(super) fn open(path: &Path) -> io::Result<Index> {
        let db = sled::Config::new()
            .path(path)
            // Records are small; a small cache keeps the server's memory bounded.
            .cache_capacity(16 * 1024 * 1024)
            .open()
            .map_err(sled_io)?;
        let submissions = db.open_tree("submissions").map_err(sled_io)?;
        let cases = db.open_tree("cases").map_err(sled_io)?;
        let case_records = db.open_tree("case_records").map_err(sled_io)?;
        let case_members = db.open_tree("case_members").map_err(sled_io)?;
        let replies = db.open_tree("replies").map_err(sled_io)?;
        let reply_keys = db.open_tree("reply_keys").map_err(sled_io)?;
        let exports = db.open_tree("exports").map_err(sled_io)?;
        let unexported = db.open_tree("unexported").map_err(sled_io)?;
        let meta = db.open_tree("meta").map_err(sled_io)?;
        let log = db.open_tree("log").map_err(sled_io)?;
        let inline_objects = db.open_tree("inline_objects").map_err(sled_io)?;
        let inline_ids = db.open_tree("inline_ids").map_err(sled_io)?;
        let log_file = File::open(path.join("db"))?;
        super::sync_dir(path)?;
        let index = Index {
            db,
            log_file,
            submissions,
            cases,
            case_records,
            case_members,
            replies,
            reply_keys,
            exports,
            unexported,
            meta,
            log,
            inline_objects,
            inline_ids,
            flush: GroupFlush::default(),
        };
        index.complete_journal()?;
        index.complete_unexported()?;
        Ok(index)
    }

    /// A small value in the meta tree, created with `make` on first use and made durable.
    pub(super) fn meta_or_insert(
        &self,
        key: &str,
        make: impl FnOnce() -> String,
    ) -> io::Result<String> {
        if let Some(v) = self.meta.get(key).map_err(sled_io)? {
            return Ok(String::from_utf8_lossy(&v).into_owned());
        }
        let value = make();
        self.meta.insert(key, value.as_bytes()).map_err(sled_io)?;
        self.make_durable()?;
        Ok(value)
    }

    /// Sets a `meta` value (JSON), durably.
    pub(super) fn meta_put<T: serde::Serialize>(&self, key: &str, value: &T) -> io::Result<()> {
        let json = serde_json::to_vec(value).map_err(io::Error::other)?;
        self.meta.insert(key, json).map_err(sled_io)?;
        self.make_durable()
    }

    /// The `meta` values under `prefix` nearest `key` on each side: the last at or
    /// before it and the first after it (keys compare as bytes).
    pub(super) fn meta_around<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &str,
        key: &str,
    ) -> io::Result<(Option<T>, Option<T>)> {
        let parse =
            |item: Option<sled::Result<(sled::IVec, sled::IVec)>>| -> io::Result<Option<T>> {
                match item.transpose().map_err(sled_io)? {
                    Some((k, v)) if k.starts_with(prefix.as_bytes()) => {
                        serde_json::from_slice(&v).map(Some).map_err(io::Error::other)
                    }
                    _ => Ok(None),
                }
            };
        let before = parse(self.meta.range(prefix.as_bytes()..=key.as_bytes()).next_back())?;
        let after = {
            let mut above = self.meta.range(key.as_bytes()..);
            let mut first = above.next();
            if let Some(Ok((k, _))) = &first {
                if k.as_ref() == key.as_bytes() {
                    first = above.next();
                }
            }
            parse(first)?
        };
        Ok((before, after))
    }

    /// Every `meta` value whose key begins with `prefix`, by key.
    pub(super) fn meta_prefixed<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> io::Result<Vec<(String, T)>> {
        let mut out = Vec::new();
        for item in self.meta.scan_prefix(prefix) {
            let (k, v) = item.map_err(sled_io)?;
            let key = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            out.push((key, serde_json::from_slice(&v).map_err(io::Error::other)?));
        }
        Ok(out)
    }

    pub(super) fn meta_get<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> io::Result<Option<T>> {
        match self.meta.get(key).map_err(sled_io)? {
            Some(v) => serde_json::from_slice(&v).map(Some).map_err(io::Error::other),
            None => Ok(None),
        }
    }

    /// Bytes the index takes on disk: sled's one file (values are kept small enough
    /// that sled never writes its blob files).
    pub(super) fn disk_bytes(&self) -> io::Result<u64> {
        Ok(self.log_file.metadata()?.len())
    }

    pub(super) fn flush_durable(&self) -> io::Result<()> {
        self.make_durable()
    }

    /// Makes everything applied so far durable; concurrent callers share the work.
    fn make_durable(&self) -> io::Result<()> {
        self.flush.flush(|| {
            self.db.flush().map_err(sled_io)?;
            self.log_file.sync_all()
        })
    }

    /// One transaction for the submission, its case, its log leaf and its small objects,
    /// then a durable flush. Returns the leaf's index and the small objects' new bytes.
    pub(super) fn insert_submission(
        &self,
        record: &SubmissionRecord,
        case: CaseChoice<'_>,
        inline: &[InlineObject],
    ) -> Result<u64, CommitError> {
        let encode = |e| CommitError::NotRecorded(io::Error::other(e));
        let new_case = match case {
            CaseChoice::New { tag, case } => {
                let tagged = TaggedCase { tag: hex::encode(tag), record: case.clone() };
                let mut key = tag[..TAG_PREFIX].to_vec();
                key.extend_from_slice(case.case.as_bytes());
                Some((
                    key,
                    serde_json::to_vec(&tagged).map_err(encode)?,
                    serde_json::to_vec(case).map_err(encode)?,
                ))
            }
            CaseChoice::WithoutCodename => {
                let case = CaseRecord {
                    case: record.case.to_string(),
                    reply_recipient: String::new(),
                    reply_salt: None,
                };
                Some((Vec::new(), Vec::new(), serde_json::to_vec(&case).map_err(encode)?))
            }
            CaseChoice::Existing => None,
        };
        let leaf = checked_leaf(&LogLeaf::from(record)).map_err(CommitError::NotRecorded)?;
        let member = member_key(&record.case, &record.id);
        let trees = (&self.submissions, &self.unexported, &self.meta, &self.log, &self.cases);
        let more = (&self.case_records, &self.case_members, &self.inline_objects, &self.inline_ids);
        // Each check uses what `insert` returns (the value it replaced): sled's insert
        // reads the key anyway, and an abort discards every write of the transaction.
        let index = (trees.0, trees.1, trees.2, trees.3, trees.4, more.0, more.1, more.2, more.3)
            .transaction(|tx| {
                let (submissions, unexported, meta, log, cases) =
                    (&tx.0, &tx.1, &tx.2, &tx.3, &tx.4);
                let (case_records, case_members, objects, ids) = (&tx.5, &tx.6, &tx.7, &tx.8);
                match &new_case {
                    Some((key, tagged, case)) => {
                        if case_records.insert(record.case.as_bytes(), case.as_slice())?.is_some() {
                            return Err(abort("case already recorded"));
                        }
                        if !key.is_empty() {
                            cases.insert(key.as_slice(), tagged.as_slice())?;
                        }
                    }
                    None => {
                        if case_records.get(record.case.as_bytes())?.is_none() {
                            return Err(abort("no such case"));
                        }
                    }
                }
                case_members.insert(member.as_bytes(), &[][..])?;
                let index = append_leaf(log, &leaf)?;
                InlineTrees { objects, ids }.insert(index, inline)?;
                let record = SubmissionRecord { log_index: Some(index), ..record.clone() };
                let bytes = serde_json::to_vec(&record).map_err(|e| abort(&e.to_string()))?;
                unexported.insert(record.id.as_bytes(), bytes.as_slice())?;
                meta.insert(UNEXPORTED_THROUGH, &(index + 1).to_be_bytes()[..])?;
                if submissions.insert(record.id.as_bytes(), bytes)?.is_some() {
                    return Err(abort("submission id already recorded"));
                }
                Ok(index)
            })
            .map_err(|e| CommitError::NotRecorded(tx_io(e)))?;
        self.make_durable().map_err(CommitError::NotDurable)?;
        Ok(index)
    }

    /// A small object's ciphertext, if the index holds it.
    pub(super) fn inline_object(&self, id: &ObjectId) -> io::Result<Option<Vec<u8>>> {
        let Some(place) = self.inline_ids.get(id.as_str()).map_err(sled_io)? else {
            return Ok(None);
        };
        let (seq, len) = decode_place(&place)?;
        let damaged = || io::Error::other(format!("object {id} is damaged in the index"));
        let mut bytes = Vec::with_capacity(usize::try_from(len).map_err(|_| damaged())?);
        for (n, item) in self.inline_objects.scan_prefix(chunk_prefix(seq, id)).enumerate() {
            let (key, chunk) = item.map_err(sled_io)?;
            if key != chunk_key(seq, id, n) {
                return Err(damaged());
            }
            bytes.extend_from_slice(&chunk);
        }
        if bytes.len() as u64 != len {
            return Err(damaged());
        }
        Ok(Some(bytes))
    }

    /// A small object's length, if the index holds it.
    pub(super) fn inline_len(&self, id: &ObjectId) -> io::Result<Option<u64>> {
        match self.inline_ids.get(id.as_str()).map_err(sled_io)? {
            Some(place) => Ok(Some(decode_place(&place)?.1)),
            None => Ok(None),
        }
    }

    /// Every small object's id and length.
    pub(super) fn inline_list(&self) -> io::Result<Vec<(ObjectId, u64)>> {
        let mut out = Vec::new();
        for item in &self.inline_ids {
            let (key, place) = item.map_err(sled_io)?;
            let id = std::str::from_utf8(&key)
                .ok()
                .and_then(ObjectId::parse)
                .ok_or_else(|| io::Error::other("a damaged key among the small objects"))?;
            out.push((id, decode_place(&place)?.1));
        }
        Ok(out)
    }

    /// Counted from the ids (16 bytes each to read): a running total would be one more
    /// write in every commit's transaction.
    pub(super) fn inline_totals(&self) -> io::Result<InlineTotals> {
        let mut totals = InlineTotals::default();
        for item in self.inline_ids.iter().values() {
            totals.objects += 1;
            totals.bytes += decode_place(&item.map_err(sled_io)?)?.1;
        }
        Ok(totals)
    }

    pub(super) fn get_json<T: serde::de::DeserializeOwned>(
        tree: &sled::Tree,
        key: &[u8],
    ) -> io::Result<Option<T>> {
        match tree.get(key).map_err(sled_io)? {
            Some(v) => serde_json::from_slice(&v).map(Some).map_err(io::Error::other),
            None => Ok(None),
        }
    }

    pub(super) fn log_size(&self) -> io::Result<u64> {
        Ok(log_size(self.log.get(LOG_SIZE).map_err(sled_io)?.as_ref()))
    }

    pub(super) fn submission(&self, id: &str) -> io::Result<Option<SubmissionRecord>> {
        match self.submissions.get(id.as_bytes()).map_err(sled_io)? {
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(io::Error::other),
            None => Ok(None),
        }
    }

    pub(super) fn submission_count(&self) -> usize {
        self.submissions.len()
    }

    /// Ids of every object a record still needs (for the start-up sweep).
    pub(super) fn referenced_objects(&self) -> io::Result<HashSet<ObjectId>> {
        // A purged submission's objects are meant to be gone. One pass over the marks,
        // not a lookup per record.
        let mut purged = HashSet::new();
        for item in &self.exports {
            let (key, mark) = item.map_err(sled_io)?;
            if serde_json::from_slice::<ExportMark>(&mark).map_err(io::Error::other)?.purged {
                purged.insert(key);
            }
        }
        let mut ids = HashSet::new();
        for item in &self.submissions {
            let (key, bytes) = item.map_err(sled_io)?;
            if purged.contains(&key) {
                continue;
            }
            let record: SubmissionRecord =
                serde_json::from_slice(&bytes).map_err(io::Error::other)?;
            ids.insert(record.manifest);
            ids.extend(record.attachments);
        }
        ids.extend(self.reply_objects()?);
        Ok(ids)
    }

    /// Every stored reply's object.
    pub(super) fn reply_objects(&self) -> io::Result<HashSet<ObjectId>> {
        let mut ids = HashSet::new();
        for item in &self.replies {
            let (_, bytes) = item.map_err(sled_io)?;
            let reply: ReplyRecord = serde_json::from_slice(&bytes).map_err(io::Error::other)?;
            ids.insert(reply.object);
        }
        Ok(ids)
    }
}

impl merkle::NodeSource for Index {
    fn node(&self, level: u8, index: u64) -> io::Result<merkle::Hash> {
        self.log
            .get(node_key(level, index))
            .map_err(sled_io)?
            .and_then(|n| n.as_ref().try_into().ok())
            .ok_or_else(|| io::Error::other("the log is missing a node"))
    }
}

const LOG_SIZE: &[u8] = b"size";
/// In `meta`: set when something deleted should leave sled's files too (a v1 tag).
const COMPACT_DUE: &str = "compact_due";
/// In `meta`: how many replies were resealed from v1 keys (u64, big-endian).
const RESEALED: &str = "replies_resealed_from_v1";

/// `n` + level + big-endian index: perfect-subtree hashes sort by level, then position.
fn node_key(level: u8, index: u64) -> [u8; 10] {
    let mut key = [0u8; 10];
    key[0] = b'n';
    key[1] = level;
    key[2..].copy_from_slice(&index.to_be_bytes());
    key
}

fn log_size(value: Option<&sled::IVec>) -> u64 {
    value.and_then(|v| v.as_ref().try_into().ok()).map_or(0, u64::from_be_bytes)
}

/// Appends a leaf inside a transaction: its perfect subtrees, its journal entry (what
/// replication sends: `store::journal`) and the new size.
fn append_leaf(
    log: &sled::transaction::TransactionalTree,
    leaf: &CheckedLeaf,
) -> Result<u64, ConflictableTransactionError<io::Error>> {
    let index = log_size(log.get(LOG_SIZE)?.as_ref());
    let nodes = merkle::nodes_completed_by(index, leaf.hash, |level, i| {
        let node = log.get(node_key(level, i))?;
        node.and_then(|n| n.as_ref().try_into().ok())
            .ok_or_else(|| abort("the log is missing a node"))
    })?;
    for (level, i, hash) in nodes {
        log.insert(&node_key(level, i)[..], &hash[..])?;
    }
    log.insert(&journal_key(index)[..], leaf.journal.as_slice())?;
    log.insert(LOG_SIZE, &(index + 1).to_be_bytes()[..])?;
    Ok(index)
}

/// A leaf that passed `LogLeaf::validate`, ready to append: its hash and its journal
/// entry.
pub(super) struct CheckedLeaf {
    hash: merkle::Hash,
    journal: Vec<u8>,
}

/// The one way a leaf reaches `append_leaf`: validated, hashed, and its journal entry
/// made.
fn checked_leaf(leaf: &LogLeaf) -> io::Result<CheckedLeaf> {
    leaf.validate().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let journal = serde_json::to_vec(&JournalValue::of(leaf)).map_err(io::Error::other)?;
    Ok(CheckedLeaf { hash: leaf.hash(), journal })
}

fn chunk_prefix(seq: u64, id: &ObjectId) -> Vec<u8> {
    let mut key = seq.to_be_bytes().to_vec();
    key.extend_from_slice(id.as_str().as_bytes());
    key
}

fn chunk_key(seq: u64, id: &ObjectId, chunk: usize) -> Vec<u8> {
    let mut key = chunk_prefix(seq, id);
    key.extend_from_slice(&(chunk as u16).to_be_bytes());
    key
}

fn decode_place(place: &[u8]) -> io::Result<(u64, u64)> {
    let seq = place.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes);
    let len = place.get(8..16).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes);
    seq.zip(len).ok_or_else(|| io::Error::other("a damaged entry among the small objects"))
}

type TxTree = sled::transaction::TransactionalTree;
type TxResult<T> = Result<T, ConflictableTransactionError<io::Error>>;

/// The small objects' trees inside one transaction.
struct InlineTrees<'a> {
    objects: &'a TxTree,
    ids: &'a TxTree,
}

impl InlineTrees<'_> {
    /// Writes small objects in chunks under `seq`; one already stored (the same bytes)
    /// is left as it is.
    fn insert(&self, seq: u64, inline: &[InlineObject]) -> TxResult<()> {
        for (id, bytes) in inline {
            if bytes.is_empty() || bytes.len() > CHUNK * usize::from(u16::MAX) {
                return Err(abort("a small object must have between 1 byte and 256 MiB"));
            }
            let mut place = seq.to_be_bytes().to_vec();
            place.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
            if let Some(earlier) = self.ids.insert(id.as_str(), place)? {
                // Stored before: keep that copy and where it is.
                self.ids.insert(id.as_str(), earlier)?;
                continue;
            }
            for (n, chunk) in bytes.chunks(CHUNK).enumerate() {
                self.objects.insert(chunk_key(seq, id, n), chunk)?;
            }
        }
        Ok(())
    }

    /// Deletes small objects; ids not stored here are skipped.
    fn remove(&self, inline: &[ObjectId]) -> TxResult<()> {
        for id in inline {
            let Some(place) = self.ids.remove(id.as_str())? else { continue };
            let (seq, len) = decode_place(&place).map_err(ConflictableTransactionError::Abort)?;
            for n in 0..(len as usize).div_ceil(CHUNK) {
                self.objects.remove(chunk_key(seq, id, n))?;
            }
        }
        Ok(())
    }
}

fn member_key(case: &str, member: &str) -> String {
    format!("{case}/{member}")
}

fn abort(why: &str) -> ConflictableTransactionError<io::Error> {
    ConflictableTransactionError::Abort(io::Error::other(why.to_string()))
}

/// A failed transaction's error: our own abort, or sled's.
fn tx_io(e: TransactionError<io::Error>) -> io::Error {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => sled_io(e),
    }
}

fn sled_io(e: sled::Error) -> io::Error {
    match e {
        sled::Error::Io(e) => e,
        other => io::Error::other(other.to_string()),
    }
}
