//! The sled index: submission records, cases, the log, and small objects. Nothing big
//! lives here: sled writes any page over 128 KiB (a leaf of up to ~20 entries, whole) to
//! a blob file it never fsyncs (sled #1077), so every value is kept to a few KiB and
//! small objects are stored in chunks.

use super::objects::InlineObject;
use crate::envelope::ObjectId;
use crate::log::{merkle, LogLeaf};
use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::Transactional;
use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::{Condvar, Mutex};

/// What the server keeps in plaintext about a submission, and nothing more.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmissionRecord {
    pub id: String,
    /// UTC hour of receipt (RFC 3339); never finer, so records cannot be matched
    /// against network logs.
    pub received_at: String,
    pub manifest: ObjectId,
    pub attachments: Vec<ObjectId>,
    /// Ciphertext bytes of all its objects.
    pub total_bytes: u64,
    /// Fingerprint of the recipient set the objects were encrypted to.
    pub recipients: String,
    /// The case this submission belongs to (the first submission's id).
    pub case: String,
    /// Its leaf in the intake log.
    #[serde(default)]
    pub log_index: Option<u64>,
}

impl SubmissionRecord {
    /// Its leaf in the intake log: what a receipt proves.
    pub fn log_leaf(&self) -> LogLeaf {
        LogLeaf::Submission {
            submission: self.id.clone(),
            case: self.case.clone(),
            received_at: self.received_at.clone(),
            manifest: self.manifest.to_string(),
            attachments: self.attachments.iter().map(ToString::to_string).collect(),
            recipients: self.recipients.clone(),
        }
    }

    /// Its objects: the attachments, then the manifest.
    pub fn object_ids(&self) -> Vec<ObjectId> {
        let mut ids = self.attachments.clone();
        ids.push(self.manifest.clone());
        ids
    }
}

/// When and in which bundle a submission was carried out, and whether its ciphertext
/// has since been purged from the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportMark {
    pub bundle: String,
    /// UTC hour (RFC 3339).
    pub exported_at: String,
    pub purged: bool,
}

/// The last export, for `amanat status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastExport {
    pub bundle: String,
    pub exported_at: String,
    pub submissions: usize,
}

/// A case, found by the codename tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseRecord {
    pub case: String,
    /// age recipient derived from the codename; replies are encrypted to it. Empty for
    /// a case without a codename (sealed offline).
    pub reply_recipient: String,
    /// Hex salt of the case's v2 reply key (`keys::CodenameKey::reply_identity`). None
    /// for a case made before v2, whose reply key anyone with the index can derive
    /// (issue 15): it gets a v2 key at its survivor's next sign-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_salt: Option<String>,
}

impl CaseRecord {
    /// A case with a codename whose keys predate v2: its replies are exposed.
    pub fn on_v1_keys(&self) -> bool {
        self.reply_salt.is_none() && !self.reply_recipient.is_empty()
    }
}

/// A case's reply key replaced at its survivor's sign-in (the upgrade from v1 keys):
/// what tells reviewers where to seal later replies, once logged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyKeyChange {
    pub case: String,
    pub recipient: String,
    /// Its custody leaf in the intake log; None until the next export logs it.
    pub log_index: Option<u64>,
    /// Whether a confirmed export carried it: until then, an export is made for it even
    /// with no new submission.
    #[serde(default)]
    pub exported: bool,
}

/// A reply from the coalition, stored as the ciphertext the reviewer made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyRecord {
    pub object: ObjectId,
    /// UTC hour the reply reached the server.
    pub imported_at: String,
    /// Its custody leaf in the intake log.
    pub log_index: u64,
}

/// A `cases` entry.
#[derive(Serialize, Deserialize)]
pub(super) struct TaggedCase {
    /// Hex HMAC tag of the normalized codename.
    pub tag: String,
    pub record: CaseRecord,
}

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
    /// sync_file_range, which flushes neither the file's size nor the disk's cache.
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
        let meta = db.open_tree("meta").map_err(sled_io)?;
        let log = db.open_tree("log").map_err(sled_io)?;
        let inline_objects = db.open_tree("inline_objects").map_err(sled_io)?;
        let inline_ids = db.open_tree("inline_ids").map_err(sled_io)?;
        let log_file = File::open(path.join("db"))?;
        super::sync_dir(path)?;
        Ok(Index {
            db,
            log_file,
            submissions,
            cases,
            case_records,
            case_members,
            replies,
            reply_keys,
            exports,
            meta,
            log,
            inline_objects,
            inline_ids,
            flush: GroupFlush::default(),
        })
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

    pub(super) fn meta_get<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> io::Result<Option<T>> {
        match self.meta.get(key).map_err(sled_io)? {
            Some(v) => serde_json::from_slice(&v).map(Some).map_err(io::Error::other),
            None => Ok(None),
        }
    }

    /// Submissions whose ciphertext is still here, in id order; with `unexported_only`,
    /// those never carried out.
    pub(super) fn submissions(&self, unexported_only: bool) -> io::Result<Vec<SubmissionRecord>> {
        let mut out = Vec::new();
        for item in self.submissions.iter() {
            let (key, bytes) = item.map_err(sled_io)?;
            let mark = self.exports.get(&key).map_err(sled_io)?;
            let purged = mark
                .as_deref()
                .and_then(|m| serde_json::from_slice::<ExportMark>(m).ok())
                .is_some_and(|m| m.purged);
            // Purged ciphertext is gone: nothing left to carry out.
            if purged || (unexported_only && mark.is_some()) {
                continue;
            }
            out.push(serde_json::from_slice(&bytes).map_err(io::Error::other)?);
        }
        Ok(out)
    }

    pub(super) fn export_mark(&self, id: &str) -> io::Result<Option<ExportMark>> {
        match self.exports.get(id.as_bytes()).map_err(sled_io)? {
            Some(v) => serde_json::from_slice(&v).map(Some).map_err(io::Error::other),
            None => Ok(None),
        }
    }

    /// Marks submissions as carried out in `bundle`, durably, in one transaction with
    /// the export's custody leaf; remembers the log size the bundle's checkpoint had.
    pub(super) fn mark_exported(
        &self,
        last: &LastExport,
        ids: &[String],
        checkpoint_size: u64,
    ) -> io::Result<()> {
        let mark = |purged| {
            serde_json::to_vec(&ExportMark {
                bundle: last.bundle.clone(),
                exported_at: last.exported_at.clone(),
                purged,
            })
        };
        let fresh = mark(false).map_err(io::Error::other)?;
        let last_bytes = serde_json::to_vec(last).map_err(io::Error::other)?;
        let mut sizes = self.export_sizes()?;
        if !sizes.contains(&checkpoint_size) {
            sizes.push(checkpoint_size);
        }
        let sizes_bytes = serde_json::to_vec(&sizes).map_err(io::Error::other)?;
        let leaf = checked_leaf(&LogLeaf::Export {
            bundle: last.bundle.clone(),
            exported_at: last.exported_at.clone(),
            submissions: ids.to_vec(),
        })?;
        (&self.exports, &self.meta, &self.log)
            .transaction(|(exports, meta, log)| {
                for id in ids {
                    // Re-exporting (--all) keeps the first mark and its purge state.
                    if exports.get(id.as_bytes())?.is_none() {
                        exports.insert(id.as_bytes(), fresh.as_slice())?;
                    }
                }
                meta.insert("last_export", last_bytes.as_slice())?;
                meta.insert("export_sizes", sizes_bytes.as_slice())?;
                append_leaf(log, leaf)?;
                Ok(())
            })
            .map_err(tx_io)?;
        self.make_durable()
    }

    /// Log sizes of the checkpoints earlier bundles carried.
    pub(super) fn export_sizes(&self) -> io::Result<Vec<u64>> {
        Ok(self.meta_get("export_sizes")?.unwrap_or_default())
    }

    /// Marks submissions purged and logs the purge as one custody leaf, in one
    /// transaction: the log never misses a purge, nor names one that did not happen.
    /// Durable with the next flush.
    pub(super) fn mark_purged(
        &self,
        due: &[(String, ExportMark)],
        purged_at: &str,
        inline: &[ObjectId],
    ) -> io::Result<()> {
        let marks = due
            .iter()
            .map(|(id, mark)| {
                serde_json::to_vec(&ExportMark { purged: true, ..mark.clone() })
                    .map(|bytes| (id.as_bytes(), bytes))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(io::Error::other)?;
        let leaf = checked_leaf(&LogLeaf::Purge {
            purged_at: purged_at.into(),
            submissions: due.iter().map(|(id, _)| id.clone()).collect(),
        })?;
        (&self.exports, &self.log, &self.inline_objects, &self.inline_ids)
            .transaction(|(exports, log, objects, ids)| {
                for (id, bytes) in &marks {
                    exports.insert(*id, bytes.as_slice())?;
                }
                InlineTrees { objects, ids }.remove(inline)?;
                append_leaf(log, leaf)
            })
            .map(|_| ())
            .map_err(tx_io)
    }

    /// Bytes the index takes on disk: sled's one file (values are kept small enough
    /// that sled never writes its blob files).
    pub(super) fn disk_bytes(&self) -> io::Result<u64> {
        Ok(self.log_file.metadata()?.len())
    }

    pub(super) fn flush_durable(&self) -> io::Result<()> {
        self.make_durable()
    }

    pub(super) fn export_counts(&self) -> io::Result<(usize, usize)> {
        let mut exported = 0;
        let mut purged = 0;
        for item in self.exports.iter() {
            let (_, v) = item.map_err(sled_io)?;
            exported += 1;
            let mark: ExportMark = serde_json::from_slice(&v).map_err(io::Error::other)?;
            purged += mark.purged as usize;
        }
        Ok((exported, purged))
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
                    case: record.case.clone(),
                    reply_recipient: String::new(),
                    reply_salt: None,
                };
                Some((Vec::new(), Vec::new(), serde_json::to_vec(&case).map_err(encode)?))
            }
            CaseChoice::Existing => None,
        };
        let leaf = checked_leaf(&record.log_leaf()).map_err(CommitError::NotRecorded)?;
        let member = member_key(&record.case, &record.id);
        let trees = (&self.submissions, &self.cases, &self.case_records, &self.case_members);
        let objects = (&self.inline_objects, &self.inline_ids);
        // Each check uses what `insert` returns (the value it replaced): sled's insert
        // reads the key anyway, and an abort discards every write of the transaction.
        let index = (trees.0, trees.1, trees.2, trees.3, &self.log, objects.0, objects.1)
            .transaction(|(submissions, cases, case_records, case_members, log, objects, ids)| {
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
                let index = append_leaf(log, leaf)?;
                InlineTrees { objects, ids }.insert(index, inline)?;
                let record = SubmissionRecord { log_index: Some(index), ..record.clone() };
                let bytes = serde_json::to_vec(&record).map_err(|e| abort(&e.to_string()))?;
                if submissions.insert(record.id.as_bytes(), bytes)?.is_some() {
                    return Err(abort("submission id already recorded"));
                }
                Ok(index)
            })
            .map_err(|e| CommitError::NotRecorded(tx_io(e)))?;
        self.make_durable().map_err(CommitError::NotDurable)?;
        Ok(index)
    }

    /// The cases whose codename tag begins like `tag`: candidates, to be confirmed by
    /// a constant-time comparison of the full tag.
    pub(super) fn cases_by_tag_prefix(&self, tag: &[u8; 32]) -> io::Result<Vec<TaggedCase>> {
        let mut out = Vec::new();
        for item in self.cases.scan_prefix(&tag[..TAG_PREFIX]) {
            let (_, bytes) = item.map_err(sled_io)?;
            out.push(serde_json::from_slice(&bytes).map_err(io::Error::other)?);
        }
        Ok(out)
    }

    pub(super) fn case_record(&self, case: &str) -> io::Result<Option<CaseRecord>> {
        self.get_json(&self.case_records, case.as_bytes())
    }

    /// A case's submissions, oldest first.
    pub(super) fn case_submissions(&self, case: &str) -> io::Result<Vec<SubmissionRecord>> {
        let mut out = Vec::new();
        for item in self.case_members.scan_prefix(format!("{case}/")) {
            let (key, _) = item.map_err(sled_io)?;
            let id = String::from_utf8_lossy(&key[case.len() + 1..]).into_owned();
            if let Some(record) = self.submission(&id)? {
                out.push(record);
            }
        }
        out.sort_by_key(|r| r.log_index);
        Ok(out)
    }

    /// A case's replies, oldest first.
    pub(super) fn case_replies(&self, case: &str) -> io::Result<Vec<ReplyRecord>> {
        let mut out: Vec<ReplyRecord> = Vec::new();
        for item in self.replies.scan_prefix(format!("{case}/")) {
            let (_, bytes) = item.map_err(sled_io)?;
            out.push(serde_json::from_slice(&bytes).map_err(io::Error::other)?);
        }
        out.sort_by_key(|r| r.log_index);
        Ok(out)
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
        for item in self.inline_ids.iter() {
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

    pub(super) fn has_reply(&self, case: &str, object: &ObjectId) -> io::Result<bool> {
        self.replies.contains_key(member_key(case, object.as_str())).map_err(sled_io)
    }

    /// Records a reply and its custody leaf in one transaction, then makes it durable.
    /// A reply already recorded is left as it is (importing twice adds nothing).
    /// Returns whether it was new.
    pub(super) fn insert_reply(
        &self,
        case: &str,
        object: &ObjectId,
        imported_at: &str,
        inline: &[InlineObject],
    ) -> Result<bool, CommitError> {
        let key = member_key(case, object.as_str());
        let leaf = checked_leaf(&LogLeaf::Reply {
            case: case.into(),
            object: object.to_string(),
            imported_at: imported_at.into(),
        })
        .map_err(CommitError::NotRecorded)?;
        let trees = (&self.replies, &self.case_records, &self.log);
        let added = (trees.0, trees.1, trees.2, &self.inline_objects, &self.inline_ids)
            .transaction(|(replies, case_records, log, objects, ids)| {
                if case_records.get(case.as_bytes())?.is_none() {
                    return Err(abort("no such case"));
                }
                if replies.get(key.as_bytes())?.is_some() {
                    return Ok(false);
                }
                let log_index = append_leaf(log, leaf)?;
                InlineTrees { objects, ids }.insert(log_index, inline)?;
                let record = ReplyRecord {
                    object: object.clone(),
                    imported_at: imported_at.into(),
                    log_index,
                };
                let bytes = serde_json::to_vec(&record).map_err(|e| abort(&e.to_string()))?;
                replies.insert(key.as_bytes(), bytes)?;
                Ok(true)
            })
            .map_err(|e| CommitError::NotRecorded(tx_io(e)))?;
        self.make_durable().map_err(CommitError::NotDurable)?;
        Ok(added)
    }

    /// Gives a case its new keys in one transaction: the old tag entry goes, the new
    /// one and the new record take their place, and the change waits for the next
    /// export to be logged (`log_reply_key_changes`): a leaf now would mark, to the hour,
    /// when a survivor came back. Durable on return. False when the old tag was already
    /// gone (a sign-in at the same moment upgraded the case first).
    pub(super) fn replace_case_keys(
        &self,
        old_tag: &[u8; 32],
        new_tag: &[u8; 32],
        case: &CaseRecord,
    ) -> io::Result<bool> {
        let tag_key = |tag: &[u8; 32]| {
            let mut key = tag[..TAG_PREFIX].to_vec();
            key.extend_from_slice(case.case.as_bytes());
            key
        };
        let (old_key, new_key) = (tag_key(old_tag), tag_key(new_tag));
        let tagged =
            serde_json::to_vec(&TaggedCase { tag: hex::encode(new_tag), record: case.clone() })
                .map_err(io::Error::other)?;
        let record = serde_json::to_vec(case).map_err(io::Error::other)?;
        let change = ReplyKeyChange {
            case: case.case.clone(),
            recipient: case.reply_recipient.clone(),
            log_index: None,
            exported: false,
        };
        let change = serde_json::to_vec(&change).map_err(io::Error::other)?;
        let replaced = (&self.cases, &self.case_records, &self.reply_keys, &self.meta)
            .transaction(|(cases, case_records, reply_keys, meta)| {
                if cases.remove(old_key.as_slice())?.is_none() {
                    return Ok(false);
                }
                cases.insert(new_key.as_slice(), tagged.as_slice())?;
                case_records.insert(case.case.as_bytes(), record.as_slice())?;
                reply_keys.insert(case.case.as_bytes(), change.as_slice())?;
                // The old tag's bytes stay in sled's log until its space is reused: the
                // next start-up rewrites the index without them.
                meta.insert(COMPACT_DUE, &b"1"[..])?;
                Ok(true)
            })
            .map_err(tx_io)?;
        self.make_durable()?;
        Ok(replaced)
    }

    /// Logs every reply-key change not logged yet, each as a custody leaf, in one
    /// transaction, durably (before an export builds its bundle).
    pub(super) fn log_reply_key_changes(&self) -> io::Result<()> {
        let mut pending = Vec::new();
        for item in self.reply_keys.iter() {
            let (key, bytes) = item.map_err(sled_io)?;
            let change: ReplyKeyChange =
                serde_json::from_slice(&bytes).map_err(io::Error::other)?;
            if change.log_index.is_none() {
                let leaf = LogLeaf::ReplyKey {
                    case: change.case.clone(),
                    recipient: change.recipient.clone(),
                };
                pending.push((key, change, checked_leaf(&leaf)?));
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        (&self.reply_keys, &self.log)
            .transaction(|(reply_keys, log)| {
                for (key, change, leaf) in &pending {
                    let logged = ReplyKeyChange {
                        log_index: Some(append_leaf(log, *leaf)?),
                        ..change.clone()
                    };
                    let bytes = serde_json::to_vec(&logged).map_err(|e| abort(&e.to_string()))?;
                    reply_keys.insert(key, bytes)?;
                }
                Ok(())
            })
            .map_err(tx_io)?;
        self.make_durable()
    }

    /// Every case's latest logged reply-key change, in case order.
    pub(super) fn reply_key_changes(&self) -> io::Result<Vec<ReplyKeyChange>> {
        let mut out = Vec::new();
        for item in self.reply_keys.iter() {
            let (_, bytes) = item.map_err(sled_io)?;
            let change: ReplyKeyChange =
                serde_json::from_slice(&bytes).map_err(io::Error::other)?;
            if change.log_index.is_some() {
                out.push(change);
            }
        }
        Ok(out)
    }

    /// Marks every logged reply-key change as carried out by a confirmed export.
    pub(super) fn mark_reply_keys_exported(&self) -> io::Result<()> {
        for item in self.reply_keys.iter() {
            let (key, bytes) = item.map_err(sled_io)?;
            let change: ReplyKeyChange =
                serde_json::from_slice(&bytes).map_err(io::Error::other)?;
            if change.log_index.is_some() && !change.exported {
                let done = ReplyKeyChange { exported: true, ..change };
                let bytes = serde_json::to_vec(&done).map_err(io::Error::other)?;
                self.reply_keys.insert(key, bytes).map_err(sled_io)?;
            }
        }
        self.make_durable()
    }

    /// Whether the index should be rewritten at the next start (`compact_into`).
    pub(super) fn compaction_due(&self) -> io::Result<bool> {
        Ok(self.meta.get(COMPACT_DUE).map_err(sled_io)?.is_some())
    }

    /// Copies every tree into a fresh sled database at `to`, without the due mark:
    /// what was deleted stays behind in the old files, which the caller removes.
    pub(super) fn compact_into(&self, to: &Path) -> io::Result<()> {
        let fresh = sled::Config::new()
            .path(to)
            .cache_capacity(16 * 1024 * 1024)
            .open()
            .map_err(sled_io)?;
        // sled's export and import panic where they meet an I/O error.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fresh.import(self.db.export())))
            .map_err(|_| io::Error::other("copying the index into a fresh one failed"))?;
        fresh.open_tree("meta").and_then(|meta| meta.remove(COMPACT_DUE)).map_err(sled_io)?;
        fresh.flush().map_err(sled_io)?;
        drop(fresh);
        // Every file of the copy, blobs included, and its folders: durable before the
        // copy replaces the index.
        let mut folders = vec![to.to_path_buf()];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder)? {
                let entry = entry?;
                if entry.file_type()?.is_dir() {
                    folders.push(entry.path());
                } else {
                    File::open(entry.path())?.sync_all()?;
                }
            }
            super::sync_dir(&folder)?;
        }
        Ok(())
    }

    /// Replaces a reply by another of the same case (the old one resealed): the new one
    /// and its custody leaf in, the old record and its small object out, in one
    /// transaction; durable on return.
    pub(super) fn replace_reply(
        &self,
        case: &str,
        old: &ObjectId,
        new: &ObjectId,
        imported_at: &str,
        inline: &[InlineObject],
    ) -> Result<(), CommitError> {
        let (old_key, new_key) = (member_key(case, old.as_str()), member_key(case, new.as_str()));
        let leaf = checked_leaf(&LogLeaf::Reply {
            case: case.into(),
            object: new.to_string(),
            imported_at: imported_at.into(),
        })
        .map_err(CommitError::NotRecorded)?;
        let old_inline = [old.clone()];
        (&self.replies, &self.log, &self.inline_objects, &self.inline_ids, &self.meta)
            .transaction(|(replies, log, objects, ids, meta)| {
                if replies.remove(old_key.as_bytes())?.is_none() {
                    return Err(abort("the reply to reseal is gone"));
                }
                let log_index = append_leaf(log, leaf)?;
                let trees = InlineTrees { objects, ids };
                trees.remove(&old_inline)?;
                meta.insert(COMPACT_DUE, &b"1"[..])?;
                trees.insert(log_index, inline)?;
                let record =
                    ReplyRecord { object: new.clone(), imported_at: imported_at.into(), log_index };
                let bytes = serde_json::to_vec(&record).map_err(|e| abort(&e.to_string()))?;
                replies.insert(new_key.as_bytes(), bytes)?;
                let count = meta.get(RESEALED)?.and_then(|v| v.as_ref().try_into().ok());
                let count = count.map(u64::from_be_bytes).unwrap_or(0) + 1;
                meta.insert(RESEALED, &count.to_be_bytes()[..])?;
                Ok(())
            })
            .map_err(|e| CommitError::NotRecorded(tx_io(e)))?;
        self.make_durable().map_err(CommitError::NotDurable)
    }

    /// Replies resealed from a key of before v2: any copy of the index made before
    /// their case's upgrade reads them.
    pub(super) fn resealed_count(&self) -> io::Result<u64> {
        let value = self.meta.get(RESEALED).map_err(sled_io)?;
        Ok(value.and_then(|v| v.as_ref().try_into().ok()).map(u64::from_be_bytes).unwrap_or(0))
    }

    /// Every stored reply, with its case.
    pub(super) fn all_replies(&self) -> io::Result<Vec<(String, ReplyRecord)>> {
        let mut out = Vec::new();
        for item in self.replies.iter() {
            let (key, bytes) = item.map_err(sled_io)?;
            let case = String::from_utf8_lossy(&key).split('/').next().unwrap_or("").to_string();
            out.push((case, serde_json::from_slice(&bytes).map_err(io::Error::other)?));
        }
        Ok(out)
    }

    /// Deletes replies of `case` and those of their objects the index holds, in one
    /// transaction, durably. Returns the records removed.
    pub(super) fn remove_replies(
        &self,
        replies: &[(String, ObjectId)],
        inline: &[ObjectId],
    ) -> io::Result<()> {
        let keys: Vec<String> =
            replies.iter().map(|(case, object)| member_key(case, object.as_str())).collect();
        (&self.replies, &self.inline_objects, &self.inline_ids, &self.meta)
            .transaction(|(replies, objects, ids, meta)| {
                for key in &keys {
                    replies.remove(key.as_bytes())?;
                }
                // A reply kept in the index (before replies were files) leaves its
                // bytes in sled's log: the next start rewrites the index without them.
                if !inline.is_empty() {
                    meta.insert(COMPACT_DUE, &b"1"[..])?;
                }
                InlineTrees { objects, ids }.remove(inline)
            })
            .map_err(tx_io)?;
        self.make_durable()
    }

    /// Cases whose survivor has not signed in since the upgrade to v2 keys, the replies
    /// stored for them (readable by anyone holding a copy of the index), and all
    /// replies stored.
    pub(super) fn reply_key_counts(&self) -> io::Result<(usize, usize, usize)> {
        let mut old = HashSet::new();
        for item in self.case_records.iter() {
            let (_, bytes) = item.map_err(sled_io)?;
            let record: CaseRecord = serde_json::from_slice(&bytes).map_err(io::Error::other)?;
            if record.on_v1_keys() {
                old.insert(record.case);
            }
        }
        let replies = self.all_replies()?;
        let exposed = replies.iter().filter(|(case, _)| old.contains(case)).count();
        Ok((old.len(), exposed, replies.len()))
    }

    fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        tree: &sled::Tree,
        key: &[u8],
    ) -> io::Result<Option<T>> {
        match tree.get(key).map_err(sled_io)? {
            Some(v) => serde_json::from_slice(&v).map(Some).map_err(io::Error::other),
            None => Ok(None),
        }
    }

    pub(super) fn log_size(&self) -> io::Result<u64> {
        Ok(log_size(&self.log.get(LOG_SIZE).map_err(sled_io)?))
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
        for item in self.exports.iter() {
            let (key, mark) = item.map_err(sled_io)?;
            if serde_json::from_slice::<ExportMark>(&mark).map_err(io::Error::other)?.purged {
                purged.insert(key);
            }
        }
        let mut ids = HashSet::new();
        for item in self.submissions.iter() {
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
        for item in self.replies.iter() {
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

fn log_size(value: &Option<sled::IVec>) -> u64 {
    value.as_ref().and_then(|v| v.as_ref().try_into().ok()).map(u64::from_be_bytes).unwrap_or(0)
}

/// Appends a leaf inside a transaction: its perfect subtrees and the new size.
fn append_leaf(
    log: &sled::transaction::TransactionalTree,
    leaf: merkle::Hash,
) -> Result<u64, ConflictableTransactionError<io::Error>> {
    let index = log_size(&log.get(LOG_SIZE)?);
    let nodes = merkle::nodes_completed_by(index, leaf, |level, i| {
        let node = log.get(node_key(level, i))?;
        node.and_then(|n| n.as_ref().try_into().ok())
            .ok_or_else(|| abort("the log is missing a node"))
    })?;
    for (level, i, hash) in nodes {
        log.insert(&node_key(level, i)[..], &hash[..])?;
    }
    log.insert(LOG_SIZE, &(index + 1).to_be_bytes()[..])?;
    Ok(index)
}

/// The hash of a leaf that passed `LogLeaf::validate`: the one way a leaf reaches
/// `append_leaf`.
fn checked_leaf(leaf: &LogLeaf) -> io::Result<merkle::Hash> {
    leaf.validate().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(leaf.hash())
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

/// Group commit: a caller needs a flush that *started* after its write; while one
/// flush runs, later callers wait and the next flush serves all of them at once.
#[derive(Default)]
struct GroupFlush {
    state: Mutex<FlushState>,
    done: Condvar,
}

#[derive(Default)]
struct FlushState {
    started: u64,
    completed: u64,
    running: bool,
    waiting: usize,
}

impl GroupFlush {
    fn flush(&self, flush: impl Fn() -> io::Result<()>) -> io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let needed = state.started + 1;
        loop {
            if state.completed >= needed {
                return Ok(());
            }
            if !state.running {
                state.running = true;
                state.started += 1;
                let generation = state.started;
                drop(state);
                // Even if the flush panics, the guard lets the next caller run one.
                let mut running = Running { group: self, completed: None };
                let result = flush();
                if result.is_ok() {
                    running.completed = Some(generation);
                }
                drop(running);
                // A failed flush fails its caller; waiters retry with their own flush.
                result?;
                state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            } else {
                state.waiting += 1;
                state = self.done.wait(state).unwrap_or_else(|p| p.into_inner());
                state.waiting -= 1;
            }
        }
    }
}

/// Ends a flush, however it ends: records what it completed and wakes the waiters, in
/// one critical section so no waiter starts a flush it does not need.
struct Running<'a> {
    group: &'a GroupFlush,
    completed: Option<u64>,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut state = self.group.state.lock().unwrap_or_else(|p| p.into_inner());
        state.running = false;
        if let Some(generation) = self.completed {
            state.completed = generation;
        }
        self.group.done.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn callers_arriving_during_a_flush_share_the_next_one() {
        let group = Arc::new(GroupFlush::default());
        let flushes = Arc::new(AtomicUsize::new(0));
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let call = |group: Arc<GroupFlush>, flushes: Arc<AtomicUsize>, gate: Arc<Mutex<_>>| {
            std::thread::spawn(move || {
                group.flush(|| {
                    // The first flush holds until the test releases it.
                    if flushes.fetch_add(1, Ordering::SeqCst) == 0 {
                        let gate: std::sync::MutexGuard<'_, std::sync::mpsc::Receiver<()>> =
                            gate.lock().unwrap();
                        gate.recv().unwrap();
                    }
                    Ok(())
                })
            })
        };
        let first = call(group.clone(), flushes.clone(), gate.clone());
        while flushes.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        let later: Vec<_> =
            (0..15).map(|_| call(group.clone(), flushes.clone(), gate.clone())).collect();
        while group.state.lock().unwrap().waiting < 15 {
            std::thread::yield_now();
        }
        release.send(()).unwrap();
        first.join().unwrap().unwrap();
        for t in later {
            t.join().unwrap().unwrap();
        }
        // Fifteen callers wrote while the first flush ran: one more flush covers them all.
        assert_eq!(flushes.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_panicking_flush_does_not_block_later_commits() {
        let group = GroupFlush::default();
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            group.flush(|| panic!("sled assertion"))
        }));
        assert!(panicked.is_err());
        let flushes = AtomicUsize::new(0);
        group
            .flush(|| {
                flushes.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
            .unwrap();
        assert_eq!(flushes.load(Ordering::SeqCst), 1);
    }
}
