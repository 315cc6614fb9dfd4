//! The reviewer's tracker of tree heads: what this laptop has already verified of each
//! server's log. For every server (log origin), its key and the roots of the tree sizes
//! it has seen proven. A new bundle must agree with all of them, so a rewritten or
//! forked log is refused, never silently accepted.

use super::{decode_hashes, merkle, BundleLog, Checkpoint, LogError};
use crate::keys::VerifierKey;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Default, Serialize, Deserialize)]
pub struct ReviewState {
    /// Log origin (the server's name) -> what was verified of that server's log.
    servers: BTreeMap<String, ServerState>,
    #[serde(skip)]
    path: PathBuf,
}

#[derive(Default, Serialize, Deserialize)]
struct ServerState {
    /// The server key (`name+keyid+key`) first seen for this origin. A bundle signed by
    /// any other key for the same origin is refused: a new key would otherwise start a
    /// new history and slip past fork detection.
    key: String,
    /// Tree size -> base64 root, for every tree head proven so far.
    heads: BTreeMap<u64, String>,
    /// Tree size -> base64 root of every attested checkpoint a bundle carried (signed
    /// by the server, tied to that bundle's head): a later bundle whose checkpoints or
    /// attestations give one of these sizes another root is refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    attested: BTreeMap<u64, String>,
}

/// A bundle's checkpoint, checked against its own proofs and against this state.
pub struct VerifiedLog {
    pub checkpoint: Checkpoint,
    pub server_key: String,
    /// True the first time this laptop sees the server: compare its key with the one
    /// `amanat status` prints on the server.
    pub new_server: bool,
}

impl ReviewState {
    pub fn load(path: &Path) -> io::Result<ReviewState> {
        let mut state: ReviewState = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => ReviewState::default(),
            Err(e) => return Err(e),
        };
        state.path = path.to_path_buf();
        Ok(state)
    }

    /// A state that remembers nothing: checks one bundle on its own.
    pub fn ephemeral() -> ReviewState {
        ReviewState::default()
    }

    fn save(&self) -> io::Result<()> {
        if self.path.as_os_str().is_empty() {
            return Ok(());
        }
        crate::durable::replace(
            &self.path,
            &serde_json::to_vec_pretty(self).map_err(io::Error::other)?,
        )
    }

    /// The server key this laptop pinned for `origin`, if it saw that server before.
    pub fn known_key(&self, origin: &str) -> Option<&str> {
        self.servers.get(origin).map(|s| s.key.as_str()).filter(|k| !k.is_empty())
    }

    /// Every tree size of `origin`'s log this laptop verified (heads and attested
    /// checkpoints): a log rebuilt from a replica's journal is proven against each.
    pub fn known_sizes(&self, origin: &str) -> Vec<u64> {
        self.servers.get(origin).map_or_else(Vec::new, |s| {
            let mut sizes: Vec<u64> = s.heads.keys().chain(s.attested.keys()).copied().collect();
            sizes.sort_unstable();
            sizes.dedup();
            sizes
        })
    }

    /// Verifies the bundle's checkpoint and its consistency with every earlier export's
    /// and with everything this laptop verified before; records the new tree heads.
    pub fn check(&mut self, log: &BundleLog) -> Result<VerifiedLog, LogError> {
        self.check_attested(log, &BTreeMap::new())
    }

    /// `check`, and the bundle's attested checkpoints (`attestations/` files by name):
    /// each signed by the server and tied to the bundle's head, none giving a size
    /// another root than this laptop saw for it before.
    pub fn check_attested(
        &mut self,
        log: &BundleLog,
        attestations: &BTreeMap<String, Vec<u8>>,
    ) -> Result<VerifiedLog, LogError> {
        let key =
            log.server_key.parse::<VerifierKey>().map_err(|e| LogError::Key(e.to_string()))?;
        let checkpoint = Checkpoint::verify(&log.checkpoint, &key)?;
        let mut proven: BTreeMap<u64, String> = BTreeMap::new();
        proven.insert(checkpoint.size, B64.encode(checkpoint.root));
        for earlier in &log.earlier {
            let root: merkle::Hash =
                B64.decode(&earlier.root).ok().and_then(|r| r.try_into().ok()).ok_or_else(
                    || LogError::Proof("an earlier root is not base64 SHA-256".into()),
                )?;
            let proof = decode_hashes(&earlier.proof)?;
            merkle::verify_consistency(
                earlier.size,
                &root,
                checkpoint.size,
                &checkpoint.root,
                &proof,
            )
            .map_err(|e| {
                LogError::Forked(format!(
                    "the log does not extend its own earlier checkpoint of size {}: {e}",
                    earlier.size
                ))
            })?;
            proven.insert(earlier.size, earlier.root.clone());
        }
        let known = self.servers.get(&key.name);
        if let Some(known) = known {
            if known.key != log.server_key {
                return Err(LogError::Forked(format!(
                    "SERVER KEY CHANGED: {} signed its log with {} before, this bundle with {}; \
                     refusing. If the coalition really moved the server to a new key, open this \
                     bundle with a new --state file after checking the new key with the operator",
                    key.name, known.key, log.server_key
                )));
            }
            check_against(&known.heads, &proven, checkpoint.size)?;
        }
        let attested: BTreeMap<u64, String> =
            super::attested::attested_heads(attestations, &key, &checkpoint)
                .map_err(|e| {
                    LogError::Forked(format!("its attestations do not agree with its own log: {e}"))
                })?
                .into_iter()
                .map(|(size, root)| (size, B64.encode(root)))
                .collect();
        if let Some(known) = known {
            let seen = known.heads.iter().chain(&known.attested);
            for (size, root) in seen {
                let now = proven.get(size).or_else(|| attested.get(size));
                if now.is_some_and(|r| r != root) {
                    return Err(LogError::Forked(format!(
                        "ATTESTED HISTORY CONFLICTS: this server's tree of {size} entries had \
                         another root in a bundle or attestation you verified before"
                    )));
                }
            }
        }
        let new_server = known.is_none();
        let server = self.servers.entry(key.name.clone()).or_default();
        server.key.clone_from(&log.server_key);
        server.heads.extend(proven);
        server.attested.extend(attested);
        self.save().map_err(|e| {
            LogError::Tracker(format!("cannot record the verified checkpoint: {e}"))
        })?;
        Ok(VerifiedLog { checkpoint, server_key: log.server_key.clone(), new_server })
    }
}

/// A bundle's proven tree heads against those verified before: the same size must have
/// the same root; a bigger tree must have been proven to extend every known one; an
/// older bundle (a smaller tree) is accepted only when its tree head was verified before.
fn check_against(
    known: &BTreeMap<u64, String>,
    proven: &BTreeMap<u64, String>,
    size: u64,
) -> Result<(), LogError> {
    for (known_size, root) in known {
        if proven.get(known_size).is_some_and(|r| r != root) {
            return Err(LogError::Forked(format!(
                "LOG FORKED OR REWRITTEN: this server's tree of {known_size} entries had another \
                 root when you last verified it"
            )));
        }
    }
    let newest = known.keys().next_back().copied().unwrap_or(0);
    let holds = if size >= newest {
        known.keys().all(|s| proven.contains_key(s))
    } else {
        known.contains_key(&size)
    };
    if holds {
        Ok(())
    } else {
        let unproven = known.keys().find(|s| !proven.contains_key(s)).copied().unwrap_or(newest);
        Err(LogError::Forked(format!(
            "cannot prove this bundle (a tree of {size} entries) consistent with the tree of \
             {unproven} entries verified before: refusing rather than trusting it"
        )))
    }
}
