//! `amanat review --cases DIR`: the reviewer's bench, a local web application over the
//! folders `open` writes, on the air-gapped laptop. It listens on 127.0.0.1 only (no
//! option to listen elsewhere), on a port of the system's choosing, and answers only
//! requests whose path starts with a one-time token printed with its address and
//! whose peer and `Host` are that loopback address: another user of the laptop, or a
//! page in the browser that guesses the port, reaches nothing. No scripts, no outside
//! resources; every page works with JavaScript off.

mod pages;
pub mod search;
pub mod triage;

use super::report::Case;
use crate::i18n::Lang;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Why the bench did not start.
#[derive(Debug)]
pub enum BenchError {
    Cases(std::io::Error),
    Search(tantivy::TantivyError),
    Server(std::io::Error),
}

impl std::fmt::Display for BenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BenchError::Cases(e) => write!(f, "the cases folder cannot be read: {e}"),
            BenchError::Search(e) => write!(f, "the search index could not be built: {e}"),
            BenchError::Server(e) => write!(f, "the bench could not listen on 127.0.0.1: {e}"),
        }
    }
}

/// One survivor's case: every submission opened here, oldest first.
pub struct CaseView {
    pub case: String,
    pub submissions: Vec<Case>,
}

impl CaseView {
    pub fn latest(&self) -> &str {
        self.submissions.last().map_or("", |s| s.received_at.as_str())
    }

    /// Every value given for a form field, across submissions.
    pub fn answers<'a>(&'a self, field: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.submissions
            .iter()
            .flat_map(|s| s.fields.iter())
            .filter(move |f| f.name == field)
            .map(|f| f.value.as_str())
    }

    /// Whether any file says where it was made.
    pub fn has_location(&self) -> bool {
        self.submissions
            .iter()
            .flat_map(|s| &s.files)
            .any(|f| f.embedded.as_ref().is_some_and(|e| e.location.is_some()))
    }

    fn text(&self) -> String {
        let mut text = String::new();
        for submission in &self.submissions {
            text.push_str(&submission.testimony);
            for field in &submission.fields {
                text.push('\n');
                text.push_str(&field.value);
            }
        }
        text
    }
}

pub(super) struct Bench {
    dir: PathBuf,
    token: String,
    /// `127.0.0.1:<port>`: the only `Host` answered.
    host: String,
    reviewer: String,
    lang: Lang,
    cases: Vec<CaseView>,
    /// Each case's place in `cases`, by its id.
    by_id: std::collections::HashMap<String, usize>,
    search: search::Search,
    trail: Mutex<triage::Trail>,
}

/// Reads every case `open` wrote in `dir`, newest first.
pub fn read_cases(dir: &Path) -> std::io::Result<Vec<CaseView>> {
    let mut by_case: BTreeMap<String, Vec<Case>> = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path().join("testimony.json");
        let Ok(bytes) = std::fs::read(&path) else { continue };
        if let Ok(case) = serde_json::from_slice::<Case>(&bytes) {
            by_case.entry(case.case.clone()).or_default().push(case);
        }
    }
    let mut cases: Vec<CaseView> = by_case
        .into_iter()
        .map(|(case, mut submissions)| {
            submissions.sort_by(|a, b| {
                (&a.received_at, a.log_index, &a.submission).cmp(&(
                    &b.received_at,
                    b.log_index,
                    &b.submission,
                ))
            });
            CaseView { case, submissions }
        })
        .collect();
    cases.sort_by(|a, b| b.latest().cmp(a.latest()).then(a.case.cmp(&b.case)));
    Ok(cases)
}

/// Serves the bench over the cases in `dir` until stopped; `announce` is given the
/// address with its token once it listens.
pub fn serve(
    dir: &Path,
    reviewer: &str,
    lang: Lang,
    announce: impl FnOnce(&str),
) -> Result<(), BenchError> {
    let cases = read_cases(dir).map_err(BenchError::Cases)?;
    let search = search::Search::build(cases.iter().map(|c| (c.case.as_str(), c.text())))
        .map_err(BenchError::Search)?;
    let trail = triage::Trail::open(dir).map_err(BenchError::Cases)?;
    let mut token = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut token)
        .map_err(|_| BenchError::Server(std::io::Error::other("no randomness for the token")))?;
    let token = hex::encode(token);
    actix_web::rt::System::new()
        .block_on(async move {
            let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
            let host = listener.local_addr()?.to_string();
            let bench = web::Data::new(Bench {
                dir: dir.to_path_buf(),
                token,
                host,
                reviewer: reviewer.to_string(),
                lang,
                by_id: cases.iter().enumerate().map(|(n, c)| (c.case.clone(), n)).collect(),
                cases,
                search,
                trail: Mutex::new(trail),
            });
            announce(&format!("http://{}/{}/", bench.host, bench.token));
            HttpServer::new(move || {
                App::new()
                    .app_data(bench.clone())
                    .app_data(web::FormConfig::default().limit(64 * 1024))
                    .route("/{token}/", web::get().to(pages::list))
                    .route("/{token}/case/{case}", web::get().to(pages::case))
                    .route("/{token}/case/{case}", web::post().to(pages::triage))
                    .route("/{token}/file/{submission}/{place}/{name}", web::get().to(pages::file))
                    .default_service(web::to(refused))
            })
            .workers(1)
            .listen(listener)?
            .run()
            .await
        })
        .map_err(BenchError::Server)
}

impl Bench {
    fn case(&self, id: &str) -> Option<&CaseView> {
        self.by_id.get(id).map(|&n| &self.cases[n])
    }
}

/// Whether a request may be answered: from this loopback address, to it by name, with
/// the token.
fn allowed(bench: &Bench, request: &HttpRequest, token: &str) -> bool {
    let from_here = request.peer_addr().is_some_and(|peer| peer.ip().to_string() == "127.0.0.1");
    let to_here = request.headers().get("host").and_then(|h| h.to_str().ok()) == Some(&bench.host);
    // Compared in constant time: the token is the only thing between a stranger and
    // every testimony.
    let same = token.len() == bench.token.len()
        && token.bytes().zip(bench.token.bytes()).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0;
    from_here && to_here && same
}

async fn refused() -> HttpResponse {
    HttpResponse::Forbidden().content_type("text/plain; charset=utf-8").body("forbidden\n")
}
