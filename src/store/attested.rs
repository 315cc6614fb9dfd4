//! What outside parties attested of this log, kept durably in the index: every
//! attested checkpoint with its TSA tokens and witness cosignatures
//! (`attested/<size, 20 digits>`), and how each TSA's and witness's last request went
//! (`tsa/<name>`, `witness/<name>`), for `amanat status`.

use super::Store;
use crate::log::attested::{Attested, AttestedReceipt};
use crate::log::merkle::Hash;
use crate::log::{Checkpoint, LogLeaf, Receipt};
use crate::record::SubmissionRecord;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use std::io;

const ATTESTED: &str = "attested/";
const WITNESSED: &str = "witness/";
const STAMPED: &str = "tsa/";

/// What one witness has cosigned of this log, and how its last request went.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Witnessed {
    /// The largest size it cosigned (0: none yet).
    pub size: u64,
    /// That checkpoint with the witness's cosignature line: the attestation itself.
    pub cosigned: String,
    /// The hour of its last cosignature.
    pub cosigned_at: Option<String>,
    /// Why the last request failed, if it did (a stable word and the status).
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
}

/// What one time-stamping authority has stamped of this log, and how its last request
/// went.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stamped {
    /// The largest size it stamped (0: none yet).
    pub size: u64,
    /// The hour of its last token.
    pub stamped_at: Option<String>,
    /// Why the last request failed, if it did (fixed words, never the TSA's text).
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
}

/// One outside party's attestation of a checkpoint, to keep.
pub enum Attestation {
    /// A DER TimeStampResp, already checked.
    Token { tsa: String, response: Vec<u8> },
    /// A witness's cosignature line, already checked.
    Cosignature { witness: String, line: String },
}

impl Store {
    /// The signed checkpoint at `size` (signatures are deterministic: the same note each
    /// time), its tree head, and the consistency proof to it from `from` (none when
    /// `from` is 0 or not below `size`).
    pub fn attestation_request(
        &self,
        from: u64,
        size: u64,
    ) -> io::Result<(Checkpoint, String, Vec<Hash>)> {
        let (head, note) = self.prover().signed_head(size)?;
        let proof = if from == 0 || from >= size {
            Vec::new()
        } else {
            crate::log::merkle::consistency_proof(&self.index, from, size)?
        };
        Ok((head, note, proof))
    }

    /// Keeps one attestation of the checkpoint `note` of `size`, durably.
    pub fn record_attestation(
        &self,
        size: u64,
        note: &str,
        attestation: Attestation,
    ) -> io::Result<()> {
        let key = format!("{ATTESTED}{size:020}");
        let mut attested: Attested = self.index.meta_get(&key)?.unwrap_or_else(|| Attested {
            size,
            checkpoint: note.to_string(),
            ..Default::default()
        });
        if attested.checkpoint != note {
            return Err(io::Error::other("another note for an attested size"));
        }
        match attestation {
            Attestation::Token { tsa, response } => {
                // The first token for a size is the one that bounds time most tightly
                // from above; later ones add nothing.
                attested.tokens.entry(tsa).or_insert_with(|| B64.encode(response));
            }
            Attestation::Cosignature { witness, line } => {
                attested.cosignatures.entry(witness).or_insert(line);
            }
        }
        self.index.meta_put(&key, &attested)?;
        self.attestations.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Wakes when an attestation is recorded (replicas carry them).
    pub fn watch_attestations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.attestations.subscribe()
    }

    /// The attested checkpoints around leaf `index`: the latest of size <= index and the
    /// first of size > index (two lookups, however long the history).
    pub fn attested_around(&self, index: u64) -> io::Result<(Option<Attested>, Option<Attested>)> {
        self.index.meta_around(ATTESTED, &format!("{ATTESTED}{index:020}"))
    }

    /// The newest attested checkpoint, if any.
    pub fn newest_attested(&self) -> io::Result<Option<Attested>> {
        Ok(self.index.meta_around(ATTESTED, &format!("{ATTESTED}{:020}", u64::MAX))?.0)
    }

    /// The package files for the attestations that bracket `records` in the tree of
    /// `size` (see `log::attested::package_members`).
    pub fn attestation_members(
        &self,
        records: &[SubmissionRecord],
        size: u64,
    ) -> io::Result<Vec<(String, Vec<u8>)>> {
        let mut chosen = std::collections::BTreeMap::new();
        for index in records.iter().filter_map(|r| r.log_index) {
            let (before, after) = self.attested_around(index)?;
            for attested in before.into_iter().chain(after).filter(|a| a.size <= size) {
                chosen.entry(attested.size).or_insert(attested);
            }
        }
        let chosen: Vec<Attested> = chosen.into_values().collect();
        crate::log::attested::package_members(&chosen, size, &self.index)
    }

    /// Every attested checkpoint's own files (checkpoint, tokens, cosignatures; no
    /// consistency proofs) for those of size at most `through`, by package member name:
    /// what a replica holding `through` leaves should hold of them.
    pub fn attestation_files(&self, through: u64) -> io::Result<Vec<(String, Vec<u8>)>> {
        let mut files = Vec::new();
        for (_, attested) in self.index.meta_prefixed::<Attested>(ATTESTED)? {
            if attested.size <= through {
                let members = crate::log::attested::package_members(
                    std::slice::from_ref(&attested),
                    attested.size,
                    &self.index,
                )?;
                files.extend(members);
            }
        }
        Ok(files)
    }

    /// A submission's receipt, with its attested part once outside parties attested a
    /// checkpoint holding it.
    pub fn attested_receipt(&self, record: &SubmissionRecord) -> io::Result<Option<Receipt>> {
        let Some(index) = record.log_index else { return Ok(None) };
        let mut receipt = self.receipt(&record.id, index, &LogLeaf::from(record))?;
        let after = self.attested_around(index)?.1;
        receipt.attested =
            after.map(|a| AttestedReceipt::of(&a, index, &self.index)).transpose()?;
        Ok(Some(receipt))
    }

    /// What a witness has cosigned of this log, by witness name.
    pub fn witnessed(&self) -> io::Result<Vec<(String, Witnessed)>> {
        self.index.meta_prefixed(WITNESSED)
    }

    /// Records what a witness said, durably.
    pub fn record_witnessed(&self, witness: &str, state: &Witnessed) -> io::Result<()> {
        self.index.meta_put(&format!("{WITNESSED}{witness}"), state)
    }

    /// What each TSA has stamped of this log, by name.
    pub fn stamped(&self) -> io::Result<Vec<(String, Stamped)>> {
        self.index.meta_prefixed(STAMPED)
    }

    /// Records what a TSA said, durably.
    pub fn record_stamped(&self, tsa: &str, state: &Stamped) -> io::Result<()> {
        self.index.meta_put(&format!("{STAMPED}{tsa}"), state)
    }
}
