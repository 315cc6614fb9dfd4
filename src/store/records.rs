//! What the index keeps besides submission records (`record::SubmissionRecord`):
//! exports, cases and their reply keys, and replies. Plaintext metadata only.

use crate::record::ObjectId;
use serde::{Deserialize, Serialize};

/// When and in which bundle a submission was carried out, and whether its ciphertext
/// has since been purged from the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportMark {
    pub bundle: String,
    /// UTC hour (RFC 3339).
    pub exported_at: String,
    pub purged: bool,
    /// The length of each of its objects this server deleted when it purged them, so
    /// that the replication journal can still name them (`Store::journal_segment`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub purged_lens: Vec<(ObjectId, u64)>,
}

/// The last export, for `amanat status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastExport {
    pub bundle: String,
    pub exported_at: String,
    pub submissions: usize,
}

/// A case, found by the codename tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseRecord {
    pub case: String,
    /// age recipient derived from the codename; replies are encrypted to it. Empty for
    /// a case without a codename (sealed offline).
    pub reply_recipient: String,
    /// Hex salt of the case's v2 reply key (`keys::CodenameKey::reply_identity`). None
    /// for a case made before v2, whose reply key anyone with the index can derive
    /// (issue 15): it gets a v2 key at its survivor's next sign-in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_salt: Option<String>,
}

impl CaseRecord {
    /// A case with a codename whose keys predate v2: its replies are exposed.
    pub fn on_v1_keys(&self) -> bool {
        self.reply_salt.is_none() && !self.reply_recipient.is_empty()
    }
}

/// A case's reply key replaced at its survivor's sign-in (the upgrade from v1 keys):
/// what tells reviewers where to seal later replies, once logged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyKeyChange {
    pub case: String,
    pub recipient: String,
    /// Its custody leaf in the intake log; None until the next export logs it.
    pub log_index: Option<u64>,
    /// Whether a confirmed export carried it: until then, an export is made for it even
    /// with no new submission.
    #[serde(default)]
    pub exported: bool,
}

/// A reply from the coalition, stored as the ciphertext the reviewer made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyRecord {
    pub object: ObjectId,
    /// UTC hour the reply reached the server.
    pub imported_at: String,
    /// Its custody leaf in the intake log.
    pub log_index: u64,
}

/// A `cases` entry.
#[derive(Serialize, Deserialize)]
pub(crate) struct TaggedCase {
    /// Hex HMAC tag of the normalized codename.
    pub tag: String,
    pub record: CaseRecord,
}
