//! Resumable uploads held between their requests (the tus protocol's state; `tus.rs`
//! speaks the protocol). Each upload's bytes go, as they arrive, to one age stream
//! writer that lives in this process's memory from the upload's creation to its end:
//! the file key never touches a disk, the ciphertext goes to `objects/tmp/` as for any
//! upload, and a restart loses every unfinished upload (its temporary file is swept at
//! start-up; the client is told the upload is gone). A finished upload waits, persisted
//! but named by no record, until one submission claims it or its time runs out.
//!
//! An upload holds its whole declared length against the storage quota from its
//! creation, so a survivor is not told the disk is full halfway through a video. Only
//! progress keeps an upload: one that never receives a byte goes after
//! `uploads.evict_idle_secs` (ten minutes), and when every place is taken, the one that
//! has made no progress for longest (and none for that long) makes room for a new one.

use super::error::IntakeError;
use super::sealed::Staged;
use super::upload::{seal_stream, AbandonOnDrop, ChannelReader, Chunk, CHANNEL_DEPTH};
use crate::envelope::SealedObject;
use crate::keys::Recipients;
use crate::store::{PendingObjects, Reservation, Store};
use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, Notify};
use zeroize::Zeroizing;

/// How long a request waits for another one holding the same upload.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Every upload the server holds, by id (128 random bits, in hex: a stranger cannot
/// guess one, and only its id resumes, reads the offset of or ends an upload).
pub struct Uploads {
    held: Mutex<Registry>,
    settings: crate::config::Uploads,
}

#[derive(Default)]
struct Registry {
    uploads: HashMap<String, Arc<Held>>,
    /// Ids a submission under way has taken (they come back if it is refused).
    claimed: HashSet<String>,
    /// Sealed files' uploads already recorded, and their submissions, for a while: a
    /// field kit whose answer was lost on the way asks again and gets the receipt,
    /// instead of sending the whole file again.
    recorded: HashMap<String, (String, Instant)>,
}

/// Recorded sealed uploads remembered at most (the oldest are forgotten first).
const MAX_RECORDED: usize = 1024;

/// One upload between its requests.
pub struct Held {
    /// The file's whole length, declared at creation.
    pub length: u64,
    /// Bytes handed to the encrypting worker, in order.
    offset: AtomicU64,
    times: Mutex<Times>,
    /// The request feeding it now, one at a time (owned guards: the last step, sealing,
    /// runs to its end in a task of its own even if its request is dropped).
    pub(super) stage: Arc<tokio::sync::Mutex<Stage>>,
    /// Bumped by each new request: one still feeding stops (a link that died unseen
    /// must not hold the upload until its idle timeout).
    generation: AtomicU64,
    preempt: Notify,
    /// Set once the upload is ended (terminated, expired, evicted, broken).
    removed: AtomicBool,
    /// From the client's `Upload-Metadata`, held in memory only, for the manifest.
    pub name: Zeroizing<String>,
    pub media_type: String,
    pub kind: Kind,
}

/// What an upload carries, as its `Upload-Metadata` says (`kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A survivor's file, encrypted as it arrives, for a submission's `upload` field.
    File,
    /// A field kit's sealed file (ciphertext already), checked and staged as it
    /// arrives, for `/api/v1/sealed`.
    Sealed,
}

/// A whole upload, persisted, named by no record yet.
#[derive(Clone)]
pub enum Arrived {
    File(SealedObject),
    Sealed(Box<Staged>),
}

struct Times {
    /// When it is swept: monotonic for the sweep, the wall clock for `Upload-Expires`.
    expires: (Instant, SystemTime),
    progressed: Instant,
}

/// Where an upload is.
pub(super) enum Stage {
    /// Bytes still to come: the worker encrypting them, the quota the upload holds.
    Receiving {
        chunks: mpsc::Sender<Chunk>,
        worker: tokio::task::JoinHandle<Result<Arrived, IntakeError>>,
        /// The quota for the whole declared length, given back when this is dropped.
        _quota: Reservation,
        /// Deletes the upload's object unless a submission takes it over.
        pending: AbandonOnDrop,
    },
    /// Whole, sealed and persisted, waiting for its submission.
    Finished { arrived: Arrived, pending: AbandonOnDrop },
    /// The worker failed (a full disk, a write error): the upload cannot go on.
    Broken,
}

/// What a new upload says about itself.
pub struct Declared {
    pub length: u64,
    pub name: Zeroizing<String>,
    pub media_type: String,
    pub kind: Kind,
}

impl Uploads {
    pub fn new(settings: &crate::config::Uploads) -> Uploads {
        Uploads { held: Mutex::default(), settings: settings.clone() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn settings(&self) -> &crate::config::Uploads {
        &self.settings
    }

    /// Starts an upload: its encrypting worker runs from now until the last byte (or
    /// until the upload is ended, when its temporary file is deleted).
    pub fn create(
        &self,
        store: &Arc<Store>,
        limits: &crate::config::Limits,
        recipients: Arc<Recipients>,
        declared: Declared,
    ) -> Result<(String, Arc<Held>), IntakeError> {
        if declared.length == 0 {
            return Err(IntakeError::UploadEmpty);
        }
        let largest = match declared.kind {
            Kind::File => self.settings.max_upload_bytes,
            Kind::Sealed => super::sealed::max_sealed_bytes(limits),
        };
        if declared.length > largest {
            return Err(IntakeError::UploadTooLarge);
        }
        self.sweep();
        if self.lock().uploads.len() >= self.settings.max_held && !self.evict_one() {
            return Err(IntakeError::TooManyUploads);
        }
        let mut reservation = store.usage().reserve();
        if !reservation.grow(declared.length) {
            return Err(IntakeError::StorageFull);
        }
        let pending = PendingObjects::default();
        let (chunks, rx) = mpsc::channel::<Chunk>(CHANNEL_DEPTH);
        let for_worker = pending.clone();
        let worker = match declared.kind {
            Kind::File => {
                let object = store.create_object(&pending);
                actix_web::rt::task::spawn_blocking(move || {
                    seal_stream(&recipients, object, rx, &for_worker)
                        .map(Arrived::File)
                        .map_err(|e| IntakeError::from_io(&e))
                })
            }
            Kind::Sealed => {
                let (store, limits) = (store.clone(), limits.clone());
                actix_web::rt::task::spawn_blocking(move || {
                    let mut input = ChannelReader::new(rx);
                    // Bytes come until the declared length: an archive that ends before
                    // its objects do is damaged, not cut off.
                    let staged = super::sealed::stage(&store, &limits, &mut input, &for_worker)
                        .map_err(|e| match e {
                            IntakeError::IncompleteUpload => IntakeError::NotASealedFile,
                            other => other,
                        })?;
                    // What follows the archive's last member (its end blocks) is read
                    // and dropped, up to the upload's end.
                    io::copy(&mut input, &mut io::sink())
                        .map_err(|_| IntakeError::IncompleteUpload)?;
                    Ok(Arrived::Sealed(Box::new(staged)))
                })
            }
        };
        let first_byte = self.window().min(self.idle_before_eviction());
        let now = Instant::now();
        let upload = Arc::new(Held {
            length: declared.length,
            offset: AtomicU64::new(0),
            times: Mutex::new(Times {
                expires: (now + first_byte, SystemTime::now() + first_byte),
                progressed: now,
            }),
            stage: Arc::new(tokio::sync::Mutex::new(Stage::Receiving {
                chunks,
                worker,
                _quota: reservation,
                pending: AbandonOnDrop(pending),
            })),
            generation: AtomicU64::new(0),
            preempt: Notify::new(),
            removed: AtomicBool::new(false),
            name: declared.name,
            media_type: declared.media_type,
            kind: declared.kind,
        });
        let id = crate::record::random_hex(16);
        let mut registry = self.lock();
        if registry.uploads.len() >= self.settings.max_held {
            return Err(IntakeError::TooManyUploads);
        }
        registry.uploads.insert(id.clone(), upload.clone());
        Ok((id, upload))
    }

    fn window(&self) -> Duration {
        Duration::from_secs(self.settings.resume_window_secs)
    }

    fn idle_before_eviction(&self) -> Duration {
        Duration::from_secs(self.settings.evict_idle_secs)
    }

    /// Ends the upload that has gone longest without progress, if that is at least
    /// `uploads.evict_idle_secs` and no request holds it. Whether one was ended.
    fn evict_one(&self) -> bool {
        let now = Instant::now();
        let oldest = self
            .lock()
            .uploads
            .iter()
            .map(|(id, upload)| (upload.progressed(), id.clone(), upload.clone()))
            .filter(|(progressed, _, upload)| {
                now.duration_since(*progressed) >= self.idle_before_eviction()
                    && upload.stage.try_lock().is_ok()
            })
            .min_by_key(|(progressed, _, _)| *progressed);
        match oldest {
            Some((_, id, _)) => self.remove(&id).is_some(),
            None => false,
        }
    }

    /// The upload `id`, if the server holds it and its time has not run out.
    pub fn get(&self, id: &str) -> Option<Arc<Held>> {
        let upload = self.lock().uploads.get(id).cloned()?;
        // A request feeding it keeps it, whatever the clock says.
        if upload.expired() && upload.stage.try_lock().is_ok() {
            self.remove(id);
            return None;
        }
        Some(upload)
    }

    /// Ends an upload (tus termination, or its time ran out): a request still feeding
    /// it stops, its worker ends without a last chunk, and its file is deleted.
    pub fn remove(&self, id: &str) -> Option<Arc<Held>> {
        let upload = self.lock().uploads.remove(id)?;
        upload.removed.store(true, Ordering::SeqCst);
        upload.take_over();
        Some(upload)
    }

    /// Drops every upload whose time ran out and that no request is feeding.
    pub fn sweep(&self) {
        let window = self.window();
        self.lock().recorded.retain(|_, (_, at)| at.elapsed() < window);
        let expired: Vec<String> = self
            .lock()
            .uploads
            .iter()
            .filter(|(_, upload)| upload.expired() && upload.stage.try_lock().is_ok())
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            self.remove(&id);
        }
    }

    /// Keeps `upload` for another window from now: it made progress, finished, or came
    /// back from a refused submission. Nothing else (a request that sends no byte, a
    /// HEAD) keeps an upload.
    pub fn progressed(&self, upload: &Held) {
        let window = self.window();
        let now = Instant::now();
        let mut times = upload.times.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *times = Times { expires: (now + window, SystemTime::now() + window), progressed: now };
    }

    /// Takes the finished upload `id` for a submission, or says why not. Until the
    /// submission commits, the upload can go back (`Claimed` puts it back when dropped),
    /// so a refused submission does not cost the survivor their upload.
    pub async fn claim(self: &Arc<Self>, id: &str, kind: Kind) -> Result<Claimed, IntakeError> {
        let Some(upload) = self.get(id) else {
            let taken = self.lock().claimed.contains(id);
            return Err(if taken { IntakeError::UploadInUse } else { IntakeError::UploadNotFound });
        };
        if upload.kind != kind {
            return Err(IntakeError::UploadWrongKind);
        }
        // Its last request may still be sealing it: wait for that, not for ever.
        let stage = tokio::time::timeout(LOCK_WAIT, upload.stage.lock())
            .await
            .map_err(|_| IntakeError::UploadIncomplete)?;
        let Stage::Finished { arrived, .. } = &*stage else {
            return Err(IntakeError::UploadIncomplete);
        };
        let arrived = arrived.clone();
        drop(stage);
        // Taken out under the registry's lock: two submissions naming it cannot both
        // have it.
        let mut registry = self.lock();
        if registry.uploads.remove(id).is_none() {
            return Err(IntakeError::UploadNotFound);
        }
        registry.claimed.insert(id.to_string());
        Ok(Claimed { id: id.to_string(), upload, arrived, uploads: self.clone(), spent: false })
    }

    /// Remembers that the sealed upload `id` was recorded as `submission`.
    pub fn recorded(&self, id: &str, submission: &str) {
        let mut registry = self.lock();
        if registry.recorded.len() >= MAX_RECORDED {
            let oldest = registry.recorded.iter().min_by_key(|(_, (_, at))| *at);
            if let Some(oldest) = oldest.map(|(id, _)| id.clone()) {
                registry.recorded.remove(&oldest);
            }
        }
        registry.recorded.insert(id.to_string(), (submission.to_string(), Instant::now()));
    }

    /// The submission the sealed upload `id` was recorded as, if it was, lately.
    pub fn recorded_as(&self, id: &str) -> Option<String> {
        self.lock().recorded.get(id).map(|(submission, _)| submission.clone())
    }
}

impl Held {
    pub fn offset(&self) -> u64 {
        self.offset.load(Ordering::SeqCst)
    }

    pub fn add_offset(&self, n: u64) {
        self.offset.fetch_add(n, Ordering::SeqCst);
    }

    /// Bytes still to come.
    pub fn remaining(&self) -> u64 {
        self.length.saturating_sub(self.offset())
    }

    pub fn expires(&self) -> SystemTime {
        self.times.lock().unwrap_or_else(std::sync::PoisonError::into_inner).expires.1
    }

    fn expired(&self) -> bool {
        let times = self.times.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        times.expires.0 <= Instant::now()
    }

    fn progressed(&self) -> Instant {
        self.times.lock().unwrap_or_else(std::sync::PoisonError::into_inner).progressed
    }

    /// Whether the upload was ended (terminated, expired, evicted, broken).
    pub fn removed(&self) -> bool {
        self.removed.load(Ordering::SeqCst)
    }

    /// A new request takes the upload over: the one feeding it, if any, stops. Returns
    /// the new request's generation, which `superseded` compares against.
    pub fn take_over(&self) -> u64 {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.preempt.notify_waiters();
        generation
    }

    /// Whether a request of `generation` has been taken over since, or the upload ended.
    pub fn superseded(&self, generation: u64) -> bool {
        self.generation.load(Ordering::SeqCst) != generation || self.removed()
    }

    /// Resolves when a newer request takes the upload over (registered at once, so a
    /// take-over between this call and the await is not missed).
    pub fn preempted(&self) -> std::pin::Pin<Box<tokio::sync::futures::Notified<'_>>> {
        let mut notified = Box::pin(self.preempt.notified());
        notified.as_mut().enable();
        notified
    }
}

/// A finished upload taken by a submission: goes back to the server's uploads when
/// dropped, unless the submission's commit took its object over (`spend`).
pub struct Claimed {
    id: String,
    upload: Arc<Held>,
    pub arrived: Arrived,
    uploads: Arc<Uploads>,
    spent: bool,
}

impl Claimed {
    pub fn name(&self) -> &str {
        &self.upload.name
    }

    pub fn media_type(&self) -> &str {
        &self.upload.media_type
    }

    /// Hands the upload's object to the submission's `pending` objects, just before the
    /// submission's commit (on a blocking thread): from here the commit names it and
    /// the submission's abandonment deletes it.
    pub fn spend(&mut self, pending: &PendingObjects) -> io::Result<()> {
        let stage = self.upload.stage.blocking_lock();
        let Stage::Finished { pending: theirs, .. } = &*stage else {
            return Err(io::Error::other("upload not finished"));
        };
        pending.adopt(&theirs.0)?;
        self.spent = true;
        Ok(())
    }
}

impl Drop for Claimed {
    fn drop(&mut self) {
        let mut registry = self.uploads.lock();
        registry.claimed.remove(&self.id);
        if !self.spent {
            registry.uploads.insert(self.id.clone(), self.upload.clone());
            drop(registry);
            self.uploads.progressed(&self.upload);
        }
    }
}
