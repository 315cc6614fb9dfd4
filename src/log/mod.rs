//! The append-only intake log: every submission (and every custody event) is a leaf of
//! an RFC 9162 Merkle tree whose signed checkpoints let anyone prove, without trusting
//! the operator or the coalition, that a record was in the log at a given size and that
//! later checkpoints only ever extended it.

pub mod attested;
mod evidence;
pub mod journal;
pub mod merkle;
pub mod timestamp;
mod tracker;

pub use evidence::{
    check_inclusion, check_inclusion_of, BundleLog, EarlierCheckpoint, LoggedReplyKey, Prover,
    ReplyKeyLeaf,
};
pub use tracker::{ReviewState, VerifiedLog};

use crate::keys::{SigningKey, VerifierKey};
use crate::record::{is_hex, Hour, SubmissionRecord};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use merkle::Hash;
use serde::{Deserialize, Serialize};

/// What a leaf records. Its canonical bytes are plain text lines, so a lawyer can
/// rebuild a leaf hash with `printf` and `sha256sum`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogLeaf {
    Submission {
        submission: String,
        /// The case it belongs to: part of what is proven, so an edited bundle cannot
        /// move one survivor's submission into another's disclosure.
        case: String,
        received_at: String,
        manifest: String,
        attachments: Vec<String>,
        recipients: String,
    },
    /// Submissions carried out in a bundle (custody).
    Export { bundle: String, exported_at: String, submissions: Vec<String> },
    /// Ciphertext deleted from the server after export (custody).
    Purge { purged_at: String, submissions: Vec<String> },
    /// A reply from the coalition stored for a case (custody).
    Reply { case: String, object: String, imported_at: String },
    /// A case's reply key replaced (its survivor signed in after the upgrade from v1
    /// keys): reviewers seal later replies to `recipient`. No time: its place in the log
    /// bounds it, and a finer mark would say when a survivor came back.
    ReplyKey { case: String, recipient: String },
}

/// Why a checkpoint, proof or receipt does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogError {
    /// A signed note that is not a checkpoint of this server's, or not signed by it.
    Checkpoint(String),
    /// A proof that is malformed or does not verify.
    Proof(String),
    /// A receipt that proves another leaf, or whose parts disagree.
    Receipt(&'static str),
    /// A server key that is not a signed-note verifier key.
    Key(String),
    /// A leaf the server could never have made.
    BadLeaf(String),
    /// A log that does not extend what was verified before: forked, rewritten, or
    /// signed by another key.
    Forked(String),
    /// The tracker of verified tree heads could not be saved.
    Tracker(String),
}

impl std::fmt::Display for LogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LogError::Checkpoint(why)
            | LogError::Proof(why)
            | LogError::Key(why)
            | LogError::Forked(why)
            | LogError::Tracker(why) => f.write_str(why),
            LogError::Receipt(why) => f.write_str(why),
            LogError::BadLeaf(why) => write!(f, "a log leaf was refused: {why}"),
        }
    }
}

impl std::error::Error for LogError {}

/// Why a leaf was refused before it reached the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafError(pub String);

impl std::fmt::Display for LeafError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a log leaf was refused: {}", self.0)
    }
}

impl std::error::Error for LeafError {}

impl From<&SubmissionRecord> for LogLeaf {
    /// A submission's leaf in the intake log: what a receipt proves.
    fn from(record: &SubmissionRecord) -> LogLeaf {
        LogLeaf::Submission {
            submission: record.id.to_string(),
            case: record.case.to_string(),
            received_at: record.received_at.clone(),
            manifest: record.manifest.to_string(),
            attachments: record.attachments.iter().map(ToString::to_string).collect(),
            recipients: record.recipients.clone(),
        }
    }
}

impl LogLeaf {
    /// Refuses a leaf whose fields are not exactly what the server makes: ids in
    /// lowercase hex of their length, hours in the server's form, an age recipient.
    /// Leaves are plain text lines, so a free-text field (a newline in a sealed file's
    /// recipients fingerprint) could forge lines of its own: every leaf passes here
    /// before it is logged (`store`'s only way to append one).
    pub fn validate(&self) -> Result<(), LeafError> {
        let refuse = |what: &str| Err(LeafError(what.to_string()));
        let submission_ids = |ids: &[String]| ids.iter().all(|id| is_hex(id, 32));
        match self {
            LogLeaf::Submission {
                submission,
                case,
                received_at,
                manifest,
                attachments,
                recipients,
            } => {
                if !is_hex(submission, 32) || !is_hex(case, 32) {
                    return refuse("a submission or case id is not 32 lowercase hex digits");
                }
                if !Hour::is_hour(received_at) {
                    return refuse("the hour of receipt is not a UTC hour");
                }
                if !is_hex(manifest, 64) || !attachments.iter().all(|a| is_hex(a, 64)) {
                    return refuse("an object id is not 64 lowercase hex digits");
                }
                if attachments.len() > MAX_LEAF_IDS {
                    return refuse("too many attachments");
                }
                if !is_hex(recipients, 64) {
                    return refuse("the recipients fingerprint is not 64 lowercase hex digits");
                }
            }
            LogLeaf::Export { bundle, exported_at, submissions } => {
                if !is_hex(bundle, 32)
                    || !Hour::is_hour(exported_at)
                    || !submission_ids(submissions)
                {
                    return refuse("an export leaf with a malformed field");
                }
            }
            LogLeaf::Purge { purged_at, submissions } => {
                if !Hour::is_hour(purged_at) || !submission_ids(submissions) {
                    return refuse("a purge leaf with a malformed field");
                }
            }
            LogLeaf::Reply { case, object, imported_at } => {
                if !is_hex(case, 32) || !is_hex(object, 64) || !Hour::is_hour(imported_at) {
                    return refuse("a reply leaf with a malformed field");
                }
            }
            LogLeaf::ReplyKey { case, recipient } => {
                let age = recipient.len() <= 100
                    && recipient.starts_with("age1")
                    && recipient.parse::<age::x25519::Recipient>().is_ok()
                    && recipient.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
                if !is_hex(case, 32) || !age {
                    return refuse("a reply-key leaf with a malformed field");
                }
            }
        }
        Ok(())
    }

    /// The leaf data: `amanat/leaf/v1`, then `key value` lines; id lists sorted.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let sorted = |ids: &[String]| {
            let mut ids = ids.to_vec();
            ids.sort();
            ids.join(" ")
        };
        let text = match self {
            LogLeaf::Submission {
                submission,
                case,
                received_at,
                manifest,
                attachments,
                recipients,
            } => {
                format!(
                    "amanat/leaf/v1\nkind submission\nsubmission {submission}\ncase {case}\n\
                     received {received_at}\n\
                     manifest {manifest}\nattachments {}\nrecipients {recipients}\n",
                    sorted(attachments)
                )
            }
            LogLeaf::Export { bundle, exported_at, submissions } => format!(
                "amanat/leaf/v1\nkind export\nbundle {bundle}\nexported {exported_at}\nsubmissions {}\n",
                sorted(submissions)
            ),
            LogLeaf::Purge { purged_at, submissions } => format!(
                "amanat/leaf/v1\nkind purge\npurged {purged_at}\nsubmissions {}\n",
                sorted(submissions)
            ),
            LogLeaf::Reply { case, object, imported_at } => format!(
                "amanat/leaf/v1\nkind reply\ncase {case}\nreply {object}\nimported {imported_at}\n"
            ),
            LogLeaf::ReplyKey { case, recipient } => {
                format!("amanat/leaf/v1\nkind reply-key\ncase {case}\nrecipient {recipient}\n")
            }
        };
        text.into_bytes()
    }

    pub fn hash(&self) -> Hash {
        merkle::leaf_hash(&self.canonical_bytes())
    }
}

/// Attachments in one submission leaf: far above any limit the intake allows.
const MAX_LEAF_IDS: usize = 10_000;

/// A tree head: the log's origin, its size and root hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl Checkpoint {
    /// The checkpoint body of the C2SP tlog-checkpoint format.
    pub fn body(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, B64.encode(self.root))
    }

    /// The signed note: body, blank line, one signature line.
    pub fn sign(&self, key: &SigningKey) -> String {
        sign_note(&self.body(), key)
    }

    /// Parses a signed note and checks its signature by `key`.
    pub fn verify(note: &str, key: &VerifierKey) -> Result<Checkpoint, LogError> {
        let bad = |why: &str| LogError::Checkpoint(why.to_string());
        let (body, signatures) = note
            .split_once("\n\n")
            .ok_or_else(|| bad("a checkpoint needs a blank line before its signature"))?;
        let body = format!("{body}\n");
        let mut lines = body.lines();
        let origin = lines.next().ok_or_else(|| bad("checkpoint without origin"))?.to_string();
        let size = lines
            .next()
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|&s| s <= merkle::MAX_TREE_SIZE)
            .ok_or_else(|| bad("checkpoint size is not a plausible number"))?;
        let root: Hash = lines
            .next()
            .and_then(|r| B64.decode(r).ok())
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| bad("checkpoint root is not a base64 SHA-256 hash"))?;
        if origin != key.name {
            return Err(LogError::Checkpoint(format!(
                "checkpoint from {origin:?}, expected {:?}",
                key.name
            )));
        }
        if !signed_by(&body, signatures, key) {
            return Err(bad("the checkpoint's signature does not verify with the server key"));
        }
        Ok(Checkpoint { origin, size, root })
    }
}

/// A C2SP signed note of `body` (text ending in a newline) by `key`: the body, a blank
/// line, one Ed25519 signature line. The server signs two kinds, told apart by their
/// first line: checkpoints (its origin) and journal segments (`journal::HEADER_FIRST_LINE`).
pub fn sign_note(body: &str, key: &SigningKey) -> String {
    let signature = key.sign(body.as_bytes());
    let mut blob = key.verifier().key_id().to_vec();
    blob.extend_from_slice(&signature);
    format!("{body}\n\u{2014} {} {}\n", key.verifier().name, B64.encode(blob))
}

/// Whether one of a note's signature lines is `key`'s valid signature of `body`.
fn signed_by(body: &str, signatures: &str, key: &VerifierKey) -> bool {
    signatures.lines().any(|line| {
        let Some(rest) = line.strip_prefix("\u{2014} ") else { return false };
        let Some((name, sig)) = rest.split_once(' ') else { return false };
        let Ok(blob) = B64.decode(sig) else { return false };
        name == key.name
            && blob.len() == 68
            && blob[..4] == key.key_id()
            && key.verify(body.as_bytes(), &blob[4..])
    })
}

/// The body of a signed note whose signature by `key` holds, or why not.
pub fn verify_note(note: &str, key: &VerifierKey) -> Result<String, LogError> {
    let (body, signatures) = note.split_once("\n\n").ok_or_else(|| {
        LogError::Checkpoint("a signed note needs a blank line before its signature".into())
    })?;
    let body = format!("{body}\n");
    if signed_by(&body, signatures, key) {
        Ok(body)
    } else {
        Err(LogError::Checkpoint(format!("the note's signature does not verify with {}", key.name)))
    }
}

/// What proves one submission was in the log: the leaf, and its inclusion proof in the
/// tree whose signed checkpoint is attached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub schema: String,
    pub submission: String,
    pub leaf_index: u64,
    /// The leaf data itself (the canonical text), so the receipt stands alone.
    pub leaf: String,
    /// Base64 of SHA-256(0x00 || leaf data).
    pub leaf_hash: String,
    /// The server's signed-note verifier key; compare it with the published one.
    pub server_key: String,
    /// The signed note (C2SP checkpoint).
    pub checkpoint: String,
    /// Base64 hashes, leaf to root (RFC 9162 PATH).
    pub inclusion_proof: Vec<String>,
    /// Once outside parties attested a checkpoint holding the leaf: that checkpoint,
    /// the leaf's inclusion in it and their tokens and cosignatures, so what the
    /// survivor keeps shows the time without the server's word.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attested: Option<attested::AttestedReceipt>,
}

pub const RECEIPT_SCHEMA: &str = "amanat/receipt/v1";

impl Receipt {
    pub fn new(
        submission: &str,
        index: u64,
        leaf: &LogLeaf,
        server_key: &VerifierKey,
        checkpoint: String,
        proof: &[Hash],
    ) -> Receipt {
        Receipt {
            schema: RECEIPT_SCHEMA.into(),
            submission: submission.into(),
            leaf_index: index,
            leaf: String::from_utf8_lossy(&leaf.canonical_bytes()).into_owned(),
            leaf_hash: B64.encode(leaf.hash()),
            server_key: server_key.to_string(),
            checkpoint,
            inclusion_proof: proof.iter().map(|h| B64.encode(h)).collect(),
            attested: None,
        }
    }

    /// Checks the receipt against the leaf it should prove and the server key; returns
    /// the verified checkpoint.
    pub fn verify(&self, leaf: &LogLeaf, key: &VerifierKey) -> Result<Checkpoint, LogError> {
        if self.leaf.as_bytes() != leaf.canonical_bytes() {
            return Err(LogError::Receipt("the receipt is for another submission"));
        }
        self.verify_standalone(key)
    }

    /// Checks the receipt by itself: its leaf, its hash, its inclusion under a
    /// checkpoint signed by `key`.
    pub fn verify_standalone(&self, key: &VerifierKey) -> Result<Checkpoint, LogError> {
        let checkpoint = Checkpoint::verify(&self.checkpoint, key)?;
        let data = self.leaf.as_bytes();
        if B64.encode(merkle::leaf_hash(data)) != self.leaf_hash {
            return Err(LogError::Receipt("the receipt's leaf hash does not match its leaf"));
        }
        let expected = format!("amanat/leaf/v1\nkind submission\nsubmission {}\n", self.submission);
        if !self.leaf.starts_with(&expected) {
            return Err(LogError::Receipt("the receipt's leaf names another submission"));
        }
        check_inclusion_of(data, self.leaf_index, &self.inclusion_proof, &checkpoint)?;
        Ok(checkpoint)
    }
}

pub fn decode_hashes(hashes: &[String]) -> Result<Vec<Hash>, LogError> {
    hashes
        .iter()
        .map(|h| {
            B64.decode(h)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| LogError::Proof("a proof hash is not base64 SHA-256".into()))
        })
        .collect()
}

pub fn encode_hashes(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(|h| B64.encode(h)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_checkpoint_verifies_and_any_change_breaks_it() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::load_or_create(&dir.path().join("k"), "amanat/test").unwrap();
        let cp = Checkpoint { origin: "amanat/test".into(), size: 7, root: [9u8; 32] };
        let note = cp.sign(&key);
        assert!(note.starts_with("amanat/test\n7\n"));
        assert_eq!(Checkpoint::verify(&note, &key.verifier()).unwrap(), cp);
        let altered = note.replace("\n7\n", "\n8\n");
        assert!(Checkpoint::verify(&altered, &key.verifier()).is_err());
        let other = SigningKey::load_or_create(&dir.path().join("k2"), "amanat/test").unwrap();
        assert!(Checkpoint::verify(&note, &other.verifier()).is_err());
        // The key survives a restart.
        let again = SigningKey::load_or_create(&dir.path().join("k"), "amanat/test").unwrap();
        assert_eq!(again.verifier().to_string(), key.verifier().to_string());
        for i in 0..64 {
            let k =
                SigningKey::load_or_create(&dir.path().join(format!("k{i}")), "amanat/x").unwrap();
            let text = k.verifier().to_string();
            assert_eq!(text.parse::<crate::keys::VerifierKey>().unwrap(), k.verifier(), "{text}");
        }
    }
}
