//! The bench's pages: the list of cases with search and filters, the patterns, a case
//! with its triage and audit trail (and the same case to print), and the photos of a
//! case shown inline. Query strings and forms are read only after the token is
//! checked, so a stranger's malformed request learns nothing either.

use super::filters::{Filters, NotListed};
use super::patterns::{self, Chart};
use super::triage::{self, Change, Status, Trail};
use super::{allowed, Bench, CaseView};
use crate::review::report::Case;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;
use std::collections::BTreeSet;
use std::sync::MutexGuard;

/// The largest photo the bench hands to the browser (larger ones: open them from the
/// folder).
const MAX_SERVED_BYTES: u64 = 64 << 20;
/// The types the browser is given to show; anything else is opened from the folder, so
/// no testimony's file lands in the browser's downloads.
const SHOWN: &[&str] = &["image/jpeg", "image/png", "image/webp"];
const CSP: &str = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; \
    form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn html(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("Content-Security-Policy", CSP))
        // Same-origin: the bench's own posts then say where they come from.
        .insert_header(("Referrer-Policy", "same-origin"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Cache-Control", "no-store"))
        .body(body)
}

fn page(template: &impl Template) -> HttpResponse {
    match template.render() {
        Ok(body) => html(StatusCode::OK, body),
        Err(_) => HttpResponse::InternalServerError().body("the page could not be drawn\n"),
    }
}

fn message(status: StatusCode, title: &str, message: String) -> HttpResponse {
    match (Message { title: title.into(), message }).render() {
        Ok(body) => html(status, body),
        Err(_) => HttpResponse::build(status).finish(),
    }
}

fn bad_request(why: String) -> HttpResponse {
    message(StatusCode::BAD_REQUEST, "Not done", why)
}

fn not_found(why: &str) -> HttpResponse {
    message(StatusCode::NOT_FOUND, "Not here", why.into())
}

#[derive(Template)]
#[template(path = "bench_message.html")]
struct Message {
    title: String,
    message: String,
}

/// The trail, with whatever another bench on the folder appended since.
fn trail(bench: &Bench) -> MutexGuard<'_, Trail> {
    let mut trail = bench.trail.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // A failed read leaves the last state shown; recording will say why.
    let _ = trail.refresh();
    trail
}

/// The cases `filters` keep, best match first when searching, else newest first.
fn chosen<'a>(
    bench: &'a Bench,
    filters: &Filters,
    trail: &Trail,
) -> Result<Vec<&'a CaseView>, NotListed> {
    let found: Vec<&CaseView> = if filters.q.trim().is_empty() {
        bench.cases.iter().collect()
    } else {
        let ids =
            bench.search.find(&filters.q).map_err(|e| NotListed(format!("not searched: {e}")))?;
        ids.iter().filter_map(|id| bench.case(id)).collect()
    };
    Ok(found
        .into_iter()
        .filter(|c| filters.keeps(c, &trail.of(&c.case), bench.shares_evidence(c)))
        .collect())
}

struct Row {
    case: String,
    latest: String,
    language: String,
    city: String,
    place: String,
    facility: String,
    files: usize,
    location: bool,
    shared: bool,
    status: &'static str,
    tags: String,
    snippet: String,
}

/// A choice list in the filters: (value, label).
type Choices = Vec<(&'static str, String)>;

#[derive(Template)]
#[template(path = "bench_list.html")]
struct List<'a> {
    base: String,
    filters: &'a Filters,
    /// The filters as a query string, for the patterns link.
    query: String,
    rows: Vec<Row>,
    total: usize,
    statuses: Choices,
    acts: Choices,
    places: Choices,
    consents: Choices,
    helps: Choices,
    warnings: Vec<String>,
}

fn choices(field: &str) -> Choices {
    let lang = crate::i18n::Lang::En;
    crate::form::field(field)
        .map(|f| {
            f.choices().iter().map(|c| (*c, crate::form::choice_label(field, c, lang))).collect()
        })
        .unwrap_or_default()
}

pub(super) async fn list(
    bench: web::Data<Bench>,
    request: HttpRequest,
    token: web::Path<String>,
) -> HttpResponse {
    if !allowed(&bench, &request, &token) {
        return super::refused().await;
    }
    let filters = match Filters::parse(request.query_string()) {
        Ok(filters) => filters,
        Err(why) => return bad_request(why.0),
    };
    let trail = trail(&bench);
    let chosen = match chosen(&bench, &filters, &trail) {
        Ok(chosen) => chosen,
        Err(why) => return bad_request(why.0),
    };
    let rows = chosen
        .into_iter()
        .map(|c| {
            let triage = trail.of(&c.case);
            let first = &c.submissions[0];
            Row {
                case: c.case.clone(),
                latest: c.latest().to_string(),
                language: first.language.clone(),
                city: c.answers("city").next().unwrap_or("").to_string(),
                place: c.answers("place").next().unwrap_or("").to_string(),
                facility: c.answers("place_detail").next().unwrap_or("").to_string(),
                files: c.files().count(),
                location: c.has_location(),
                shared: bench.shares_evidence(c),
                status: triage.status.label(),
                tags: triage.tags.iter().cloned().collect::<Vec<_>>().join(" "),
                snippet: first.testimony.chars().take(160).collect(),
            }
        })
        .collect();
    let mut warnings = bench.warnings.clone();
    warnings
        .extend(trail.unreadable.iter().map(|l| format!("{} {l}: left out", triage::TRAIL_FILE)));
    page(&List {
        base: format!("/{}", bench.token),
        query: filters.query(),
        filters: &filters,
        total: bench.cases.len(),
        rows,
        statuses: Status::ALL.iter().map(|s| (s.code(), s.label().to_string())).collect(),
        acts: choices("acts"),
        places: choices("place"),
        consents: choices(crate::form::CONSENT_FIELD),
        helps: choices("help_wanted"),
        warnings,
    })
}

#[derive(Template)]
#[template(path = "bench_patterns.html")]
struct Patterns<'a> {
    base: String,
    query: String,
    narrowed: bool,
    cases: usize,
    charts: Vec<(&'a Chart, String)>,
}

/// The charts over the cases the filters keep, or why not.
fn charts_for(
    bench: &Bench,
    request: &HttpRequest,
) -> Result<(Filters, usize, Vec<Chart>), NotListed> {
    let filters = Filters::parse(request.query_string())?;
    let trail = trail(bench);
    let cases = chosen(bench, &filters, &trail)?;
    Ok((filters.clone(), cases.len(), patterns::charts(&cases, &filters)))
}

pub(super) async fn patterns(
    bench: web::Data<Bench>,
    request: HttpRequest,
    token: web::Path<String>,
) -> HttpResponse {
    if !allowed(&bench, &request, &token) {
        return super::refused().await;
    }
    let (filters, cases, charts) = match charts_for(&bench, &request) {
        Ok(found) => found,
        Err(why) => return bad_request(why.0),
    };
    let base = format!("/{}", bench.token);
    page(&Patterns {
        query: filters.query(),
        narrowed: filters.narrowed() || !filters.q.is_empty(),
        cases,
        charts: charts.iter().map(|c| (c, c.svg(&base))).collect(),
        base,
    })
}

pub(super) async fn patterns_csv(
    bench: web::Data<Bench>,
    request: HttpRequest,
    token: web::Path<String>,
) -> HttpResponse {
    if !allowed(&bench, &request, &token) {
        return super::refused().await;
    }
    let charts = match charts_for(&bench, &request) {
        Ok((_, _, charts)) => charts,
        Err(why) => return bad_request(why.0),
    };
    match patterns::csv(&charts) {
        // Shown as text, not downloaded: nothing lands in the browser's downloads
        // unless the reviewer saves it where they choose.
        Ok(bytes) => HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .insert_header(("Cache-Control", "no-store"))
            .insert_header(("X-Content-Type-Options", "nosniff"))
            .body(bytes),
        Err(e) => bad_request(format!("the figures could not be written: {e}")),
    }
}

/// A file as the case page lists it.
struct FileRow<'a> {
    file: &'a crate::review::report::CaseFile,
    /// Shown in the page (a photo), or opened from this path on the laptop.
    shown: bool,
    on_disk: String,
    working_on_disk: Option<String>,
    also_in: Vec<&'a str>,
}

#[derive(Template)]
#[template(path = "bench_case.html")]
struct CasePage<'a> {
    base: String,
    printable: bool,
    case: &'a CaseView,
    submissions: Vec<(&'a Case, Vec<crate::form::Answered>, Vec<FileRow<'a>>)>,
    status: Status,
    statuses: [Status; 5],
    tags: String,
    notes: Vec<(String, String, String)>,
    trail: Vec<String>,
}

async fn case_page(
    bench: web::Data<Bench>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
    printable: bool,
) -> HttpResponse {
    let (token, case) = path.into_inner();
    if !allowed(&bench, &request, &token) {
        return super::refused().await;
    }
    let Some(view) = bench.case(&case) else {
        return not_found("no such case here");
    };
    let trail = trail(&bench);
    let triage = trail.of(&case);
    let history = trail.changes_of(&case).into_iter().map(describe).collect();
    page(&CasePage {
        base: format!("/{}", bench.token),
        printable,
        case: view,
        submissions: view
            .submissions
            .iter()
            .map(|s| {
                (
                    s,
                    crate::form::answers(&s.fields, &s.language, bench.lang),
                    file_rows(&bench, &case, s),
                )
            })
            .collect(),
        status: triage.status,
        statuses: Status::ALL,
        tags: triage.tags.iter().cloned().collect::<Vec<_>>().join(" "),
        notes: triage.notes,
        trail: history,
    })
}

/// The files of a submission as its case page lists them.
fn file_rows<'a>(bench: &'a Bench, case: &'a str, submission: &'a Case) -> Vec<FileRow<'a>> {
    let folder = bench.dir.join(&submission.submission);
    submission
        .files
        .iter()
        .map(|file| FileRow {
            file,
            shown: SHOWN.contains(&file.media_type.as_str()),
            on_disk: folder.join(&file.saved_as).display().to_string(),
            working_on_disk: file
                .working
                .as_ref()
                .and_then(|w| w.saved_as.as_ref())
                .map(|copy| folder.join(copy).display().to_string()),
            also_in: bench.also_in(&file.sha256, case),
        })
        .collect()
}

pub(super) async fn case(
    bench: web::Data<Bench>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    case_page(bench, request, path, false).await
}

pub(super) async fn printable(
    bench: web::Data<Bench>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    case_page(bench, request, path, true).await
}

/// One line of the audit trail as a person reads it.
fn describe(change: &Change) -> String {
    let mut what = Vec::new();
    if let Some(status) = change.status {
        what.push(format!("status: {}", status.label()));
    }
    if change.note.is_some() {
        what.push("a note".to_string());
    }
    let list = |tags: &BTreeSet<String>| tags.iter().cloned().collect::<Vec<_>>().join(" ");
    if !change.tags_added.is_empty() {
        what.push(format!("tags added: {}", list(&change.tags_added)));
    }
    if !change.tags_removed.is_empty() {
        what.push(format!("tags removed: {}", list(&change.tags_removed)));
    }
    format!("{} {}: {}", change.at, change.reviewer, what.join("; "))
}

/// The triage form: what the reviewer chose, and what the page showed when they did,
/// so that only what they changed is recorded.
#[derive(Deserialize)]
struct TriageForm {
    status: String,
    #[serde(default)]
    status_was: Option<String>,
    #[serde(default)]
    note: String,
    #[serde(default)]
    tags: String,
    #[serde(default)]
    tags_was: Option<String>,
}

fn tag_set(text: &str) -> BTreeSet<String> {
    text.split([' ', ',']).filter(|t| !t.is_empty()).map(str::to_lowercase).collect()
}

/// Whether a form post comes from the bench's own page: a browser says where a post
/// comes from, and a page elsewhere that learned the token must not post as the
/// reviewer.
fn same_origin(bench: &Bench, request: &HttpRequest) -> bool {
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok());
    // A browser sends one or both; a client that is not a browser (a script with the
    // token) sends neither.
    header("origin").is_none_or(|o| o == format!("http://{}", bench.host))
        && header("sec-fetch-site").is_none_or(|s| s == "same-origin")
}

pub(super) async fn triage(
    bench: web::Data<Bench>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> HttpResponse {
    let (token, case) = path.into_inner();
    if !allowed(&bench, &request, &token) || !same_origin(&bench, &request) {
        return super::refused().await;
    }
    if bench.case(&case).is_none() {
        return not_found("no such case here");
    }
    let form: TriageForm = match serde_urlencoded::from_bytes(&body) {
        Ok(form) => form,
        Err(e) => {
            return bad_request(format!("the form cannot be read ({e}); nothing was recorded"))
        }
    };
    let Some(status) = Status::parse(&form.status) else {
        return bad_request(format!("{:?} is not a status; nothing was recorded", form.status));
    };
    let mut trail = trail(&bench);
    let shown = trail.of(&case);
    // What the page showed: a form without it (a script) compares with the state now.
    let was = form.status_was.as_deref().and_then(Status::parse).unwrap_or(shown.status);
    let tags = tag_set(&form.tags);
    let tags_was = form.tags_was.as_deref().map_or(shown.tags, tag_set);
    let change = Change {
        status: (status != was).then_some(status),
        note: Some(form.note.trim().to_string()).filter(|n| !n.is_empty()),
        tags_added: tags.difference(&tags_was).cloned().collect(),
        tags_removed: tags_was.difference(&tags).cloned().collect(),
        ..Change::new(&bench.reviewer, &case)
    };
    if !change.is_empty() {
        if let Err(why) = trail.record(change) {
            return bad_request(format!("{why}; nothing was recorded"));
        }
    }
    HttpResponse::SeeOther()
        .insert_header(("Location", format!("/{}/case/{case}", bench.token)))
        .finish()
}

pub(super) async fn file(
    bench: web::Data<Bench>,
    request: HttpRequest,
    path: web::Path<(String, String, String, String)>,
) -> HttpResponse {
    let (token, submission, place, name) = path.into_inner();
    if !allowed(&bench, &request, &token) {
        return super::refused().await;
    }
    // Only a file its case names, by the name `open` gave it: never a path from the URL.
    let wanted = format!("{place}/{name}");
    let found =
        bench.cases.iter().flat_map(|c| &c.submissions).find(|s| s.submission == submission);
    let file = found.and_then(|s| {
        s.files.iter().find(|f| {
            f.saved_as == wanted
                || f.working.as_ref().and_then(|w| w.saved_as.as_deref()) == Some(&wanted)
        })
    });
    let (Some(submission), Some(file)) = (found, file) else {
        return not_found("no such file in this case");
    };
    let on_disk = bench.dir.join(&submission.submission).join(&wanted);
    if !SHOWN.contains(&file.media_type.as_str()) {
        return not_found(&format!("not shown here: open {}", on_disk.display()));
    }
    let size = std::fs::metadata(&on_disk).map(|m| m.len());
    if size.as_ref().is_ok_and(|&n| n > MAX_SERVED_BYTES) {
        return bad_request(format!("too large to show here: open {}", on_disk.display()));
    }
    let Ok(bytes) = std::fs::read(&on_disk) else {
        return not_found("the file is not in the folder");
    };
    HttpResponse::Ok()
        .content_type(file.media_type.as_str())
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Content-Security-Policy", "default-src 'none'; sandbox"))
        .insert_header(("Cache-Control", "no-store"))
        .body(bytes)
}
