//! Replies from the coalition to a survivor. A reviewer writes one offline, sealed to
//! the case's reply recipient (derived from the survivor's codename) and to the
//! coalition; a reply bundle carries it to the server, which stores only ciphertext;
//! when the survivor comes back with the codename, the server derives the reply
//! identity in memory, decrypts, shows, and forgets.
//!
//! A reply bundle is a tar: `replies.json` (this module's `ReplyIndex`), then
//! `objects/<id>.age`, one per reply.

use super::{is_id_member, object_member, BundleError, Package, PackageWriter};
use crate::envelope::{self, ObjectId};
use crate::keys::Recipients;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::{self, Read, Write};
use std::path::Path;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

pub const REPLY_SCHEMA: &str = "amanat/reply/v1";
pub const REPLIES_SCHEMA: &str = "amanat/replies/v1";
pub const INDEX_NAME: &str = "replies.json";
/// Longest reply text: a letter, not a file.
pub const MAX_REPLY_TEXT_BYTES: usize = 32 * 1024;
/// Longest reply object: the text, its JSON and an age header for a few dozen recipients.
pub const MAX_REPLY_OBJECT_BYTES: u64 = 128 * 1024;
/// Replies in one bundle.
pub const MAX_REPLIES: usize = 1000;

/// What a reply says, as sealed.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
pub struct ReplyMessage {
    pub schema: String,
    /// The case it answers: checked when shown, so a reply cannot be moved to another.
    pub case: String,
    /// UTC hour the reviewer wrote it.
    pub written_at: String,
    pub text: String,
}

/// `replies.json`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyIndex {
    pub schema: String,
    pub replies: Vec<ReplyEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyEntry {
    pub case: String,
    /// The recipient it was sealed to; the server refuses a reply whose recipient is not
    /// the case's.
    pub reply_recipient: String,
    pub object: ObjectId,
}

/// Why a reply was not sealed, opened or accepted.
#[derive(Debug)]
pub enum ReplyError {
    Empty,
    TooLong,
    /// The reply recipient is not an age recipient.
    BadRecipient(String),
    Seal(io::Error),
    /// Stored bytes that do not decrypt with the survivor's key, or are not a reply.
    Unreadable(String),
    /// A reply sealed for another case.
    OtherCase,
    /// A reply bundle that cannot be read, or holds what a reply bundle may not.
    Package(BundleError),
    /// The bundle's index is not a reply bundle's.
    NotReplies(String),
    /// One reply of a bundle refused, and why.
    Refused {
        object: String,
        why: &'static str,
    },
    InvalidCase,
}

impl fmt::Display for ReplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyError::Empty => f.write_str("the reply is empty"),
            ReplyError::TooLong => {
                write!(f, "the reply is longer than {} KiB", MAX_REPLY_TEXT_BYTES / 1024)
            }
            ReplyError::BadRecipient(why) => write!(f, "the reply recipient: {why}"),
            ReplyError::Seal(e) => write!(f, "cannot seal the reply: {e}"),
            ReplyError::Unreadable(why) | ReplyError::NotReplies(why) => f.write_str(why),
            ReplyError::OtherCase => f.write_str("the reply belongs to another case"),
            ReplyError::Package(e) => e.fmt(f),
            ReplyError::Refused { object, why } => write!(f, "reply {object} {why}"),
            ReplyError::InvalidCase => f.write_str("a reply names an invalid case id"),
        }
    }
}

impl std::error::Error for ReplyError {}

/// Seals `text` for the survivor of `case` (and for the coalition, so reviewers can
/// read what was sent). Returns the ciphertext.
pub fn seal_reply(
    case: &str,
    reply_recipient: &str,
    coalition: &Recipients,
    text: &str,
    written_at: &str,
) -> Result<Vec<u8>, ReplyError> {
    if text.trim().is_empty() {
        return Err(ReplyError::Empty);
    }
    if text.len() > MAX_REPLY_TEXT_BYTES {
        return Err(ReplyError::TooLong);
    }
    let recipients =
        coalition.with(reply_recipient).map_err(|e| ReplyError::BadRecipient(e.to_string()))?;
    let message = ReplyMessage {
        schema: REPLY_SCHEMA.into(),
        case: case.into(),
        written_at: written_at.into(),
        text: text.into(),
    };
    let plaintext =
        Zeroizing::new(serde_json::to_vec(&message).map_err(|e| ReplyError::Seal(e.into()))?);
    let (ciphertext, _) =
        envelope::seal_document(&recipients, &plaintext, Vec::new()).map_err(ReplyError::Seal)?;
    Ok(ciphertext)
}

/// Decrypts a stored reply with the survivor's reply identities and checks it answers
/// `case`. The plaintext lives only in the returned value, wiped on drop.
pub fn open_reply(
    ciphertext: impl Read + Send,
    identities: &[age::x25519::Identity],
    case: &str,
) -> Result<ReplyMessage, ReplyError> {
    let mut plain = Zeroizing::new(Vec::new());
    envelope::open_object(ciphertext.take(MAX_REPLY_OBJECT_BYTES), identities, &mut *plain)
        .map_err(|e| ReplyError::Unreadable(e.to_string()))?;
    let message: ReplyMessage = serde_json::from_slice(&plain)
        .map_err(|e| ReplyError::Unreadable(format!("not a reply: {e}")))?;
    if message.schema != REPLY_SCHEMA || message.case != case {
        return Err(ReplyError::OtherCase);
    }
    Ok(message)
}

/// Writes a reply bundle of `(entry, ciphertext)` pairs.
pub fn write_bundle<W: Write>(out: W, replies: &[(ReplyEntry, Vec<u8>)]) -> io::Result<W> {
    let index = ReplyIndex {
        schema: REPLIES_SCHEMA.into(),
        replies: replies.iter().map(|(e, _)| e.clone()).collect(),
    };
    let mut package = PackageWriter::new(out);
    package.json(INDEX_NAME, &index)?;
    for (entry, ciphertext) in replies {
        package.bytes(&object_member(&entry.object), ciphertext)?;
    }
    package.finish()
}

/// Reads a reply bundle and checks what can be checked without a key: the structure,
/// each object's id against its bytes, its size, and its age header.
pub fn read_bundle(path: &Path) -> Result<Vec<(ReplyEntry, Vec<u8>)>, ReplyError> {
    let package = Package::read(path, INDEX_NAME, |name| is_id_member(name, "objects/"))
        .map_err(ReplyError::Package)?;
    let index: ReplyIndex = package.parse_index().map_err(ReplyError::Package)?;
    if index.schema != REPLIES_SCHEMA {
        return Err(ReplyError::NotReplies(format!(
            "not a reply bundle (schema {:?})",
            index.schema
        )));
    }
    if index.replies.is_empty() || index.replies.len() > MAX_REPLIES {
        return Err(ReplyError::NotReplies(format!(
            "a reply bundle holds 1 to {MAX_REPLIES} replies"
        )));
    }
    let mut out = Vec::new();
    for entry in index.replies {
        let name = object_member(&entry.object);
        let refused = |why| ReplyError::Refused { object: entry.object.to_string(), why };
        if package.member_len(&name).is_some_and(|len| len > MAX_REPLY_OBJECT_BYTES) {
            return Err(refused("is larger than a reply can be"));
        }
        let ciphertext = package
            .read_member(&name, MAX_REPLY_OBJECT_BYTES)
            .ok_or_else(|| refused("is missing"))?
            .map_err(|_| refused("cannot be read"))?;
        check_reply_object(&entry, &ciphertext)?;
        out.push((entry, ciphertext));
    }
    Ok(out)
}

/// What the server checks of a reply before storing it: a case id, an age recipient,
/// a size within bounds, bytes matching the id, and a well-formed age header.
pub fn check_reply_object(entry: &ReplyEntry, ciphertext: &[u8]) -> Result<(), ReplyError> {
    let refused = |why| ReplyError::Refused { object: entry.object.to_string(), why };
    if !crate::record::is_submission_id(&entry.case) {
        return Err(ReplyError::InvalidCase);
    }
    if entry.reply_recipient.parse::<age::x25519::Recipient>().is_err() {
        return Err(refused("names a recipient that is not an age recipient"));
    }
    if ciphertext.len() as u64 > MAX_REPLY_OBJECT_BYTES {
        return Err(refused("is larger than a reply can be"));
    }
    if envelope::check_object(ciphertext, &entry.object).is_err() {
        return Err(refused("does not match its id: altered"));
    }
    envelope::check_header(ciphertext).map_err(|_| refused("is not an age file"))
}
