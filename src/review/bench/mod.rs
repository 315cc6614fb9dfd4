//! `amanat review --cases DIR`: the reviewer's bench, a local web application over the
//! folders `open` writes, on the air-gapped laptop. It listens on 127.0.0.1 only (no
//! option to listen elsewhere), on a port of the system's choosing, and answers only
//! requests whose path starts with a one-time token printed with its address and
//! whose peer and `Host` are that loopback address: another user of the laptop, or a
//! page in the browser that guesses the port, reaches nothing. No scripts, no outside
//! resources; every page works with JavaScript off. Pages: the list (search and
//! filters), the patterns (charts and their CSV), a case (triage, its audit trail,
//! its files' own metadata), and a case to print.

pub mod filters;
pub mod merge;
mod pages;
pub mod patterns;
pub mod search;
pub mod triage;
pub mod uwazi;

use super::report::Case;
use crate::i18n::Lang;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use std::collections::{BTreeMap, BTreeSet, HashMap};
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

    /// Every file of every submission.
    pub fn files(&self) -> impl Iterator<Item = &super::report::CaseFile> {
        self.submissions.iter().flat_map(|s| &s.files)
    }

    /// The facility it names (`place_detail`), as the charts count it: lower case,
    /// spaces made single.
    pub fn facility(&self) -> Option<String> {
        let name = self.answers("place_detail").next()?;
        let name = name.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
        Some(name).filter(|n| !n.is_empty())
    }

    /// Who may read it, by its latest submission that says: latest by its place in the
    /// log, else its hour, as `disclose` takes it.
    pub fn consent(&self) -> Option<&str> {
        fn consent(s: &Case) -> Option<&String> {
            s.fields.iter().find(|f| f.name == crate::form::CONSENT_FIELD).map(|f| &f.value)
        }
        self.submissions
            .iter()
            .filter(|s| consent(s).is_some())
            .max_by(|a, b| (a.log_index, &a.received_at).cmp(&(b.log_index, &b.received_at)))
            .and_then(consent)
            .map(String::as_str)
    }

    /// The day it happened, if the answer to "when" holds a date.
    pub fn happened(&self) -> Option<time::Date> {
        self.answers("when").find_map(filters::date_in)
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
    by_id: HashMap<String, usize>,
    /// The cases each file's plaintext (by SHA-256) is in, for files in two or more.
    shared: HashMap<String, BTreeSet<String>>,
    /// Folders that could not be read, said on the list.
    warnings: Vec<String>,
    search: search::Search,
    trail: Mutex<triage::Trail>,
}

/// Every case `open` wrote in `dir`, newest first, and what could not be read (a
/// folder whose `testimony.json` does not parse: named, never silently left out).
pub fn read_cases(dir: &Path) -> std::io::Result<(Vec<CaseView>, Vec<String>)> {
    let mut by_case: BTreeMap<String, Vec<Case>> = BTreeMap::new();
    let mut warnings = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        // `open`'s half-written folders start with a dot; so do other tools' leftovers.
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path().join("testimony.json");
        let Ok(bytes) = std::fs::read(&path) else { continue };
        match serde_json::from_slice::<Case>(&bytes) {
            Ok(case) if entry.file_name().to_str() == Some(case.submission.as_str()) => {
                by_case.entry(case.case.clone()).or_default().push(case);
            }
            Ok(_) => warnings.push(format!(
                "{}: its folder's name is not its submission's id; left out",
                path.display()
            )),
            Err(e) => warnings.push(format!("{} cannot be read ({e}); left out", path.display())),
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
    Ok((cases, warnings))
}

/// The cases each plaintext SHA-256 appears in, kept only where that is two or more.
fn shared_evidence(cases: &[CaseView]) -> HashMap<String, BTreeSet<String>> {
    let mut by_hash: HashMap<String, BTreeSet<String>> = HashMap::new();
    for case in cases {
        for file in case.files() {
            by_hash.entry(file.sha256.clone()).or_default().insert(case.case.clone());
        }
    }
    by_hash.retain(|_, cases| cases.len() > 1);
    by_hash
}

/// Serves the bench over the cases in `dir` until stopped; `announce` is given the
/// address with its token once it listens.
pub fn serve(
    dir: &Path,
    reviewer: &str,
    lang: Lang,
    announce: impl FnOnce(&str),
) -> Result<(), BenchError> {
    let (cases, warnings) = read_cases(dir).map_err(BenchError::Cases)?;
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
                shared: shared_evidence(&cases),
                warnings,
                cases,
                search,
                trail: Mutex::new(trail),
            });
            announce(&format!("http://{}/{}/", bench.host, bench.token));
            HttpServer::new(move || {
                App::new()
                    .app_data(bench.clone())
                    // A note of 10,000 characters of four bytes each, percent-encoded.
                    .app_data(web::PayloadConfig::new(256 * 1024))
                    .route("/{token}/", web::get().to(pages::list))
                    .route("/{token}/patterns", web::get().to(pages::patterns))
                    .route("/{token}/patterns.csv", web::get().to(pages::patterns_csv))
                    .route("/{token}/case/{case}", web::get().to(pages::case))
                    .route("/{token}/case/{case}/print", web::get().to(pages::printable))
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

    /// The other cases holding a file with this plaintext.
    fn also_in<'a>(&'a self, sha256: &str, case: &'a str) -> Vec<&'a str> {
        let others = self.shared.get(sha256).into_iter().flatten();
        others.map(String::as_str).filter(|c| *c != case).collect()
    }

    fn shares_evidence(&self, case: &CaseView) -> bool {
        case.files().any(|f| self.shared.contains_key(&f.sha256))
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
