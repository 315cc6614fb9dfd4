//! Replies from the coalition to a survivor. A reviewer writes one offline, sealed to
//! the case's reply recipient (derived from the survivor's codename) and to the
//! coalition; a reply bundle carries it to the server, which stores only ciphertext;
//! when the survivor comes back with the codename, the server derives the reply
//! identity in memory, decrypts, shows, and forgets.
//!
//! A reply bundle is a tar: `replies.json` (this module's `ReplyIndex`), then
//! `objects/<id>.age`, one per reply.

use crate::bundle::{self, is_id_member, object_member, Package};
use crate::envelope::{self, ObjectId};
use crate::keys::Recipients;
use serde::{Deserialize, Serialize};
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

/// Seals `text` for the survivor of `case` (and for the coalition, so reviewers can
/// read what was sent). Returns the ciphertext.
pub fn seal_reply(
    case: &str,
    reply_recipient: &str,
    coalition: &Recipients,
    text: &str,
    written_at: &str,
) -> Result<Vec<u8>, String> {
    if text.trim().is_empty() {
        return Err("the reply is empty".into());
    }
    if text.len() > MAX_REPLY_TEXT_BYTES {
        return Err(format!("the reply is longer than {} KiB", MAX_REPLY_TEXT_BYTES / 1024));
    }
    let recipients = coalition.with(reply_recipient)?;
    let message = ReplyMessage {
        schema: REPLY_SCHEMA.into(),
        case: case.into(),
        written_at: written_at.into(),
        text: text.into(),
    };
    let plaintext = Zeroizing::new(serde_json::to_vec(&message).map_err(|e| e.to_string())?);
    let (ciphertext, _) =
        envelope::seal_document(&recipients, &plaintext, Vec::new()).map_err(|e| e.to_string())?;
    Ok(ciphertext)
}

/// Decrypts a stored reply with the survivor's reply identities and checks it answers
/// `case`. The plaintext lives only in the returned value, wiped on drop.
pub fn open_reply(
    ciphertext: impl Read + Send,
    identities: &[age::x25519::Identity],
    case: &str,
) -> Result<ReplyMessage, String> {
    let mut plain = Zeroizing::new(Vec::new());
    envelope::open_object(ciphertext.take(MAX_REPLY_OBJECT_BYTES), identities, &mut *plain)
        .map_err(|e| e.to_string())?;
    let message: ReplyMessage =
        serde_json::from_slice(&plain).map_err(|e| format!("not a reply: {e}"))?;
    if message.schema != REPLY_SCHEMA || message.case != case {
        return Err("the reply belongs to another case".into());
    }
    Ok(message)
}

/// Writes a reply bundle of `(entry, ciphertext)` pairs.
pub fn write_bundle<W: Write>(out: W, replies: &[(ReplyEntry, Vec<u8>)]) -> io::Result<W> {
    let index = ReplyIndex {
        schema: REPLIES_SCHEMA.into(),
        replies: replies.iter().map(|(e, _)| e.clone()).collect(),
    };
    let json = serde_json::to_vec_pretty(&index).map_err(io::Error::other)?;
    let mut tar = tar::Builder::new(out);
    tar.append(&bundle::header(INDEX_NAME, json.len() as u64)?, &json[..])?;
    for (entry, ciphertext) in replies {
        let name = object_member(&entry.object);
        tar.append(&bundle::header(&name, ciphertext.len() as u64)?, &ciphertext[..])?;
    }
    tar.into_inner()
}

/// Reads a reply bundle and checks what can be checked without a key: the structure,
/// each object's id against its bytes, its size, and its age header.
pub fn read_bundle(path: &Path) -> Result<Vec<(ReplyEntry, Vec<u8>)>, String> {
    let package = Package::read(path, INDEX_NAME, |name| is_id_member(name, "objects/"))
        .map_err(|e| e.to_string())?;
    let index: ReplyIndex = serde_json::from_slice(&package.index)
        .map_err(|e| format!("{INDEX_NAME} is not valid: {e}"))?;
    if index.schema != REPLIES_SCHEMA {
        return Err(format!("not a reply bundle (schema {:?})", index.schema));
    }
    if index.replies.is_empty() || index.replies.len() > MAX_REPLIES {
        return Err(format!("a reply bundle holds 1 to {MAX_REPLIES} replies"));
    }
    let mut out = Vec::new();
    for entry in index.replies {
        let name = object_member(&entry.object);
        if package.member_len(&name).is_some_and(|len| len > MAX_REPLY_OBJECT_BYTES) {
            return Err(format!("reply {} is larger than a reply can be", entry.object));
        }
        let ciphertext = package
            .read_member(&name, MAX_REPLY_OBJECT_BYTES)
            .ok_or_else(|| format!("reply {} is missing", entry.object))?
            .map_err(|e| format!("reply {}: {e}", entry.object))?;
        check_reply_object(&entry, &ciphertext)?;
        out.push((entry, ciphertext));
    }
    Ok(out)
}

/// What the server checks of a reply before storing it: a case id, an age recipient,
/// a size within bounds, bytes matching the id, and a well-formed age header.
pub fn check_reply_object(entry: &ReplyEntry, ciphertext: &[u8]) -> Result<(), String> {
    if !crate::review::is_submission_id(&entry.case) {
        return Err("a reply names an invalid case id".into());
    }
    if entry.reply_recipient.parse::<age::x25519::Recipient>().is_err() {
        return Err(format!("reply {}: its recipient is not an age recipient", entry.object));
    }
    if ciphertext.len() as u64 > MAX_REPLY_OBJECT_BYTES {
        return Err(format!("reply {} is larger than a reply can be", entry.object));
    }
    if ObjectId::of(ciphertext) != entry.object {
        return Err(format!("reply {} does not match its id: altered", entry.object));
    }
    envelope::check_header(ciphertext)
        .map_err(|e| format!("reply {} is not an age file: {e}", entry.object))
}
