//! The journal a server replicates beside its objects: its log, leaf by leaf, in
//! segments. Each segment is two parts:
//!
//! - a **header**, a C2SP signed note by the server's key, in plaintext so that anyone
//!   holding the bucket (the partner, `amanat replica audit`) can check it without a
//!   decryption key: which server, which leaves (`from..to`), the SHA-256 of the body,
//!   and every object those leaves name with its length (the bucket shows those names
//!   and sizes anyway);
//! - a **body**, JSON age-encrypted to the coalition (`envelope`): every leaf's hash,
//!   each submission's record, each reply-key change, and the signed checkpoint at `to`.
//!
//! The leaf hashes rebuild the tree; the checkpoints bind it to the server's key; a
//! record is taken only if it hashes to its leaf. So a replica, with the coalition's
//! keys, is a verifiable copy of the intake, and a storage provider learns only sizes
//! and times.

use super::merkle::Hash;
use super::{sign_note, verify_note, LogError};
use crate::keys::{SigningKey, VerifierKey};
use crate::record::{is_hex, ObjectId, SubmissionRecord};
use serde::{Deserialize, Serialize};

pub const JOURNAL_SCHEMA: &str = "amanat/journal/v1";
/// The header's first line: no checkpoint's origin can be this, so a header is never
/// taken for a checkpoint, nor a checkpoint for a header.
pub const HEADER_FIRST_LINE: &str = "amanat/journal/v1";
/// Leaves in one segment at most: a segment grows until then, rewritten whole as it
/// grows (its name is its first leaf), then the next begins.
pub const SEGMENT_LEAVES: u64 = 1024;
/// Objects one header may name: a full segment's submissions at the intake's limit of
/// files, with room.
const MAX_HEADER_OBJECTS: usize = 1 << 20;

/// A segment's signed header, parsed and checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    pub server: String,
    /// The signing key, `name+keyid+key`: named so that a holder of the bucket can
    /// check every header is by one key (reviewers hold it to what they saw before).
    pub server_key: String,
    pub from: u64,
    pub to: u64,
    /// SHA-256 of the encrypted body, lowercase hex.
    pub body_sha256: String,
    /// Every object the segment's leaves name, sorted, with its length.
    pub objects: Vec<(ObjectId, u64)>,
}

impl SegmentHeader {
    fn body_text(&self) -> String {
        let mut text = format!(
            "{HEADER_FIRST_LINE}\nserver {}\nkey {}\nleaves {} {}\nbody {}\n",
            self.server, self.server_key, self.from, self.to, self.body_sha256
        );
        for (id, len) in &self.objects {
            text.push_str(&format!("object {id} {len}\n"));
        }
        text
    }

    /// The signed note.
    pub fn sign(&self, key: &SigningKey) -> String {
        sign_note(&self.body_text(), key)
    }

    /// Parses a header note and checks its signature by the key it names. Whether that
    /// key is the server's is for the reader to hold it to (`ReviewState`).
    pub fn verify(note: &str) -> Result<SegmentHeader, LogError> {
        let bad = |why: &str| LogError::Checkpoint(format!("a journal header {why}"));
        let read = read_note(note, HEADER_FIRST_LINE, &["server", "key", "leaves", "body"], &bad)?;
        let [server, server_key, leaves, body_sha256] = read.fields;
        let (from, to) = leaves
            .split_once(' ')
            .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
            .filter(|(a, b)| a < b && b - a <= SEGMENT_LEAVES && *b <= super::merkle::MAX_TREE_SIZE)
            .ok_or_else(|| bad("names no plausible range of leaves"))?;
        if !is_hex(&body_sha256, 64) {
            return Err(bad("has a malformed body hash"));
        }
        let key = server_verifier(&server, &server_key, &bad)?;
        let header =
            SegmentHeader { server, server_key, from, to, body_sha256, objects: read.objects };
        if verify_note(note, &key)? != header.body_text() {
            return Err(bad("was signed over other text"));
        }
        Ok(header)
    }
}

/// The first line of a purge notice.
pub const NOTICE_FIRST_LINE: &str = "amanat/purge-notice/v1";

/// Why a server deleted objects from a replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PurgeReason {
    /// Purged on the server after export, and the replica follows (`purge = true`).
    Purged,
    /// Exported longer ago than the replica keeps (`retention_days`).
    Retention,
}

impl PurgeReason {
    fn word(self) -> &'static str {
        match self {
            PurgeReason::Purged => "purged",
            PurgeReason::Retention => "retention",
        }
    }
}

/// A server's signed word, put in a replica before it deletes objects there, that it
/// did so on purpose: `amanat replica audit` and `open` tell these deletions from an
/// attacker's, where the reviewer's own configuration allows deletions in that replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PurgeNotice {
    pub server: String,
    pub server_key: String,
    /// The replica it is for, by its name in `[[replicas]]` (reviewers name it the same
    /// in theirs): a notice copied into another replica excuses nothing there.
    pub replica: String,
    /// The UTC day of the deletion (RFC 3339, midnight): no finer, so a retention
    /// notice does not date an export to the hour.
    pub day: String,
    pub reason: PurgeReason,
    /// The objects deleted, sorted, with their lengths.
    pub objects: Vec<(ObjectId, u64)>,
}

impl PurgeNotice {
    fn body_text(&self) -> String {
        let mut text = format!(
            "{NOTICE_FIRST_LINE}\nserver {}\nkey {}\nreplica {}\nday {}\nreason {}\n",
            self.server,
            self.server_key,
            self.replica,
            self.day,
            self.reason.word()
        );
        for (id, len) in &self.objects {
            text.push_str(&format!("object {id} {len}\n"));
        }
        text
    }

    pub fn sign(&self, key: &SigningKey) -> String {
        sign_note(&self.body_text(), key)
    }

    /// Parses a notice and checks its signature by the key it names (which the reader
    /// holds to the key of the server's journal).
    pub fn verify(note: &str) -> Result<PurgeNotice, LogError> {
        let bad = |why: &str| LogError::Checkpoint(format!("a purge notice {why}"));
        let names = ["server", "key", "replica", "day", "reason"];
        let read = read_note(note, NOTICE_FIRST_LINE, &names, &bad)?;
        let [server, server_key, replica, day, reason] = read.fields;
        let reason = match reason.as_str() {
            "purged" => PurgeReason::Purged,
            "retention" => PurgeReason::Retention,
            _ => return Err(bad("gives no known reason")),
        };
        if !crate::record::Hour::is_hour(&day) || !day.ends_with("T00:00:00Z") {
            return Err(bad("has a malformed day"));
        }
        if !crate::record::is_replica_name(&replica) {
            return Err(bad("names no replica"));
        }
        let key = server_verifier(&server, &server_key, &bad)?;
        let notice =
            PurgeNotice { server, server_key, replica, day, reason, objects: read.objects };
        if verify_note(note, &key)? != notice.body_text() {
            return Err(bad("was signed over other text"));
        }
        Ok(notice)
    }
}

impl PurgeNotice {
    /// `verify`, and that it is by the server and key of the journal it is held to, and
    /// for this replica.
    pub fn verify_for(
        note: &str,
        server: &str,
        server_key: &str,
        replica: &str,
    ) -> Result<PurgeNotice, LogError> {
        let notice = PurgeNotice::verify(note)?;
        if notice.server != server || notice.server_key != server_key {
            return Err(LogError::Checkpoint(
                "a purge notice is signed by another server or key than its journal".into(),
            ));
        }
        if notice.replica != replica {
            return Err(LogError::Checkpoint(format!(
                "a purge notice is for replica {:?}, not this one: it was copied here",
                notice.replica
            )));
        }
        Ok(notice)
    }

    /// Whether a replica with these settings deletes for this notice's reason.
    pub fn allowed_by(&self, purge: bool, retention_days: u64) -> bool {
        match self.reason {
            PurgeReason::Purged => purge,
            PurgeReason::Retention => retention_days > 0,
        }
    }
}

/// A journal note's named fields, in order, and its object lines; signature unchecked.
struct ReadNote<const N: usize> {
    fields: [String; N],
    objects: Vec<(ObjectId, u64)>,
}

fn read_note<const N: usize>(
    note: &str,
    first_line: &str,
    names: &[&str; N],
    bad: &impl Fn(&str) -> LogError,
) -> Result<ReadNote<N>, LogError> {
    let (body, _) = note.split_once("\n\n").ok_or_else(|| bad("has no signature"))?;
    let mut lines = body.lines();
    if lines.next() != Some(first_line) {
        return Err(bad("is of another kind"));
    }
    let mut fields: [String; N] = std::array::from_fn(|_| String::new());
    for (field, name) in fields.iter_mut().zip(names) {
        *field = lines
            .next()
            .and_then(|l| l.strip_prefix(name))
            .and_then(|l| l.strip_prefix(' '))
            .map(str::to_string)
            .ok_or_else(|| bad(&format!("lacks its {name} line")))?;
    }
    let mut objects = Vec::new();
    for line in lines {
        let parsed = line.strip_prefix("object ").and_then(|rest| {
            let (id, len) = rest.split_once(' ')?;
            Some((ObjectId::parse(id)?, len.parse::<u64>().ok()?))
        });
        objects.push(parsed.ok_or_else(|| bad("has a malformed object line"))?);
        if objects.len() > MAX_HEADER_OBJECTS {
            return Err(bad("names too many objects"));
        }
    }
    if !objects.windows(2).all(|w| w[0].0 < w[1].0) {
        return Err(bad("names its objects out of order or twice"));
    }
    Ok(ReadNote { fields, objects })
}

/// The key a note names, if it is a key of the server the note names.
fn server_verifier(
    server: &str,
    server_key: &str,
    bad: &impl Fn(&str) -> LogError,
) -> Result<VerifierKey, LogError> {
    if !is_hex(server, 16 * 2) {
        return Err(bad("has a malformed server id"));
    }
    let key: VerifierKey =
        server_key.parse().map_err(|_| bad("names a key that is not a verifier key"))?;
    if key.name != format!("amanat/{server}") {
        return Err(bad("names a key of another server"));
    }
    Ok(key)
}

/// A segment's body: what only the coalition reads.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalBody {
    pub schema: String,
    pub server: String,
    pub from: u64,
    pub to: u64,
    /// The signed checkpoint of the log at `to` leaves.
    pub checkpoint: String,
    pub leaves: Vec<JournalLeaf>,
}

/// One leaf of the log.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalLeaf {
    /// Base64 of the leaf hash.
    pub hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submission: Option<SubmissionRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_key: Option<ReplyKeyChange>,
}

/// A case's reply key replaced (`LogLeaf::ReplyKey`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyKeyChange {
    pub case: String,
    pub recipient: String,
}

impl JournalLeaf {
    pub fn hash(&self) -> Result<Hash, LogError> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(&self.hash)
            .ok()
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| LogError::Proof("a journal leaf hash is not base64 SHA-256".into()))
    }
}
