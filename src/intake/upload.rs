//! Reading one submission off the wire: text fields into a bounded, zeroized buffer;
//! each file field chunk by chunk through a bounded channel to a blocking worker that
//! hashes and age-encrypts it into an object (in memory while small, else a file in
//! `objects/tmp/`). Memory per upload is bounded by the channel depth and the store's
//! per-request allowance for small objects, whatever the file size, and no plaintext
//! ever reaches a disk.

use super::error::IntakeError;
pub(super) use super::handoff::{seal_stream, ChannelReader, Chunk, BATCH, CHANNEL_DEPTH};
use super::pages::Kept;
use super::resumable::{Arrived, Kind};
use super::Intake;
use crate::envelope::{Attachment, Manifest, ObjectId, Origin, TextField, MANIFEST_SCHEMA};
use crate::record::SubmissionRecord;
use crate::store::{CaseChoice, CaseRecord, PendingObjects, Reservation};
use crate::{codename, envelope, keys};
use actix_multipart::{Field, Multipart, MultipartError};
use actix_web::web::Bytes;
use futures_util::StreamExt;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use zeroize::Zeroizing;

/// The file field name the API and the form use.
pub const EVIDENCE_FIELD: &str = "evidence";
/// A field naming a finished resumable upload (`/api/v1/uploads`) by its id.
pub const UPLOAD_FIELD: &str = "upload";
use crate::form::TESTIMONY_FIELD;
const LANGUAGE_FIELD: &str = "language";
/// On `/api/v1/followup/submissions`: the codename that opens the case. Never kept.
pub const CODENAME_FIELD: &str = "codename";
const MAX_NAME_BYTES: usize = 64;
/// Longest original file name and media type we keep (the manifest is in memory).
const MAX_FILE_NAME_BYTES: usize = 1024;
const MAX_MEDIA_TYPE_BYTES: usize = 255;

/// Which case a submission joins.
pub enum Target {
    /// A first submission: a new case, and a new codename for the survivor.
    NewCase,
    /// More for a case the survivor opened with the codename.
    Case(CaseRecord),
    /// More for the case whose codename is in the request's `codename` field (API).
    CodenameField,
}

/// A submission that is durable and recorded: what the survivor is told.
pub struct Accepted {
    pub id: String,
    pub case: String,
    /// Only for a new case: shown to the survivor once, never stored.
    pub codename: Option<codename::Codename>,
    pub received_at: String,
    pub objects: Vec<String>,
    /// Proof that the submission is in the signed intake log.
    pub receipt: crate::log::Receipt,
    /// Under `replication.ack = "replicated"`: whether it reached the replicas in time.
    pub replicated: Option<crate::replication::Replicated>,
}

/// Everything read from one request, with its objects persisted but not committed.
struct Received {
    testimony: Zeroizing<String>,
    language: Option<String>,
    fields: Vec<TextField>,
    attachments: Vec<Attachment>,
    attachment_ids: Vec<ObjectId>,
    attachment_ciphertext_bytes: u64,
    codename: Option<Zeroizing<String>>,
    /// Finished resumable uploads this submission names: back to the server's uploads
    /// if it is refused, used up once it commits.
    claimed: Vec<super::resumable::Claimed>,
}

/// Deletes the request's (or a resumable upload's) objects unless they reach a commit.
pub(super) struct AbandonOnDrop(pub(super) PendingObjects);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        // If this request's commit is flushing right now, waiting for it would stall
        // every connection on this async thread: finish the job on a blocking thread.
        if !self.0.try_abandon() {
            let pending = self.0.clone();
            actix_web::rt::task::spawn_blocking(move || pending.abandon());
        }
    }
}

/// Reads, seals and records one submission. Returns only once it is durable.
pub async fn receive(
    intake: &Intake,
    content_length: Option<u64>,
    multipart: Multipart,
    origin: Origin,
    page_language: &str,
    target: Target,
) -> Result<Accepted, IntakeError> {
    let mut kept = Kept::default();
    receive_keeping(intake, content_length, multipart, origin, page_language, target, &mut kept)
        .await
}

/// The largest request the text lane takes: a full testimony and a little more.
fn text_lane_bytes(limits: &crate::config::Limits) -> u64 {
    limits.max_text_bytes as u64 + 64 * 1024
}

/// An upload's average speed, held to `limits.min_upload_bytes_per_sec` once
/// `slow_upload_grace_secs` are over: a trickle that never stalls long enough for the
/// idle timeout must still give its slot back.
pub(super) struct Pace {
    started: std::time::Instant,
    bytes: u64,
    min_per_sec: u64,
    grace: Duration,
}

impl Pace {
    pub(super) fn new(limits: &crate::config::Limits) -> Pace {
        Pace {
            started: std::time::Instant::now(),
            bytes: 0,
            min_per_sec: limits.min_upload_bytes_per_sec,
            grace: Duration::from_secs(limits.slow_upload_grace_secs),
        }
    }

    /// Counts `n` bytes that arrived; refuses when the average is below the minimum.
    pub(super) fn arrived(&mut self, n: usize) -> Result<(), IntakeError> {
        self.bytes += n as u64;
        if self.time_left().is_zero() {
            return Err(IntakeError::UploadRateTooLow);
        }
        Ok(())
    }

    /// How long the upload may wait for more bytes before its average falls below the
    /// minimum (never before the grace is over).
    fn time_left(&self) -> Duration {
        if self.min_per_sec == 0 {
            return Duration::MAX;
        }
        let earned = Duration::from_secs_f64(self.bytes as f64 / self.min_per_sec as f64);
        self.grace.max(earned).saturating_sub(self.started.elapsed())
    }

    /// Awaits the next piece of the upload within the idle timeout and the pace: a
    /// trickle is refused even while it sends only part headers, which reach no counter.
    pub(super) async fn within<T>(
        &self,
        idle: Duration,
        next: impl Future<Output = T>,
    ) -> Result<T, IntakeError> {
        let left = self.time_left();
        if left < idle {
            tokio::time::timeout(left, next).await.map_err(|_| IntakeError::UploadRateTooLow)
        } else {
            within(idle, next).await
        }
    }
}

/// The upload guards, in one place, before a byte of the body is read: a declared
/// length over `ceiling` is refused, so is one the storage quota cannot take, and the
/// upload takes its lane's slot, held until it is answered. The text lane waits its
/// turn, so a survivor without files is never told the server is busy; an upload with
/// files is refused as busy when no upload slot is left. Every upload route (the form,
/// the API, follow-ups, sealed files) passes here; the refusal's form (a page in the
/// survivor's language, or JSON) is the route's.
pub async fn admit(
    intake: &Intake,
    content_length: Option<u64>,
    ceiling: u64,
    text_lane: bool,
) -> Result<tokio::sync::OwnedSemaphorePermit, IntakeError> {
    if content_length.is_some_and(|len| len > ceiling) {
        return Err(IntakeError::SubmissionTooLarge);
    }
    if content_length.is_some_and(|len| !intake.store.usage().fits(len)) {
        return Err(IntakeError::StorageFull);
    }
    if text_lane {
        intake.activity.texts.clone().acquire_owned().await.map_err(|_| IntakeError::Internal)
    } else {
        intake.activity.uploads.clone().try_acquire_owned().map_err(|_| IntakeError::Busy)
    }
}

/// `receive`, handing back in `kept` what a refused page returns to the survivor.
pub async fn receive_keeping(
    intake: &Intake,
    content_length: Option<u64>,
    mut multipart: Multipart,
    origin: Origin,
    page_language: &str,
    target: Target,
    kept: &mut Kept,
) -> Result<Accepted, IntakeError> {
    let limits = &intake.config.limits;
    let overhead = (limits.max_files + limits.max_fields) as u64 * 4096;
    let ceiling = limits.max_submission_bytes + limits.max_text_bytes as u64 + overhead;
    // A text-only testimony (its declared size leaves no room for more than small
    // files) takes the text lane.
    let text_only = content_length.is_some_and(|len| len <= text_lane_bytes(limits));
    let permit = admit(intake, content_length, ceiling, text_only).await?;

    let guard = AbandonOnDrop(PendingObjects::default());
    // Every object of this submission is sealed to the set in force now, even if the
    // recipients are reloaded while it uploads.
    let recipients = intake.recipients.current();
    // However steadily it trickles, an upload ends by the deadline.
    let deadline = Duration::from_secs(limits.upload_deadline_secs);
    // Text never exceeds the body: a short testimony gets a short buffer (it is wiped
    // whole on drop, so its size is paid twice).
    let text_capacity =
        content_length.map_or(limits.max_text_bytes, |len| limits.max_text_bytes.min(len as usize));
    let reading = read_parts(intake, &recipients, &mut multipart, &guard.0, kept, text_capacity);
    let mut received =
        tokio::time::timeout(deadline, reading).await.map_err(|_| IntakeError::UploadTooSlow)??;
    // The web form asks who may read it, and nothing is stored without an answer.
    let asks_consent = origin == Origin::Web && matches!(target, Target::NewCase);
    if asks_consent && crate::form::missing_required(&received.fields).is_some() {
        return Err(IntakeError::ConsentMissing);
    }
    let nothing_written = received.testimony.trim().is_empty();
    match target {
        Target::NewCase if nothing_written => return Err(IntakeError::TestimonyMissing),
        _ if nothing_written && received.attachments.is_empty() => {
            return Err(IntakeError::NothingToAdd)
        }
        _ => {}
    }

    // Read whole: the lane's slot goes back now, before a codename's derivation, which
    // may wait its turn behind others.
    drop(permit);
    let store = intake.store.clone();
    let id = crate::record::new_submission_id();
    let received_at = crate::record::Hour::now();
    // A new case gets a codename; only its lookup tag, its salt and the public reply
    // recipient are kept (keys::CodenameKey).
    let (codename, new_case, existing) = match target {
        Target::NewCase => {
            let codename = codename::Codename::generate(&ring::rand::SystemRandom::new());
            let lane = super::followup::Lane::NewCase;
            let key = intake.followup.codename_key(lane, &store, codename.normalized()).await?;
            let (tag, case) = store.new_case_keys(&id, &key);
            (Some(codename), Some((tag, case)), None)
        }
        Target::Case(case) => (None, None, Some(case)),
        Target::CodenameField => {
            let typed = received.codename.take().unwrap_or_default();
            let opened = intake.followup.open_case(&store, &recipients, &typed).await?;
            (None, None, Some(opened.case))
        }
    };
    let (case, reply_recipient, reply_key_version) = match (&new_case, &existing) {
        (Some((_, case)), _) | (None, Some(case)) => (
            case.case.clone(),
            Some(case.reply_recipient.clone()),
            case.reply_salt.is_some().then_some(2),
        ),
        (None, None) => return Err(IntakeError::Internal),
    };

    let Received {
        testimony,
        language,
        fields,
        attachments,
        attachment_ids,
        attachment_ciphertext_bytes,
        codename: _,
        mut claimed,
    } = received;
    let language = language.unwrap_or_else(|| page_language.to_string());
    let manifest = Manifest {
        schema: MANIFEST_SCHEMA.into(),
        submission: id.clone(),
        case,
        reply_recipient,
        reply_key_version,
        received_at: received_at.clone(),
        declared_at: None,
        language,
        origin,
        testimony: testimony.to_string(),
        fields,
        attachments,
    };
    drop(testimony);

    let pending = guard.0.clone();
    let (record, objects, receipt) = blocking(move || {
        let plaintext = manifest.to_plaintext()?;
        let object = store.create_object(&pending);
        let (object, sealed) = envelope::seal_document(&recipients, &plaintext, object)?;
        object.persist(&sealed.id, &pending)?;
        let record = SubmissionRecord {
            id: manifest.submission.clone().into(),
            received_at: manifest.received_at.clone(),
            manifest: sealed.id.clone(),
            attachments: attachment_ids,
            total_bytes: attachment_ciphertext_bytes + sealed.ciphertext_len,
            recipients: recipients.fingerprint().to_string(),
            case: manifest.case.clone().into(),
            log_index: None,
        };
        let choice = match &new_case {
            Some((tag, case)) => CaseChoice::New { tag, case },
            None => CaseChoice::Existing,
        };
        // The uploads' objects become this submission's, committed with it or not at all.
        for upload in &mut claimed {
            upload.spend(&pending)?;
        }
        let receipt = store.commit(&pending, &record, choice)?;
        let objects = record.object_ids().iter().map(ToString::to_string).collect();
        Ok((record, objects, receipt))
    })
    .await
    // Their objects went with the failed commit: the page must not say they are kept.
    .inspect_err(|_| kept.uploads.clear())?;
    // Durable here already; under `ack = "replicated"` the answer also waits (up to its
    // deadline) for the replicas, and says how far it got.
    let replicated = match &intake.ack_wait {
        Some(ack) => {
            Some(crate::replication::wait_for(&intake.store, receipt.leaf_index, ack).await)
        }
        None => None,
    };

    Ok(Accepted {
        id: record.id.into(),
        case: record.case.into(),
        codename,
        received_at: record.received_at,
        objects,
        receipt,
        replicated,
    })
}

async fn read_parts(
    intake: &Intake,
    recipients: &Arc<keys::Recipients>,
    multipart: &mut Multipart,
    pending: &PendingObjects,
    kept: &mut Kept,
    text_capacity: usize,
) -> Result<Received, IntakeError> {
    let limits = &intake.config.limits;
    let idle = Duration::from_secs(limits.idle_timeout_secs);
    let mut received = Received {
        testimony: Zeroizing::new(String::new()),
        language: None,
        fields: Vec::new(),
        attachments: Vec::new(),
        attachment_ids: Vec::new(),
        attachment_ciphertext_bytes: 0,
        codename: None,
        claimed: Vec::new(),
    };
    let mut text_bytes = 0usize;
    // One buffer for every text field, sized once: growing a Vec would leave unwiped
    // copies of the testimony in freed memory.
    let mut text_buffer = Zeroizing::new(Vec::new());
    let mut files =
        Budget::new(limits, intake.store.usage().reserve(), limits.max_submission_bytes);
    let mut parts = 0usize;
    let mut seen_testimony = false;

    while let Some(part) = files.pace.within(idle, multipart.next()).await? {
        let mut field = part.map_err(multipart_error)?;
        parts += 1;
        if parts > limits.max_fields + limits.max_files {
            return Err(IntakeError::TooManyFields);
        }
        let name = field.name().ok_or(IntakeError::FieldWithoutName)?.to_string();
        if name.is_empty() || name.len() > MAX_NAME_BYTES || name.chars().any(char::is_control) {
            return Err(IntakeError::InvalidFieldName);
        }
        let file_name = field.content_disposition().and_then(|cd| cd.get_filename());
        if name == EVIDENCE_FIELD {
            let file_name = file_name.unwrap_or("").to_string();
            let media_type = field
                .content_type()
                .map_or_else(|| "application/octet-stream".into(), |m| m.essence_str().to_string());
            let Some(first) = files.pace.within(idle, field.next()).await? else {
                // A form sends an empty part when no file was chosen: not evidence.
                continue;
            };
            let first = first.map_err(multipart_error)?;
            files.pace.arrived(first.len())?;
            if received.attachments.len() == limits.max_files {
                return Err(IntakeError::TooManyFiles);
            }
            let sealed =
                receive_file(intake, recipients, &mut field, first, &mut files, pending).await?;
            received.attachment_ciphertext_bytes += sealed.ciphertext_len;
            received.attachments.push(Attachment {
                object: sealed.id.to_string(),
                name: truncate(&file_name, MAX_FILE_NAME_BYTES),
                media_type: truncate(&media_type, MAX_MEDIA_TYPE_BYTES),
                size: sealed.plaintext_len,
                sha256: sealed.plaintext_sha256,
            });
            received.attachment_ids.push(sealed.id);
            continue;
        }
        if file_name.is_some_and(|f| !f.is_empty()) {
            return Err(IntakeError::UnexpectedFile);
        }
        let text_fields = parts - received.attachments.len();
        if text_fields > limits.max_fields {
            return Err(IntakeError::TooManyFields);
        }
        if text_buffer.capacity() == 0 {
            text_buffer.reserve_exact(text_capacity);
        }
        let value = read_text(
            &mut field,
            idle,
            limits.max_text_bytes,
            &mut text_bytes,
            &mut text_buffer,
            &mut files.pace,
        )
        .await?;
        match name.as_str() {
            TESTIMONY_FIELD if seen_testimony => return Err(IntakeError::DuplicateTestimony),
            TESTIMONY_FIELD => {
                seen_testimony = true;
                kept.testimony = Some(value.clone());
                received.testimony = value;
            }
            LANGUAGE_FIELD if is_language_tag(&value) => {
                received.language = Some(value.to_string());
            }
            // Opens the case; never part of what is stored.
            CODENAME_FIELD => received.codename = Some(value),
            // A form sends an empty field when no upload was made.
            UPLOAD_FIELD if value.trim().is_empty() => {}
            UPLOAD_FIELD => {
                if received.attachments.len() == limits.max_files {
                    return Err(IntakeError::TooManyFiles);
                }
                let upload = intake.uploads.claim(value.trim(), Kind::File).await?;
                let Arrived::File(sealed) = &upload.arrived else {
                    return Err(IntakeError::UploadWrongKind);
                };
                received.attachment_ciphertext_bytes += sealed.ciphertext_len;
                received.attachments.push(Attachment {
                    object: sealed.id.to_string(),
                    name: upload.name().to_string(),
                    media_type: upload.media_type().to_string(),
                    size: sealed.plaintext_len,
                    sha256: sealed.plaintext_sha256.clone(),
                });
                received.attachment_ids.push(sealed.id.clone());
                received.claimed.push(upload);
                kept.uploads.push(value.trim().to_string());
            }
            // A skipped question is not an answer.
            _ if value.trim().is_empty() => {}
            _ => received.fields.push(TextField { name, value: value.to_string() }),
        }
    }
    Ok(received)
}

/// Streams one file into a sealed, persisted object.
async fn receive_file(
    intake: &Intake,
    recipients: &Arc<keys::Recipients>,
    field: &mut Field,
    first: Bytes,
    budget: &mut Budget,
    pending: &PendingObjects,
) -> Result<envelope::SealedObject, IntakeError> {
    let limits = &intake.config.limits;
    let idle = Duration::from_secs(limits.idle_timeout_secs);
    let object = intake.store.create_object(pending);
    let (tx, rx) = mpsc::channel::<Chunk>(CHANNEL_DEPTH);
    let recipients = recipients.clone();
    let pending = pending.clone();
    let worker =
        actix_web::rt::task::spawn_blocking(move || seal_stream(&recipients, object, rx, &pending));

    let rest = field.map(|chunk| chunk.map_err(multipart_error));
    let stream = futures_util::stream::iter([Ok(first)]).chain(rest);
    let sent = feed(stream, &tx, idle, budget).await;
    // On error, dropping the sender without `End` makes the worker drop its object.
    drop(tx);
    sent?;
    let sealed =
        worker.await.map_err(|_| IntakeError::Internal)?.map_err(|e| IntakeError::from_io(&e))?;
    Ok(sealed)
}

/// Passes a body to its blocking worker, chunk by chunk, with the idle timeout and the
/// size limit (`total` counts across calls); `End` only when the body is whole. A
/// worker that stops early is not an error here: its own answer explains why.
pub(super) async fn feed(
    mut body: impl futures_util::Stream<Item = Result<Bytes, IntakeError>> + Unpin,
    tx: &mpsc::Sender<Chunk>,
    idle: Duration,
    budget: &mut Budget,
) -> Result<(), IntakeError> {
    use futures_util::FutureExt as _;
    let mut batch = bytes::BytesMut::new();
    loop {
        // What has arrived already is gathered; before waiting on the network, what is
        // gathered goes to the worker, so a slow link never holds bytes back.
        let next = if let Some(next) = body.next().now_or_never() {
            next
        } else {
            if !batch.is_empty() && tx.send(Chunk::Data(batch.split().freeze())).await.is_err() {
                return Ok(());
            }
            budget.pace.within(idle, body.next()).await?
        };
        let Some(chunk) = next else { break };
        let chunk = chunk?;
        budget.take(chunk.len())?;
        let piece = if batch.is_empty() && chunk.len() >= BATCH {
            chunk
        } else {
            batch.extend_from_slice(&chunk);
            if batch.len() < BATCH {
                continue;
            }
            batch.split().freeze()
        };
        if tx.send(Chunk::Data(piece)).await.is_err() {
            return Ok(());
        }
    }
    if !batch.is_empty() && tx.send(Chunk::Data(batch.freeze())).await.is_err() {
        return Ok(());
    }
    let _ = tx.send(Chunk::End).await;
    Ok(())
}

/// What one request may still send: bytes under its limit and the storage quota, at
/// no less than the minimum pace. Counted across every body `feed` passes on.
pub(super) struct Budget {
    received: u64,
    limit: u64,
    reservation: Reservation,
    pub(super) pace: Pace,
}

impl Budget {
    pub(super) fn new(
        limits: &crate::config::Limits,
        reservation: Reservation,
        limit: u64,
    ) -> Budget {
        Budget { received: 0, limit, reservation, pace: Pace::new(limits) }
    }

    /// Takes `n` more bytes, or refuses: too large, no room, or too slow.
    fn take(&mut self, n: usize) -> Result<(), IntakeError> {
        self.pace.arrived(n)?;
        self.received += n as u64;
        if self.received > self.limit {
            return Err(IntakeError::SubmissionTooLarge);
        }
        if !self.reservation.grow(n as u64) {
            return Err(IntakeError::StorageFull);
        }
        Ok(())
    }
}

async fn read_text(
    field: &mut Field,
    idle: Duration,
    max_text_bytes: usize,
    text_bytes: &mut usize,
    buf: &mut Zeroizing<Vec<u8>>,
    pace: &mut Pace,
) -> Result<Zeroizing<String>, IntakeError> {
    buf.clear();
    while let Some(chunk) = pace.within(idle, field.next()).await? {
        let chunk = chunk.map_err(multipart_error)?;
        pace.arrived(chunk.len())?;
        *text_bytes += chunk.len();
        if *text_bytes > max_text_bytes {
            return Err(IntakeError::TextTooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    let text = std::str::from_utf8(buf).map_err(|_| IntakeError::InvalidUtf8)?;
    let value = Zeroizing::new(text.to_string());
    zeroize::Zeroize::zeroize(&mut buf[..]);
    Ok(value)
}

/// Awaits the next piece of the upload, or refuses when it does not come in time.
pub(super) async fn within<T>(
    idle: Duration,
    next: impl Future<Output = T>,
) -> Result<T, IntakeError> {
    tokio::time::timeout(idle, next).await.map_err(|_| IntakeError::UploadStalled)
}

fn multipart_error(e: MultipartError) -> IntakeError {
    match e {
        MultipartError::ContentTypeMissing
        | MultipartError::ContentTypeParse
        | MultipartError::ContentTypeIncompatible => IntakeError::NotMultipart,
        MultipartError::Nested => IntakeError::NestedMultipart,
        MultipartError::ContentDispositionNameMissing => IntakeError::FieldWithoutName,
        MultipartError::Payload(actix_web::error::PayloadError::Overflow) => {
            IntakeError::PartHeadersTooLarge
        }
        MultipartError::Incomplete | MultipartError::Payload(_) => IntakeError::IncompleteUpload,
        _ => IntakeError::MalformedMultipart,
    }
}

/// Runs blocking store work off the async threads.
pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T, IntakeError> {
    actix_web::rt::task::spawn_blocking(work)
        .await
        .map_err(|_| IntakeError::Internal)?
        .map_err(|e| IntakeError::from_io(&e))
}

fn is_language_tag(s: &str) -> bool {
    (2..=16).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// `s` cut to at most `max` bytes, at a character's boundary.
pub(super) fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}
