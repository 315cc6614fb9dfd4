//! Survivors come back: a codename opens the case for a short while, shows what was
//! received and the coalition's replies, and takes more evidence for the same case.
//!
//! What is kept: nothing on disk; in memory, per open case, a random session id, the
//! case record and when it was last used (15 minutes idle, then gone), and one global
//! counter of recent wrong codenames. Replies are decrypted only in answer to the
//! codename itself, with an identity derived from it in memory and dropped at once.

use super::error::IntakeError;
use super::upload::{self, Target};
use super::{api, pages, Intake};
use crate::envelope::Origin;
use crate::i18n::{Lang, Tr};
use crate::store::{CaseRecord, Store};
use crate::{codename, keys, reply};
use actix_multipart::Multipart;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use ring::rand::SecureRandom;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A case stays open this long without a request.
pub const SESSION_IDLE: Duration = Duration::from_secs(15 * 60);
/// Wrong codenames are counted over this window.
pub const THROTTLE_WINDOW: Duration = Duration::from_secs(60);
/// Open cases held at once; past this, new ones wait (503).
const MAX_SESSIONS: usize = 10_000;
const COOKIE: &str = "amanat_case";
/// The longest codename anyone could type (5 words of 6 letters, in any alphabet, with
/// generous spacing); longer input is not a codename and is not worth hashing.
const MAX_CODENAME_BYTES: usize = 512;

/// Sessions and the global throttle on wrong codenames.
pub struct FollowUp {
    sessions: Mutex<HashMap<String, Session>>,
    throttle: Mutex<Throttle>,
    max_failures: u32,
}

struct Session {
    case: CaseRecord,
    last_seen: Instant,
}

/// Wrong codenames in the current window, from anyone: who tried is never recorded.
struct Throttle {
    window_start: Instant,
    failures: u32,
}

impl FollowUp {
    pub fn new(max_failures_per_minute: u32) -> FollowUp {
        FollowUp {
            sessions: Mutex::new(HashMap::new()),
            throttle: Mutex::new(Throttle { window_start: Instant::now(), failures: 0 }),
            max_failures: max_failures_per_minute,
        }
    }

    /// The case a typed codename opens. While too many wrong codenames were entered in
    /// the current window, every attempt is refused before it is checked: a right guess
    /// must not be told apart from a wrong one then, or the throttle would not slow
    /// guessing at all.
    pub async fn open_case(
        &self,
        store: &Arc<Store>,
        typed: &str,
    ) -> Result<CaseRecord, IntakeError> {
        // Each attempt counts as a failure until it proves right: concurrent guesses
        // cannot slip through one window between the check and the count.
        self.reserve_attempt()?;
        if typed.len() > MAX_CODENAME_BYTES {
            return Err(IntakeError::CodenameNotRecognized);
        }
        let normalized = codename::normalize(typed);
        let store = store.clone();
        let found = upload::blocking(move || store.case_for_codename(&normalized)).await?;
        match found {
            Some(case) => {
                self.refund_attempt();
                Ok(case)
            }
            None => Err(IntakeError::CodenameNotRecognized),
        }
    }

    /// Refuses while the window's failures are at the limit; otherwise counts one.
    fn reserve_attempt(&self) -> Result<(), IntakeError> {
        let mut t = self.throttle.lock().unwrap_or_else(|p| p.into_inner());
        if t.window_start.elapsed() >= THROTTLE_WINDOW {
            t.window_start = Instant::now();
            t.failures = 0;
        }
        if t.failures >= self.max_failures {
            return Err(IntakeError::TooManyAttempts);
        }
        t.failures += 1;
        Ok(())
    }

    fn refund_attempt(&self) {
        let mut t = self.throttle.lock().unwrap_or_else(|p| p.into_inner());
        t.failures = t.failures.saturating_sub(1);
    }

    /// True while every attempt is refused: checked before an upload is read, so a
    /// survivor does not send a large file only to be told to wait.
    pub fn throttled(&self) -> bool {
        let t = self.throttle.lock().unwrap_or_else(|p| p.into_inner());
        t.window_start.elapsed() < THROTTLE_WINDOW && t.failures >= self.max_failures
    }

    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens a session for `case`, closing any older one of the same case (so one
    /// codename cannot fill the table) and every idle one; when still full, the least
    /// recently used goes. Returns the new session's id.
    fn start_session(&self, store: &Store, case: CaseRecord) -> Result<String, IntakeError> {
        let mut sessions = self.lock_sessions();
        sessions.retain(|_, s| s.last_seen.elapsed() < SESSION_IDLE && s.case.case != case.case);
        if sessions.len() >= MAX_SESSIONS {
            let oldest = sessions.iter().min_by_key(|(_, s)| s.last_seen).map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                sessions.remove(&oldest);
            }
        }
        let mut bytes = [0u8; 16];
        store.rng().fill(&mut bytes).map_err(|_| IntakeError::Internal)?;
        let id = hex::encode(bytes);
        sessions.insert(id.clone(), Session { case, last_seen: Instant::now() });
        Ok(id)
    }

    /// The case of a live session, touching it; an idle one is closed.
    fn session(&self, id: &str) -> Option<CaseRecord> {
        let mut sessions = self.lock_sessions();
        let session = sessions.get_mut(id)?;
        if session.last_seen.elapsed() >= SESSION_IDLE {
            sessions.remove(id);
            return None;
        }
        session.last_seen = Instant::now();
        Some(session.case.clone())
    }

    fn end_session(&self, id: &str) {
        self.lock_sessions().remove(id);
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/followup", web::post().to(sign_in))
        .route("/{lang}/followup", web::get().to(page))
        .route("/{lang}/followup", web::post().to(sign_in))
        .route("/{lang}/followup/add", web::post().to(add))
        .route("/{lang}/followup/close", web::post().to(close))
        .service(
            web::resource("/api/v1/followup")
                // A codename is a few dozen bytes: nothing bigger is buffered.
                .app_data(web::JsonConfig::default().limit(1024))
                .route(web::post().to(api_open)),
        )
        .route("/api/v1/followup/submissions", web::post().to(api_add));
}

/// Whether a form post comes from our own pages. A post from another site could sign
/// the survivor's browser into someone else's case (login CSRF): the survivor would add
/// evidence there and the replies would go to that case's codename. Browsers send
/// `Sec-Fetch-Site` on form posts, JavaScript or not, and it decides. Without it, an
/// `Origin` naming another host is refused; our pages' no-referrer policy makes
/// browsers send `Origin: null`, which is let through (only old browsers reach it).
fn same_origin(req: &HttpRequest) -> bool {
    let headers = req.headers();
    if let Some(site) = headers.get("sec-fetch-site") {
        return site.as_bytes() == b"same-origin";
    }
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        None | Some("null") => true,
        Some(origin) => {
            let host = req.connection_info().host().to_ascii_lowercase();
            origin
                .split_once("://")
                .is_some_and(|(_, rest)| rest.trim_end_matches('/').eq_ignore_ascii_case(&host))
        }
    }
}

/// One reply as the survivor sees it; `text` is None when it could not be read.
#[derive(Serialize)]
pub struct ShownReply {
    pub received_at: String,
    pub text: Option<String>,
}

impl Drop for ShownReply {
    fn drop(&mut self) {
        if let Some(text) = &mut self.text {
            zeroize::Zeroize::zeroize(text);
        }
    }
}

/// What the survivor is shown of their case: hours and counts, never file names.
struct CaseView {
    items: Vec<ReceivedItem>,
    replies: Option<Vec<ShownReply>>,
}

struct ReceivedItem {
    received_at: String,
    files: usize,
}

/// Decrypts the case's replies with the identity the codename derives. A reply that
/// does not open is reported as such, never hidden.
fn read_replies(
    store: &Store,
    case: &str,
    normalized_codename: &str,
) -> std::io::Result<Vec<ShownReply>> {
    let identity = keys::reply_identity(store.instance_secret(), normalized_codename);
    let mut shown = Vec::new();
    for record in store.case_replies(case)? {
        let opened = store
            .open_object(&record.object)
            .map_err(|e| e.to_string())
            .and_then(|(file, _)| reply::open_reply(file, &identity, case));
        let text = match opened {
            Ok(message) => Some(message.text.clone()),
            Err(_) => {
                // A fixed message: the error may quote decrypted text.
                tracing::warn!("a stored reply could not be opened");
                None
            }
        };
        shown.push(ShownReply { received_at: record.imported_at, text });
    }
    Ok(shown)
}

fn case_items(store: &Store, case: &str) -> std::io::Result<Vec<ReceivedItem>> {
    Ok(store
        .case_submissions(case)?
        .into_iter()
        .map(|r| ReceivedItem { received_at: r.received_at, files: r.attachments.len() })
        .collect())
}

#[derive(Template)]
#[template(path = "followup.html")]
struct SignInPage {
    t: Tr,
    here: &'static str,
    /// A catalogue key.
    notice: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "case.html")]
struct CasePage<'a> {
    t: Tr,
    here: &'static str,
    view: &'a CaseView,
    /// Files in what was just added.
    added: Option<usize>,
    /// The receipt of what was just added, offered as a download.
    receipt: Option<&'a str>,
    evidence_label: String,
}

fn sign_in_page(lang: Lang, notice: Option<&'static str>) -> HttpResponse {
    pages::html(SignInPage { t: Tr::new(lang), here: "followup", notice }.render())
}

async fn page(req: HttpRequest, intake: web::Data<Intake>) -> HttpResponse {
    let lang = pages::lang_or_404!(req, intake);
    match session_of(&req, &intake) {
        Some(case) => render_case(&intake, lang, &case, None, None).await,
        None => sign_in_page(lang, None),
    }
}

/// The form's and the API's one field; wiped when dropped.
#[derive(Deserialize)]
struct SignInForm {
    codename: String,
}

impl Drop for SignInForm {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.codename);
    }
}

async fn sign_in(
    req: HttpRequest,
    intake: web::Data<Intake>,
    form: Result<web::Form<SignInForm>, actix_web::Error>,
) -> HttpResponse {
    let lang = pages::lang_or_404!(req, intake);
    if !same_origin(&req) {
        return pages::error_page(&intake, lang, IntakeError::CrossSite, None);
    }
    let Ok(form) = form else {
        return sign_in_page(lang, Some("followup-wrong"));
    };
    match intake.followup.open_case(&intake.store, &form.codename).await {
        Ok(case) => {
            let replies = {
                let store = intake.store.clone();
                let normalized = codename::normalize(&form.codename);
                let case = case.case.clone();
                upload::blocking(move || read_replies(&store, &case, &normalized)).await
            };
            let session = replies.and_then(|replies| {
                Ok((replies, intake.followup.start_session(&intake.store, case.clone())?))
            });
            match session {
                Ok((replies, session)) => {
                    let mut response = render_case(&intake, lang, &case, Some(replies), None).await;
                    set_cookie(&req, &mut response, &session, lang);
                    response
                }
                Err(e) => pages::error_page(&intake, lang, e, None),
            }
        }
        // The same page anyone gets before signing in, with a word about the codename.
        Err(IntakeError::CodenameNotRecognized) => sign_in_page(lang, Some("followup-wrong")),
        Err(e) => pages::error_page(&intake, lang, e, None),
    }
}

async fn add(req: HttpRequest, intake: web::Data<Intake>, payload: web::Payload) -> HttpResponse {
    let lang = pages::lang_or_404!(req, intake);
    if !same_origin(&req) {
        return pages::error_page(&intake, lang, IntakeError::CrossSite, None);
    }
    let Some(case) = session_of(&req, &intake) else {
        return pages::error_page(&intake, lang, IntakeError::SessionExpired, None);
    };
    let multipart = Multipart::new(req.headers(), payload);
    let length = api::content_length(&req);
    let target = Target::Case(case.clone());
    let mut kept = None;
    let received = upload::receive_keeping(
        &intake,
        length,
        multipart,
        Origin::Web,
        lang.code(),
        target,
        &mut kept,
    )
    .await;
    match received {
        Ok(accepted) => {
            let receipt = serde_json::to_string(&accepted.receipt).unwrap_or_default();
            let files = accepted.objects.len() - 1;
            render_case(&intake, lang, &case, None, Some((files, &receipt))).await
        }
        Err(e) => pages::error_page(&intake, lang, e, kept.as_deref().map(String::as_str)),
    }
}

async fn close(req: HttpRequest, intake: web::Data<Intake>) -> HttpResponse {
    let lang = pages::lang_or_404!(req, intake);
    if !same_origin(&req) {
        return pages::error_page(&intake, lang, IntakeError::CrossSite, None);
    }
    if let Some(id) = cookie_value(&req) {
        intake.followup.end_session(&id);
    }
    let mut response = sign_in_page(lang, Some("followup-closed"));
    let expired =
        format!("{COOKIE}=; Path=/{}/followup; Max-Age=0; HttpOnly; SameSite=Strict", lang.code());
    if let Ok(value) = header::HeaderValue::from_str(&expired) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

async fn render_case(
    intake: &Intake,
    lang: Lang,
    case: &CaseRecord,
    replies: Option<Vec<ShownReply>>,
    added: Option<(usize, &str)>,
) -> HttpResponse {
    let store = intake.store.clone();
    let id = case.case.clone();
    let items = match upload::blocking(move || case_items(&store, &id)).await {
        Ok(items) => items,
        Err(e) => return pages::error_page(intake, lang, e, None),
    };
    let view = CaseView { items, replies };
    let t = Tr::new(lang);
    pages::html(
        CasePage {
            t,
            here: "followup",
            view: &view,
            added: added.map(|(files, _)| files),
            receipt: added.map(|(_, receipt)| receipt),
            evidence_label: pages::evidence_label(intake, t),
        }
        .render(),
    )
}

fn session_of(req: &HttpRequest, intake: &Intake) -> Option<CaseRecord> {
    intake.followup.session(&cookie_value(req)?)
}

/// The session id from the Cookie header: 32 hex characters, nothing else accepted.
fn cookie_value(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .find(|v| v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_string)
}

/// Only the follow-up pages ever see the cookie; it dies with the browser, and the
/// server forgets the session after 15 idle minutes anyway.
fn set_cookie(req: &HttpRequest, response: &mut HttpResponse, session: &str, lang: Lang) {
    let secure = if req.connection_info().scheme() == "https" { "; Secure" } else { "" };
    let cookie = format!(
        "{COOKIE}={session}; Path=/{}/followup; HttpOnly; SameSite=Strict{secure}",
        lang.code()
    );
    if let Ok(value) = header::HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// `POST /api/v1/followup`: `{"codename"}` gives the case, its replies and how many
/// submissions it holds.
async fn api_open(
    intake: web::Data<Intake>,
    body: Result<web::Json<SignInForm>, actix_web::Error>,
) -> HttpResponse {
    let Ok(body) = body else {
        return api::error_response(&intake, IntakeError::CodenameNotRecognized);
    };
    let case = match intake.followup.open_case(&intake.store, &body.codename).await {
        Ok(case) => case,
        Err(e) => return api::error_response(&intake, e),
    };
    let store = intake.store.clone();
    let normalized = codename::normalize(&body.codename);
    let id = case.case.clone();
    let result = upload::blocking(move || {
        let replies = read_replies(&store, &id, &normalized)?;
        let submissions = store.case_submissions(&id)?.len();
        Ok((replies, submissions))
    })
    .await;
    match result {
        Ok((replies, submissions)) => HttpResponse::Ok().json(serde_json::json!({
            "case": case.case,
            "replies": replies,
            "submissions": submissions,
        })),
        Err(e) => api::error_response(&intake, e),
    }
}

/// `POST /api/v1/followup/submissions`: like `/api/v1/submissions`, plus a `codename`
/// field naming the case.
async fn api_add(
    req: HttpRequest,
    intake: web::Data<Intake>,
    payload: web::Payload,
) -> HttpResponse {
    let multipart = Multipart::new(req.headers(), payload);
    let length = api::content_length(&req);
    match upload::receive(&intake, length, multipart, Origin::Api, "und", Target::CodenameField)
        .await
    {
        Ok(accepted) => api::created(&accepted),
        Err(e) => api::error_response(&intake, e),
    }
}
