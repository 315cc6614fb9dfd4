//! The manifest: what a submission says and holds, sealed as its own object
//! (schema `amanat/manifest/v1`). It is the only place file names, media types and
//! plaintext hashes exist, and it is only ever plaintext in memory.

pub use crate::record::TextField;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

pub const MANIFEST_SCHEMA: &str = "amanat/manifest/v1";

/// Where a submission came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// The HTML form.
    Web,
    /// The JSON API.
    Api,
    /// Sealed offline with the field kit.
    Fieldkit,
}

#[derive(Clone, Debug, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct Manifest {
    pub schema: String,
    pub submission: String,
    /// The case it belongs to: its own id for a first submission, the first
    /// submission's id for what a survivor adds later.
    pub case: String,
    /// The age recipient replies to this case are encrypted to (derived from the
    /// codename; the server keeps only this public half). Sealed here so a reviewer
    /// gets it from the survivor's own sealed submission, not from editable metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_recipient: Option<String>,
    /// 2 when that recipient comes from the v2 derivation (`keys::CodenameKey`), which
    /// is never replaced; absent before v2. A reviewer accepts a logged change of reply
    /// key only for a case without it (the one upgrade from v1 keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_key_version: Option<u32>,
    /// Hour the server received it (UTC, RFC 3339); empty when sealed offline.
    pub received_at: String,
    /// For a field-kit submission: when it was sealed, by the device's clock (to the
    /// minute). The device's word, not the server's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_at: Option<String>,
    pub language: String,
    #[zeroize(skip)]
    pub origin: Origin,
    /// What happened, in the survivor's words.
    pub testimony: String,
    /// The other answers, in the order they were given.
    pub fields: Vec<TextField>,
    pub attachments: Vec<Attachment>,
}

impl Manifest {
    /// The JSON to seal, in a buffer sized exactly once and wiped on drop (serializing
    /// into a growing Vec would leave unwiped copies behind).
    pub fn to_plaintext(&self) -> std::io::Result<Zeroizing<Vec<u8>>> {
        struct Count(usize);
        impl std::io::Write for Count {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0 += buf.len();
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut count = Count(0);
        serde_json::to_writer(&mut count, self).map_err(std::io::Error::other)?;
        let mut out = Zeroizing::new(Vec::with_capacity(count.0));
        serde_json::to_writer(&mut *out, self).map_err(std::io::Error::other)?;
        Ok(out)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct Attachment {
    /// Object id of the encrypted file.
    pub object: String,
    /// The file name as the survivor's device gave it (unsanitized; sanitized on review).
    pub name: String,
    /// Media type as the device declared it.
    pub media_type: String,
    /// Plaintext size in bytes.
    pub size: u64,
    /// Hex SHA-256 of the plaintext, checked on review.
    pub sha256: String,
}
