//! The store: ciphertext objects as fsynced files (`objects`), small records in sled
//! (`index`). Nothing here ever sees plaintext.
//!
//! Layout of the data directory (created 0700):
//! ```text
//! objects/<id>      one age file per object, named by the SHA-256 of its bytes
//! objects/tmp/      objects being written; swept at start-up
//! index/            sled: submission records and cases
//! instance.secret   32 random bytes keying codename tags (0600)
//! ```

mod index;
mod objects;

use index::CommitError;
pub use index::{CaseChoice, CaseRecord, ExportMark, LastExport, ReplyRecord, SubmissionRecord};
pub use objects::{PendingObjects, Reservation, TempObject, Usage};

use crate::envelope::ObjectId;
use crate::keys::SigningKey;
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
    /// Bytes of ciphertext on disk.
    pub store_bytes: u64,
    pub last_export: Option<LastExport>,
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
        let index = index::Index::open(&dir.join("index"))?;
        let rng = SystemRandom::new();
        let instance_secret = load_or_create_secret(&dir.join("instance.secret"), &rng)?;
        let server_id = index.meta_or_insert("server_id", || random_hex(&rng, 16))?;
        let key =
            SigningKey::load_or_create(&dir.join("signing.key"), &format!("amanat/{server_id}"))?;
        let usage = Arc::default();
        Ok(Store {
            objects,
            tmp,
            index,
            key,
            instance_secret,
            rng,
            importing: Default::default(),
            usage,
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
        let referenced: HashSet<ObjectId> = self.index.referenced_objects()?;
        let mut stored = 0;
        for entry in fs::read_dir(&self.objects)? {
            let entry = entry?;
            if !entry.file_type()?.is_file() {
                continue;
            }
            let name = entry.file_name();
            let id = ObjectId::parse(&name.to_string_lossy());
            if !id.is_some_and(|id| referenced.contains(&id)) {
                fs::remove_file(entry.path())?;
                report.orphan_objects += 1;
            } else {
                stored += entry.metadata()?.len();
            }
        }
        sync_dir(&self.objects)?;
        self.usage.set_stored(stored);
        Ok(report)
    }

    /// A new temporary object file, deleted unless persisted.
    pub fn create_temp(&self) -> io::Result<(TempObject, File)> {
        TempObject::create(&self.tmp, &self.objects, &self.random_hex(16), &self.usage)
    }

    /// Records a submission, its case and its log leaf in one transaction and makes it
    /// durable. The objects it names must already be persisted; on success they stop
    /// being pending and will never be swept. Returns the submission's receipt.
    pub fn commit(
        &self,
        pending: &PendingObjects,
        record: &SubmissionRecord,
        case: CaseChoice<'_>,
    ) -> io::Result<Receipt> {
        let index = pending.commit_with(|| match self.index.insert_submission(record, case) {
            Ok(index) => Ok(index),
            Err(CommitError::NotRecorded(e)) => Err((e, false)),
            // The record was applied and may still reach the disk: keep its objects;
            // the next start-up sweep removes them if it did not.
            Err(CommitError::NotDurable(e)) => Err((e, true)),
        })?;
        self.receipt(&record.id, index, &record.log_leaf())
    }

    /// Claims the import of sealed submission `id`; None while another import of it runs.
    pub fn claim_import(&self, id: &str) -> Option<ImportClaim<'_>> {
        let mut importing = self.importing.lock().unwrap_or_else(|p| p.into_inner());
        importing.insert(id.to_string()).then(|| ImportClaim { store: self, id: id.to_string() })
    }

    /// The case a codename opens, if any.
    pub fn case_for_codename(&self, normalized_codename: &str) -> io::Result<Option<CaseRecord>> {
        let tag = crate::codename::tag(&self.instance_secret, normalized_codename);
        Ok(self
            .index
            .cases_by_tag_prefix(&tag)?
            .into_iter()
            .find(|c| {
                hex::decode(&c.tag).is_ok_and(|stored| {
                    crate::codename::verify_tag(&self.instance_secret, normalized_codename, &stored)
                })
            })
            .map(|c| c.record))
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
        let pending = PendingObjects::default();
        let result = (|| {
            let (temp, mut file) = self.create_temp()?;
            file.write_all(ciphertext)?;
            temp.persist(file, &id, &pending)?;
            let hour = crate::intake::upload::received_hour();
            pending.commit_with(|| match self.index.insert_reply(case, &id, &hour) {
                Ok(added) => Ok(added),
                Err(CommitError::NotRecorded(e)) => Err((e, false)),
                Err(CommitError::NotDurable(e)) => Err((e, true)),
            })
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
        Ok(crate::bundle::BundleLog {
            server_key: self.key.verifier().to_string(),
            checkpoint,
            earlier,
            inclusion,
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
    pub fn open_object(&self, id: &ObjectId) -> io::Result<(File, u64)> {
        let file = File::open(self.object_path(id))?;
        let len = file.metadata()?.len();
        Ok((file, len))
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
        let mut due = Vec::new();
        let mut marks = Vec::new();
        for record in self.index.submissions(false)? {
            let Some(mark) = self.index.export_mark(&record.id)? else { continue };
            if !mark.purged && mark.exported_at.as_str() <= cutoff_hour {
                marks.push((record.id.clone(), mark));
                due.push(record);
            }
        }
        // Marks and the custody leaf first, durably: a crash after this leaves objects
        // the start-up sweep removes, never a record that claims ciphertext it lost.
        if !due.is_empty() {
            self.index.mark_purged(&marks, &crate::intake::upload::received_hour())?;
        }
        self.index.flush_durable()?;
        let mut freed = 0;
        // Replies stay for their survivors, whatever their bytes.
        let keep = self.index.reply_objects()?;
        for record in &due {
            for id in record.object_ids().into_iter().filter(|id| !keep.contains(id)) {
                let path = self.object_path(&id);
                if let Ok(meta) = fs::metadata(&path) {
                    fs::remove_file(&path)?;
                    freed += meta.len();
                    self.usage.remove_stored(meta.len());
                }
            }
        }
        if !due.is_empty() {
            sync_dir(&self.objects)?;
        }
        Ok((due.len(), freed))
    }

    /// Counts for `amanat status`.
    pub fn status(&self) -> io::Result<StoreStatus> {
        let (exported, purged) = self.index.export_counts()?;
        let mut store_bytes = 0;
        for entry in fs::read_dir(&self.objects)? {
            let meta = entry?.metadata()?;
            if meta.is_file() {
                store_bytes += meta.len();
            }
        }
        Ok(StoreStatus {
            server: self.server_id()?,
            server_key: self.key.verifier().to_string(),
            log_size: self.index.log_size()?,
            submissions: self.index.submission_count(),
            exported,
            purged,
            store_bytes,
            last_export: self.index.meta_get("last_export")?,
        })
    }

    /// What is stored and under way, against the storage quota.
    pub fn usage(&self) -> &Arc<Usage> {
        &self.usage
    }

    pub fn submission_count(&self) -> usize {
        self.index.submission_count()
    }

    pub fn object_path(&self, id: &ObjectId) -> PathBuf {
        self.objects.join(id.as_str())
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

    /// Proves the object directory accepts new files. Cheap on purpose (no fsync): it
    /// answers anonymous health checks and must not compete with commits.
    pub fn check_writable(&self) -> io::Result<()> {
        let probe = self.tmp.join(format!("health-{}", self.random_hex(8)));
        let result = File::create(&probe).and_then(|mut f| f.write_all(b"ok"));
        let _ = fs::remove_file(&probe);
        result
    }
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
