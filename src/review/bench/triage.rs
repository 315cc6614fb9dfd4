//! Triage: a status, notes and tags per case. Every change is one line appended and
//! fsynced to `triage.jsonl` in the cases folder (who, when, what), and never rewritten:
//! the current state is the trail read in order, so two reviewers' trails merge as
//! the union of their lines, in time order, and neither loses a note.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The trail, in the cases folder.
pub const TRAIL_FILE: &str = "triage.jsonl";
/// The longest note, in characters.
pub const MAX_NOTE_CHARS: usize = 10_000;
/// Tags on one case, and the longest tag.
pub const MAX_TAGS: usize = 20;
pub const MAX_TAG_CHARS: usize = 40;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    #[default]
    New,
    Read,
    FollowUp,
    Referred,
    Closed,
}

impl Status {
    pub const ALL: [Status; 5] =
        [Status::New, Status::Read, Status::FollowUp, Status::Referred, Status::Closed];

    pub fn code(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Read => "read",
            Status::FollowUp => "follow_up",
            Status::Referred => "referred",
            Status::Closed => "closed",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Status::New => "new",
            Status::Read => "read",
            Status::FollowUp => "needs follow-up",
            Status::Referred => "referred to a lawyer",
            Status::Closed => "closed",
        }
    }

    pub fn parse(code: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.code() == code)
    }
}

/// One change, as a line of the trail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// UTC, to the second (RFC 3339).
    pub at: String,
    pub reviewer: String,
    pub case: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The case's whole set of tags after the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<BTreeSet<String>>,
}

/// A case's triage now.
#[derive(Clone, Debug, Default)]
pub struct CaseTriage {
    pub status: Status,
    /// (when, who, the note), oldest first.
    pub notes: Vec<(String, String, String)>,
    pub tags: BTreeSet<String>,
}

/// Why a change was refused; nothing was recorded.
#[derive(Debug)]
pub enum Refused {
    Note,
    Tags,
    Io(io::Error),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Note => write!(f, "a note may be at most {MAX_NOTE_CHARS} characters"),
            Refused::Tags => write!(
                f,
                "at most {MAX_TAGS} tags, each at most {MAX_TAG_CHARS} characters of letters, \
                 digits, '-' or '_'"
            ),
            Refused::Io(e) => write!(f, "the trail could not be written: {e}"),
        }
    }
}

pub struct Trail {
    path: PathBuf,
    changes: Vec<Change>,
    cases: BTreeMap<String, CaseTriage>,
}

impl Trail {
    /// The trail of the cases folder `dir` (none yet: an empty one). A last line cut
    /// short by a crash is left out; any other line that cannot be read is an error,
    /// so that no reviewer's work is dropped unseen.
    pub fn open(dir: &Path) -> io::Result<Trail> {
        let path = dir.join(TRAIL_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        let mut trail = Trail { path, changes: Vec::new(), cases: BTreeMap::new() };
        let complete = text.rfind('\n').map_or("", |end| &text[..=end]);
        if complete.len() < text.len() {
            // Never acknowledged: cut, so the next line starts on a line of its own.
            let file = OpenOptions::new().write(true).open(&trail.path)?;
            file.set_len(complete.len() as u64)?;
            file.sync_all()?;
        }
        for (n, line) in complete.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let change: Change = serde_json::from_str(line).map_err(|e| {
                io::Error::other(format!("{} line {}: {e}", trail.path.display(), n + 1))
            })?;
            trail.apply(change);
        }
        Ok(trail)
    }

    fn apply(&mut self, change: Change) {
        let case = self.cases.entry(change.case.clone()).or_default();
        if let Some(status) = change.status {
            case.status = status;
        }
        if let Some(note) = &change.note {
            case.notes.push((change.at.clone(), change.reviewer.clone(), note.clone()));
        }
        if let Some(tags) = &change.tags {
            case.tags.clone_from(tags);
        }
        self.changes.push(change);
    }

    /// Checks, appends durably, then applies a change.
    pub fn record(&mut self, change: Change) -> Result<(), Refused> {
        if change.note.as_ref().is_some_and(|n| n.chars().count() > MAX_NOTE_CHARS) {
            return Err(Refused::Note);
        }
        let tag_ok = |t: &String| {
            (1..=MAX_TAG_CHARS).contains(&t.chars().count())
                && t.chars().all(|c| c.is_alphanumeric() || c == '-' || c == '_')
        };
        if change.tags.as_ref().is_some_and(|t| t.len() > MAX_TAGS || !t.iter().all(tag_ok)) {
            return Err(Refused::Tags);
        }
        let mut line = serde_json::to_string(&change).map_err(|e| Refused::Io(e.into()))?;
        line.push('\n');
        let mut file =
            OpenOptions::new().create(true).append(true).open(&self.path).map_err(Refused::Io)?;
        file.write_all(line.as_bytes()).and_then(|()| file.sync_all()).map_err(Refused::Io)?;
        self.apply(change);
        Ok(())
    }

    pub fn of(&self, case: &str) -> CaseTriage {
        self.cases.get(case).cloned().unwrap_or_default()
    }

    /// Every change to `case`, oldest first: the audit trail a case page shows.
    pub fn changes_of<'a>(&'a self, case: &'a str) -> impl Iterator<Item = &'a Change> + 'a {
        self.changes.iter().filter(move |c| c.case == case)
    }
}

/// The time now, as the trail writes it.
pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(case: &str, status: Option<Status>, note: Option<&str>) -> Change {
        Change {
            at: now(),
            reviewer: "aigul".into(),
            case: case.into(),
            status,
            note: note.map(Into::into),
            tags: None,
        }
    }

    #[test]
    fn changes_survive_a_reopen_a_torn_last_line_is_left_out_and_bad_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut trail = Trail::open(dir.path()).unwrap();
        trail.record(change("c1", Some(Status::Referred), Some("to Zhanar"))).unwrap();
        trail.record(change("c1", None, Some("second note"))).unwrap();
        let long = "x".repeat(MAX_NOTE_CHARS + 1);
        assert!(matches!(trail.record(change("c1", None, Some(&long))), Err(Refused::Note)));
        let mut tagged = change("c1", None, None);
        tagged.tags = Some(["bad tag".to_string()].into());
        assert!(matches!(trail.record(tagged), Err(Refused::Tags)));
        // A crash in the middle of an append.
        let mut file = OpenOptions::new().append(true).open(dir.path().join(TRAIL_FILE)).unwrap();
        file.write_all(b"{\"at\":\"2026").unwrap();
        let mut again = Trail::open(dir.path()).unwrap();
        again.record(change("c2", Some(Status::Read), None)).unwrap();
        let again = Trail::open(dir.path()).unwrap();
        assert_eq!(again.of("c2").status, Status::Read);
        let c1 = again.of("c1");
        assert_eq!(c1.status, Status::Referred);
        assert_eq!(c1.notes.len(), 2);
        assert_eq!(again.changes_of("c1").count(), 2);
        assert_eq!(again.of("c3").status, Status::New);
    }
}
