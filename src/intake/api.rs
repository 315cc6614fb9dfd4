//! The JSON API: `POST /api/v1/submissions` (multipart) answers 201 with the receipt.

use super::error::IntakeError;
use super::resumable::{Arrived, Kind};
use super::upload::{self, Target};
use super::{refusal, Intake};
use crate::envelope::Origin;
use actix_multipart::Multipart;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

pub async fn submit(
    req: HttpRequest,
    intake: web::Data<Intake>,
    payload: web::Payload,
) -> HttpResponse {
    let multipart = Multipart::new(req.headers(), payload);
    let length = content_length(&req);
    match upload::receive(&intake, length, multipart, Origin::Api, "und", Target::NewCase).await {
        Ok(accepted) => created(&accepted),
        Err(error) => error_response(&intake, error),
    }
}

/// 201 with what the client must keep: the codename only for a new case. Serialized
/// from borrowed fields: a `serde_json::Value` would hold a copy of the codename that
/// nothing wipes (the response's own buffer is the HTTP stack's, see SECURITY.md).
pub fn created(accepted: &upload::Accepted) -> HttpResponse {
    #[derive(serde::Serialize)]
    struct Created<'a> {
        id: &'a str,
        case: &'a str,
        received_at: &'a str,
        objects: &'a [String],
        receipt: &'a crate::log::Receipt,
        #[serde(skip_serializing_if = "Option::is_none")]
        codename: Option<&'a str>,
        /// Only under `replication.ack = "replicated"`.
        #[serde(skip_serializing_if = "Option::is_none")]
        replication: Option<&'a crate::replication::Replicated>,
    }
    HttpResponse::Created().json(Created {
        id: &accepted.id,
        case: &accepted.case,
        received_at: &accepted.received_at,
        objects: &accepted.objects,
        receipt: &accepted.receipt,
        codename: accepted.codename.as_ref().map(super::super::codename::Codename::as_str),
        replication: accepted.replicated.as_ref(),
    })
}

/// `POST /api/v1/sealed`: a field kit's sealed file as the body, streamed to a blocking
/// worker that checks and stores it (`sealed::ingest`); or, as JSON, `{"upload": ID}`
/// naming a finished resumable upload of one (`amanat send`). 201 with a receipt; 200
/// with the first receipt when the same file was imported before.
pub async fn sealed(
    req: HttpRequest,
    intake: web::Data<Intake>,
    payload: web::Payload,
) -> HttpResponse {
    use futures_util::StreamExt;
    use upload::{ChannelReader, Chunk};
    if has_media_type(&req, "application/json") {
        return sealed_upload(&intake, payload).await;
    }
    let limits = intake.config.limits.clone();
    let ceiling = crate::intake::sealed::max_sealed_bytes(&limits);
    let _permit = match upload::admit(&intake, content_length(&req), ceiling, false).await {
        Ok(permit) => permit,
        Err(e) => return error_response(&intake, e),
    };
    let idle = std::time::Duration::from_secs(limits.idle_timeout_secs);
    let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(8);
    let store = intake.store.clone();
    let worker = actix_web::rt::task::spawn_blocking(move || {
        crate::intake::sealed::ingest(&store, &limits, ChannelReader::new(rx))
    });
    let body = payload.map(|chunk| chunk.map_err(|_| IntakeError::IncompleteUpload));
    let deadline = std::time::Duration::from_secs(intake.config.limits.upload_deadline_secs);
    let reservation = intake.store.usage().reserve();
    let mut budget = upload::Budget::new(&intake.config.limits, reservation, ceiling);
    let feeding = upload::feed(body, &tx, idle, &mut budget);
    let fed =
        tokio::time::timeout(deadline, feeding).await.unwrap_or(Err(IntakeError::UploadTooSlow));
    drop(tx);
    let stored = worker.await.unwrap_or(Err(IntakeError::Internal));
    match (fed, stored) {
        (Err(e), _) | (Ok(()), Err(e)) => error_response(&intake, e),
        (Ok(()), Ok(done)) => ingested(&done),
    }
}

/// The answer to a sealed file stored (201) or stored before (200).
fn ingested(done: &crate::intake::sealed::Ingested) -> HttpResponse {
    let mut response =
        if done.already_imported { HttpResponse::Ok() } else { HttpResponse::Created() };
    response.json(json!({
        "id": done.record.id,
        "case": done.record.case,
        "received_at": done.record.received_at,
        "objects": done.record.object_ids().iter().map(ToString::to_string).collect::<Vec<_>>(),
        "receipt": done.receipt,
        "already_imported": done.already_imported,
    }))
}

/// `{"upload": ID}`: the only JSON `/api/v1/sealed` takes.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SealedUpload {
    upload: String,
}

/// A sealed file that arrived as a resumable upload, checked and staged as it came:
/// recorded now, once. Asked again for the same upload (its answer lost on the way),
/// the answer is the submission's receipt.
async fn sealed_upload(intake: &Intake, mut payload: web::Payload) -> HttpResponse {
    use futures_util::StreamExt;
    let mut body = Vec::new();
    let idle = std::time::Duration::from_secs(intake.config.limits.idle_timeout_secs);
    loop {
        let chunk = match tokio::time::timeout(idle, payload.next()).await {
            Err(_) => return error_response(intake, IntakeError::UploadStalled),
            Ok(None) => break,
            Ok(Some(Err(_))) => return error_response(intake, IntakeError::IncompleteUpload),
            Ok(Some(Ok(chunk))) => chunk,
        };
        body.extend_from_slice(&chunk);
        if body.len() > 1024 {
            return error_response(intake, IntakeError::SealedRequestInvalid);
        }
    }
    let Ok(SealedUpload { upload: id }) = serde_json::from_slice(&body) else {
        return error_response(intake, IntakeError::SealedRequestInvalid);
    };
    let store = intake.store.clone();
    let claimed = match intake.uploads.claim(&id, Kind::Sealed).await {
        Ok(claimed) => claimed,
        Err(IntakeError::UploadNotFound) => match intake.uploads.recorded_as(&id) {
            Some(submission) => {
                let again = actix_web::rt::task::spawn_blocking(move || {
                    crate::intake::sealed::receipt_of(&store, &submission)
                })
                .await
                .unwrap_or(Err(IntakeError::Internal));
                return match again {
                    Ok(done) => ingested(&done),
                    Err(e) => error_response(intake, e),
                };
            }
            None => return error_response(intake, IntakeError::UploadNotFound),
        },
        Err(e) => return error_response(intake, e),
    };
    let uploads = intake.uploads.clone();
    // Recorded and remembered on a thread of its own: a client gone meanwhile (its
    // answer lost) finds the receipt when it asks again.
    let result = actix_web::rt::task::spawn_blocking(move || {
        let mut claimed = claimed;
        let Arrived::Sealed(staged) = claimed.arrived.clone() else {
            return Err(IntakeError::UploadWrongKind);
        };
        let pending = crate::store::PendingObjects::default();
        let committed =
            crate::intake::sealed::commit(&store, *staged, &pending, || claimed.spend(&pending));
        if !matches!(committed, Ok(ref done) if !done.already_imported) {
            pending.abandon();
        }
        if let Ok(done) = &committed {
            uploads.recorded(&id, &done.record.id);
        }
        committed
    })
    .await
    .unwrap_or(Err(IntakeError::Internal));
    match result {
        Ok(done) => ingested(&done),
        Err(e) => error_response(intake, e),
    }
}

pub fn error_response(intake: &Intake, error: IntakeError) -> HttpResponse {
    let body = json!({
        "error": { "code": error.code(), "message": error.message(&intake.config.limits) }
    });
    refusal(HttpResponse::build(error.status()).json(body), error)
}

/// Whether the request's `Content-Type` is `essence` (parameters aside).
pub fn has_media_type(req: &HttpRequest, essence: &str) -> bool {
    let value = req.headers().get(actix_web::http::header::CONTENT_TYPE);
    value
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.split(';').next().unwrap_or_default().trim() == essence)
}

pub fn content_length(req: &HttpRequest) -> Option<u64> {
    req.headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}
