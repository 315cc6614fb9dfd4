//! The ground floor: the plain names every layer shares. An object's id, a submission's
//! and a case's id, the hour (the one coarsening of time amanat keeps), and the record
//! the server keeps of each submission. Nothing here imports anything of amanat's.

use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Lowercase hex of exactly `len` digits: every id amanat makes, and so always safe as
/// a file name.
pub fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `bytes` random bytes in hex, from the system's secure source.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    SystemRandom::new().fill(&mut buf).expect("the system random source works");
    hex::encode(buf)
}

/// Hex SHA-256 of an object's ciphertext: anyone can check an object against its id
/// without a key.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ObjectId(String);

impl ObjectId {
    /// Accepts exactly 64 lowercase hex digits, so an id is always safe as a file name.
    pub fn parse(s: &str) -> Option<ObjectId> {
        is_hex(s, 64).then(|| ObjectId(s.to_string()))
    }

    /// The id of the given ciphertext bytes.
    pub fn of(ciphertext: &[u8]) -> ObjectId {
        ObjectId::from_sha256(digest::digest(&digest::SHA256, ciphertext).as_ref())
    }

    /// The id for a SHA-256 computed while the ciphertext streamed past.
    pub fn from_sha256(hash: &[u8]) -> ObjectId {
        debug_assert_eq!(hash.len(), 32);
        ObjectId(hex::encode(hash))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A string that is not 64 lowercase hex digits, offered as an object id.
#[derive(Debug)]
pub struct NotAnObjectId;

impl fmt::Display for NotAnObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("object id must be 64 lowercase hex digits")
    }
}

impl std::error::Error for NotAnObjectId {}

impl TryFrom<String> for ObjectId {
    type Error = NotAnObjectId;
    fn try_from(s: String) -> Result<Self, NotAnObjectId> {
        ObjectId::parse(&s).ok_or(NotAnObjectId)
    }
}

impl From<ObjectId> for String {
    fn from(id: ObjectId) -> String {
        id.0
    }
}

/// Submission and case ids are 128 random bits in hex (a case's id is its first
/// submission's); anything else could be a path.
pub fn is_submission_id(id: &str) -> bool {
    is_hex(id, 32)
}

/// A new random submission id.
pub fn new_submission_id() -> String {
    random_hex(16)
}

/// Ids that are strings on the wire and on disk, and their own type in code. Not
/// checked when read: a record naming a malformed id is refused where it is used, with
/// a reason, instead of the whole bundle failing to parse.
macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// 32 lowercase hex digits, as amanat makes them.
            pub fn is_well_formed(&self) -> bool {
                is_submission_id(&self.0)
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<std::path::Path> for $name {
            fn as_ref(&self) -> &std::path::Path {
                std::path::Path::new(&self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<String> for $name {
            fn from(id: String) -> Self {
                $name(id)
            }
        }

        impl From<&str> for $name {
            fn from(id: &str) -> Self {
                $name(id.to_string())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl PartialEq<$name> for str {
            fn eq(&self, other: &$name) -> bool {
                self == other.0
            }
        }
    };
}

string_id!(
    /// A submission's id: 128 random bits in hex (bound to its objects for a sealed
    /// file, `bundle::sealed::submission_id`).
    SubmissionId
);

string_id!(
    /// A case's id: the id of its first submission.
    CaseId
);

impl SubmissionId {
    /// A new random submission id.
    pub fn random() -> SubmissionId {
        SubmissionId(new_submission_id())
    }
}

impl From<SubmissionId> for CaseId {
    /// A first submission names its case.
    fn from(id: SubmissionId) -> CaseId {
        CaseId(id.0)
    }
}

/// A replica's name in `[[replicas]]`: 1-32 lowercase letters, digits or dashes.
pub fn is_replica_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A UTC hour, RFC 3339 (`YYYY-MM-DDTHH:00:00Z`): the finest time amanat records, in
/// records, leaves, logs and file times, so nothing it keeps can be matched against a
/// network's logs to the minute.
pub struct Hour;

impl Hour {
    /// The current hour.
    pub fn now() -> String {
        Hour::of(time::OffsetDateTime::now_utc())
    }

    /// The hour `t` falls in.
    pub fn of(t: time::OffsetDateTime) -> String {
        let t = t.to_offset(time::UtcOffset::UTC);
        let hour = t.replace_time(time::Time::from_hms(t.hour(), 0, 0).expect("valid hour"));
        hour.format(&time::format_description::well_known::Rfc3339)
            .expect("RFC 3339 formats any UTC time")
    }

    /// Whether `s` is an hour as amanat writes it.
    pub fn is_hour(s: &str) -> bool {
        let b = s.as_bytes();
        b.len() == 20
            && s.ends_with(":00:00Z")
            && [4, 7].iter().all(|&i| b[i] == b'-')
            && b[10] == b'T'
            && [0, 1, 2, 3, 5, 6, 8, 9, 11, 12].iter().all(|&i| b[i].is_ascii_digit())
    }

    /// The UTC time `days` ago (RFC 3339, not coarsened): a cutoff to compare hours with.
    pub fn cutoff_days_ago(days: u64) -> String {
        let days = i64::try_from(days).unwrap_or(i64::MAX / 86_400).min(i64::MAX / 86_400);
        let cutoff = time::OffsetDateTime::now_utc()
            .checked_sub(time::Duration::days(days))
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        cutoff.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
    }
}

/// One answer of the form (or a field the API or the field kit gave), as sealed in the
/// manifest; wiped from memory when dropped.
#[derive(
    Clone, Debug, PartialEq, Eq, Serialize, Deserialize, zeroize::Zeroize, zeroize::ZeroizeOnDrop,
)]
pub struct TextField {
    pub name: String,
    pub value: String,
}

/// What the server keeps in plaintext about a submission, and nothing more.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmissionRecord {
    pub id: SubmissionId,
    /// UTC hour of receipt (`Hour`); never finer, so records cannot be matched against
    /// network logs.
    pub received_at: String,
    pub manifest: ObjectId,
    pub attachments: Vec<ObjectId>,
    /// Ciphertext bytes of all its objects.
    pub total_bytes: u64,
    /// Fingerprint of the recipient set the objects were encrypted to.
    pub recipients: String,
    /// The case this submission belongs to (the first submission's id).
    pub case: CaseId,
    /// Its leaf in the intake log.
    #[serde(default)]
    pub log_index: Option<u64>,
}

impl SubmissionRecord {
    /// Its objects: the attachments, then the manifest.
    pub fn object_ids(&self) -> Vec<ObjectId> {
        let mut ids = self.attachments.clone();
        ids.push(self.manifest.clone());
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hour_is_the_hour_and_nothing_finer() {
        let t = time::OffsetDateTime::from_unix_timestamp(1_641_393_432).unwrap();
        assert_eq!(Hour::of(t), "2022-01-05T14:00:00Z");
        assert!(Hour::is_hour(&Hour::now()));
        assert!(!Hour::is_hour("2022-01-05T14:37:00Z"));
        assert!(Hour::cutoff_days_ago(u64::MAX) < Hour::now());
    }
}
