//! Survivors come back: a codename opens the case for a short while, shows what was
//! received and the coalition's replies, and takes more evidence for the same case.
//!
//! What is kept: nothing on disk but what the store holds; in memory, per open case, a
//! random session id, the case record and when it was last used (15 minutes idle, then
//! gone). Every codename costs a memory-hard derivation (`keys::CodenameKey`), on at
//! most half the cores at a time, first come first served: a flood of wrong codenames
//! slows everyone a little, and nobody is locked out, so the right codename always gets
//! in. A wrong one is answered only after a further pause. Replies are decrypted only in answer to the
//! codename itself, shown once, and deleted from the server.

use super::error::IntakeError;
use super::upload::{self, Target};
use super::{api, pages, Intake};
use crate::bundle::reply;
use crate::envelope::{ObjectId, Origin};
use crate::i18n::{Lang, Tr};
use crate::keys::CodenameKey;
use crate::store::{CaseRecord, Store};
use crate::{codename, keys};
use actix_multipart::Multipart;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// A case stays open this long without a request.
pub const SESSION_IDLE: Duration = Duration::from_secs(15 * 60);
/// A wrong codename is answered after this pause, on top of its derivation: a person
/// retyping loses nothing, a guesser working one attempt after another is slowed.
pub const WRONG_CODENAME_PAUSE: Duration = Duration::from_secs(1);
/// Open cases held at once; past this, the least recently used closes.
const MAX_SESSIONS: usize = 10_000;
const COOKIE: &str = "amanat_case";
/// The longest codename anyone could type (5 words of 6 letters, in any alphabet, with
/// generous spacing); longer input is not a codename and is not worth hashing.
const MAX_CODENAME_BYTES: usize = 512;

/// Sessions, and the queues of codename derivations.
pub struct FollowUp {
    sessions: Mutex<HashMap<String, Session>>,
    /// Derivations for new cases, and for sign-in attempts, each a lane of its own with
    /// half the cores (rounded up), so that a flood of codenames never delays a
    /// survivor's first testimony, and never takes every core from uploads and pages.
    /// Each lane is fair: attempts are served in the order they came.
    new_cases: Arc<tokio::sync::Semaphore>,
    sign_ins: Arc<tokio::sync::Semaphore>,
    /// Counts derivations waiting or running, for `amanat status`.
    activity: Arc<super::activity::Activity>,
    /// The derivations' working memory, reused: as many as derivations can run at once
    /// (each holds its lane's permit while it works), so memory stays bounded.
    memory: Arc<Mutex<Vec<keys::KdfMemory>>>,
}

/// Which lane a derivation waits in.
#[derive(Clone, Copy)]
pub enum Lane {
    NewCase,
    SignIn,
}

struct Session {
    case: CaseRecord,
    last_seen: Instant,
}

/// A case a codename opened, and the identities that read its stored replies: its own,
/// and the one of before v2, in case a reply sealed to that one is still stored.
pub struct OpenedCase {
    pub case: CaseRecord,
    identities: Vec<age::x25519::Identity>,
}

impl FollowUp {
    pub fn new(activity: Arc<super::activity::Activity>) -> FollowUp {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let lane = || Arc::new(tokio::sync::Semaphore::new(cores.div_ceil(2)));
        FollowUp {
            sessions: Mutex::new(HashMap::new()),
            new_cases: lane(),
            sign_ins: lane(),
            activity,
            memory: Arc::default(),
        }
    }

    /// The codename's key, derived in turn with the other derivations of its lane.
    pub async fn codename_key(
        &self,
        lane: Lane,
        store: &Arc<Store>,
        normalized: Zeroizing<String>,
    ) -> Result<CodenameKey, IntakeError> {
        struct Queued(Arc<super::activity::Activity>);
        impl Drop for Queued {
            fn drop(&mut self) {
                self.0.codename_checks.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.activity.codename_checks.fetch_add(1, Ordering::Relaxed);
        let queued = Queued(self.activity.clone());
        let semaphore = match lane {
            Lane::NewCase => &self.new_cases,
            Lane::SignIn => &self.sign_ins,
        };
        let permit = semaphore.clone().acquire_owned().await.map_err(|_| IntakeError::Internal)?;
        let store = store.clone();
        let pool = self.memory.clone();
        // The permit goes with the work: a request dropped while it runs does not free
        // its lane before the derivation (and its memory) is done.
        upload::blocking(move || {
            let _held = (permit, queued);
            let take = || pool.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
            let mut memory = take().unwrap_or_default();
            let key = store.case_keys().codename_key(&normalized, &mut memory);
            pool.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(memory);
            Ok(key)
        })
        .await
    }

    /// The case a typed codename opens. A case that still has the keys of before v2
    /// gets new ones now, durably, and its stored replies are resealed to the new key
    /// (with the coalition's `recipients`), before anything is shown.
    pub async fn open_case(
        &self,
        store: &Arc<Store>,
        recipients: &Arc<keys::Recipients>,
        typed: &str,
    ) -> Result<OpenedCase, IntakeError> {
        // Longer input is not a codename: refused before it is even normalized.
        let normalized = if typed.len() <= MAX_CODENAME_BYTES {
            codename::normalize(typed)
        } else {
            Zeroizing::new(String::new())
        };
        if !codename::is_well_formed(&normalized) {
            tokio::time::sleep(WRONG_CODENAME_PAUSE).await;
            return Err(IntakeError::CodenameNotRecognized);
        }
        let key = self.codename_key(Lane::SignIn, store, normalized.clone()).await?;
        let (store, recipients) = (store.clone(), recipients.clone());
        let opened = upload::blocking(move || {
            // Twice at most: a sign-in at the same moment may upgrade the case first.
            for _ in 0..2 {
                let Some(found) = store.find_case(&key, &normalized)? else { return Ok(None) };
                let v1 = store.case_keys().v1_reply_identity(&normalized);
                let Some(case) = store.upgrade_case_keys(&found, &key)? else { continue };
                let salt = case.reply_salt.as_deref().and_then(|s| hex::decode(s).ok());
                let Some(salt) = salt else {
                    return Err(std::io::Error::other("a case without a reply salt"));
                };
                // Every time, not only at the upgrade: a crash between the two must not
                // leave a reply sealed to the old key.
                reseal_replies(&store, &case, &v1, &recipients)?;
                return Ok(Some(OpenedCase {
                    identities: vec![key.reply_identity(&salt), v1],
                    case,
                }));
            }
            Err(std::io::Error::other("the case changed twice while it was opened"))
        })
        .await?;
        if let Some(opened) = opened {
            Ok(opened)
        } else {
            tokio::time::sleep(WRONG_CODENAME_PAUSE).await;
            Err(IntakeError::CodenameNotRecognized)
        }
    }

    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Opens a session for `case`, closing any older one of the same case (so one
    /// codename cannot fill the table) and every idle one; when still full, the least
    /// recently used goes. Returns the new session's id.
    fn start_session(&self, case: CaseRecord) -> String {
        let mut sessions = self.lock_sessions();
        sessions.retain(|_, s| s.last_seen.elapsed() < SESSION_IDLE && s.case.case != case.case);
        if sessions.len() >= MAX_SESSIONS {
            let oldest = sessions.iter().min_by_key(|(_, s)| s.last_seen).map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                sessions.remove(&oldest);
            }
        }
        let id = crate::record::random_hex(16);
        sessions.insert(id.clone(), Session { case, last_seen: Instant::now() });
        id
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
pub(super) fn same_origin(req: &HttpRequest) -> bool {
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
    /// Its receipt as JSON, offered as a download; with the attested checkpoint once
    /// outside parties attested one holding it.
    receipt: String,
    attested: bool,
}

/// Reseals every reply of a just-upgraded case that opens with its old key to its new
/// recipient and the coalition, so that none stays sealed to a key a copy of the index
/// gives. One that does not open is left for the coalition to see to.
fn reseal_replies(
    store: &Store,
    case: &CaseRecord,
    old: &age::x25519::Identity,
    coalition: &keys::Recipients,
) -> std::io::Result<()> {
    for record in store.case_replies(&case.case)? {
        let opened = store.open_object(&record.object).ok().and_then(|(file, _)| {
            reply::open_reply(file, std::slice::from_ref(old), &case.case).ok()
        });
        let Some(message) = opened else { continue };
        let ciphertext = reply::seal_reply(
            &case.case,
            &case.reply_recipient,
            coalition,
            &message.text,
            &message.written_at,
        )
        .map_err(std::io::Error::other)?;
        store.reseal_reply(&case.case, &record, &ciphertext)?;
    }
    Ok(())
}

/// Decrypts the case's replies with the identities the codename derives, then deletes
/// from the server each one that opened: it has been read. A reply that does not open
/// is reported as such, never hidden, and stays for the coalition to see to.
fn read_replies(store: &Store, opened: &OpenedCase) -> std::io::Result<Vec<ShownReply>> {
    let case = &opened.case.case;
    let mut shown = Vec::new();
    let mut read: Vec<ObjectId> = Vec::new();
    for record in store.case_replies(case)? {
        let message = store
            .open_object(&record.object)
            .map_err(|e| reply::ReplyError::Unreadable(e.to_string()))
            .and_then(|(file, _)| reply::open_reply(file, &opened.identities, case));
        let text = match message {
            Ok(message) => {
                read.push(record.object.clone());
                Some(message.text.clone())
            }
            // Counted, never logged on its own: a line's time would say when a survivor
            // came back.
            Err(_) => None,
        };
        shown.push(ShownReply { received_at: record.imported_at, text });
    }
    store.remove_replies(case, &read)?;
    Ok(shown)
}

fn case_items(store: &Store, case: &str) -> std::io::Result<Vec<ReceivedItem>> {
    let mut items = Vec::new();
    for (record, receipt) in case_receipts(store, case)? {
        items.push(ReceivedItem {
            received_at: record.received_at,
            files: record.attachments.len(),
            attested: receipt.as_ref().is_some_and(|r| r.attested.is_some()),
            receipt: receipt
                .map(|r| serde_json::to_string(&r).unwrap_or_default())
                .unwrap_or_default(),
        });
    }
    Ok(items)
}

/// Every submission of a case with its receipt (attested once it can be).
fn case_receipts(
    store: &Store,
    case: &str,
) -> std::io::Result<Vec<(crate::record::SubmissionRecord, Option<crate::log::Receipt>)>> {
    store
        .case_submissions(case)?
        .into_iter()
        .map(|record| {
            let receipt = store.attested_receipt(&record)?;
            Ok((record, receipt))
        })
        .collect()
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
    /// The resumable-upload scripts' integrity values.
    scripts: &'static super::scripts::Integrity,
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
    let recipients = intake.recipients.current();
    match intake.followup.open_case(&intake.store, &recipients, &form.codename).await {
        Ok(opened) => {
            let case = opened.case.clone();
            let replies = {
                let store = intake.store.clone();
                upload::blocking(move || read_replies(&store, &opened)).await
            };
            let session =
                replies.map(|replies| (replies, intake.followup.start_session(case.clone())));
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
    let mut kept = pages::Kept::default();
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
        Err(e) => pages::error_page(&intake, lang, e, kept.testimony()),
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
    super::scripts::allowing_scripts(pages::html(
        CasePage {
            t,
            here: "followup",
            view: &view,
            added: added.map(|(files, _)| files),
            receipt: added.map(|(_, receipt)| receipt),
            evidence_label: pages::evidence_label(intake, t),
            scripts: &super::scripts::INTEGRITY,
        }
        .render(),
    ))
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

/// The answer to `POST /api/v1/followup`. Serialized straight from here: a
/// `serde_json::Value` would hold copies of the replies' text that nothing wipes.
#[derive(Serialize)]
struct FollowUpAnswer {
    case: String,
    replies: Vec<ShownReply>,
    submissions: usize,
    /// A receipt for each submission, oldest first, with the attested checkpoint once
    /// outside parties attested one holding it: what a survivor keeps that does not
    /// rest on the server.
    receipts: Vec<crate::log::Receipt>,
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
    let recipients = intake.recipients.current();
    let opened = match intake.followup.open_case(&intake.store, &recipients, &body.codename).await {
        Ok(opened) => opened,
        Err(e) => return api::error_response(&intake, e),
    };
    let store = intake.store.clone();
    let case = opened.case.case.clone();
    let result = upload::blocking(move || {
        let replies = read_replies(&store, &opened)?;
        let receipts = case_receipts(&store, &opened.case.case)?;
        Ok((replies, receipts))
    })
    .await;
    match result {
        Ok((replies, receipts)) => HttpResponse::Ok().json(FollowUpAnswer {
            case,
            replies,
            submissions: receipts.len(),
            receipts: receipts.into_iter().filter_map(|(_, receipt)| receipt).collect(),
        }),
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
