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

/// 201 with what the client must keep: the codename only for a new case.
pub fn created(accepted: &upload::Accepted) -> HttpResponse {
    let mut body = json!({
        "id": accepted.id,
        "case": accepted.case,
        "received_at": accepted.received_at,
        "objects": accepted.objects,
        "receipt": accepted.receipt,
    });
    if let Some(codename) = &accepted.codename {
        body["codename"] = codename.as_str().into();
    }
    HttpResponse::Created().json(body)
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
