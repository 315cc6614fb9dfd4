//! Object files: written in `objects/tmp/`, fsynced, renamed into `objects/<id>`, and the
//! directory fsynced, so an acknowledged object survives power loss.

use super::sync_dir;
use crate::envelope::ObjectId;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Bytes of ciphertext in `objects/` and bytes of uploads under way, held against
/// `limits.storage_quota_bytes` (0: no quota) so an upload that would pass it is refused
/// (507) while it streams, before anything is acknowledged.
#[derive(Default)]
pub struct Usage {
    stored: AtomicU64,
    in_flight: AtomicU64,
    quota: AtomicU64,
}

impl Usage {
    pub fn set_quota(&self, bytes: u64) {
        self.quota.store(bytes, Ordering::Relaxed);
    }

    /// Bytes of ciphertext in `objects/` now.
    pub fn stored(&self) -> u64 {
        self.stored.load(Ordering::Relaxed)
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
        let quota = self.quota.load(Ordering::Relaxed);
        quota == 0
            || self
                .stored()
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
    /// Takes `bytes` more; false if they would pass the quota.
    pub fn grow(&mut self, bytes: u64) -> bool {
        let fits = self.usage.fits(bytes);
        self.usage.in_flight.fetch_add(bytes, Ordering::Relaxed);
        self.held += bytes;
        fits
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.usage.in_flight.fetch_sub(self.held, Ordering::Relaxed);
    }
}

/// An object being written. Dropped without `persist`, its file is deleted.
pub struct TempObject {
    path: PathBuf,
    objects: PathBuf,
    persisted: bool,
    usage: Arc<Usage>,
}

impl TempObject {
    pub(super) fn create(
        tmp: &Path,
        objects: &Path,
        name: &str,
        usage: &Arc<Usage>,
    ) -> io::Result<(TempObject, File)> {
        let path = tmp.join(name);
        let file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
        let objects = objects.to_path_buf();
        Ok((TempObject { path, objects, persisted: false, usage: usage.clone() }, file))
    }

    /// Where the object is being written (to re-read it before persisting).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the object durable under its id and hands it to `pending` (the request it
    /// belongs to). Fails, deleting the file, if that request was already abandoned.
    pub fn persist(
        mut self,
        file: File,
        id: &ObjectId,
        pending: &PendingObjects,
    ) -> io::Result<()> {
        file.sync_all()?;
        let len = file.metadata()?.len();
        drop(file);
        let mut state = pending.lock();
        if state.status != Status::Open {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "request was abandoned"));
        }
        let target = self.objects.join(id.as_str());
        if target.exists() {
            // The same bytes (the name is their hash) are already stored, perhaps for
            // another record: never replace them, and never let this request's clean-up
            // delete them. Our copy goes when `self` drops.
            return Ok(());
        }
        fs::rename(&self.path, &target)?;
        self.persisted = true;
        self.usage.add_stored(len);
        state.paths.push((target, len, self.usage.clone()));
        sync_dir(&self.objects)
    }
}

impl Drop for TempObject {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The objects one request has persisted but not yet committed. If the request ends
/// any other way (error, disconnect, panic), dropping this deletes them, and objects
/// whose writers finish later are refused and deleted too.
#[derive(Clone, Default)]
pub struct PendingObjects(Arc<Mutex<PendingState>>);

#[derive(Default)]
struct PendingState {
    /// Each persisted object, its size, and the usage it counts in.
    paths: Vec<(PathBuf, u64, Arc<Usage>)>,
    status: Status,
}

#[derive(Default, PartialEq, Eq, Clone, Copy)]
enum Status {
    #[default]
    Open,
    Committed,
    Abandoned,
}

impl PendingObjects {
    fn lock(&self) -> std::sync::MutexGuard<'_, PendingState> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs the commit; on success the objects are no longer pending. The commit reports
    /// with its error whether the record may nonetheless have been applied, in which case
    /// the objects are kept (never delete what a record may point to).
    pub(super) fn commit_with<T>(
        &self,
        commit: impl FnOnce() -> Result<T, (io::Error, bool)>,
    ) -> io::Result<T> {
        let mut state = self.lock();
        if state.status != Status::Open {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "request was abandoned"));
        }
        let (result, applied) = match commit() {
            Ok(value) => (Ok(value), true),
            Err((e, applied)) => (Err(e), applied),
        };
        if applied {
            state.status = Status::Committed;
            state.paths.clear();
        }
        result
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
            for (path, len, usage) in self.paths.drain(..) {
                if fs::remove_file(path).is_ok() {
                    usage.remove_stored(len);
                }
            }
        }
    }
}
