//! Objects. Small ones (at most `INLINE_MAX` bytes of ciphertext) are kept in memory
//! until their record commits and are written into the index in the same transaction,
//! durable with its shared flush. Larger ones are files: written in `objects/tmp/`,
//! fsynced, renamed into `objects/<id>`, and the directory fsynced, so an acknowledged
//! object survives power loss.

use crate::envelope::ObjectId;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The largest object kept in the index rather than as a file. A file costs an inode,
/// two fsyncs and a rename of its own; in the index an object shares its record's
/// flush with every concurrent request. sled rewrites leaves whole and replays its log at
/// start-up, so larger objects, which carry their own fsync cost easily, stay files.
pub const INLINE_MAX: usize = 64 * 1024;

/// The most one request keeps in memory for the index; its further objects are files
/// however small, so concurrent uploads cannot pile up memory.
pub const REQUEST_INLINE_MAX: usize = 256 * 1024;

/// Free space kept for the index: below it, nothing more is accepted (507). sled marks
/// itself failed for good after one write error, so it must never be the one to meet a
/// full disk; uploads stop short of this and leave it the room for its records.
const HEADROOM_BYTES: u64 = 4 * 1024 * 1024;

/// How often a file being written checks the free space: every this many bytes.
const HEADROOM_CHECK_EVERY: u64 = 1024 * 1024;

/// Whether the file system holding `dir` still has the headroom; `StorageFull` if not.
pub(super) fn check_headroom(dir: &Path) -> io::Result<()> {
    let stats = rustix::fs::statvfs(dir)?;
    if stats.f_bavail.saturating_mul(stats.f_frsize) < HEADROOM_BYTES {
        return Err(io::Error::new(io::ErrorKind::StorageFull, "the data disk is nearly full"));
    }
    Ok(())
}

/// An object being written: in memory while it is small, spilled to a temporary file
/// once it passes `INLINE_MAX`. Only ciphertext is ever written to it.
pub struct ObjectWriter {
    inline: Vec<u8>,
    /// The most this object may keep in memory before it becomes a file.
    inline_limit: usize,
    file: Option<(TempObject, File)>,
    /// Bytes written to the file since its last headroom check.
    unchecked: u64,
    tmp: PathBuf,
    name: String,
    refs: Arc<ObjectRefs>,
}

impl ObjectWriter {
    /// `inline`: whether it may stay in the index while small (a reply may not: see
    /// `Store::add_reply`).
    pub(super) fn new(
        tmp: &Path,
        refs: &Arc<ObjectRefs>,
        name: String,
        pending: &PendingObjects,
        inline: bool,
    ) -> Self {
        let kept = pending.lock().inline.iter().map(|(_, bytes)| bytes.len()).sum::<usize>();
        let limit = INLINE_MAX.min(REQUEST_INLINE_MAX.saturating_sub(kept));
        ObjectWriter {
            inline: Vec::new(),
            inline_limit: if inline { limit } else { 0 },
            file: None,
            unchecked: 0,
            tmp: tmp.to_path_buf(),
            name,
            refs: refs.clone(),
        }
    }

    fn spill(&mut self) -> io::Result<&mut File> {
        check_headroom(&self.tmp)?;
        let (temp, mut file) = TempObject::create(&self.tmp, &self.name)?;
        file.write_all(&self.inline)?;
        self.inline = Vec::new();
        Ok(&mut self.file.insert((temp, file)).1)
    }

    /// Reads back what was written so far.
    pub fn written(&self) -> io::Result<StoredObject> {
        Ok(match &self.file {
            Some((temp, _)) => StoredObject::File(File::open(&temp.path)?),
            None => StoredObject::Inline(io::Cursor::new(self.inline.clone())),
        })
    }

    /// Makes the object durable under its id and counts it as stored (a file), or hands
    /// it to the commit of `pending` (a small object, durable with its record).
    /// Fails, deleting it, if that request was already abandoned.
    pub fn persist(self, id: &ObjectId, pending: &PendingObjects) -> io::Result<()> {
        match self.file {
            Some((temp, file)) => temp.persist(file, id, pending, &self.refs),
            None => pending.add_inline(id, self.inline),
        }
    }
}

impl Write for ObjectWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = match &mut self.file {
            Some((_, file)) => file,
            None if self.inline.len() + buf.len() <= self.inline_limit => {
                self.inline.extend_from_slice(buf);
                return Ok(buf.len());
            }
            None => self.spill()?,
        };
        let n = file.write(buf)?;
        self.unchecked += n as u64;
        if self.unchecked >= HEADROOM_CHECK_EVERY {
            self.unchecked = 0;
            check_headroom(&self.tmp)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some((_, file)) => file.flush(),
            None => Ok(()),
        }
    }
}

/// A stored object, for reading.
pub enum StoredObject {
    File(File),
    Inline(io::Cursor<Vec<u8>>),
}

impl Read for StoredObject {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            StoredObject::File(file) => file.read(buf),
            StoredObject::Inline(bytes) => bytes.read(buf),
        }
    }
}

/// Bytes of object files in `objects/`, of the index on disk (records, the log and
/// small objects), and of uploads under way, held against `limits.storage_quota_bytes`
/// (0: no quota) so an upload that would pass it is refused (507) while it streams,
/// before anything is acknowledged. The index counts whole: tiny submissions cost it
/// more than their ciphertext (records, log nodes, sled's own overhead), and a quota
/// that counted only ciphertext would let them grow the disk many times past it.
#[derive(Default)]
pub struct Usage {
    stored: AtomicU64,
    index: AtomicU64,
    in_flight: AtomicU64,
    quota: AtomicU64,
}

impl Usage {
    pub fn set_quota(&self, bytes: u64) {
        self.quota.store(bytes, Ordering::Relaxed);
    }

    pub fn quota(&self) -> u64 {
        self.quota.load(Ordering::Relaxed)
    }

    /// Bytes of object files stored now.
    pub fn stored(&self) -> u64 {
        self.stored.load(Ordering::Relaxed)
    }

    /// Bytes the index takes on disk, as last measured (after every commit).
    pub fn index_bytes(&self) -> u64 {
        self.index.load(Ordering::Relaxed)
    }

    pub(super) fn set_index_bytes(&self, bytes: u64) {
        self.index.store(bytes, Ordering::Relaxed);
    }

    pub(super) fn set_stored(&self, bytes: u64) {
        self.stored.store(bytes, Ordering::Relaxed);
    }

    pub(super) fn add_stored(&self, bytes: u64) {
        self.stored.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(super) fn remove_stored(&self, bytes: u64) {
        let _ = self
            .stored
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(bytes)));
    }

    /// Whether `more` bytes would still fit beside what is stored and under way.
    pub fn fits(&self, more: u64) -> bool {
        let quota = self.quota();
        quota == 0
            || self
                .stored()
                .saturating_add(self.index_bytes())
                .saturating_add(self.in_flight.load(Ordering::Relaxed))
                .saturating_add(more)
                <= quota
    }

    /// A reservation for one upload, grown as its bytes arrive and released on drop.
    pub fn reserve(self: &Arc<Self>) -> Reservation {
        Reservation { usage: self.clone(), held: 0 }
    }
}

/// Bytes one upload holds against the quota until it ends (by then its objects are
/// persisted and counted as stored, or deleted).
pub struct Reservation {
    usage: Arc<Usage>,
    held: u64,
}

impl Reservation {
    /// Takes `bytes` more; false (taking nothing) if they would pass the quota.
    pub fn grow(&mut self, bytes: u64) -> bool {
        if !self.usage.fits(bytes) {
            return false;
        }
        self.usage.in_flight.fetch_add(bytes, Ordering::Relaxed);
        self.held += bytes;
        true
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.usage.in_flight.fetch_sub(self.held, Ordering::Relaxed);
    }
}

/// An object file being written. Dropped without `persist`, its file is deleted.
struct TempObject {
    path: PathBuf,
    persisted: bool,
}

impl TempObject {
    fn create(tmp: &Path, name: &str) -> io::Result<(TempObject, File)> {
        let path = tmp.join(name);
        let file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
        Ok((TempObject { path, persisted: false }, file))
    }

    /// Makes the object durable under its id and hands it to `pending` (the request it
    /// belongs to). Fails, deleting the file, if that request was already abandoned.
    fn persist(
        mut self,
        file: File,
        id: &ObjectId,
        pending: &PendingObjects,
        refs: &Arc<ObjectRefs>,
    ) -> io::Result<()> {
        // Before the fsync, so the coarse times are as durable as the bytes.
        set_file_hour(&file)?;
        file.sync_all()?;
        let len = file.metadata()?.len();
        drop(file);
        let mut state = pending.lock();
        if state.status != Status::Open {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "request was abandoned"));
        }
        let mut held = refs.lock();
        let target = refs.objects.join(id.as_str());
        match held.get_mut(id) {
            // Another request under way holds the same bytes (the name is their hash).
            Some(entry) => entry.pending += 1,
            // Stored before, so a committed record names it: never replaced, and never
            // deleted by this request. Our copy goes when `self` drops.
            None if target.exists() => {
                held.insert(id.clone(), Held { pending: 1, committed: true, len });
            }
            None => {
                fs::rename(&self.path, &target)?;
                self.persisted = true;
                refs.usage.add_stored(len);
                held.insert(id.clone(), Held { pending: 1, committed: false, len });
                sync_objects_dir(&refs.objects)?;
            }
        }
        drop(held);
        state.held.push(id.clone());
        state.refs = Some(refs.clone());
        Ok(())
    }
}

impl Drop for TempObject {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The object files requests under way hold, shared by every request of one store.
/// Two requests may carry the same bytes (a sealed file can carry any stored object),
/// so a file is deleted only when the last request holding it is abandoned and no
/// committed record names it, decided under this one lock; a purge consults it too.
pub(super) struct ObjectRefs {
    objects: PathBuf,
    usage: Arc<Usage>,
    held: Mutex<HashMap<ObjectId, Held>>,
}

struct Held {
    /// Requests under way that persisted (or found) this file.
    pending: usize,
    /// Whether a committed record names it.
    committed: bool,
    len: u64,
}

impl ObjectRefs {
    pub(super) fn new(objects: &Path, usage: &Arc<Usage>) -> ObjectRefs {
        ObjectRefs { objects: objects.to_path_buf(), usage: usage.clone(), held: Mutex::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectId, Held>> {
        self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One holder of `ids` is done: committed (a record now names them) or abandoned
    /// (the file goes if nobody else holds it and no record names it).
    fn release(&self, ids: &[ObjectId], committed: bool) {
        let mut held = self.lock();
        let mut removed = false;
        for id in ids {
            let Some(entry) = held.get_mut(id) else { continue };
            entry.pending -= 1;
            entry.committed |= committed;
            if entry.pending == 0 {
                let entry = held.remove(id).expect("present");
                if !entry.committed && fs::remove_file(self.objects.join(id.as_str())).is_ok() {
                    self.usage.remove_stored(entry.len);
                    removed = true;
                }
            }
        }
        if removed {
            let _ = sync_objects_dir(&self.objects);
        }
    }

    /// Deletes stored object files no record names any more (a purge, read replies),
    /// except those a request under way holds: that request's commit will name them,
    /// or its abandonment delete them. With `shred`, each file is overwritten with zeros
    /// (and that made durable) before it goes: a reply read and deleted must not be
    /// read again from the disk's free blocks. Durable on return.
    pub(super) fn remove_unnamed(&self, ids: &[ObjectId], shred: bool) -> io::Result<()> {
        let mut held = self.lock();
        let mut removed = false;
        for id in ids {
            if let Some(entry) = held.get_mut(id) {
                entry.committed = false;
                continue;
            }
            let path = self.objects.join(id.as_str());
            if let Ok(meta) = fs::metadata(&path) {
                if shred {
                    let mut file = OpenOptions::new().write(true).open(&path)?;
                    crate::envelope::write_padding(&mut file, 0, meta.len())?;
                    file.sync_all()?;
                }
                fs::remove_file(&path)?;
                self.usage.remove_stored(meta.len());
                removed = true;
            }
        }
        if removed {
            sync_objects_dir(&self.objects)?;
        }
        Ok(())
    }
}

/// Makes a rename or unlink in `objects/` durable, and leaves the directory's own times
/// at the hour: they change with every file stored or deleted.
fn sync_objects_dir(dir: &Path) -> io::Result<()> {
    let handle = File::open(dir)?;
    set_file_hour(&handle)?;
    handle.sync_all()
}

/// Sets a stored object's access and modification times to its hour of receipt (the
/// hour now): the record says no more, and neither should the file. Its change and
/// birth times stay exact: only the kernel sets those (SECURITY.md).
pub(super) fn set_file_hour(file: &File) -> io::Result<()> {
    let now = std::time::SystemTime::now();
    let secs = now.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let hour = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs - secs % 3600);
    file.set_times(fs::FileTimes::new().set_accessed(hour).set_modified(hour))
}

/// The objects one request has persisted but not yet committed. If the request ends
/// any other way (error, disconnect, panic), dropping this deletes them, and objects
/// whose writers finish later are refused and deleted too.
#[derive(Clone, Default)]
pub struct PendingObjects(Arc<Mutex<PendingState>>);

#[derive(Default)]
struct PendingState {
    /// Each object file this request persisted or found stored, held in `refs`.
    held: Vec<ObjectId>,
    refs: Option<Arc<ObjectRefs>>,
    /// Small objects for the commit to write with the record.
    inline: Vec<InlineObject>,
    status: Status,
}

/// A small object's id and ciphertext, written into the index by the commit.
pub type InlineObject = (ObjectId, Vec<u8>);

#[derive(Default, PartialEq, Eq, Clone, Copy)]
enum Status {
    #[default]
    Open,
    Committed,
    Abandoned,
}

impl PendingObjects {
    fn lock(&self) -> std::sync::MutexGuard<'_, PendingState> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Small objects count as stored once their commit has written them.
    fn add_inline(&self, id: &ObjectId, bytes: Vec<u8>) -> io::Result<()> {
        let mut state = self.lock();
        if state.status != Status::Open {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "request was abandoned"));
        }
        state.inline.push((id.clone(), bytes));
        Ok(())
    }

    /// Runs the commit with the small objects it must write; on success the objects are
    /// no longer pending. The commit reports with its error whether the record may
    /// nonetheless have been applied, in which case the objects are kept (never delete
    /// what a record may point to).
    pub(super) fn commit_with<T>(
        &self,
        commit: impl FnOnce(&[InlineObject]) -> Result<T, (io::Error, bool)>,
    ) -> io::Result<T> {
        let mut state = self.lock();
        if state.status != Status::Open {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "request was abandoned"));
        }
        let (result, applied) = match commit(&state.inline) {
            Ok(value) => (Ok(value), true),
            Err((e, applied)) => (Err(e), applied),
        };
        if applied {
            state.status = Status::Committed;
            if let Some(refs) = state.refs.take() {
                refs.release(&std::mem::take(&mut state.held), true);
            }
            state.inline.clear();
        }
        result
    }

    /// Takes over `other`'s objects (a finished resumable upload joining a submission):
    /// from now on this request's commit names them, its abandonment deletes them, and
    /// `other` holds nothing.
    pub fn adopt(&self, other: &PendingObjects) -> io::Result<()> {
        let mut theirs = other.lock();
        let mut ours = self.lock();
        if theirs.status != Status::Open || ours.status != Status::Open {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "request was abandoned"));
        }
        ours.held.append(&mut theirs.held);
        ours.inline.append(&mut theirs.inline);
        let refs = theirs.refs.take();
        if ours.refs.is_none() {
            ours.refs = refs;
        }
        // Nothing is left in it for an abandonment to delete.
        theirs.status = Status::Committed;
        Ok(())
    }

    /// Deletes every uncommitted object now (called by the owning request's guard).
    /// Waits for a commit in progress, so call it off the async threads.
    pub fn abandon(&self) {
        self.lock().abandon();
    }

    /// `abandon` if that needs no waiting; false when a commit holds the lock.
    pub fn try_abandon(&self) -> bool {
        match self.0.try_lock() {
            Ok(mut state) => {
                state.abandon();
                true
            }
            Err(std::sync::TryLockError::Poisoned(poisoned)) => {
                poisoned.into_inner().abandon();
                true
            }
            Err(std::sync::TryLockError::WouldBlock) => false,
        }
    }
}

impl PendingState {
    fn abandon(&mut self) {
        if self.status == Status::Open {
            self.status = Status::Abandoned;
            if let Some(refs) = self.refs.take() {
                refs.release(&std::mem::take(&mut self.held), false);
            }
            self.inline.clear();
        }
    }
}
