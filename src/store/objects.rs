//! Object files: written in `objects/tmp/`, fsynced, renamed into `objects/<id>`, and the
//! directory fsynced, so an acknowledged object survives power loss.

use super::sync_dir;
use crate::envelope::ObjectId;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// An object being written. Dropped without `persist`, its file is deleted.
pub struct TempObject {
    path: PathBuf,
    objects: PathBuf,
    persisted: bool,
}

impl TempObject {
    pub(super) fn create(tmp: &Path, objects: &Path, name: &str) -> io::Result<(TempObject, File)> {
        let path = tmp.join(name);
        let file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
        Ok((TempObject { path, objects: objects.to_path_buf(), persisted: false }, file))
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
        state.paths.push(target);
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
    paths: Vec<PathBuf>,
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
            for path in self.paths.drain(..) {
                let _ = fs::remove_file(path);
            }
        }
    }
}
