//! The index's side of replication: each leaf's journal entry (written by
//! `append_leaf` in the leaf's own transaction) read back in log order, and the entries
//! of stores from before the journal existed filled in once from their records.

use super::{node_key, sled_io, Index, LOG_SIZE};
use crate::log::merkle::Hash;
use crate::log::LogLeaf;
use crate::record::SubmissionRecord;
use std::io;

/// Set in `meta` once every submission logged before the journal has its entry.
const JOURNAL_COMPLETE: &str = "journal_complete";

/// One leaf as replication reads it.
pub(in crate::store) struct RawJournalLeaf {
    pub hash: Hash,
    /// None for a custody leaf logged before the journal: its hash alone is known.
    pub value: Option<JournalValue>,
    pub record: Option<SubmissionRecord>,
}

impl Index {
    /// Leaves `from..to`, in order, with their hashes, journal entries and, for
    /// submissions, their records.
    pub(in crate::store) fn journal(&self, from: u64, to: u64) -> io::Result<Vec<RawJournalLeaf>> {
        let mut out = Vec::with_capacity(to.saturating_sub(from) as usize);
        for index in from..to {
            let hash: Hash = self
                .log
                .get(node_key(0, index))
                .map_err(sled_io)?
                .and_then(|n| n.as_ref().try_into().ok())
                .ok_or_else(|| io::Error::other("the log is missing a leaf"))?;
            let value: Option<JournalValue> =
                match self.log.get(journal_key(index)).map_err(sled_io)? {
                    Some(bytes) => Some(serde_json::from_slice(&bytes).map_err(io::Error::other)?),
                    None => None,
                };
            let record = match &value {
                Some(JournalValue::Submission(id)) => {
                    Some(self.submission(id)?.ok_or_else(|| {
                        io::Error::other(format!("leaf {index} names a submission with no record"))
                    })?)
                }
                _ => None,
            };
            out.push(RawJournalLeaf { hash, value, record });
        }
        Ok(out)
    }

    /// Every submission's record, purged or not, in id order.
    pub(in crate::store) fn all_submissions(&self) -> io::Result<Vec<SubmissionRecord>> {
        let mut out = Vec::new();
        for item in &self.submissions {
            let (_, bytes) = item.map_err(sled_io)?;
            out.push(serde_json::from_slice(&bytes).map_err(io::Error::other)?);
        }
        Ok(out)
    }

    /// Several `meta` values (replicas' deletions), made durable once.
    pub(in crate::store) fn meta_put_all<T: serde::Serialize>(
        &self,
        entries: &[(String, T)],
    ) -> io::Result<()> {
        for (key, value) in entries {
            let json = serde_json::to_vec(value).map_err(io::Error::other)?;
            self.meta.insert(key.as_str(), json).map_err(sled_io)?;
        }
        self.make_durable()
    }

    /// Gives every submission logged before the journal existed its entry, once (a
    /// store made since has them all from the start).
    pub(in crate::store) fn complete_journal(&self) -> io::Result<()> {
        if self.meta.get(JOURNAL_COMPLETE).map_err(sled_io)?.is_some() {
            return Ok(());
        }
        let size = super::log_size(self.log.get(LOG_SIZE).map_err(sled_io)?.as_ref());
        if size > 0 {
            for item in &self.submissions {
                let (_, bytes) = item.map_err(sled_io)?;
                let record: SubmissionRecord =
                    serde_json::from_slice(&bytes).map_err(io::Error::other)?;
                let Some(index) = record.log_index else { continue };
                let key = journal_key(index);
                if self.log.get(key).map_err(sled_io)?.is_none() {
                    let value = JournalValue::Submission(record.id.to_string());
                    let bytes = serde_json::to_vec(&value).map_err(io::Error::other)?;
                    self.log.insert(&key[..], bytes).map_err(sled_io)?;
                }
            }
        }
        self.meta.insert(JOURNAL_COMPLETE, &b"1"[..]).map_err(sled_io)?;
        self.make_durable()
    }
}

/// What the index keeps of each leaf for replication, beside its hash (the log's
/// level-0 node), under `j` + its index in the log tree (written in the leaf's own
/// transaction). Kept small: a submission by its id (its record is in `submissions`),
/// a reply-key change whole (a reviewer needs it), any other custody leaf by its hash
/// alone (an export's leaf names every submission it carried: too big for sled).
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub(in crate::store) enum JournalValue {
    Submission(String),
    ReplyKey { case: String, recipient: String },
    Custody,
}

impl JournalValue {
    pub(super) fn of(leaf: &LogLeaf) -> JournalValue {
        match leaf {
            LogLeaf::Submission { submission, .. } => JournalValue::Submission(submission.clone()),
            LogLeaf::ReplyKey { case, recipient } => {
                JournalValue::ReplyKey { case: case.clone(), recipient: recipient.clone() }
            }
            _ => JournalValue::Custody,
        }
    }
}

/// `j` + big-endian index: a leaf's journal entry.
pub(super) fn journal_key(index: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = b'j';
    key[1..].copy_from_slice(&index.to_be_bytes());
    key
}
