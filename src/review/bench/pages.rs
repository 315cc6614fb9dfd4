//! The bench's pages: the list of cases with search and filters, a case with its
//! triage and audit trail, and the files of a case (photos shown inline).

use super::triage::{Change, Status};
use super::{allowed, Bench, CaseView};
use crate::review::report::Case;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use serde::Deserialize;
use std::collections::BTreeSet;

/// The largest file the bench hands to the browser (larger ones: open them from the
/// folder).
const MAX_SERVED_BYTES: u64 = 64 << 20;
const CSP: &str = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; \
    form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn html(status: actix_web::http::StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("Content-Security-Policy", CSP))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Cache-Control", "no-store"))
        .body(body)
}

fn page(template: &impl Template) -> HttpResponse {
    match template.render() {
        Ok(body) => html(actix_web::http::StatusCode::OK, body),
        Err(_) => HttpResponse::InternalServerError().body("the page could not be drawn\n"),
    }
}

fn bad_request(message: String) -> HttpResponse {
    match (Message { title: "Not done".into(), message }).render() {
        Ok(body) => html(actix_web::http::StatusCode::BAD_REQUEST, body),
        Err(_) => HttpResponse::BadRequest().finish(),
    }
}

#[derive(Template)]
#[template(path = "bench_message.html")]
struct Message {
    title: String,
    message: String,
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    act: String,
    #[serde(default)]
    place: String,
}

struct Row {
    case: String,
    latest: String,
    language: String,
    city: String,
    place: String,
    files: usize,
    location: bool,
    status: &'static str,
    tags: String,
    snippet: String,
}

#[derive(Template)]
#[template(path = "bench_list.html")]
struct List<'a> {
    base: String,
    query: &'a ListQuery,
    rows: Vec<Row>,
    total: usize,
    statuses: Vec<(&'static str, &'static str)>,
    acts: &'static [&'static str],
    places: &'static [&'static str],
}

const PLACES: &[&str] = &["street", "hospital", "police", "detention", "other"];

pub(super) async fn list(
    bench: web::Data<Bench>,
    request: HttpRequest,
    token: web::Path<String>,
    query: web::Query<ListQuery>,
) -> HttpResponse {
    if !allowed(&bench, &request, &token) {
        return super::refused().await;
    }
    let chosen: Vec<&CaseView> = if query.q.trim().is_empty() {
        bench.cases.iter().collect()
    } else {
        match bench.search.find(&query.q) {
            Ok(ids) => ids.iter().filter_map(|id| bench.case(id)).collect(),
            Err(e) => return bad_request(format!("the search could not be run: {e}")),
        }
    };
    let trail = bench.trail.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let status = Status::parse(&query.status);
    let rows: Vec<Row> = chosen
        .into_iter()
        .filter(|c| status.is_none_or(|s| trail.of(&c.case).status == s))
        .filter(|c| query.act.is_empty() || c.answers("acts").any(|a| a == query.act))
        .filter(|c| query.place.is_empty() || c.answers("place").any(|p| p == query.place))
        .map(|c| {
            let triage = trail.of(&c.case);
            let first = &c.submissions[0];
            Row {
                case: c.case.clone(),
                latest: c.latest().to_string(),
                language: first.language.clone(),
                city: c.answers("city").next().unwrap_or("").to_string(),
                place: c.answers("place").next().unwrap_or("").to_string(),
                files: c.submissions.iter().map(|s| s.files.len()).sum(),
                location: c.has_location(),
                status: triage.status.label(),
                tags: triage.tags.iter().cloned().collect::<Vec<_>>().join(" "),
                snippet: first.testimony.chars().take(160).collect(),
            }
        })
        .collect();
    page(&List {
        base: format!("/{}", bench.token),
        query: &query,
        total: bench.cases.len(),
        rows,
        statuses: Status::ALL.iter().map(|s| (s.code(), s.label())).collect(),
        acts: crate::form::ACTS,
        places: PLACES,
    })
}

#[derive(Template)]
#[template(path = "bench_case.html")]
struct CasePage<'a> {
    base: String,
    case: &'a CaseView,
    submissions: Vec<(&'a Case, Vec<crate::form::Answered>)>,
    status: Status,
    statuses: [Status; 5],
    tags: String,
    notes: Vec<(String, String, String)>,
    trail: Vec<String>,
}

pub(super) async fn case(
    bench: web::Data<Bench>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (token, case) = path.into_inner();
    if !allowed(&bench, &request, &token) {
        return super::refused().await;
    }
    let Some(view) = bench.case(&case) else {
        return HttpResponse::NotFound().body("no such case here\n");
    };
    let trail = bench.trail.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let triage = trail.of(&case);
    let history = trail.changes_of(&case).map(describe).collect();
    page(&CasePage {
        base: format!("/{}", bench.token),
        case: view,
        submissions: view
            .submissions
            .iter()
            .map(|s| (s, crate::form::answers(&s.fields, &s.language, bench.lang)))
            .collect(),
        status: triage.status,
        statuses: Status::ALL,
        tags: triage.tags.iter().cloned().collect::<Vec<_>>().join(" "),
        notes: triage.notes,
        trail: history,
    })
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
    if let Some(tags) = &change.tags {
        what.push(format!("tags: {}", tags.iter().cloned().collect::<Vec<_>>().join(" ")));
    }
    format!("{} {}: {}", change.at, change.reviewer, what.join("; "))
}

#[derive(Deserialize)]
pub(super) struct TriageForm {
    status: String,
    #[serde(default)]
    note: String,
    #[serde(default)]
    tags: String,
}

pub(super) async fn triage(
    bench: web::Data<Bench>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
    form: web::Form<TriageForm>,
) -> HttpResponse {
    let (token, case) = path.into_inner();
    if !allowed(&bench, &request, &token) {
        return super::refused().await;
    }
    if bench.case(&case).is_none() {
        return HttpResponse::NotFound().body("no such case here\n");
    }
    let Some(status) = Status::parse(&form.status) else {
        return bad_request(format!("{:?} is not a status", form.status));
    };
    let tags: BTreeSet<String> =
        form.tags.split([' ', ',']).filter(|t| !t.is_empty()).map(str::to_lowercase).collect();
    let mut trail = bench.trail.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let now = trail.of(&case);
    let change = Change {
        at: super::triage::now(),
        reviewer: bench.reviewer.clone(),
        case: case.clone(),
        status: (status != now.status).then_some(status),
        note: Some(form.note.trim().to_string()).filter(|n| !n.is_empty()),
        tags: (tags != now.tags).then_some(tags),
    };
    if change.status.is_some() || change.note.is_some() || change.tags.is_some() {
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
        return HttpResponse::NotFound().body("no such file in this case\n");
    };
    let on_disk = bench.dir.join(&submission.submission).join(&wanted);
    if file.size > MAX_SERVED_BYTES {
        return bad_request(format!("too large to show here: open {}", on_disk.display()));
    }
    let Ok(bytes) = std::fs::read(&on_disk) else {
        return HttpResponse::NotFound().body("the file is not in the folder\n");
    };
    let inline = matches!(file.media_type.as_str(), "image/jpeg" | "image/png" | "image/webp");
    let mut response = HttpResponse::Ok();
    response
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Content-Security-Policy", "default-src 'none'; sandbox"))
        .insert_header(("Cache-Control", "no-store"));
    if inline {
        response.content_type(file.media_type.as_str());
    } else {
        response
            .content_type("application/octet-stream")
            .insert_header(("Content-Disposition", "attachment"));
    }
    response.body(bytes)
}
