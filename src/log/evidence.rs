//! What the log proves, made in one place and checked in one place. The server's
//! `Prover` signs tree heads and makes receipts and a bundle's evidence, and returns the
//! checkpoint it signed with them, so nobody parses back a note it just wrote. A
//! reviewer checks a leaf's inclusion with `check_inclusion`, whatever carried it (a
//! bundle's record, a reply-key change, a disclosure package, a receipt).

use super::merkle::{self, Hash, NodeSource};
use super::{decode_hashes, encode_hashes, Checkpoint, LogError, LogLeaf, Receipt};
use crate::keys::SigningKey;
use crate::record::SubmissionRecord;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;

/// The log evidence a bundle carries: the server key, a signed checkpoint, proofs that
/// it extends every earlier export's checkpoint, and each record's inclusion proof.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleLog {
    /// Signed-note verifier key (`name+keyid+key`).
    pub server_key: String,
    /// Signed note (C2SP checkpoint) at the time of export.
    pub checkpoint: String,
    pub earlier: Vec<EarlierCheckpoint>,
    /// Submission id -> base64 inclusion proof against `checkpoint`.
    pub inclusion: BTreeMap<String, Vec<String>>,
    /// Every case's latest reply key change, with its inclusion proof against
    /// `checkpoint`: where reviewers seal replies from now on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reply_keys: Vec<LoggedReplyKey>,
}

/// A logged change of a case's reply key (`LogLeaf::ReplyKey`) and its proof.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggedReplyKey {
    pub case: String,
    pub recipient: String,
    pub log_index: u64,
    pub inclusion_proof: Vec<String>,
}

impl LoggedReplyKey {
    pub fn log_leaf(&self) -> LogLeaf {
        LogLeaf::ReplyKey { case: self.case.clone(), recipient: self.recipient.clone() }
    }
}

/// An earlier export's tree head and the consistency proof from it to `checkpoint`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlierCheckpoint {
    pub size: u64,
    /// Base64 root hash.
    pub root: String,
    pub proof: Vec<String>,
}

/// A reply-key change waiting in the log, to be proven in a bundle.
pub struct ReplyKeyLeaf {
    pub case: String,
    pub recipient: String,
    pub log_index: u64,
}

/// Signs and proves over the log's nodes, wherever they are kept.
pub struct Prover<'a, S: NodeSource> {
    pub nodes: &'a S,
    pub key: &'a SigningKey,
}

impl<S: NodeSource> Prover<'_, S> {
    /// The tree head of `size` leaves and its signed note.
    pub fn signed_head(&self, size: u64) -> io::Result<(Checkpoint, String)> {
        let checkpoint = Checkpoint {
            origin: self.key.verifier().name,
            size,
            root: merkle::root(self.nodes, size)?,
        };
        let note = checkpoint.sign(self.key);
        Ok((checkpoint, note))
    }

    /// A receipt for leaf `index`: its inclusion proof in the tree of `index + 1`
    /// leaves, whose hashes never change, and that tree's signed checkpoint.
    pub fn receipt(&self, submission: &str, index: u64, leaf: &LogLeaf) -> io::Result<Receipt> {
        let (_, note) = self.signed_head(index + 1)?;
        let proof = merkle::inclusion_proof(self.nodes, index, index + 1)?;
        Ok(Receipt::new(submission, index, leaf, &self.key.verifier(), note, &proof))
    }

    /// The evidence for a bundle of `records` at the log's `size`: the signed head,
    /// consistency from every earlier export's size, inclusion of each record and of
    /// each reply-key change. Returns the head it signed with the evidence.
    pub fn bundle_log(
        &self,
        size: u64,
        earlier_sizes: &[u64],
        records: &[SubmissionRecord],
        reply_keys: Vec<ReplyKeyLeaf>,
    ) -> io::Result<(BundleLog, Checkpoint)> {
        let (head, note) = self.signed_head(size)?;
        let mut earlier = Vec::new();
        for &old in earlier_sizes {
            if old == 0 || old > size {
                continue;
            }
            earlier.push(EarlierCheckpoint {
                size: old,
                root: B64.encode(merkle::root(self.nodes, old)?),
                proof: encode_hashes(&merkle::consistency_proof(self.nodes, old, size)?),
            });
        }
        let mut inclusion = BTreeMap::new();
        for record in records {
            let index = record.log_index.ok_or_else(|| {
                io::Error::other(format!("submission {} has no log leaf", record.id))
            })?;
            let proof = merkle::inclusion_proof(self.nodes, index, size)?;
            inclusion.insert(record.id.to_string(), encode_hashes(&proof));
        }
        let mut logged_keys = Vec::new();
        for change in reply_keys.into_iter().filter(|c| c.log_index < size) {
            let proof = merkle::inclusion_proof(self.nodes, change.log_index, size)?;
            logged_keys.push(LoggedReplyKey {
                case: change.case,
                recipient: change.recipient,
                log_index: change.log_index,
                inclusion_proof: encode_hashes(&proof),
            });
        }
        let log = BundleLog {
            server_key: self.key.verifier().to_string(),
            checkpoint: note,
            earlier,
            inclusion,
            reply_keys: logged_keys,
        };
        Ok((log, head))
    }
}

/// The one inclusion check: `leaf` is leaf `index` of the tree `head` signs, by the
/// base64 `proof`.
pub fn check_inclusion(
    leaf: &LogLeaf,
    index: u64,
    proof: &[String],
    head: &Checkpoint,
) -> Result<(), LogError> {
    check_inclusion_of(&leaf.canonical_bytes(), index, proof, head)
}

/// `check_inclusion` for a leaf given as its canonical bytes (a receipt's).
pub fn check_inclusion_of(
    data: &[u8],
    index: u64,
    proof: &[String],
    head: &Checkpoint,
) -> Result<(), LogError> {
    let proof: Vec<Hash> = decode_hashes(proof)?;
    merkle::verify_inclusion(data, index, head.size, &head.root, &proof)
}
