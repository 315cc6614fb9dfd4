//! Server-rendered pages that work with JavaScript off: what amanat is, the form, the
//! receipt. No cookies, no external resources (see the CSP in `intake`).

use super::error::{human_bytes, IntakeError};
use super::upload::{self, Target};
use super::{api, refusal, Intake};
use crate::envelope::Origin;
use crate::form::{Section, SECTIONS};
use crate::i18n::{Lang, Tr};
use actix_multipart::Multipart;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use zeroize::Zeroizing;

const STYLESHEET: &str = include_str!("templates/amanat.css");

/// The largest receipt form echoed back as a file: a few TSAs' tokens of at most 64 KiB
/// each, base64 and then form-encoded.
const RECEIPT_FORM_BYTES: usize = 2 * 1024 * 1024;

/// The sections of the form with (or without) a required question, in order.
fn sections(required: bool) -> Vec<&'static Section> {
    SECTIONS.iter().filter(|s| s.required() == required).collect()
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/static/amanat.css", web::get().to(stylesheet))
        .service(
            web::resource("/receipt")
                // A receipt with its attested checkpoint carries each TSA's token and
                // certificate chain: more than the default 16 KiB, still small.
                .app_data(web::FormConfig::default().limit(RECEIPT_FORM_BYTES))
                .route(web::post().to(download_receipt)),
        )
        // Bare paths pick the language from Accept-Language (read, never logged).
        .route("/", web::get().to(to_language))
        .route("/submit", web::get().to(to_language))
        .route("/safety", web::get().to(to_language))
        .route("/followup", web::get().to(to_language))
        .route("/submit", web::post().to(submit))
        .route("/receipt/practice", web::post().to(practice))
        .route("/{lang}/", web::get().to(index))
        .route("/{lang}", web::get().to(to_language))
        .route("/{lang}/submit", web::get().to(form))
        .route("/{lang}/submit", web::post().to(submit))
        .route("/{lang}/safety", web::get().to(safety))
        .route("/{lang}/receipt/practice", web::post().to(practice));
}

/// The page's language: from the path (`/kk/...`), else from Accept-Language. None for
/// a path whose first segment is not one of ours.
pub fn page_lang(req: &HttpRequest) -> Option<Lang> {
    match req.match_info().get("lang") {
        Some(code) => Lang::from_code(code),
        None => Some(Lang::from_accept_language(
            req.headers().get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()),
        )),
    }
}

/// `GET /submit` and the like: 303 to the same page under the client's language.
async fn to_language(req: HttpRequest, intake: web::Data<Intake>) -> HttpResponse {
    let lang = Lang::from_accept_language(
        req.headers().get(header::ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok()),
    );
    let tail = match req.match_info().get("lang") {
        // `/kk` without the slash.
        Some(code) => match Lang::from_code(code) {
            Some(lang) => return see_other(&format!("/{}/", lang.code())),
            None => return error_page(&intake, lang, IntakeError::NotFound, None),
        },
        None => req.path().trim_start_matches('/'),
    };
    see_other(&format!("/{}/{tail}", lang.code()))
}

fn see_other(location: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, location.to_string())).finish()
}

/// What a refused page can hand back to the survivor: their testimony once it was
/// read (never stored, wiped on drop), and the finished uploads the form named (put
/// back among the server's uploads, so the form sent again need not send them again).
#[derive(Default)]
pub struct Kept {
    pub testimony: Option<Zeroizing<String>>,
    pub uploads: Vec<String>,
}

impl Kept {
    pub fn testimony(&self) -> Option<&str> {
        self.testimony.as_deref().map(String::as_str)
    }
}

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage {
    t: Tr,
    here: &'static str,
    recipients: usize,
}

#[derive(Template)]
#[template(path = "safety.html")]
struct SafetyPage {
    t: Tr,
    here: &'static str,
}

#[derive(Template)]
#[template(path = "submit.html")]
struct FormPage<'a> {
    t: Tr,
    here: &'static str,
    /// The form's sections the survivor may skip (before the evidence), and those
    /// with a required question (after it): both from `form::SECTIONS`.
    optional: Vec<&'static Section>,
    required: Vec<&'static Section>,
    evidence_label: String,
    /// A refusal, shown next to the field it is about.
    error: Option<FieldError>,
    /// What the survivor wrote, back in its box after a refusal.
    kept: Option<&'a str>,
    /// Finished uploads the refused form named: sent again with it, and the words
    /// that say so.
    kept_uploads: &'a [String],
    uploads_kept: String,
    /// The resumable-upload scripts' integrity values.
    scripts: &'static super::scripts::Integrity,
}

struct FieldError {
    /// `testimony`, `evidence`, `consent`, or `form` for the top of the form.
    field: &'static str,
    code: &'static str,
    message: String,
}

#[derive(Template)]
#[template(path = "receipt.html")]
pub(super) struct ReceiptPage<'a> {
    pub t: Tr,
    pub here: &'static str,
    pub id: &'a str,
    pub codename: &'a str,
    pub received_at: &'a str,
    pub files: usize,
    /// The receipt as JSON, offered as a download.
    pub receipt: &'a str,
    /// The result of the practice field, when the page answers it.
    pub practice: Option<bool>,
    /// Under `replication.ack = "replicated"`: whether a copy reached the replicas
    /// before the answer (None: not asked, or not known on this page).
    pub replicated: Option<bool>,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    t: Tr,
    here: &'static str,
    code: &'a str,
    message: &'a str,
    /// What the survivor wrote, handed back when an upload was refused.
    kept: Option<&'a str>,
}

/// The evidence field's label: how many files, how large, in the page's language.
pub(super) fn evidence_label(intake: &Intake, t: Tr) -> String {
    let limits = &intake.config.limits;
    crate::i18n::message(
        t.lang,
        "field-evidence",
        &[
            ("files", limits.max_files.into()),
            ("size", human_bytes(limits.max_submission_bytes).into()),
        ],
    )
}

macro_rules! lang_or_404 {
    ($req:expr, $intake:expr) => {
        match $crate::intake::pages::page_lang(&$req) {
            Some(lang) => lang,
            None => {
                return $crate::intake::pages::error_page(
                    &$intake,
                    $crate::i18n::Lang::Ru,
                    $crate::intake::error::IntakeError::NotFound,
                    None,
                )
            }
        }
    };
}
pub(super) use lang_or_404;

async fn index(req: HttpRequest, intake: web::Data<Intake>) -> HttpResponse {
    let t = Tr::new(lang_or_404!(req, intake));
    html(IndexPage { t, here: "", recipients: intake.recipients.current().len() }.render())
}

async fn safety(req: HttpRequest, intake: web::Data<Intake>) -> HttpResponse {
    let t = Tr::new(lang_or_404!(req, intake));
    html(SafetyPage { t, here: "safety" }.render())
}

async fn form(req: HttpRequest, intake: web::Data<Intake>) -> HttpResponse {
    let t = Tr::new(lang_or_404!(req, intake));
    super::scripts::allowing_scripts(html(
        FormPage {
            t,
            here: "submit",
            optional: sections(false),
            required: sections(true),
            evidence_label: evidence_label(&intake, t),
            error: None,
            kept: None,
            kept_uploads: &[],
            uploads_kept: String::new(),
            scripts: &super::scripts::INTEGRITY,
        }
        .render(),
    ))
}

async fn submit(
    req: HttpRequest,
    intake: web::Data<Intake>,
    payload: web::Payload,
) -> HttpResponse {
    let lang = lang_or_404!(req, intake);
    let t = Tr::new(lang);
    let multipart = Multipart::new(req.headers(), payload);
    let content_length = api::content_length(&req);
    let mut kept = Kept::default();
    let target = Target::NewCase;
    match upload::receive_keeping(
        &intake,
        content_length,
        multipart,
        Origin::Web,
        lang.code(),
        target,
        &mut kept,
    )
    .await
    {
        Ok(accepted) => {
            let receipt = serde_json::to_string(&accepted.receipt).unwrap_or_default();
            html(
                ReceiptPage {
                    t,
                    here: "submit",
                    id: &accepted.id,
                    codename: accepted
                        .codename
                        .as_ref()
                        .map_or("", super::super::codename::Codename::as_str),
                    received_at: &accepted.received_at,
                    files: accepted.objects.len() - 1,
                    receipt: &receipt,
                    practice: None,
                    replicated: accepted.replicated.as_ref().map(|r| r.complete),
                }
                .render(),
            )
        }
        Err(error) => refused_form(&intake, lang, error, &kept),
    }
}

/// A refused submission: the form again, the survivor's text back in its box, and the
/// refusal in the page's language next to the field it is about.
fn refused_form(intake: &Intake, lang: Lang, error: IntakeError, kept: &Kept) -> HttpResponse {
    let field = match error {
        IntakeError::TestimonyMissing | IntakeError::TextTooLarge => "testimony",
        IntakeError::SubmissionTooLarge
        | IntakeError::TooManyFiles
        | IntakeError::UnexpectedFile
        | IntakeError::PartHeadersTooLarge => "evidence",
        IntakeError::ConsentMissing => "consent",
        _ => "form",
    };
    let t = Tr::new(lang);
    let page = FormPage {
        t,
        here: "submit",
        optional: sections(false),
        required: sections(true),
        evidence_label: evidence_label(intake, t),
        error: Some(FieldError {
            field,
            code: error.code(),
            message: error_message(intake, lang, error),
        }),
        kept: kept.testimony(),
        kept_uploads: &kept.uploads,
        uploads_kept: crate::i18n::message(
            lang,
            "form-uploads-kept",
            &[("count", kept.uploads.len().into())],
        ),
        scripts: &super::scripts::INTEGRITY,
    };
    match page.render() {
        Ok(body) => super::scripts::allowing_scripts(refusal(
            HttpResponse::build(error.status()).content_type("text/html; charset=utf-8").body(body),
            error,
        )),
        Err(_) => error_page(intake, lang, error, kept.testimony()),
    }
}

#[derive(serde::Deserialize)]
struct ReceiptForm {
    receipt: String,
}

/// Hands the receipt on the page back as a file: the server keeps nothing to answer
/// this, and echoes only a receipt it signed itself (its inclusion under this server's
/// key, and its attested part's), from its own pages.
async fn download_receipt(
    req: HttpRequest,
    intake: web::Data<Intake>,
    form: Result<web::Form<ReceiptForm>, actix_web::Error>,
) -> HttpResponse {
    // Another site must not make a survivor's browser save a file of its choosing
    // under our name.
    if !super::followup::same_origin(&req) {
        return error_page(&intake, Lang::En, IntakeError::CrossSite, None);
    }
    let key = intake.store.verifier_key();
    let receipt = form
        .ok()
        .and_then(|f| serde_json::from_str::<crate::log::Receipt>(&f.receipt).ok())
        .filter(|r| crate::record::is_submission_id(&r.submission))
        .filter(|r| r.verify_standalone(&key).is_ok())
        .filter(|r| {
            r.attested.as_ref().is_none_or(|a| {
                crate::log::Checkpoint::verify(&a.checkpoint, &key).is_ok_and(|head| {
                    crate::log::check_inclusion_of(
                        r.leaf.as_bytes(),
                        r.leaf_index,
                        &a.inclusion_proof,
                        &head,
                    )
                    .is_ok()
                })
            })
        });
    match receipt {
        Some(receipt) => HttpResponse::Ok()
            .content_type("application/json")
            .insert_header((
                "Content-Disposition",
                format!(
                    "attachment; filename=\"amanat-receipt-{}.json\"",
                    &receipt.submission[..8]
                ),
            ))
            .body(serde_json::to_string_pretty(&receipt).unwrap_or_default()),
        None => error_page(&intake, Lang::En, IntakeError::MalformedMultipart, None),
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
    req: HttpRequest,
    intake: web::Data<Intake>,
    form: Result<web::Form<PracticeForm>, actix_web::Error>,
) -> HttpResponse {
    let lang = lang_or_404!(req, intake);
    // Another site could otherwise show the survivor a codename of its choosing as
    // theirs, on our page.
    if !super::followup::same_origin(&req) {
        return error_page(&intake, lang, IntakeError::CrossSite, None);
    }
    let Ok(form) = form else {
        return error_page(&intake, lang, IntakeError::MalformedMultipart, None);
    };
    let expected: Zeroizing<String> = crate::codename::normalize(&form.codename);
    let receipt = serde_json::from_str::<crate::log::Receipt>(&form.receipt).ok();
    let (Some(receipt), false) = (receipt.filter(|r| r.submission == form.id), expected.is_empty())
    else {
        return error_page(&intake, lang, IntakeError::MalformedMultipart, None);
    };
    let correct = *crate::codename::normalize(&form.typed) == *expected;
    let receipt = serde_json::to_string(&receipt).unwrap_or_default();
    html(
        ReceiptPage {
            t: Tr::new(lang),
            here: "submit",
            id: &form.id,
            codename: &form.codename,
            received_at: &form.received_at,
            files: form.files,
            receipt: &receipt,
            practice: Some(correct),
            replicated: None,
        }
        .render(),
    )
}

async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok().content_type("text/css; charset=utf-8").body(STYLESHEET)
}

/// A refusal as a page in the survivor's language: the limit named, and what they
/// wrote handed back when the refusal came after it was read.
pub fn error_page(
    intake: &Intake,
    lang: Lang,
    error: IntakeError,
    kept: Option<&str>,
) -> HttpResponse {
    let message = error_message(intake, lang, error);
    let page =
        ErrorPage { t: Tr::new(lang), here: "", code: error.code(), message: &message, kept };
    let body = page.render().unwrap_or_else(|_| message.clone());
    refusal(
        HttpResponse::build(error.status()).content_type("text/html; charset=utf-8").body(body),
        error,
    )
}

/// `error-<code>` from the catalogue, with the limit it names; the English message of
/// `IntakeError` for codes no page shows.
fn error_message(intake: &Intake, lang: Lang, error: IntakeError) -> String {
    let limits = &intake.config.limits;
    let limit: String = match error {
        IntakeError::SubmissionTooLarge => human_bytes(limits.max_submission_bytes),
        IntakeError::TooManyFiles => limits.max_files.to_string(),
        IntakeError::TextTooLarge => human_bytes(limits.max_text_bytes as u64),
        IntakeError::TooManyFields => limits.max_fields.to_string(),
        IntakeError::UploadStalled => limits.idle_timeout_secs.to_string(),
        IntakeError::UploadTooSlow => (limits.upload_deadline_secs / 60).to_string(),
        IntakeError::UploadRateTooLow => human_bytes(limits.min_upload_bytes_per_sec),
        _ => String::new(),
    };
    let key = format!("error-{}", error.code());
    let text = crate::i18n::message(lang, &key, &[("limit", limit.into())]);
    if text == key {
        error.message(limits)
    } else {
        text
    }
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
