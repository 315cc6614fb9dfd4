//! What this reviewer has already verified of each server's log: for every server key,
//! the roots of the tree sizes it has seen proven. A new bundle must agree with all of
//! them, so a rewritten or forked log is refused, never silently accepted.

use crate::bundle::BundleLog;
use crate::keys::VerifierKey;
use crate::log::{self, merkle, Checkpoint};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Default, Serialize, Deserialize)]
pub struct ReviewState {
    /// Server key (`name+keyid+key`) -> tree size -> base64 root.
    servers: BTreeMap<String, BTreeMap<u64, String>>,
    #[serde(skip)]
    path: PathBuf,
}

/// A bundle's checkpoint, checked against its own proofs and against this state.
pub struct VerifiedLog {
    pub checkpoint: Checkpoint,
    pub server_key: String,
    /// True the first time this laptop sees the server key: compare it with the one
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
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self).map_err(io::Error::other)?)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &self.path)
    }

    /// Verifies the bundle's checkpoint and its consistency with every earlier export's
    /// and with everything this laptop verified before; records the new tree heads.
    pub fn check(&mut self, log: &BundleLog) -> Result<VerifiedLog, String> {
        let key: VerifierKey = log.server_key.parse()?;
        let checkpoint = Checkpoint::verify(&log.checkpoint, &key)?;
        let mut proven: BTreeMap<u64, String> = BTreeMap::new();
        proven.insert(checkpoint.size, B64.encode(checkpoint.root));
        for earlier in &log.earlier {
            let root: merkle::Hash = B64
                .decode(&earlier.root)
                .ok()
                .and_then(|r| r.try_into().ok())
                .ok_or("an earlier root is not base64 SHA-256")?;
            let proof = log::decode_hashes(&earlier.proof)?;
            merkle::verify_consistency(
                earlier.size,
                &root,
                checkpoint.size,
                &checkpoint.root,
                &proof,
            )
            .map_err(|e| {
                format!(
                    "the log does not extend its own earlier checkpoint of size {}: {e}",
                    earlier.size
                )
            })?;
            proven.insert(earlier.size, earlier.root.clone());
        }
        let known = self.servers.get(&log.server_key);
        let new_server = known.is_none();
        for (size, root) in known.into_iter().flatten() {
            match proven.get(size) {
                Some(r) if r == root => {}
                Some(_) => {
                    return Err(format!(
                        "LOG FORKED OR REWRITTEN: this server's tree of {size} entries had another root \
                         when you last verified it"
                    ))
                }
                None => {
                    return Err(format!(
                        "cannot prove this bundle consistent with the tree of {size} entries verified \
                         before (its checkpoint has {}): refusing rather than trusting it",
                        checkpoint.size
                    ))
                }
            }
        }
        self.servers.entry(log.server_key.clone()).or_default().extend(proven);
        self.save().map_err(|e| format!("cannot record the verified checkpoint: {e}"))?;
        Ok(VerifiedLog { checkpoint, server_key: log.server_key.clone(), new_server })
    }
}
