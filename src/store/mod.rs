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

mod attested;
mod cases;
mod index;
mod journal;
mod objects;
mod pruning;
mod records;

pub use attested::{Attestation, Stamped, Witnessed};
pub use cases::FoundCase;
pub use index::CaseChoice;
use index::CommitError;
pub use journal::{minute_now, ReplicaHealth, ReplicaProgress, Segment};
pub use objects::{ObjectWriter, PendingObjects, Reservation, StoredObject, Usage, INLINE_MAX};
pub use pruning::{DeletionRule, DueDeletions};
pub use records::{CaseRecord, ExportMark, LastExport, ReplyKeyChange, ReplyRecord};

use crate::keys::{CodenameKey, InstanceSecret, SigningKey};
use crate::log::{BundleLog, Checkpoint, LogLeaf, Receipt, ReplyKeyLeaf};
use crate::record::{random_hex, ObjectId, SubmissionRecord};
use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct Store {
    objects: PathBuf,
    tmp: PathBuf,
    index: index::Index,
    /// Signs the log's checkpoints (`signing.key`, 0600).
    key: SigningKey,
    secret: InstanceSecret,
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
    /// Each replica's last push, by name (`journal`).
    replicas: std::sync::Mutex<std::collections::BTreeMap<String, ReplicaHealth>>,
    /// Counts commits: replication wakes on it.
    grew: tokio::sync::watch::Sender<u64>,
    /// Each replica's `through`, as replication records it: an acknowledgement that
    /// waits for replicas waits on it.
    replicated: tokio::sync::watch::Sender<std::collections::BTreeMap<String, u64>>,
    /// Counts purges that deleted something: replicas that follow purges wake on it.
    purges: tokio::sync::watch::Sender<u64>,
    /// Counts attestations recorded: replicas carry them.
    attestations: tokio::sync::watch::Sender<u64>,
}

/// A claim on importing one sealed file; released on drop.
pub struct ImportClaim<'a> {
    store: &'a Store,
    id: String,
}

impl Drop for ImportClaim<'_> {
    fn drop(&mut self) {
        self.store
            .importing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.id);
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
        let secret = InstanceSecret::load_or_create(&dir.join("instance.secret"))?;
        let server_id = index.meta_or_insert("server_id", || random_hex(16))?;
        let key =
            SigningKey::load_or_create(&dir.join("signing.key"), &format!("amanat/{server_id}"))?;
        let usage = Arc::default();
        let refs = Arc::new(objects::ObjectRefs::new(&objects, &usage));
        Ok(Store {
            objects,
            tmp,
            index,
            key,
            secret,
            importing: Default::default(),
            usage,
            refs,
            commit_gate: Default::default(),
            replicas: Default::default(),
            grew: tokio::sync::watch::Sender::new(0),
            replicated: tokio::sync::watch::Sender::new(std::collections::BTreeMap::new()),
            purges: tokio::sync::watch::Sender::new(0),
            attestations: tokio::sync::watch::Sender::new(0),
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
            if id.is_some_and(|id| referenced.contains(&id)) {
                stored += entry.metadata()?.len();
            } else {
                fs::remove_file(entry.path())?;
                report.orphan_objects += 1;
            }
        }
        sync_dir(&self.objects)?;
        self.usage.set_stored(stored);
        self.usage.set_index_bytes(self.index.disk_bytes()?);
        Ok(report)
    }

    /// A new object for the request `pending`, deleted unless persisted and committed.
    pub fn create_object(&self, pending: &PendingObjects) -> ObjectWriter {
        ObjectWriter::new(&self.tmp, &self.refs, random_hex(16), pending, true)
    }

    /// A new object that is always a file, however small (a reply: deleted once read,
    /// and a file can be overwritten before it goes, where sled keeps a deleted value's
    /// bytes in its log until it reuses their space).
    fn create_file_object(&self, pending: &PendingObjects) -> ObjectWriter {
        ObjectWriter::new(&self.tmp, &self.refs, random_hex(16), pending, false)
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
        self.receipt(&record.id, index, &LogLeaf::from(record))
    }

    /// Runs one index commit for the request `pending`, handing it the request's small
    /// objects, then measures the index for the quota.
    fn commit_index<T>(
        &self,
        pending: &PendingObjects,
        write: impl FnOnce(&[objects::InlineObject]) -> Result<T, CommitError>,
    ) -> io::Result<T> {
        let _shared = self.commit_gate.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let result = pending.commit_with(|inline| {
            // sled fails for good after one full-disk write: it must never meet one.
            objects::check_headroom(&self.objects).map_err(|e| (e, false))?;
            write(inline).map_err(CommitError::kept)
        })?;
        self.usage.set_index_bytes(self.index.disk_bytes()?);
        self.grew.send_modify(|commits| *commits = commits.wrapping_add(1));
        Ok(result)
    }

    /// Claims the import of sealed submission `id`; None while another import of it runs.
    pub fn claim_import(&self, id: &str) -> Option<ImportClaim<'_>> {
        let mut importing =
            self.importing.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        importing.insert(id.to_string()).then(|| ImportClaim { store: self, id: id.to_string() })
    }

    fn prover(&self) -> crate::log::Prover<'_, index::Index> {
        crate::log::Prover { nodes: &self.index, key: &self.key }
    }

    /// A receipt for leaf `index` (see `log::Prover::receipt`).
    pub fn receipt(&self, submission: &str, index: u64, leaf: &LogLeaf) -> io::Result<Receipt> {
        self.prover().receipt(submission, index, leaf)
    }

    /// The log evidence for a bundle of `records`: checkpoint now, consistency from every
    /// earlier export, inclusion of each record and of each reply-key change; and the
    /// tree head it proves against.
    pub fn bundle_log(&self, records: &[SubmissionRecord]) -> io::Result<(BundleLog, Checkpoint)> {
        let size = self.index.log_size()?;
        let reply_keys = self
            .index
            .reply_key_changes()?
            .into_iter()
            .filter_map(|change| {
                Some(ReplyKeyLeaf {
                    log_index: change.log_index?,
                    case: change.case,
                    recipient: change.recipient,
                })
            })
            .collect();
        self.prover().bundle_log(size, &self.index.export_sizes()?, records, reply_keys)
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
        self.index.meta_or_insert("server_id", || random_hex(16))
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
                        missing.push((record.id.to_string(), id));
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
        let _alone = self.commit_gate.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut due = Vec::new();
        let mut marks = Vec::new();
        // Replies stay for their survivors, and bytes another record still names stay
        // for it (the same ciphertext twice: a sealed file carrying a stored object).
        // And what a configured replica does not hold yet stays until it does: a
        // replica is the copy that survives the server.
        let mut keep = self.index.reply_objects()?;
        let replicated = self.replicated_by_all()?;
        for record in self.index.submissions(false)? {
            let in_replicas = record.log_index.is_some_and(|i| i < replicated);
            match self.index.export_mark(&record.id)? {
                Some(mark)
                    if !mark.purged && mark.exported_at.as_str() <= cutoff_hour && in_replicas =>
                {
                    marks.push((record.id.to_string(), mark));
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
        let mut lens = std::collections::HashMap::new();
        for id in gone {
            let len = self.object_len(&id)?;
            lens.insert(id.clone(), len);
            match self.index.inline_len(&id)? {
                Some(len) => inline.push((id, len)),
                None => files.push(id),
            }
        }
        // Each mark keeps the lengths of what it loses, for the replication journal.
        for ((_, mark), record) in marks.iter_mut().zip(&due) {
            mark.purged_lens = record
                .object_ids()
                .into_iter()
                .filter_map(|id| lens.get(&id).map(|&len| (id, len)))
                .collect();
        }
        let inline_ids: Vec<ObjectId> = inline.iter().map(|(id, _)| id.clone()).collect();
        // Marks, the custody leaf and the small objects' removal first, in one
        // transaction, durably: a crash after this leaves files the start-up sweep
        // removes, never a record that claims ciphertext it lost.
        if !due.is_empty() {
            self.index.mark_purged(&marks, &crate::record::Hour::now(), &inline_ids)?;
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
        if !due.is_empty() {
            self.purges.send_modify(|n| *n += 1);
        }
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

    /// The instance secret, to derive codename keys and tags with (its bytes stay in
    /// `keys`).
    pub fn case_keys(&self) -> &InstanceSecret {
        &self.secret
    }

    /// Proves the object directory accepts new files and the disk has the headroom
    /// commits need. Cheap on purpose (no fsync): it answers anonymous health checks and
    /// must not compete with commits.
    pub fn check_writable(&self) -> io::Result<()> {
        objects::check_headroom(&self.objects)?;
        let probe = self.tmp.join(format!("health-{}", random_hex(8)));
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
    let room = rustix::fs::statvfs(path).map_or(0, |s| s.f_bavail.saturating_mul(s.f_frsize));
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

/// fsyncs a directory so that a rename or unlink in it survives power loss.
pub(crate) use crate::durable::sync_dir;

#[cfg(test)]
mod tests;
