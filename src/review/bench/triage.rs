//! Triage: a status, notes and tags per case. Every change is one line appended and
//! fsynced to `triage.jsonl` in the cases folder (who, when, what), and never rewritten.
//! A case's state is its changes folded in time order, and a change says what the
//! reviewer did (set this status, added and removed these tags), not the whole state
//! they saw: so two benches on one folder, or two reviewers' trails merged as the
//! union of their lines, lose neither side's work. Writers hold an exclusive `flock`
//! on the trail while they append, so a reader never takes another's line in progress
//! for a torn one. A line from elsewhere (a merge, a hand edit) is used only if it
//! passes the checks a change recorded here passes; its time may not lie more than a
//! day ahead, and a new change is stamped no earlier than its case's latest, so a
//! laptop whose clock ran fast cannot make later work count for nothing.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The trail, in the cases folder.
pub const TRAIL_FILE: &str = "triage.jsonl";
/// Where a last line cut short by a crash is kept, out of the trail's way.
pub const TORN_FILE: &str = "triage.jsonl.torn";
/// The longest note, in characters.
pub const MAX_NOTE_CHARS: usize = 10_000;
/// Tags on one case, and the longest tag.
pub const MAX_TAGS: usize = 20;
pub const MAX_TAG_CHARS: usize = 40;
/// The longest reviewer's name, in bytes.
pub const MAX_REVIEWER_BYTES: usize = 64;
/// The largest trail read (about a hundred thousand long notes).
const MAX_TRAIL_BYTES: u64 = 1 << 30;

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
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
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Change {
    /// Random, so that the same change made twice is two lines, and a line merged twice
    /// is one.
    pub id: String,
    /// UTC, to the second (RFC 3339, `YYYY-MM-DDTHH:MM:SSZ`).
    pub at: String,
    pub reviewer: String,
    pub case: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub tags_added: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub tags_removed: BTreeSet<String>,
}

impl Change {
    /// A change by `reviewer` to `case` now, with nothing in it yet.
    pub fn new(reviewer: &str, case: &str) -> Change {
        let mut id = [0u8; 16];
        // Without randomness the id is empty, and the check refuses the change.
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut id);
        Change {
            id: if id == [0; 16] { String::new() } else { hex::encode(id) },
            at: now(),
            reviewer: reviewer.to_string(),
            case: case.to_string(),
            status: None,
            note: None,
            tags_added: BTreeSet::new(),
            tags_removed: BTreeSet::new(),
        }
    }

    /// Why this change may not stand in a trail, if it may not.
    fn check(&self) -> Result<(), Refused> {
        let note_ok = self.note.as_ref().is_none_or(|n| n.chars().count() <= MAX_NOTE_CHARS);
        let tags = self.tags_added.iter().chain(&self.tags_removed);
        let tags_ok = self.tags_added.len() <= MAX_TAGS && tags.clone().all(|t| tag_ok(t));
        let at_ok = is_trail_time(&self.at) && self.at <= later(&now(), 24 * 3600);
        let who_ok = !self.reviewer.trim().is_empty() && self.reviewer.len() <= MAX_REVIEWER_BYTES;
        let id_ok = self.id.len() == 32 && self.id.bytes().all(|b| b.is_ascii_hexdigit());
        match () {
            () if !note_ok => Err(Refused::Note),
            () if !tags_ok => Err(Refused::Tags),
            () if !at_ok || !who_ok || !id_ok || !crate::record::is_submission_id(&self.case) => {
                Err(Refused::Line)
            }
            () => Ok(()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.status.is_none()
            && self.note.is_none()
            && self.tags_added.is_empty()
            && self.tags_removed.is_empty()
    }
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
    /// A line whose id, time, reviewer or case is not one a bench writes.
    Line,
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
            Refused::Line => write!(
                f,
                "not a change a bench writes (its id, its time, more than a day ahead, its \
                 reviewer's name or its case)"
            ),
            Refused::Io(e) => write!(f, "the trail could not be written: {e}"),
        }
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`, the only form of time a trail holds (so that times compare
/// as text).
fn is_trail_time(at: &str) -> bool {
    let shape = b"dddd-dd-ddTdd:dd:ddZ";
    at.len() == shape.len()
        && at.bytes().zip(shape).all(|(b, &s)| if s == b'd' { b.is_ascii_digit() } else { b == s })
}

/// `at` plus `seconds`, as the trail writes times.
fn later(at: &str, seconds: i64) -> String {
    let format = time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::parse(at, &format)
        .ok()
        .and_then(|t| t.checked_add(time::Duration::seconds(seconds)))
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| at.to_string())
}

/// A tag the bench accepts.
pub fn tag_ok(tag: &str) -> bool {
    (1..=MAX_TAG_CHARS).contains(&tag.chars().count())
        && tag.chars().all(|c| c.is_alphanumeric() || c == '-' || c == '_')
}

pub struct Trail {
    path: PathBuf,
    /// How far the file has been read: everything before is in `changes`.
    read_to: u64,
    /// Every change read or recorded, once each, in file order.
    changes: Vec<Change>,
    seen: HashSet<Change>,
    by_case: HashMap<String, Vec<usize>>,
    /// Lines that could not be read (`line n: why`): kept in the file, shown, not used.
    pub unreadable: Vec<String>,
    lines_read: usize,
}

impl Trail {
    /// The trail of the cases folder `dir` (none yet: an empty one). A last line cut
    /// short by a crash (never acknowledged) is moved to `triage.jsonl.torn`; any
    /// other line that cannot be read stays in the file and is listed in `unreadable`,
    /// so that no reviewer's work is dropped unseen.
    pub fn open(dir: &Path) -> io::Result<Trail> {
        let mut trail = Trail::unread(dir);
        if !trail.path.exists() {
            return Ok(trail);
        }
        let lock = trail.lock()?;
        let torn = trail.refresh()?;
        if !torn.is_empty() {
            let mut aside = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(dir.join(TORN_FILE))?;
            aside.write_all(&torn)?;
            aside.write_all(b"\n")?;
            aside.sync_all()?;
            // Under the lock no one is writing: an unended line is a crash's.
            lock.set_len(trail.read_to)?;
            lock.sync_all()?;
        }
        Ok(trail)
    }

    /// The trail, created if need be (its folder fsynced), held under an exclusive
    /// lock until the file is dropped.
    fn lock(&self) -> io::Result<File> {
        let created = !self.path.exists();
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&self.path)?;
        if created {
            if let Some(dir) = self.path.parent() {
                crate::durable::sync_dir(dir)?;
            }
        }
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)?;
        Ok(file)
    }

    /// Reads what was appended since the last read (another bench on the same folder,
    /// a merge); gives back a last line without its newline that does not parse.
    pub fn refresh(&mut self) -> io::Result<Vec<u8>> {
        let opened = OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&self.path);
        let mut file = match opened {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        if !meta.is_file() || meta.len() > MAX_TRAIL_BYTES {
            return Err(io::Error::other(format!(
                "{} is not a trail (not a plain file, or over 1 GiB)",
                self.path.display()
            )));
        }
        if meta.len() < self.read_to {
            return Err(io::Error::other(format!(
                "{} was cut shorter while the bench ran; restart the bench",
                self.path.display()
            )));
        }
        file.seek(SeekFrom::Start(self.read_to))?;
        let mut new = Vec::new();
        file.read_to_end(&mut new)?;
        let mut rest = new.as_slice();
        while !rest.is_empty() {
            let (line, after, whole) = match rest.iter().position(|&b| b == b'\n') {
                Some(end) => (&rest[..end], &rest[end + 1..], true),
                None => (rest, &[][..], false),
            };
            let parsed = serde_json::from_slice::<Change>(line);
            if !whole && parsed.is_err() {
                // Torn, or another bench still writing it: not read yet.
                return Ok(line.to_vec());
            }
            self.read_to += (line.len() + usize::from(whole)) as u64;
            self.lines_read += 1;
            match parsed.map_err(|e| e.to_string()).and_then(|c| match c.check() {
                Ok(()) => Ok(c),
                Err(why) => Err(why.to_string()),
            }) {
                Ok(change) => self.apply(change),
                Err(_) if line.iter().all(u8::is_ascii_whitespace) => {}
                Err(e) => self.unreadable.push(format!("line {}: {e}", self.lines_read)),
            }
            rest = after;
        }
        Ok(Vec::new())
    }

    fn apply(&mut self, change: Change) {
        if self.seen.insert(change.clone()) {
            self.by_case.entry(change.case.clone()).or_default().push(self.changes.len());
            self.changes.push(change);
        }
    }

    /// Checks, appends durably, then applies a change (after reading anything another
    /// bench appended).
    pub fn record(&mut self, mut change: Change) -> Result<(), Refused> {
        change.check()?;
        let file = self.lock().map_err(Refused::Io)?;
        self.refresh().map_err(Refused::Io)?;
        // Never before the case's latest change: it is the latest now.
        if let Some(latest) = self.in_time_order(&change.case).last() {
            if latest.at > change.at {
                change.at.clone_from(&latest.at);
            }
        }
        self.append(file, std::slice::from_ref(&change)).map_err(Refused::Io)?;
        self.apply(change);
        Ok(())
    }

    /// Appends lines in one write and fsyncs; on a failed write the file is cut back,
    /// so a half-written line never jams the lines after it.
    /// `file` is the trail, locked, read to its end.
    fn append(&mut self, mut file: File, changes: &[Change]) -> io::Result<()> {
        let mut text = Vec::new();
        for change in changes {
            serde_json::to_writer(&mut text, change)?;
            text.push(b'\n');
        }
        let before = file.metadata()?.len();
        if before > 0 {
            let mut last = [0u8];
            file.seek(SeekFrom::Start(before - 1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                // A line someone else left without its end: it stays a line of its own.
                text.insert(0, b'\n');
            }
        }
        let written = file.write_all(&text).and_then(|()| file.sync_all());
        if let Err(e) = written {
            // Under the lock, nothing after `before` is anyone else's.
            let _ = file.set_len(before).and_then(|()| file.sync_all());
            return Err(e);
        }
        // Our own lines are in `changes` once applied; skip them on the next read.
        if self.read_to == before {
            self.read_to = before + text.len() as u64;
            self.lines_read += changes.len();
        }
        Ok(())
    }

    /// Adds every change of the trail in `other` (another reviewer's cases folder)
    /// that this one lacks; gives how many were added.
    pub fn merge_from(&mut self, other: &Path) -> io::Result<usize> {
        let theirs = Trail::read_only(other)?;
        if let Some(line) = theirs.unreadable.first() {
            return Err(io::Error::other(format!(
                "{} {line}: mend or remove that line, then merge again",
                theirs.path.display()
            )));
        }
        let file = self.lock()?;
        self.refresh()?;
        let missing: Vec<Change> =
            theirs.changes.into_iter().filter(|c| !self.seen.contains(c)).collect();
        if !missing.is_empty() {
            self.append(file, &missing)?;
            for change in &missing {
                self.apply(change.clone());
            }
        }
        Ok(missing.len())
    }

    /// The trail of `dir` as it is, changing nothing (an export, the other side of a
    /// merge).
    pub fn read_only(dir: &Path) -> io::Result<Trail> {
        let mut trail = Trail::unread(dir);
        trail.refresh()?;
        Ok(trail)
    }

    /// The trail of `dir`, nothing read yet.
    fn unread(dir: &Path) -> Trail {
        Trail {
            path: dir.join(TRAIL_FILE),
            read_to: 0,
            changes: Vec::new(),
            seen: HashSet::new(),
            by_case: HashMap::new(),
            unreadable: Vec::new(),
            lines_read: 0,
        }
    }

    /// A case's changes, in time order (ties: as written).
    fn in_time_order(&self, case: &str) -> Vec<&Change> {
        let mut changes: Vec<(usize, &Change)> =
            self.by_case.get(case).into_iter().flatten().map(|&n| (n, &self.changes[n])).collect();
        changes.sort_by(|(n, a), (m, b)| a.at.cmp(&b.at).then(n.cmp(m)));
        changes.into_iter().map(|(_, c)| c).collect()
    }

    pub fn of(&self, case: &str) -> CaseTriage {
        let mut triage = CaseTriage::default();
        for change in self.in_time_order(case) {
            if let Some(status) = change.status {
                triage.status = status;
            }
            if let Some(note) = &change.note {
                triage.notes.push((change.at.clone(), change.reviewer.clone(), note.clone()));
            }
            triage.tags.retain(|t| !change.tags_removed.contains(t));
            triage.tags.extend(change.tags_added.iter().cloned());
        }
        triage
    }

    /// Every change to `case`, oldest first: the audit trail a case page shows.
    pub fn changes_of(&self, case: &str) -> Vec<&Change> {
        self.in_time_order(case)
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
    use std::fs;

    /// A case id (32 hex characters) from a short name.
    fn id(case: &str) -> String {
        format!("{:0>32}", hex::encode(case))
    }

    fn change(case: &str, status: Option<Status>, note: Option<&str>) -> Change {
        Change { status, note: note.map(Into::into), ..Change::new("aigul", &id(case)) }
    }

    fn append_raw(dir: &Path, bytes: &[u8]) {
        let mut file = OpenOptions::new().append(true).open(dir.join(TRAIL_FILE)).unwrap();
        file.write_all(bytes).unwrap();
    }

    #[test]
    fn changes_survive_a_reopen_a_torn_last_line_is_set_aside_and_bad_ones_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut trail = Trail::open(dir.path()).unwrap();
        trail.record(change("c1", Some(Status::Referred), Some("to Zhanar"))).unwrap();
        trail.record(change("c1", None, Some("second note"))).unwrap();
        let long = "x".repeat(MAX_NOTE_CHARS + 1);
        assert!(matches!(trail.record(change("c1", None, Some(&long))), Err(Refused::Note)));
        let mut tagged = change("c1", None, None);
        tagged.tags_added = ["bad tag".to_string()].into();
        assert!(matches!(trail.record(tagged), Err(Refused::Tags)));
        // A crash in the middle of an append.
        append_raw(dir.path(), b"{\"at\":\"2026");
        let mut again = Trail::open(dir.path()).unwrap();
        assert_eq!(fs::read_to_string(dir.path().join(TORN_FILE)).unwrap(), "{\"at\":\"2026\n");
        again.record(change("c2", Some(Status::Read), None)).unwrap();
        let again = Trail::open(dir.path()).unwrap();
        assert!(again.unreadable.is_empty(), "{:?}", again.unreadable);
        assert_eq!(again.of(&id("c2")).status, Status::Read);
        let c1 = again.of(&id("c1"));
        assert_eq!(c1.status, Status::Referred);
        assert_eq!(c1.notes.len(), 2);
        assert_eq!(again.changes_of(&id("c1")).len(), 2);
        assert_eq!(again.of(&id("c3")).status, Status::New);
        let mode = fs::metadata(dir.path().join(TRAIL_FILE)).unwrap();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777, 0o600);
    }

    #[test]
    fn a_whole_last_line_without_its_newline_is_kept_and_a_bad_line_is_shown_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let mut trail = Trail::open(dir.path()).unwrap();
        trail.record(change("c1", Some(Status::Read), None)).unwrap();
        let mut line = serde_json::to_string(&change("c1", None, Some("no newline"))).unwrap();
        append_raw(dir.path(), b"not json\n");
        append_raw(dir.path(), line.as_bytes());
        let mut again = Trail::open(dir.path()).unwrap();
        assert_eq!(again.of(&id("c1")).notes.len(), 1, "a complete line is not torn");
        assert_eq!(again.unreadable.len(), 1);
        assert!(again.unreadable[0].starts_with("line 2:"), "{:?}", again.unreadable);
        again.record(change("c1", Some(Status::Closed), None)).unwrap();
        let again = Trail::open(dir.path()).unwrap();
        assert_eq!(again.of(&id("c1")).status, Status::Closed);
        assert_eq!(again.of(&id("c1")).notes.len(), 1);
        line.push('\n');
        assert!(fs::read_to_string(dir.path().join(TRAIL_FILE)).unwrap().contains(&line));
    }

    #[test]
    fn two_benches_on_one_folder_and_a_merged_trail_keep_both_sides_in_time_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = Trail::open(dir.path()).unwrap();
        let mut second = Trail::open(dir.path()).unwrap();
        let at = |change: Change, at: &str| Change { at: at.into(), ..change };
        let mut tags = change("c1", None, None);
        tags.tags_added = ["akimat".to_string()].into();
        first.record(at(tags, "2026-12-01T10:00:00Z")).unwrap();
        // The second bench has not seen the tag; it adds another and sets a status.
        let mut more = change("c1", Some(Status::FollowUp), None);
        more.tags_added = ["shocks".to_string()].into();
        second.record(at(more, "2026-12-01T11:00:00Z")).unwrap();
        // An older change, read later, does not win over a newer one.
        let other = tempfile::tempdir().unwrap();
        let mut theirs = Trail::open(other.path()).unwrap();
        theirs
            .record(at(change("c1", Some(Status::Read), Some("theirs")), "2026-12-01T09:00:00Z"))
            .unwrap();
        assert_eq!(first.merge_from(other.path()).unwrap(), 1);
        assert_eq!(first.merge_from(other.path()).unwrap(), 0, "a merge twice adds nothing");
        let merged = Trail::open(dir.path()).unwrap();
        let c1 = merged.of(&id("c1"));
        assert_eq!(c1.status, Status::FollowUp);
        assert_eq!(c1.tags, ["akimat".to_string(), "shocks".to_string()].into());
        assert_eq!(c1.notes[0].2, "theirs");
        let order: Vec<&str> = merged.changes_of(&id("c1")).iter().map(|c| c.at.as_str()).collect();
        assert_eq!(order, ["2026-12-01T09:00:00Z", "2026-12-01T10:00:00Z", "2026-12-01T11:00:00Z"]);
    }

    #[test]
    fn a_line_from_the_future_or_unlike_ours_is_not_used_and_new_work_still_counts() {
        let dir = tempfile::tempdir().unwrap();
        let mut trail = Trail::open(dir.path()).unwrap();
        trail.record(change("c1", Some(Status::Read), None)).unwrap();
        let planted = |at: &str, tag: &str| {
            let mut line = change("c1", Some(Status::Closed), None);
            line.at = at.into();
            line.tags_added = [tag.to_string()].into();
            let mut text = serde_json::to_string(&line).unwrap();
            text.push('\n');
            append_raw(dir.path(), text.as_bytes());
        };
        planted("9999-12-31T23:59:59Z", "late");
        planted(&now(), "Not A Tag");
        // A laptop whose clock runs an hour fast: its line is used, and a change made
        // here afterwards is stamped no earlier, so it counts.
        planted(&later(&now(), 3600), "fast");
        let mut again = Trail::open(dir.path()).unwrap();
        assert_eq!(again.unreadable.len(), 2, "{:?}", again.unreadable);
        assert_eq!(again.of(&id("c1")).status, Status::Closed);
        again.record(change("c1", Some(Status::FollowUp), None)).unwrap();
        let again = Trail::open(dir.path()).unwrap();
        let c1 = again.of(&id("c1"));
        assert_eq!(c1.status, Status::FollowUp);
        assert_eq!(c1.tags, ["fast".to_string()].into());
        // The same change made twice in one second is two changes.
        let mut trail = Trail::open(dir.path()).unwrap();
        for status in [Status::Read, Status::Closed, Status::Read] {
            trail.record(change("c2", Some(status), None)).unwrap();
        }
        assert_eq!(Trail::open(dir.path()).unwrap().of(&id("c2")).status, Status::Read);
    }
}
