//! Server-rendered pages that work with JavaScript off: what amanat is, the form, the
//! receipt. No cookies, no external resources (see the CSP in `intake`).

use super::error::IntakeError;
use super::upload;
use super::{api, refusal, Intake};
use crate::envelope::Origin;
use actix_multipart::Multipart;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

const STYLESHEET: &str = include_str!("templates/amanat.css");

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/submit", web::get().to(form))
        .route("/submit", web::post().to(submit))
        .route("/receipt", web::post().to(download_receipt))
        .route("/receipt/practice", web::post().to(practice))
        .route("/static/amanat.css", web::get().to(stylesheet));
}

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage {
    recipients: usize,
}

#[derive(Template)]
#[template(path = "submit.html")]
struct FormPage<'a> {
    max_files: usize,
    max_size: &'a str,
}

#[derive(Template)]
#[template(path = "receipt.html")]
struct ReceiptPage<'a> {
    id: &'a str,
    codename: &'a str,
    received_at: &'a str,
    files: usize,
    /// The receipt as JSON, offered as a download.
    receipt: &'a str,
    /// The result of the practice field, when the page answers it.
    practice: Option<bool>,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    code: &'a str,
    message: &'a str,
}

async fn index(intake: web::Data<Intake>) -> HttpResponse {
    html(IndexPage { recipients: intake.recipients.len() }.render())
}

async fn form(intake: web::Data<Intake>) -> HttpResponse {
    let limits = &intake.config.limits;
    let max_size = super::error::human_bytes(limits.max_submission_bytes);
    html(FormPage { max_files: limits.max_files, max_size: &max_size }.render())
}

async fn submit(
    req: HttpRequest,
    intake: web::Data<Intake>,
    payload: web::Payload,
) -> HttpResponse {
    let multipart = Multipart::new(req.headers(), payload);
    let content_length = api::content_length(&req);
    let target = upload::Target::NewCase;
    match upload::receive(&intake, content_length, multipart, Origin::Web, "en", target).await {
        Ok(accepted) => {
            let receipt = serde_json::to_string(&accepted.receipt).unwrap_or_default();
            html(
                ReceiptPage {
                    id: &accepted.id,
                    codename: accepted.codename.as_ref().map(|c| c.as_str()).unwrap_or(""),
                    received_at: &accepted.received_at,
                    files: accepted.objects.len() - 1,
                    receipt: &receipt,
                    practice: None,
                }
                .render(),
            )
        }
        Err(error) => error_page(&intake, error),
    }
}

/// The receipt page's practice field: the page carries what it showed back in hidden
/// fields (the codename is on that page anyway), so checking needs no lookup and
/// nothing stored, and the answer is the same receipt page again, with its download.
#[derive(serde::Deserialize)]
struct PracticeForm {
    codename: String,
    typed: String,
    id: String,
    received_at: String,
    files: usize,
    receipt: String,
}

impl Drop for PracticeForm {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.codename);
        zeroize::Zeroize::zeroize(&mut self.typed);
    }
}

async fn practice(
    intake: web::Data<Intake>,
    form: Result<web::Form<PracticeForm>, actix_web::Error>,
) -> HttpResponse {
    let Ok(form) = form else {
        return error_page(&intake, IntakeError::MalformedMultipart);
    };
    let expected = crate::codename::normalize(&form.codename);
    if expected.is_empty() {
        return error_page(&intake, IntakeError::MalformedMultipart);
    }
    let receipt = serde_json::from_str::<crate::log::Receipt>(&form.receipt).ok();
    let Some(receipt) = receipt.filter(|r| r.submission == form.id) else {
        return error_page(&intake, IntakeError::MalformedMultipart);
    };
    let correct = *crate::codename::normalize(&form.typed) == *expected;
    let receipt = serde_json::to_string(&receipt).unwrap_or_default();
    html(
        ReceiptPage {
            id: &form.id,
            codename: &form.codename,
            received_at: &form.received_at,
            files: form.files,
            receipt: &receipt,
            practice: Some(correct),
        }
        .render(),
    )
}

#[derive(serde::Deserialize)]
struct ReceiptForm {
    receipt: String,
}

/// Hands the receipt on the page back as a file: the server keeps nothing to answer
/// this, and only a well-formed receipt is echoed.
async fn download_receipt(
    intake: web::Data<Intake>,
    form: Result<web::Form<ReceiptForm>, actix_web::Error>,
) -> HttpResponse {
    let receipt =
        form.ok().and_then(|f| serde_json::from_str::<crate::log::Receipt>(&f.receipt).ok());
    match receipt {
        Some(receipt) => HttpResponse::Ok()
            .content_type("application/json")
            .insert_header((
                "Content-Disposition",
                format!(
                    "attachment; filename=\"amanat-receipt-{}.json\"",
                    &receipt.submission.get(..8).unwrap_or("")
                ),
            ))
            .body(serde_json::to_string_pretty(&receipt).unwrap_or_default()),
        None => error_page(&intake, IntakeError::MalformedMultipart),
    }
}

async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok().content_type("text/css; charset=utf-8").body(STYLESHEET)
}

pub fn error_page(intake: &Intake, error: IntakeError) -> HttpResponse {
    let message = error.message(&intake.config.limits);
    let page = ErrorPage { status: error.status().as_u16(), code: error.code(), message: &message };
    let body = page.render().unwrap_or_else(|_| message.clone());
    refusal(
        HttpResponse::build(error.status()).content_type("text/html; charset=utf-8").body(body),
        error,
    )
}

pub(super) fn html(rendered: askama::Result<String>) -> HttpResponse {
    match rendered {
        Ok(body) => HttpResponse::Ok().content_type("text/html; charset=utf-8").body(body),
        Err(e) => {
            tracing::error!(error = %e, "page rendering failed");
            HttpResponse::InternalServerError().finish()
        }
    }
}
