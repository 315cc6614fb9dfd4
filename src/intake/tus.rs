//! `/api/v1/uploads`: resumable uploads on tus 1.0 (<https://tus.io/protocols/resumable-upload>),
//! core protocol with the creation, termination and expiration extensions. A finished
//! upload is named in a submission's `upload` field (`upload.rs`). Only the route's
//! pattern reaches the request log, never an upload's id; the file name a client gives
//! in `Upload-Metadata` is held in memory for the manifest and never logged.

use super::api::{content_length, error_response, has_media_type};
use super::error::IntakeError;
use super::resumable::{Declared, Held, Kind, Stage, LOCK_WAIT};
use super::upload::{admit, truncate, Chunk, Pace, BATCH};
use super::Intake;
use actix_web::http::header::{HeaderMap, HeaderValue, HttpDate};
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};
use base64::Engine as _;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroizing;

const TUS_VERSION: &str = "1.0.0";
/// The one body type a tus PATCH carries.
const OFFSET_STREAM: &str = "application/offset+octet-stream";
/// Longest file name and media type kept from `Upload-Metadata`, as for a form's file.
const MAX_NAME_BYTES: usize = 1024;
const MAX_TYPE_BYTES: usize = 255;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/uploads", web::post().to(create))
        .route("/api/v1/uploads", web::method(actix_web::http::Method::OPTIONS).to(options))
        .route("/api/v1/uploads/{id}", web::head().to(head))
        .route("/api/v1/uploads/{id}", web::patch().to(patch))
        .route("/api/v1/uploads/{id}", web::delete().to(terminate));
}

/// Every tus response says which protocol it speaks.
fn tus(mut response: HttpResponseBuilder) -> HttpResponseBuilder {
    response.insert_header(("Tus-Resumable", TUS_VERSION));
    response
}

/// A refusal, as the rest of the API gives it (JSON with its stable code), and the tus
/// header clients look for.
fn refused(intake: &Intake, error: IntakeError) -> HttpResponse {
    let mut response = error_response(intake, error);
    response.headers_mut().insert(
        actix_web::http::header::HeaderName::from_static("tus-resumable"),
        HeaderValue::from_static(TUS_VERSION),
    );
    if error == IntakeError::TusVersionUnsupported {
        response.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("tus-version"),
            HeaderValue::from_static(TUS_VERSION),
        );
    }
    response
}

/// tus requests (all but OPTIONS) must say they speak 1.0.0.
fn check_version(headers: &HeaderMap) -> Result<(), IntakeError> {
    match headers.get("tus-resumable").and_then(|v| v.to_str().ok()) {
        Some(TUS_VERSION) => Ok(()),
        _ => Err(IntakeError::TusVersionUnsupported),
    }
}

fn expires(upload: &Held) -> String {
    HttpDate::from(upload.expires()).to_string()
}

/// `OPTIONS`: what this server supports.
async fn options(intake: web::Data<Intake>) -> HttpResponse {
    tus(HttpResponse::NoContent())
        .insert_header(("Tus-Version", TUS_VERSION))
        .insert_header(("Tus-Extension", "creation,termination,expiration"))
        .insert_header(("Tus-Max-Size", intake.uploads.settings().max_upload_bytes))
        .finish()
}

/// `POST`: a new upload of `Upload-Length` bytes. 201 with its `Location`.
async fn create(req: HttpRequest, intake: web::Data<Intake>) -> HttpResponse {
    match declared(req.headers()).and_then(|declared| {
        let recipients = intake.recipients.current();
        intake.uploads.create(&intake.store, &intake.config.limits, recipients, declared)
    }) {
        Ok((id, upload)) => tus(HttpResponse::Created())
            .insert_header(("Location", format!("/api/v1/uploads/{id}")))
            .insert_header(("Upload-Expires", expires(&upload)))
            .finish(),
        Err(error) => refused(&intake, error),
    }
}

/// The creation request's headers: the version, the length (a deferred length is not
/// supported: a file on a phone has one), the file's name and type if given, and its
/// `kind`: `sealed` for a field kit's sealed file, else a survivor's file.
fn declared(headers: &HeaderMap) -> Result<Declared, IntakeError> {
    check_version(headers)?;
    if headers.contains_key("upload-defer-length") {
        return Err(IntakeError::UploadLengthRequired);
    }
    let length = bytes_header(headers, "upload-length").ok_or(IntakeError::UploadLengthRequired)?;
    let (mut name, mut media_type) = (Zeroizing::new(String::new()), String::new());
    let mut kind = Kind::File;
    if let Some(metadata) = headers.get("upload-metadata") {
        let metadata = metadata.to_str().map_err(|_| IntakeError::UploadMetadataInvalid)?;
        let mut keys = std::collections::HashSet::new();
        for pair in metadata.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut words = pair.split(' ');
            let key = words.next().unwrap_or_default();
            if !keys.insert(key) {
                return Err(IntakeError::UploadMetadataInvalid);
            }
            let value = match (words.next(), words.next()) {
                (None, None) => Zeroizing::new(String::new()),
                (Some(encoded), None) => decode(encoded)?,
                _ => return Err(IntakeError::UploadMetadataInvalid),
            };
            match key {
                "filename" | "name" => name = Zeroizing::new(truncate(&value, MAX_NAME_BYTES)),
                "filetype" | "type" => {
                    media_type = truncate(&value, MAX_TYPE_BYTES);
                }
                "kind" => {
                    kind = match value.as_str() {
                        "file" => Kind::File,
                        "sealed" => Kind::Sealed,
                        _ => return Err(IntakeError::UploadMetadataInvalid),
                    }
                }
                _ => {}
            }
        }
    }
    if media_type.is_empty() {
        media_type = "application/octet-stream".into();
    }
    Ok(Declared { length, name, media_type, kind })
}

/// One `Upload-Metadata` value: base64 of UTF-8 text.
fn decode(encoded: &str) -> Result<Zeroizing<String>, IntakeError> {
    let bytes = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|_| IntakeError::UploadMetadataInvalid)?,
    );
    let text = std::str::from_utf8(&bytes).map_err(|_| IntakeError::UploadMetadataInvalid)?;
    if text.chars().any(char::is_control) {
        return Err(IntakeError::UploadMetadataInvalid);
    }
    Ok(Zeroizing::new(text.to_string()))
}

/// `HEAD`: how much of the upload the server has.
async fn head(req: HttpRequest, intake: web::Data<Intake>, id: web::Path<String>) -> HttpResponse {
    if let Err(error) = check_version(req.headers()) {
        return refused(&intake, error);
    }
    let Some(upload) = intake.uploads.get(&id) else {
        return refused(&intake, IntakeError::UploadNotFound);
    };
    tus(HttpResponse::Ok())
        .insert_header(("Upload-Offset", upload.offset()))
        .insert_header(("Upload-Length", upload.length))
        .insert_header(("Upload-Expires", expires(&upload)))
        .finish()
}

/// `DELETE`: the client ends its upload; its encrypted bytes are deleted.
async fn terminate(
    req: HttpRequest,
    intake: web::Data<Intake>,
    id: web::Path<String>,
) -> HttpResponse {
    if let Err(error) = check_version(req.headers()) {
        return refused(&intake, error);
    }
    match intake.uploads.remove(&id) {
        Some(_) => tus(HttpResponse::NoContent()).finish(),
        None => refused(&intake, IntakeError::UploadNotFound),
    }
}

/// `PATCH`: the next bytes, from `Upload-Offset` on. 204 with the new offset; the last
/// bytes wait for the object to be sealed and persisted.
async fn patch(
    req: HttpRequest,
    intake: web::Data<Intake>,
    id: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let Some(upload) = intake.uploads.get(&id) else {
        return refused(&intake, IntakeError::UploadNotFound);
    };
    let before = upload.offset();
    let result = resume(&req, &intake, &upload, payload).await;
    // Only progress keeps an upload (a request that sends nothing does not).
    if upload.offset() > before {
        intake.uploads.progressed(&upload);
    }
    match result {
        Ok(()) => tus(HttpResponse::NoContent())
            .insert_header(("Upload-Offset", upload.offset()))
            .insert_header(("Upload-Expires", expires(&upload)))
            .finish(),
        Err(error) => {
            // A worker that failed (a write error, a full disk) cannot go on: the upload
            // ends and the client learns so at its next request.
            let broken = upload.stage.try_lock().is_ok_and(|stage| matches!(*stage, Stage::Broken));
            if broken || error == IntakeError::Internal {
                intake.uploads.remove(&id);
            }
            refused(&intake, error)
        }
    }
}

/// A header's value as a number of bytes: digits only (no sign, no spaces).
fn bytes_header(headers: &HeaderMap, name: &str) -> Option<u64> {
    let value = headers.get(name)?.to_str().ok()?;
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

async fn resume(
    req: &HttpRequest,
    intake: &Intake,
    upload: &Arc<Held>,
    mut payload: web::Payload,
) -> Result<(), IntakeError> {
    check_version(req.headers())?;
    if !has_media_type(req, OFFSET_STREAM) {
        return Err(IntakeError::UploadContentType);
    }
    let claimed =
        bytes_header(req.headers(), "upload-offset").ok_or(IntakeError::UploadOffsetMissing)?;
    // The offset only grows, and what the server counted is what HEAD said: a request
    // from elsewhere changes nothing, and does not stop the one under way.
    if claimed != upload.offset() {
        return Err(IntakeError::UploadOffsetMismatch);
    }
    // This request is now the upload's: one still feeding it (its link dead, unseen) stops.
    let generation = upload.take_over();
    let mut stage = tokio::time::timeout(LOCK_WAIT, upload.stage.clone().lock_owned())
        .await
        .map_err(|_| IntakeError::UploadInUse)?;
    if upload.removed() {
        return Err(IntakeError::UploadNotFound);
    }
    if claimed != upload.offset() {
        return Err(IntakeError::UploadOffsetMismatch);
    }
    if content_length(req).is_some_and(|len| len > upload.remaining()) {
        return Err(IntakeError::UploadOverrun);
    }
    let Stage::Receiving { chunks, .. } = &*stage else {
        return Err(IntakeError::UploadOffsetMismatch);
    };
    // The quota was taken for the whole length at creation; this takes an upload slot.
    let _permit = admit(intake, None, upload.remaining(), false).await?;
    let limits = &intake.config.limits;
    // However steadily it trickles, one request ends by the deadline (the upload itself
    // may go on in another).
    let deadline = Duration::from_secs(limits.upload_deadline_secs);
    let feeding = feed(limits, upload, generation, &mut payload, chunks);
    let mut fed =
        tokio::time::timeout(deadline, feeding).await.unwrap_or(Err(IntakeError::UploadTooSlow));
    if fed == Err(IntakeError::Internal) {
        // The worker took no more: it stopped, and says why (a sealed file refused at its
        // first member, a full disk).
        fed = Err(stopped_worker(&mut stage).await);
    }
    // The last byte is in, whatever ended the request: seal it, in a task of its own so
    // that a client gone meanwhile cannot leave it half done.
    if upload.remaining() == 0 && matches!(*stage, Stage::Receiving { .. }) {
        let sealing = actix_web::rt::spawn(finish(stage));
        sealing.await.map_err(|_| IntakeError::Internal)??;
    }
    match fed {
        // The client resumes from the offset it is given (a tus client retries only
        // some refusals).
        Err(error) if cut_short(error) => Ok(()),
        other => other,
    }
}

/// Bytes read from the request, not yet handed to the upload's worker.
struct Batch<'a> {
    bytes: bytes::BytesMut,
    chunks: &'a tokio::sync::mpsc::Sender<Chunk>,
    upload: &'a Held,
}

impl Batch<'_> {
    /// Hands what is gathered to the worker; only then does it count in the offset.
    async fn send(&mut self) -> Result<(), IntakeError> {
        if self.bytes.is_empty() {
            return Ok(());
        }
        let n = self.bytes.len() as u64;
        let bytes = self.bytes.split().freeze();
        // A worker that stopped (its write failed) takes nothing more.
        self.chunks.send(Chunk::Data(bytes)).await.map_err(|_| IntakeError::Internal)?;
        self.upload.add_offset(n);
        Ok(())
    }
}

/// Hands the request's bytes to the upload's worker, counting them into its offset,
/// until the body ends or a newer request takes the upload over. What arrived before a
/// cut counts: the client resumes after it.
async fn feed(
    limits: &crate::config::Limits,
    upload: &Held,
    generation: u64,
    payload: &mut web::Payload,
    chunks: &tokio::sync::mpsc::Sender<Chunk>,
) -> Result<(), IntakeError> {
    let mut batch = Batch { bytes: bytes::BytesMut::new(), chunks, upload };
    let read = read_into(limits, upload, generation, payload, &mut batch).await;
    batch.send().await?;
    read
}

async fn read_into(
    limits: &crate::config::Limits,
    upload: &Held,
    generation: u64,
    payload: &mut web::Payload,
    batch: &mut Batch<'_>,
) -> Result<(), IntakeError> {
    use futures_util::future::{select, Either};
    use futures_util::FutureExt as _;
    let idle = Duration::from_secs(limits.idle_timeout_secs);
    let mut pace = Pace::new(limits);
    loop {
        if upload.superseded(generation) {
            return Ok(());
        }
        // Bytes already here are taken at once; before waiting on the network, what is
        // gathered goes to the worker, so that a link that stalls (and the client's HEAD
        // after it) finds everything received counted.
        let next = if let Some(next) = payload.next().now_or_never() {
            next
        } else {
            batch.send().await?;
            let next = std::pin::pin!(pace.within(idle, payload.next()));
            match select(next, upload.preempted()).await {
                Either::Left((next, _)) => next?,
                Either::Right(_) => return Ok(()),
            }
        };
        let Some(chunk) = next else { return Ok(()) };
        let chunk = chunk.map_err(|_| IntakeError::IncompleteUpload)?;
        let n = chunk.len() as u64;
        if n + batch.bytes.len() as u64 > upload.remaining() {
            return Err(IntakeError::UploadOverrun);
        }
        pace.arrived(chunk.len())?;
        batch.bytes.extend_from_slice(&chunk);
        if batch.bytes.len() >= BATCH {
            batch.send().await?;
        }
    }
}

/// The last byte is in: the worker seals and persists the object, and the upload waits
/// for its submission, no longer holding quota (its object counts as stored now).
async fn finish(mut stage: tokio::sync::OwnedMutexGuard<Stage>) -> Result<(), IntakeError> {
    if let Stage::Receiving { chunks, .. } = &*stage {
        // A worker already gone fails below, when it is awaited.
        let _ = chunks.send(Chunk::End).await;
    }
    let Stage::Receiving { worker, pending, .. } = std::mem::replace(&mut *stage, Stage::Broken)
    else {
        return Err(IntakeError::Internal);
    };
    let arrived = worker.await.map_err(|_| IntakeError::Internal)??;
    *stage = Stage::Finished { arrived, pending };
    Ok(())
}

/// Why the upload's worker stopped before its last byte; the upload cannot go on.
async fn stopped_worker(stage: &mut Stage) -> IntakeError {
    let Stage::Receiving { worker, .. } = std::mem::replace(stage, Stage::Broken) else {
        return IntakeError::Internal;
    };
    match tokio::time::timeout(LOCK_WAIT, worker).await {
        // Never one of the answers that let a client carry on: the upload is over.
        Ok(Ok(Err(refused))) if !cut_short(refused) => refused,
        _ => IntakeError::Internal,
    }
}

/// A request that ended before its body did (slow, stalled, cut): what arrived counts,
/// and the client carries on from the offset it is given.
fn cut_short(error: IntakeError) -> bool {
    matches!(
        error,
        IntakeError::UploadTooSlow
            | IntakeError::UploadRateTooLow
            | IntakeError::UploadStalled
            | IntakeError::IncompleteUpload
    )
}
