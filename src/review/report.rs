//! What a reviewer reads: `testimony.json` (everything, machine-readable),
//! `testimony.txt` (the testimony in the order the form asked), `report.html` (one page,
//! no scripts, no outside resources: the testimony, the files with sizes and hashes,
//! image thumbnails linking to the local files), and `index.html` over all cases.

use crate::bundle::Opened;
use crate::envelope::{Attachment, Manifest, Origin, TextField};
use crate::i18n::Lang;
use crate::record::SubmissionRecord;
use askama::Template;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::path::Path;

/// `testimony.json`.
#[derive(Serialize, Deserialize)]
pub struct Case {
    pub submission: String,
    /// The hour a server received it; empty for a sealed file opened directly.
    pub received_at: String,
    /// When a field kit sealed it, by the device's clock (its word only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_at: Option<String>,
    pub language: String,
    pub origin: Origin,
    pub case: String,
    /// Where replies to this case are sealed (from the survivor's sealed manifest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_recipient: Option<String>,
    /// 2 when that key is of the v2 derivation, which is never replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_key_version: Option<u32>,
    pub testimony: String,
    pub fields: Vec<TextField>,
    pub files: Vec<CaseFile>,
    /// Where it came from, so the reviewer can trace it back.
    pub bundle: String,
    pub server: String,
    /// The key of the server log it was verified in (none for a sealed file opened
    /// directly): a change of its reply key is taken only from that key's log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_key: Option<String>,
    /// Its leaf in that log: orders a case's submissions (its latest consent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_index: Option<u64>,
}

#[derive(Serialize, Deserialize)]
pub struct CaseFile {
    /// The name the survivor's device gave (possibly hostile: shown, never used as a path).
    pub original_name: String,
    /// Where the file is, relative to the case folder.
    pub saved_as: String,
    pub media_type: String,
    pub size: u64,
    pub sha256: String,
    pub object: String,
    /// What the file says about itself (time taken, device, location...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedded: Option<super::media::Embedded>,
    /// Its copy without location and identifying metadata, or why there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working: Option<super::media::WorkingCopy>,
}

impl CaseFile {
    pub fn new(attachment: &Attachment, saved_as: String) -> CaseFile {
        CaseFile {
            original_name: attachment.name.clone(),
            saved_as,
            media_type: attachment.media_type.clone(),
            size: attachment.size,
            sha256: attachment.sha256.clone(),
            object: attachment.object.clone(),
            embedded: None,
            working: None,
        }
    }

    /// Where the file says it was made, as a person reads it: shown as sensitive.
    fn location(&self) -> Option<String> {
        Some(self.embedded.as_ref()?.location.as_ref()?.text())
    }

    fn is_image(&self) -> bool {
        matches!(
            self.media_type.as_str(),
            "image/jpeg" | "image/png" | "image/gif" | "image/webp" | "image/bmp"
        ) && !self.saved_as.ends_with(".txt")
    }
}

/// Why the case folder `dir` holds another submission than the one at `log_index` of
/// the log signed by `server_key`, under the same id (None: no such folder, or the same
/// submission). A folder that names no log (a sealed file opened directly, or opened
/// before folders recorded it) counts as the same.
pub fn another_submission(
    dir: &Path,
    server_key: Option<&str>,
    log_index: Option<u64>,
) -> Option<String> {
    #[derive(Deserialize)]
    struct Opened {
        server_key: Option<String>,
        log_index: Option<u64>,
    }
    let bytes = fs::read(dir.join("testimony.json")).ok()?;
    let opened: Opened = serde_json::from_slice(&bytes).ok()?;
    let (Some(theirs), Some(ours)) = (opened.server_key.as_deref(), server_key) else {
        return None;
    };
    let entry = |index: Option<u64>| index.map_or("none".to_string(), |i| i.to_string());
    (theirs != ours || opened.log_index != log_index).then(|| {
        format!(
            "another submission of this id is open here already (the log of {theirs}, entry \
             {}); this one is the log of {ours}, entry {}: no genuine server gives one id \
             twice, so compare both before trusting either",
            entry(opened.log_index),
            entry(log_index)
        )
    })
}

impl Case {
    pub fn new(
        bundle: &Opened,
        record: &SubmissionRecord,
        manifest: &Manifest,
        files: Vec<CaseFile>,
    ) -> Case {
        Case {
            submission: record.id.to_string(),
            received_at: record.received_at.clone(),
            declared_at: manifest.declared_at.clone(),
            language: manifest.language.clone(),
            origin: manifest.origin,
            case: record.case.to_string(),
            reply_recipient: manifest.reply_recipient.clone(),
            reply_key_version: manifest.reply_key_version,
            testimony: manifest.testimony.clone(),
            fields: manifest.fields.clone(),
            files,
            bundle: bundle.name(),
            server: bundle.server().into(),
            // `open` reaches this only for a bundle whose log verified with this key.
            server_key: bundle.log().map(|log| log.server_key.clone()),
            log_index: record.log_index,
        }
    }

    /// Writes `testimony.json`, and `testimony.txt` and `report.html` with the form's
    /// headings in the survivor's language and the reviewer's.
    pub fn write(&self, dir: &Path, reviewer: Lang) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        fs::write(dir.join("testimony.json"), json)?;
        let sections = crate::form::answers(&self.fields, &self.language, reviewer);
        fs::write(dir.join("testimony.txt"), self.text(&sections))?;
        let html =
            CaseReport { case: self, sections: &sections }.render().map_err(io::Error::other)?;
        fs::write(dir.join("report.html"), html)
    }

    /// The testimony as a person reads it: what happened first, then the answers in
    /// the order they were given, then the files.
    fn text(&self, sections: &[crate::form::Answered]) -> String {
        let received = if self.received_at.is_empty() {
            "not received by a server (sealed file opened directly)".to_string()
        } else {
            format!("{} (hour, UTC, server's clock)", self.received_at)
        };
        let mut t = format!(
            "Submission {}\nReceived {received}, through {}, language {}\n",
            self.submission,
            origin_name(self.origin),
            self.language
        );
        if let Some(declared) = &self.declared_at {
            t.push_str(&format!("Sealed offline {declared} (declared by the device)\n"));
        }
        t.push('\n');
        t.push_str("WHAT HAPPENED\n\n");
        t.push_str(self.testimony.trim_end());
        t.push_str("\n\n");
        for section in sections {
            t.push_str(&format!("== {} ==\n", section.heading));
            for (question, answer) in &section.answers {
                t.push_str(&format!("{question}\n{answer}\n\n"));
            }
        }
        t.push_str(&format!("FILES ({})\n", self.files.len()));
        for f in &self.files {
            t.push_str(&format!(
                "- {}  ({}, {} bytes, sha256 {})\n  sent as: {:?}\n",
                f.saved_as, f.media_type, f.size, f.sha256, f.original_name
            ));
        }
        t
    }
}

fn origin_name(origin: Origin) -> &'static str {
    match origin {
        Origin::Web => "the web form",
        Origin::Api => "the API",
        Origin::Fieldkit => "a field kit",
    }
}

#[derive(Template)]
#[template(path = "report.html")]
struct CaseReport<'a> {
    case: &'a Case,
    sections: &'a [crate::form::Answered],
}

#[derive(Template)]
#[template(path = "cases.html")]
struct CaseIndex {
    groups: Vec<CaseGroup>,
}

/// One survivor's case: the first submission and what they added later.
struct CaseGroup {
    case: String,
    /// Oldest first.
    submissions: Vec<Case>,
    latest: String,
}

/// Rewrites `index.html` from every submission folder in `out`, grouped by case, the
/// case with the newest submission first.
pub fn write_index(out: &Path) -> io::Result<()> {
    let mut cases = Vec::new();
    for entry in fs::read_dir(out)? {
        let path = entry?.path().join("testimony.json");
        if let Ok(bytes) = fs::read(&path) {
            if let Ok(case) = serde_json::from_slice::<Case>(&bytes) {
                cases.push(case);
            }
        }
    }
    let mut groups: std::collections::BTreeMap<String, Vec<Case>> = Default::default();
    for case in cases {
        groups.entry(case.case.clone()).or_default().push(case);
    }
    let mut groups: Vec<CaseGroup> = groups
        .into_iter()
        .map(|(case, mut submissions)| {
            submissions.sort_by(|a, b| {
                a.received_at.cmp(&b.received_at).then(a.submission.cmp(&b.submission))
            });
            let latest = submissions.last().map(|s| s.received_at.clone()).unwrap_or_default();
            CaseGroup { case, submissions, latest }
        })
        .collect();
    groups.sort_by(|a, b| b.latest.cmp(&a.latest).then(a.case.cmp(&b.case)));
    let html = CaseIndex { groups }.render().map_err(io::Error::other)?;
    fs::write(out.join("index.html"), html)
}
