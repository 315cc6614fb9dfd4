//! `amanat review export --cases DIR --format csv --out FILE`: one row per case, in the
//! shape Uwazi (HURIDOCS) imports: property names as headers, `title` first, `|`
//! between the values of a multi-value field, dates as YYYY-MM-DD, and each choice
//! field in Kazakh, Russian and English (`acts__kk`, `acts__ru`, `acts__en`: Uwazi's
//! columns per language, so the survivor's language and the reviewer's are both
//! there and its thesauri get their translations). Free text stays as the survivor
//! wrote it, but for one thing: a value that starts like a spreadsheet formula (`=`,
//! `+`, `-`, `@`, a tab or a carriage return) gets a `'` in front, so that a hostile
//! submission opened in a spreadsheet stays text (OWASP's advice on CSV injection).

use super::triage::Trail;
use super::{read_cases, CaseView};
use crate::i18n::Lang;
use std::io;
use std::path::Path;

const LANGS: [Lang; 3] = [Lang::Kk, Lang::Ru, Lang::En];
/// Between the values of a multi-value field, as Uwazi reads them.
const MANY: &str = "|";

/// What an export wrote.
pub struct Exported {
    pub cases: usize,
    /// Folders left out because they could not be read.
    pub warnings: Vec<String>,
}

/// The header row: Uwazi's property names.
pub fn header() -> Vec<String> {
    let mut header: Vec<String> = [
        "title",
        "case",
        "submissions",
        "language",
        "received_first",
        "received_latest",
        "happened",
        "testimony",
    ]
    .map(String::from)
    .to_vec();
    for field in crate::form::fields() {
        if field.choices().is_empty() {
            header.push(field.name.to_string());
        } else {
            header.extend(LANGS.map(|lang| format!("{}__{}", field.name, lang.code())));
        }
    }
    header.extend(
        ["files", "evidence_sha256", "location_in_files", "triage_status", "tags"]
            .map(String::from),
    );
    header
}

fn row(case: &CaseView, trail: &Trail) -> Vec<String> {
    let day = |at: &str| super::filters::date_in(at).map(|d| d.to_string()).unwrap_or_default();
    let submissions = &case.submissions;
    let mut row = vec![
        format!("Case {}", case.case),
        case.case.clone(),
        submissions.iter().map(|s| s.submission.as_str()).collect::<Vec<_>>().join(MANY),
        submissions[0].language.clone(),
        day(&submissions[0].received_at),
        day(case.latest()),
        case.happened().map(|d| d.to_string()).unwrap_or_default(),
        submissions.iter().map(|s| s.testimony.trim_end()).collect::<Vec<_>>().join("\n\n"),
    ];
    for field in crate::form::fields() {
        let given: Vec<&str> = case.answers(field.name).collect();
        if field.choices().is_empty() {
            row.push(given.iter().map(|v| v.trim_end()).collect::<Vec<_>>().join("\n\n"));
        } else {
            let mut values = given.clone();
            values.sort_unstable();
            values.dedup();
            for lang in LANGS {
                // A value the form does not offer (the API takes any) is kept as it came,
                // without `|`, which would split it into two.
                let labels: Vec<String> = values
                    .iter()
                    .map(|v| {
                        if field.allows(v) {
                            crate::form::choice_label(field.name, v, lang)
                        } else {
                            v.replace(MANY, "/")
                        }
                    })
                    .collect();
                row.push(labels.join(MANY));
            }
        }
    }
    let triage = trail.of(&case.case);
    let hashes: Vec<&str> = case.files().map(|f| f.sha256.as_str()).collect();
    row.extend([
        case.files().count().to_string(),
        hashes.join(MANY),
        if case.has_location() { "yes" } else { "no" }.to_string(),
        triage.status.code().to_string(),
        triage.tags.into_iter().collect::<Vec<_>>().join(MANY),
    ]);
    row
}

/// A value a spreadsheet will not run as a formula.
pub fn spreadsheet_safe(value: &str) -> std::borrow::Cow<'_, str> {
    let formula = ['=', '+', '-', '@'];
    if value.starts_with(['\t', '\r', '\n']) || value.trim_start().starts_with(formula) {
        format!("'{value}").into()
    } else {
        value.into()
    }
}

/// Writes the CSV of every case in `dir` to a new file `out` (whole or not at all,
/// readable by this user only: it holds the testimonies).
pub fn export(dir: &Path, out: &Path) -> io::Result<Exported> {
    let (cases, warnings) = read_cases(dir)?;
    let trail = Trail::read_only(dir)?;
    let mut csv = csv::Writer::from_writer(crate::durable::NewFile::create(out)?);
    csv.write_record(header())?;
    // Oldest first, as a register grows.
    for case in cases.iter().rev() {
        csv.write_record(row(case, &trail).iter().map(|v| spreadsheet_safe(v).into_owned()))?;
    }
    csv.into_inner().map_err(|e| io::Error::other(e.to_string()))?.publish()?;
    Ok(Exported { cases: cases.len(), warnings })
}
