//! The store: ciphertext objects, large ones as fsynced files (`objects`), small ones
//! in sled beside the records that name them (`index`). Nothing here ever sees
//! plaintext.
//!
//! Layout of the data directory (created 0700):
//! ```text
//! objects/<id>      one age file per large object, named by the SHA-256 of its bytes
//! objects/tmp/      objects being written; swept at start-up
//! index/            sled: submission records, cases, the log, small objects
//! instance.secret   32 random bytes keying codename keys (0600)
//! ```

mod index;
mod objects;

use index::CommitError;
pub use index::{
    CaseChoice, CaseRecord, ExportMark, LastExport, ReplyKeyChange, ReplyRecord, SubmissionRecord,
};
pub use objects::{ObjectWriter, PendingObjects, Reservation, StoredObject, Usage, INLINE_MAX};

use crate::envelope::ObjectId;
use crate::keys::{CodenameKey, SigningKey};
use crate::log::{merkle, Checkpoint, LogLeaf, Receipt};
use ring::rand::{SecureRandom, SystemRandom};
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use zeroize::Zeroizing;

pub struct Store {
    objects: PathBuf,
    tmp: PathBuf,
    index: index::Index,
    /// Signs the log's checkpoints (`signing.key`, 0600).
    key: SigningKey,
    instance_secret: Zeroizing<Vec<u8>>,
    rng: SystemRandom,
    /// Sealed files being imported right now, by submission id: the same file arriving
    /// twice at once (USB and HTTP) is taken once.
    importing: std::sync::Mutex<HashSet<String>>,
    usage: Arc<Usage>,
    /// Object files requests under way hold (shared objects are deleted only when
    /// nothing holds or names them).
    refs: Arc<objects::ObjectRefs>,
    /// Commits share it; a purge takes it alone, so no record commits between the
    /// purge's reading of what records name and its deleting of the rest.
    commit_gate: std::sync::RwLock<()>,
}

/// A claim on importing one sealed file; released on drop.
pub struct ImportClaim<'a> {
    store: &'a Store,
    id: String,
}

impl Drop for ImportClaim<'_> {
    fn drop(&mut self) {
        self.store.importing.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.id);
    }
}

/// What `amanat status` shows: counts and sizes, never content.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct StoreStatus {
    pub server: String,
    /// The key that signs checkpoints, as `name+keyid+key` (C2SP signed note).
    pub server_key: String,
    pub log_size: u64,
    pub submissions: usize,
    pub exported: usize,
    pub purged: usize,
    /// Objects stored (files and small objects in the index).
    #[serde(default)]
    pub objects: u64,
    /// Bytes of ciphertext on disk.
    pub store_bytes: u64,
    /// Bytes the index takes on disk (records, the log, small objects, sled's own).
    #[serde(default)]
    pub index_bytes: u64,
    pub last_export: Option<LastExport>,
    /// Cases whose survivor has not signed in since the upgrade to v2 codename keys.
    #[serde(default)]
    pub cases_on_v1_keys: usize,
    /// Replies stored for those cases: sealed to a key anyone holding a copy of the
    /// index can derive (issue 15). Each is shown once and deleted at its survivor's
    /// next sign-in, or goes at `replies.retention_days`.
    #[serde(default)]
    pub replies_exposed: usize,
    /// Replies waiting for their survivors, all told.
    #[serde(default)]
    pub replies_waiting: usize,
    /// Replies that were sealed to a key of before v2 and have been resealed since:
    /// any copy of the index made before their case's upgrade can read them.
    #[serde(default)]
    pub replies_exposed_before_upgrade: u64,
    /// Submissions whose ciphertext is not all there (an object missing from the
    /// store): they cannot be exported until it is restored from a backup.
    #[serde(default)]
    pub submissions_missing_objects: Vec<String>,
    /// Deleted bytes (an old codename tag, a reply kept in the index) are still in the
    /// index's files: the next start rewrites the index without them.
    #[serde(default)]
    pub index_rewrite_due: bool,
}

/// Lengths of stored objects by id, and the (submission, object) pairs not stored.
pub type ObjectLens = (std::collections::HashMap<ObjectId, u64>, Vec<(String, ObjectId)>);

/// A case a codename opened.
pub struct FoundCase {
    pub record: CaseRecord,
    /// The v1 tag it was found by: it still has the keys of before v2 and must get new
    /// ones now (`upgrade_case_keys`).
    v1_tag: Option<[u8; 32]>,
}

impl FoundCase {
    pub fn needs_new_keys(&self) -> bool {
        self.v1_tag.is_some()
    }
}

/// What the start-up sweep removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub temp_files: usize,
    pub orphan_objects: usize,
}

impl Store {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: &Path) -> io::Result<Store> {
        let objects = dir.join("objects");
        let tmp = objects.join("tmp");
        if dir.exists() {
            // Only the server's user may enter: the admin socket and the secret live here.
            fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        }
        for d in [dir, &objects, &tmp] {
            fs::DirBuilder::new().recursive(true).mode(0o700).create(d)?;
        }
        let index = open_index(&dir.join("index"))?;
        let rng = SystemRandom::new();
        let instance_secret = load_or_create_secret(&dir.join("instance.secret"), &rng)?;
        let server_id = index.meta_or_insert("server_id", || random_hex(&rng, 16))?;
        let key =
            SigningKey::load_or_create(&dir.join("signing.key"), &format!("amanat/{server_id}"))?;
        let usage = Arc::default();
        let refs = Arc::new(objects::ObjectRefs::new(&objects, &usage));
        Ok(Store {
            objects,
            tmp,
            index,
            key,
            instance_secret,
            rng,
            importing: Default::default(),
            usage,
            refs,
            commit_gate: Default::default(),
        })
    }

    /// Removes what a crash or an aborted request left behind: every temporary file,
    /// and every object no record references (written, but never acknowledged).
    /// Runs before the server accepts requests.
    pub fn sweep(&self) -> io::Result<SweepReport> {
        let mut report = SweepReport::default();
        for entry in fs::read_dir(&self.tmp)? {
            fs::remove_file(entry?.path())?;
            report.temp_files += 1;
        }
        let mut files = Vec::new();
        for entry in fs::read_dir(&self.objects)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                files.push(entry);
            }
        }
        // Reading every record is most of a start-up: only when there are files to judge.
        let referenced: HashSet<ObjectId> =
            if files.is_empty() { HashSet::new() } else { self.index.referenced_objects()? };
        let mut stored = 0;
        for entry in files {
            let id = ObjectId::parse(&entry.file_name().to_string_lossy());
            if !id.is_some_and(|id| referenced.contains(&id)) {
                fs::remove_file(entry.path())?;
                report.orphan_objects += 1;
            } else {
                stored += entry.metadata()?.len();
            }
        }
        sync_dir(&self.objects)?;
        self.usage.set_stored(stored);
        self.usage.set_index_bytes(self.index.disk_bytes()?);
        Ok(report)
    }

    /// A new object for the request `pending`, deleted unless persisted and committed.
    pub fn create_object(&self, pending: &PendingObjects) -> ObjectWriter {
        ObjectWriter::new(&self.tmp, &self.refs, self.random_hex(16), pending, true)
    }

    /// A new object that is always a file, however small (a reply: deleted once read,
    /// and a file can be overwritten before it goes, where sled keeps a deleted value's
    /// bytes in its log until it reuses their space).
    fn create_file_object(&self, pending: &PendingObjects) -> ObjectWriter {
        ObjectWriter::new(&self.tmp, &self.refs, self.random_hex(16), pending, false)
    }

    /// Records a submission, its case, its log leaf and its small objects in one
    /// transaction and makes it durable. Its object files must already be persisted; on
    /// success they stop being pending and will never be swept. Returns the
    /// submission's receipt.
    pub fn commit(
        &self,
        pending: &PendingObjects,
        record: &SubmissionRecord,
        case: CaseChoice<'_>,
    ) -> io::Result<Receipt> {
        let index = self
            .commit_index(pending, |inline| self.index.insert_submission(record, case, inline))?;
        self.receipt(&record.id, index, &record.log_leaf())
    }

    /// Runs one index commit for the request `pending`, handing it the request's small
    /// objects, then measures the index for the quota.
    fn commit_index<T>(
        &self,
        pending: &PendingObjects,
        write: impl FnOnce(&[objects::InlineObject]) -> Result<T, CommitError>,
    ) -> io::Result<T> {
        let _shared = self.commit_gate.read().unwrap_or_else(|p| p.into_inner());
        let result = pending.commit_with(|inline| {
            // sled fails for good after one full-disk write: it must never meet one.
            objects::check_headroom(&self.objects).map_err(|e| (e, false))?;
            write(inline).map_err(CommitError::kept)
        })?;
        self.usage.set_index_bytes(self.index.disk_bytes()?);
        Ok(result)
    }

    /// Claims the import of sealed submission `id`; None while another import of it runs.
    pub fn claim_import(&self, id: &str) -> Option<ImportClaim<'_>> {
        let mut importing = self.importing.lock().unwrap_or_else(|p| p.into_inner());
        importing.insert(id.to_string()).then(|| ImportClaim { store: self, id: id.to_string() })
    }

    /// The lookup tag and the record of a new case with a codename: a fresh salt, and
    /// the reply recipient the codename key gives with it.
    pub fn new_case_keys(&self, case: &str, key: &CodenameKey) -> ([u8; 32], CaseRecord) {
        let mut salt = [0u8; crate::keys::CASE_SALT_BYTES];
        self.rng.fill(&mut salt).expect("the system random source works");
        let record = CaseRecord {
            case: case.to_string(),
            reply_recipient: key.reply_identity(&salt).to_public().to_string(),
            reply_salt: Some(hex::encode(salt)),
        };
        (key.lookup_tag(), record)
    }

    /// The case a codename opens, if any: by its v2 tag, or else by the tag it had
    /// before v2 (then `needs_new_keys`).
    pub fn find_case(
        &self,
        key: &CodenameKey,
        normalized_codename: &str,
    ) -> io::Result<Option<FoundCase>> {
        let v2 = key.lookup_tag();
        for candidate in self.index.cases_by_tag_prefix(&v2)? {
            let stored = hex::decode(&candidate.tag).unwrap_or_default();
            if candidate.record.reply_salt.is_some() && key.matches_tag(&stored) {
                return Ok(Some(FoundCase { record: candidate.record, v1_tag: None }));
            }
        }
        let v1 = crate::keys::v1_lookup_tag(&self.instance_secret, normalized_codename);
        for candidate in self.index.cases_by_tag_prefix(&v1)? {
            let stored = hex::decode(&candidate.tag).unwrap_or_default();
            if candidate.record.on_v1_keys()
                && crate::keys::v1_matches_tag(&self.instance_secret, normalized_codename, &stored)
            {
                return Ok(Some(FoundCase { record: candidate.record, v1_tag: Some(v1) }));
            }
        }
        Ok(None)
    }

    /// Gives a case found by its v1 tag its v2 keys: a new salt and reply recipient, the
    /// v1 tag deleted, and a reply-key change the next export logs, so reviewers learn
    /// the new recipient. Durable on return. None when a sign-in at the same moment
    /// upgraded it first (find it again). Its replies the caller reseals.
    pub fn upgrade_case_keys(
        &self,
        found: &FoundCase,
        key: &CodenameKey,
    ) -> io::Result<Option<CaseRecord>> {
        let Some(old_tag) = found.v1_tag else { return Ok(Some(found.record.clone())) };
        let (tag, record) = self.new_case_keys(&found.record.case, key);
        Ok(self.index.replace_case_keys(&old_tag, &tag, &record)?.then_some(record))
    }

    /// Logs the reply-key changes not logged yet (at the start of an export); true when
    /// some logged change has not been carried out by an export yet.
    pub fn log_reply_key_changes(&self) -> io::Result<bool> {
        self.index.log_reply_key_changes()?;
        Ok(self.index.reply_key_changes()?.iter().any(|c| !c.exported))
    }

    /// Marks the logged reply-key changes as carried out (an export was confirmed).
    pub fn mark_reply_keys_exported(&self) -> io::Result<()> {
        self.index.mark_reply_keys_exported()
    }

    /// Replaces a stored reply by `ciphertext`, the same reply resealed to its case's
    /// new key, durably, with the new one's custody leaf. It keeps the hour the reply
    /// reached the server.
    pub fn reseal_reply(&self, case: &str, old: &ReplyRecord, ciphertext: &[u8]) -> io::Result<()> {
        let (old, hour) = (&old.object, old.imported_at.as_str());
        let id = ObjectId::of(ciphertext);
        let file = self.index.inline_len(old)?.is_none();
        let pending = PendingObjects::default();
        let result = (|| {
            let mut object = self.create_file_object(&pending);
            object.write_all(ciphertext)?;
            object.persist(&id, &pending)?;
            self.commit_index(&pending, |inline| {
                self.index.replace_reply(case, old, &id, hour, inline)
            })
        })();
        if result.is_err() {
            pending.abandon();
        }
        result?;
        if file {
            self.refs.remove_unnamed(std::slice::from_ref(old), true)?;
        }
        Ok(())
    }

    /// Every case's latest reply-key change (for exports).
    pub fn reply_key_changes(&self) -> io::Result<Vec<ReplyKeyChange>> {
        self.index.reply_key_changes()
    }

    /// Deletes replies of `case` (once its survivor has read them), durably.
    pub fn remove_replies(&self, case: &str, objects: &[ObjectId]) -> io::Result<()> {
        let replies: Vec<(String, ObjectId)> =
            objects.iter().map(|id| (case.to_string(), id.clone())).collect();
        self.delete_replies(&replies)
    }

    /// Deletes replies imported at or before `cutoff_hour` (RFC 3339, compared as text),
    /// read or not: `replies.retention_days`. Returns how many went.
    pub fn expire_replies(&self, cutoff_hour: &str) -> io::Result<usize> {
        let due: Vec<(String, ObjectId)> = self
            .index
            .all_replies()?
            .into_iter()
            .filter(|(_, r)| r.imported_at.as_str() <= cutoff_hour)
            .map(|(case, r)| (case, r.object))
            .collect();
        self.delete_replies(&due)?;
        Ok(due.len())
    }

    /// Removes reply records and their ciphertext: records and small objects in one
    /// durable transaction first, then the files.
    fn delete_replies(&self, replies: &[(String, ObjectId)]) -> io::Result<()> {
        if replies.is_empty() {
            return Ok(());
        }
        let _alone = self.commit_gate.write().unwrap_or_else(|p| p.into_inner());
        let mut inline = Vec::new();
        let mut files = Vec::new();
        for (_, id) in replies {
            match self.index.inline_len(id)? {
                Some(len) => inline.push((id.clone(), len)),
                None => files.push(id.clone()),
            }
        }
        let inline_ids: Vec<ObjectId> = inline.iter().map(|(id, _)| id.clone()).collect();
        self.index.remove_replies(replies, &inline_ids)?;
        self.refs.remove_unnamed(&files, true)
    }

    pub fn case_record(&self, case: &str) -> io::Result<Option<CaseRecord>> {
        self.index.case_record(case)
    }

    /// A case's submissions, oldest first.
    pub fn case_submissions(&self, case: &str) -> io::Result<Vec<SubmissionRecord>> {
        self.index.case_submissions(case)
    }

    /// A case's replies, oldest first.
    pub fn case_replies(&self, case: &str) -> io::Result<Vec<ReplyRecord>> {
        self.index.case_replies(case)
    }

    /// Stores a reply's ciphertext for `case` and logs its custody leaf, durably.
    /// Returns false when the same reply was stored before (nothing changes).
    pub fn add_reply(&self, case: &str, ciphertext: &[u8]) -> io::Result<bool> {
        let id = ObjectId::of(ciphertext);
        // Checked before writing: re-persisting an object a record already names, then
        // abandoning it, would delete the stored copy.
        if self.index.has_reply(case, &id)? {
            return Ok(false);
        }
        // A reply is new ciphertext: bytes some record already names would be deleted
        // with the reply once it is read.
        if self.object_len(&id).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "these bytes are already stored as another object: not a new reply",
            ));
        }
        let pending = PendingObjects::default();
        let result = (|| {
            let mut object = self.create_file_object(&pending);
            object.write_all(ciphertext)?;
            object.persist(&id, &pending)?;
            let hour = crate::intake::upload::received_hour();
            self.commit_index(&pending, |inline| self.index.insert_reply(case, &id, &hour, inline))
        })();
        if result.is_err() {
            pending.abandon();
        }
        result
    }

    /// A receipt for leaf `index`: its inclusion proof in the tree of `index + 1` leaves,
    /// whose hashes never change, and that tree's signed checkpoint.
    pub fn receipt(&self, submission: &str, index: u64, leaf: &LogLeaf) -> io::Result<Receipt> {
        let size = index + 1;
        let checkpoint = Checkpoint {
            origin: self.key.verifier().name,
            size,
            root: merkle::root(&self.index, size)?,
        };
        let proof = merkle::inclusion_proof(&self.index, index, size)?;
        let key = self.key.verifier();
        Ok(Receipt::new(submission, index, leaf, &key, checkpoint.sign(&self.key), &proof))
    }

    /// The current signed checkpoint and the consistency proof to it from `from_size`
    /// (none when `from_size` is 0 or the log has not grown).
    pub fn checkpoint(&self, from_size: u64) -> io::Result<(String, u64, Vec<merkle::Hash>)> {
        let size = self.index.log_size()?;
        let checkpoint = Checkpoint {
            origin: self.key.verifier().name,
            size,
            root: merkle::root(&self.index, size)?,
        };
        let proof = if from_size == 0 || from_size >= size {
            Vec::new()
        } else {
            merkle::consistency_proof(&self.index, from_size, size)?
        };
        Ok((checkpoint.sign(&self.key), size, proof))
    }

    /// The log evidence for a bundle of `records`: checkpoint now, consistency from every
    /// earlier export, inclusion of each record.
    pub fn bundle_log(&self, records: &[SubmissionRecord]) -> io::Result<crate::bundle::BundleLog> {
        use base64::Engine;
        let b64 = &base64::engine::general_purpose::STANDARD;
        let (checkpoint, size, _) = self.checkpoint(0)?;
        let mut earlier = Vec::new();
        for old in self.index.export_sizes()? {
            if old == 0 || old > size {
                continue;
            }
            earlier.push(crate::bundle::EarlierCheckpoint {
                size: old,
                root: b64.encode(merkle::root(&self.index, old)?),
                proof: crate::log::encode_hashes(&merkle::consistency_proof(
                    &self.index,
                    old,
                    size,
                )?),
            });
        }
        let mut inclusion = std::collections::BTreeMap::new();
        for record in records {
            let index = record.log_index.ok_or_else(|| {
                io::Error::other(format!("submission {} has no log leaf", record.id))
            })?;
            let proof = merkle::inclusion_proof(&self.index, index, size)?;
            inclusion.insert(record.id.clone(), crate::log::encode_hashes(&proof));
        }
        let mut reply_keys = Vec::new();
        for change in self.index.reply_key_changes()? {
            let Some(log_index) = change.log_index.filter(|&i| i < size) else { continue };
            let proof = merkle::inclusion_proof(&self.index, log_index, size)?;
            reply_keys.push(crate::bundle::LoggedReplyKey {
                case: change.case,
                recipient: change.recipient,
                log_index,
                inclusion_proof: crate::log::encode_hashes(&proof),
            });
        }
        Ok(crate::bundle::BundleLog {
            server_key: self.key.verifier().to_string(),
            checkpoint,
            earlier,
            inclusion,
            reply_keys,
        })
    }

    /// The key that signs this server's checkpoints, in signed-note verifier form.
    pub fn verifier_key(&self) -> crate::keys::VerifierKey {
        self.key.verifier()
    }

    pub fn submission(&self, id: &str) -> io::Result<Option<SubmissionRecord>> {
        self.index.submission(id)
    }

    /// This server instance's id (random, created on first start), named in bundles.
    pub fn server_id(&self) -> io::Result<String> {
        self.index.meta_or_insert("server_id", || random_hex(&self.rng, 16))
    }

    /// Submissions to put in a bundle: all, or those never exported.
    pub fn submissions_to_export(&self, all: bool) -> io::Result<Vec<SubmissionRecord>> {
        self.index.submissions(!all)
    }

    /// Opens an object for reading, with its length.
    pub fn open_object(&self, id: &ObjectId) -> io::Result<(StoredObject, u64)> {
        if let Some(bytes) = self.index.inline_object(id)? {
            let len = bytes.len() as u64;
            return Ok((StoredObject::Inline(io::Cursor::new(bytes)), len));
        }
        let file = File::open(self.objects.join(id.as_str()))?;
        let len = file.metadata()?.len();
        Ok((StoredObject::File(file), len))
    }

    /// The length of every stored object of `records`, and those that are not stored:
    /// (submission, object). A record with a missing object cannot be exported whole;
    /// the others still can.
    pub fn object_lens(&self, records: &[SubmissionRecord]) -> io::Result<ObjectLens> {
        let mut lens = std::collections::HashMap::new();
        let mut missing = Vec::new();
        for record in records {
            for id in record.object_ids() {
                match self.object_len(&id) {
                    Ok(len) => drop(lens.insert(id, len)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        missing.push((record.id.clone(), id))
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok((lens, missing))
    }

    /// An object's length, without reading it.
    pub fn object_len(&self, id: &ObjectId) -> io::Result<u64> {
        match self.index.inline_len(id)? {
            Some(len) => Ok(len),
            None => Ok(fs::metadata(self.objects.join(id.as_str()))?.len()),
        }
    }

    /// Every stored object's id and length, in id order.
    pub fn list_objects(&self) -> io::Result<Vec<(ObjectId, u64)>> {
        let mut out = self.index.inline_list()?;
        for entry in fs::read_dir(&self.objects)? {
            let entry = entry?;
            let id = ObjectId::parse(&entry.file_name().to_string_lossy());
            if let (Some(id), true) = (id, entry.file_type()?.is_file()) {
                out.push((id, entry.metadata()?.len()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// Records, durably, that these submissions were carried out in a bundle whose
    /// checkpoint had `checkpoint_size` leaves, with a custody leaf in the log.
    pub fn mark_exported(
        &self,
        last: &LastExport,
        ids: &[String],
        checkpoint_size: u64,
    ) -> io::Result<()> {
        self.index.mark_exported(last, ids, checkpoint_size)
    }

    /// Deletes the ciphertext of submissions exported at or before `cutoff_hour` (RFC 3339,
    /// compared as text, which orders UTC hours correctly). Their records stay, so a case
    /// and its replies keep working. Returns (submissions purged, bytes freed).
    pub fn purge_exported_before(&self, cutoff_hour: &str) -> io::Result<(usize, u64)> {
        let _alone = self.commit_gate.write().unwrap_or_else(|p| p.into_inner());
        let mut due = Vec::new();
        let mut marks = Vec::new();
        // Replies stay for their survivors, and bytes another record still names stay
        // for it (the same ciphertext twice: a sealed file carrying a stored object).
        let mut keep = self.index.reply_objects()?;
        for record in self.index.submissions(false)? {
            match self.index.export_mark(&record.id)? {
                Some(mark) if !mark.purged && mark.exported_at.as_str() <= cutoff_hour => {
                    marks.push((record.id.clone(), mark));
                    due.push(record);
                }
                _ => keep.extend(record.object_ids()),
            }
        }
        let mut gone: Vec<ObjectId> = due
            .iter()
            .flat_map(SubmissionRecord::object_ids)
            .filter(|id| !keep.contains(id))
            .collect();
        gone.sort();
        gone.dedup();
        let mut inline = Vec::new();
        let mut files = Vec::new();
        for id in gone {
            match self.index.inline_len(&id)? {
                Some(len) => inline.push((id, len)),
                None => files.push(id),
            }
        }
        let inline_ids: Vec<ObjectId> = inline.iter().map(|(id, _)| id.clone()).collect();
        // Marks, the custody leaf and the small objects' removal first, in one
        // transaction, durably: a crash after this leaves files the start-up sweep
        // removes, never a record that claims ciphertext it lost.
        if !due.is_empty() {
            self.index.mark_purged(&marks, &crate::intake::upload::received_hour(), &inline_ids)?;
        }
        self.index.flush_durable()?;
        let mut freed = 0;
        for (_, len) in &inline {
            freed += len;
        }
        for id in &files {
            freed += fs::metadata(self.objects.join(id.as_str())).map_or(0, |m| m.len());
        }
        self.remove_object_files(&files)?;
        Ok((due.len(), freed))
    }

    /// Deletes object files no record names any more (but not one a request under way
    /// holds), then makes that durable.
    fn remove_object_files(&self, files: &[ObjectId]) -> io::Result<()> {
        self.refs.remove_unnamed(files, false)
    }

    /// Counts for `amanat status`.
    pub fn status(&self) -> io::Result<StoreStatus> {
        let (exported, purged) = self.index.export_counts()?;
        let inline = self.index.inline_totals()?;
        let (mut objects, mut store_bytes) = (inline.objects, inline.bytes);
        for entry in fs::read_dir(&self.objects)? {
            let meta = entry?.metadata()?;
            if meta.is_file() {
                objects += 1;
                store_bytes += meta.len();
            }
        }
        let (cases_on_v1_keys, replies_exposed, replies_waiting) = self.index.reply_key_counts()?;
        let mut submissions_missing_objects: Vec<String> = self
            .object_lens(&self.index.submissions(false)?)?
            .1
            .into_iter()
            .map(|(submission, _)| submission)
            .collect();
        submissions_missing_objects.dedup();
        Ok(StoreStatus {
            index_rewrite_due: self.index.compaction_due()?,
            replies_exposed_before_upgrade: self.index.resealed_count()?,
            submissions_missing_objects,
            index_bytes: self.index.disk_bytes()?,
            cases_on_v1_keys,
            replies_exposed,
            replies_waiting,
            server: self.server_id()?,
            server_key: self.key.verifier().to_string(),
            log_size: self.index.log_size()?,
            submissions: self.index.submission_count(),
            exported,
            purged,
            objects,
            store_bytes,
            last_export: self.index.meta_get("last_export")?,
        })
    }

    /// What is stored and under way, against the storage quota.
    pub fn usage(&self) -> &Arc<Usage> {
        &self.usage
    }

    /// Leaves in the intake log (submissions, exports, purges, replies).
    pub fn log_size(&self) -> io::Result<u64> {
        self.index.log_size()
    }

    pub fn submission_count(&self) -> usize {
        self.index.submission_count()
    }

    pub fn instance_secret(&self) -> &[u8] {
        &self.instance_secret
    }

    pub fn rng(&self) -> &SystemRandom {
        &self.rng
    }

    /// Random bytes as lowercase hex (ids, temp names).
    pub fn random_hex(&self, bytes: usize) -> String {
        random_hex(&self.rng, bytes)
    }

    /// Proves the object directory accepts new files and the disk has the headroom
    /// commits need. Cheap on purpose (no fsync): it answers anonymous health checks and
    /// must not compete with commits.
    pub fn check_writable(&self) -> io::Result<()> {
        objects::check_headroom(&self.objects)?;
        let probe = self.tmp.join(format!("health-{}", self.random_hex(8)));
        let result = File::create(&probe).and_then(|mut f| f.write_all(b"ok"));
        let _ = fs::remove_file(&probe);
        result
    }
}

/// Opens the index, first rewriting it into fresh files when something was deleted
/// that must not stay in sled's log (a codename's v1 tag): sled reuses the space of
/// what it deletes only in time, so the old bytes would stay readable on the disk.
/// Crash-safe: the fresh copy is complete and durable before it replaces the old one,
/// and a copy left half-done by a crash is discarded and made again.
fn open_index(path: &Path) -> io::Result<index::Index> {
    let fresh = path.with_file_name("index.compacting");
    let old = path.with_file_name("index.old");
    if old.exists() {
        // A crash after the old index was moved aside and before it was removed.
        if !path.exists() {
            fs::rename(&fresh, path)?;
        }
        fs::remove_dir_all(&old)?;
    }
    if fresh.exists() {
        fs::remove_dir_all(&fresh)?;
    }
    let index = index::Index::open(path)?;
    if !index.compaction_due()? {
        return Ok(index);
    }
    // The copy needs room of its own: without it, start on the old index and try at the
    // next start (`amanat status` says it is still due).
    let room =
        rustix::fs::statvfs(path).map(|s| s.f_bavail.saturating_mul(s.f_frsize)).unwrap_or(0);
    if room < index.disk_bytes()?.saturating_mul(2).saturating_add(64 << 20) {
        tracing::warn!(
            "the index could not be rewritten without deleted bytes: too little free space"
        );
        return Ok(index);
    }
    index.compact_into(&fresh)?;
    drop(index);
    fs::rename(path, &old)?;
    fs::rename(&fresh, path)?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    fs::remove_dir_all(&old)?;
    index::Index::open(path)
}

/// `bytes` random bytes in hex, from the system's secure source.
pub fn random_hex(rng: &SystemRandom, bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rng.fill(&mut buf).expect("the system random source works");
    hex::encode(buf)
}

/// fsyncs a directory so that a rename or unlink in it survives power loss.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn load_or_create_secret(path: &Path, rng: &SystemRandom) -> io::Result<Zeroizing<Vec<u8>>> {
    match File::open(path) {
        Ok(mut f) => {
            let mut secret = Zeroizing::new(Vec::new());
            f.read_to_end(&mut secret)?;
            if secret.len() != 32 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is damaged (expected 32 bytes)", path.display()),
                ));
            }
            Ok(secret)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut secret = Zeroizing::new(vec![0u8; 32]);
            rng.fill(&mut secret).expect("the system random source works");
            let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
            f.write_all(&secret)?;
            f.sync_all()?;
            if let Some(parent) = path.parent() {
                sync_dir(parent)?;
            }
            Ok(secret)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Persists `bytes` (stand-in ciphertext: the store never looks inside) as one object
    /// of the request `pending`.
    fn put(store: &Store, pending: &PendingObjects, bytes: &[u8]) -> ObjectId {
        let mut object = store.create_object(pending);
        object.write_all(bytes).unwrap();
        let id = ObjectId::of(bytes);
        object.persist(&id, pending).unwrap();
        id
    }

    /// A submission id (32 hex digits) named after `name`.
    fn sid(name: &str) -> String {
        ObjectId::of(name.as_bytes()).as_str()[..32].to_string()
    }

    fn record(name: &str, objects: &[ObjectId], total_bytes: u64) -> SubmissionRecord {
        let (manifest, attachments) = objects.split_last().unwrap();
        SubmissionRecord {
            id: sid(name),
            received_at: "2026-11-29T10:00:00Z".into(),
            manifest: manifest.clone(),
            attachments: attachments.to_vec(),
            total_bytes,
            recipients: "0".repeat(64),
            case: sid(name),
            log_index: None,
        }
    }

    /// A new, swept store in a temporary directory (kept alive by the first value).
    fn new_store() -> (tempfile::TempDir, PathBuf, Store) {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let store = Store::open(&data).unwrap();
        store.sweep().unwrap();
        (dir, data, store)
    }

    fn object_files(dir: &Path) -> usize {
        fs::read_dir(dir.join("objects"))
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_type().unwrap().is_file())
            .count()
    }

    #[test]
    fn small_objects_live_in_the_index_large_ones_in_files_and_both_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let small = vec![7u8; 3000];
        let large = vec![9u8; INLINE_MAX + 1];
        let ids = {
            let store = Store::open(&data).unwrap();
            store.sweep().unwrap();
            let pending = PendingObjects::default();
            let ids = vec![put(&store, &pending, &large), put(&store, &pending, &small)];
            let total = (small.len() + large.len()) as u64;
            store
                .commit(&pending, &record("s1", &ids, total), CaseChoice::WithoutCodename)
                .unwrap();
            assert_eq!(object_files(&data), 1, "only the large object is a file");
            ids
        };
        let store = Store::open(&data).unwrap();
        store.usage().set_quota(1 << 30);
        store.sweep().unwrap();
        for (id, bytes) in ids.iter().zip([&large, &small]) {
            let (mut object, len) = store.open_object(id).unwrap();
            let mut read = Vec::new();
            object.read_to_end(&mut read).unwrap();
            assert_eq!((&read, len), (bytes, bytes.len() as u64));
            assert_eq!(store.object_len(id).unwrap(), len);
        }
        let listed: Vec<ObjectId> =
            store.list_objects().unwrap().into_iter().map(|o| o.0).collect();
        let mut expected = ids.clone();
        expected.sort();
        assert_eq!(listed, expected);
        let status = store.status().unwrap();
        assert_eq!((status.objects, status.store_bytes), (2, (small.len() + large.len()) as u64));
        assert_eq!(store.usage().stored(), large.len() as u64, "object files");
        assert!(store.usage().index_bytes() > small.len() as u64, "and the index holds the rest");
    }

    /// sled writes any page over 128 KiB to a blob file it never fsyncs (sled #1077): the
    /// chunking must keep every page of small objects under that, however they arrive.
    #[test]
    fn small_objects_never_reach_an_unsynced_sled_blob() {
        let (_dir, data, store) = new_store();
        let ids: Vec<ObjectId> = (0..300u32)
            .map(|n| {
                let pending = PendingObjects::default();
                let size = INLINE_MAX - (n as usize * 97) % 4096;
                let bytes: Vec<u8> = (0..size).map(|i| (i as u32 ^ n) as u8).collect();
                let id = put(&store, &pending, &bytes);
                let record = record(&format!("s{n}"), std::slice::from_ref(&id), 0);
                store.commit(&pending, &record, CaseChoice::WithoutCodename).unwrap();
                id
            })
            .collect();
        assert_eq!(object_files(&data), 0, "all of them small");
        let blobs = fs::read_dir(data.join("index/blobs")).map_or(0, |d| d.count());
        assert_eq!(blobs, 0, "no page of the index went to an unsynced blob");
        assert_eq!(store.list_objects().unwrap().len(), ids.len());
    }

    #[test]
    fn an_abandoned_request_leaves_no_small_object_and_no_usage() {
        let (_dir, _, store) = new_store();
        let pending = PendingObjects::default();
        let id = put(&store, &pending, b"a short testimony, sealed");
        pending.abandon();
        assert_eq!(store.usage().stored(), 0);
        assert!(store.open_object(&id).is_err());
        assert!(store.list_objects().unwrap().is_empty());
    }

    #[test]
    fn one_request_keeps_a_bounded_amount_in_memory_and_files_the_rest() {
        let (_dir, data, store) = new_store();
        let pending = PendingObjects::default();
        let each = 60 * 1024;
        let count = objects::REQUEST_INLINE_MAX / each + 2;
        let ids: Vec<ObjectId> =
            (0..count).map(|i| put(&store, &pending, &vec![i as u8; each])).collect();
        assert_eq!(object_files(&data), 2, "past the request's allowance, objects are files");
        let total = (count * each) as u64;
        store.commit(&pending, &record("s1", &ids, total), CaseChoice::WithoutCodename).unwrap();
        assert_eq!(store.list_objects().unwrap().len(), count);
    }

    #[test]
    fn purging_removes_small_objects_and_files_but_not_what_another_record_names() {
        let (_dir, data, store) = new_store();
        let commit = |id: &str, objects: &[&[u8]]| {
            let pending = PendingObjects::default();
            let ids: Vec<ObjectId> = objects.iter().map(|b| put(&store, &pending, b)).collect();
            store.commit(&pending, &record(id, &ids, 0), CaseChoice::WithoutCodename).unwrap();
            ids
        };
        let shared = vec![1u8; 100];
        let large = vec![2u8; INLINE_MAX * 2];
        let old = commit("old", &[&large, &shared, b"old manifest"]);
        let kept = commit("kept", &[&shared, b"kept manifest"]);
        let last = LastExport {
            bundle: sid("b"),
            exported_at: "2026-01-01T00:00:00Z".into(),
            submissions: 1,
        };
        store.mark_exported(&last, &[sid("old")], 2).unwrap();
        let (purged, freed) = store.purge_exported_before("2026-12-01T00:00:00Z").unwrap();
        assert_eq!((purged, freed), (1, (large.len() + b"old manifest".len()) as u64));
        assert!(store.open_object(&old[0]).is_err() && store.open_object(&old[2]).is_err());
        for id in &kept {
            assert!(store.open_object(id).is_ok(), "the other record's objects stay");
        }
        assert_eq!(object_files(&data), 0);
        assert_eq!(store.usage().stored(), 0, "no object file left");
    }
}
