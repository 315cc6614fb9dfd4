//! The JSON API: `POST /api/v1/submissions` (multipart) answers 201 with the receipt.

use super::error::IntakeError;
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
/// worker that checks and stores it (`sealed::ingest`). 201 with a receipt; 200 with
/// the first receipt when the same file was imported before.
pub async fn sealed(
    req: HttpRequest,
    intake: web::Data<Intake>,
    payload: web::Payload,
) -> HttpResponse {
    use futures_util::StreamExt;
    use upload::{ChannelReader, Chunk};
    let limits = intake.config.limits.clone();
    // Objects, the manifest, and tar headers and padding for each member.
    let ceiling = limits.max_submission_bytes + (8 << 20) + (limits.max_files as u64 + 2) * 2048;
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
    let ingested = worker.await.unwrap_or(Err(IntakeError::Internal));
    match (fed, ingested) {
        (Err(e), _) | (Ok(()), Err(e)) => error_response(&intake, e),
        (Ok(()), Ok(done)) => {
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
    }
}

pub fn error_response(intake: &Intake, error: IntakeError) -> HttpResponse {
    let body = json!({
        "error": { "code": error.code(), "message": error.message(&intake.config.limits) }
    });
    refusal(HttpResponse::build(error.status()).json(body), error)
}

pub fn content_length(req: &HttpRequest) -> Option<u64> {
    req.headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}
