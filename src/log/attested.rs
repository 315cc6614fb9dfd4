//! Checkpoints attested by outside parties, and the time bracket they give a leaf.
//!
//! The server keeps each attested checkpoint with every RFC 3161 token and witness
//! cosignature it got for it (`Attested`). A package carries, for each leaf it proves,
//! the latest attested checkpoint that does not hold it yet and the earliest that does,
//! as files a stock tool can read:
//!
//! - `attestations/<size>.checkpoint`: the signed note, exactly the bytes stamped;
//! - `attestations/<size>.<tsa>.tsr`: each DER TimeStampResp as the TSA sent it;
//! - `attestations/<size>.cosigned`: the note with every witness cosignature line;
//! - `attestations/<a>-<b>.consistency`: base64 hashes, one a line, proving the tree of
//!   `a` leaves is a prefix of the tree of `b` (tying each attested checkpoint to the
//!   checkpoint the package's inclusion proofs lead to).
//!
//! `check_bracket` is the one reading of these files, for `verify`.

use super::merkle::{self, Hash, NodeSource};
use super::timestamp::{check_token, Timestamp, TimestampError, TsaTrust};
use super::{decode_hashes, encode_hashes, Checkpoint, LogError};
use crate::keys::{CosignatureVerifier, VerifierKey};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io;

/// Where a package keeps its attestations.
pub const ATTESTATIONS_DIR: &str = "attestations/";

/// One attested checkpoint, as the server keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attested {
    pub size: u64,
    /// The signed note exactly as stamped and cosigned.
    pub checkpoint: String,
    /// TSA name -> base64 DER TimeStampResp, as received.
    #[serde(default)]
    pub tokens: BTreeMap<String, String>,
    /// Witness name -> its cosignature line (`— name base64`).
    #[serde(default)]
    pub cosignatures: BTreeMap<String, String>,
}

impl Attested {
    /// The note with every witness's cosignature line: `<size>.cosigned`.
    pub fn cosigned(&self) -> String {
        cosigned_note(&self.checkpoint, self.cosignatures.values())
    }
}

/// A signed note followed by cosignature lines, one a line.
fn cosigned_note<'a>(note: &str, lines: impl IntoIterator<Item = &'a String>) -> String {
    let mut note = note.to_string();
    for line in lines {
        note.push_str(line);
        note.push('\n');
    }
    note
}

/// A receipt's attested part: the first attested checkpoint holding its leaf.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestedReceipt {
    /// The signed note, exactly as stamped and cosigned.
    pub checkpoint: String,
    /// The leaf's inclusion proof in it (base64, leaf to root).
    pub inclusion_proof: Vec<String>,
    /// TSA name -> base64 DER TimeStampResp over `checkpoint`.
    #[serde(default)]
    pub tokens: BTreeMap<String, String>,
    /// The witnesses' cosignature lines over it.
    #[serde(default)]
    pub cosignatures: Vec<String>,
}

impl AttestedReceipt {
    /// The attested checkpoint `after` (one holding leaf `index`) with the leaf's
    /// inclusion proof in it.
    pub fn of(
        after: &Attested,
        index: u64,
        nodes: &impl NodeSource,
    ) -> io::Result<AttestedReceipt> {
        let proof = merkle::inclusion_proof(nodes, index, after.size)?;
        Ok(AttestedReceipt {
            checkpoint: after.checkpoint.clone(),
            inclusion_proof: encode_hashes(&proof),
            tokens: after.tokens.clone(),
            cosignatures: after.cosignatures.values().cloned().collect(),
        })
    }

    /// The same, as the files a package would carry (`attestations/`), for the one
    /// reading in `PackageAttestations`. Undecodable tokens are left for it to refuse.
    pub fn members(&self, size: u64) -> BTreeMap<String, Vec<u8>> {
        let mut members = BTreeMap::new();
        members.insert(checkpoint_member(size), self.checkpoint.clone().into_bytes());
        for (tsa, token) in &self.tokens {
            if is_attester_name(tsa) {
                members.insert(token_member(size, tsa), B64.decode(token).unwrap_or_default());
            }
        }
        if !self.cosignatures.is_empty() {
            let note = cosigned_note(&self.checkpoint, &self.cosignatures);
            members.insert(cosigned_member(size), note.into_bytes());
        }
        members
    }
}

/// The attested checkpoints among a package's files that the server signed and that
/// a consistency proof ties to `head`: (size, root). A file that is not the server's,
/// or has no proof, claims nothing and is passed over (`verify` names it); a
/// server-signed checkpoint whose proof fails is a fork, and an error.
pub fn attested_heads(
    members: &BTreeMap<String, Vec<u8>>,
    key: &VerifierKey,
    head: &Checkpoint,
) -> Result<Vec<(u64, Hash)>, LogError> {
    let none = Attesters { tsas: Vec::new(), witnesses: Vec::new() };
    let package = PackageAttestations::new(members, key, &none);
    let mut heads = Vec::new();
    for size in package.sizes() {
        let Ok(checkpoint) = package.note(size).and_then(|note| Checkpoint::verify(note, key))
        else {
            continue;
        };
        let (old, new) = (size.min(head.size), size.max(head.size));
        if checkpoint.size != size
            || (old != new && !members.contains_key(&consistency_member(old, new)))
        {
            continue;
        }
        package.tie(&checkpoint, head).map_err(|e| {
            LogError::Forked(format!("the server-signed checkpoint of size {size}: {e}"))
        })?;
        heads.push((size, checkpoint.root));
    }
    Ok(heads)
}

/// A TSA's or witness's short name, safe in a file name.
pub fn is_attester_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The sizes of every `<size>.checkpoint` among package files, ascending (the
/// files' map is sorted by name, not by number).
fn checkpoint_sizes(members: &BTreeMap<String, Vec<u8>>) -> Vec<u64> {
    let mut sizes: Vec<u64> = members
        .keys()
        .filter_map(|name| name.strip_prefix(ATTESTATIONS_DIR)?.strip_suffix(".checkpoint"))
        .filter_map(canonical_size)
        .collect();
    sizes.sort_unstable();
    sizes
}

/// A size as a file name writes it: decimal, no leading zero (`05` is no size).
fn canonical_size(text: &str) -> Option<u64> {
    text.parse::<u64>().ok().filter(|size| size.to_string() == text)
}

fn checkpoint_member(size: u64) -> String {
    format!("{ATTESTATIONS_DIR}{size}.checkpoint")
}

fn cosigned_member(size: u64) -> String {
    format!("{ATTESTATIONS_DIR}{size}.cosigned")
}

fn token_member(size: u64, tsa: &str) -> String {
    format!("{ATTESTATIONS_DIR}{size}.{tsa}.tsr")
}

fn consistency_member(old: u64, new: u64) -> String {
    format!("{ATTESTATIONS_DIR}{old}-{new}.consistency")
}

/// The package files for `chosen` attested checkpoints (those bracketing a package's
/// leaves, none larger than `size`), tied by consistency proofs to the tree of `size`.
pub fn package_members(
    chosen: &[Attested],
    size: u64,
    nodes: &impl NodeSource,
) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut members = Vec::new();
    for a in chosen.iter().filter(|a| a.size <= size) {
        members.push((checkpoint_member(a.size), a.checkpoint.clone().into_bytes()));
        for (tsa, token) in &a.tokens {
            let der = B64.decode(token).map_err(io::Error::other)?;
            members.push((token_member(a.size, tsa), der));
        }
        if !a.cosignatures.is_empty() {
            members.push((cosigned_member(a.size), a.cosigned().into_bytes()));
        }
        if a.size < size {
            let proof = consistency_file(nodes, a.size, size)?;
            members.push((consistency_member(a.size, size), proof));
        }
    }
    Ok(members)
}

/// Whom a checker trusts to attest time: the lawyer's `--tsa-cert` (each with the
/// name it is shown by, its file's) and `--witness`.
pub struct Attesters {
    pub tsas: Vec<(String, TsaTrust)>,
    pub witnesses: Vec<CosignatureVerifier>,
}

/// One outside party's word on a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attestation {
    /// Seconds since the Unix epoch.
    pub time: u64,
    /// Uncertainty in milliseconds (a TSA's stated accuracy; 0 for a witness).
    pub accuracy_ms: u64,
    /// `TSA CN=... (trusted through FILE)` or `witness <name>`.
    pub by: String,
}

impl Attestation {
    /// The earliest the party's moment can have been: its time less its accuracy.
    pub fn earliest(&self) -> u64 {
        self.time.saturating_sub(self.accuracy_ms.div_ceil(1000))
    }

    /// The latest the party's moment can have been: its time plus its accuracy.
    pub fn latest(&self) -> u64 {
        self.time.saturating_add(self.accuracy_ms.div_ceil(1000))
    }
}

/// What the checks found for one attested checkpoint.
#[derive(Debug, Clone, Default)]
pub struct AttestedCheckpoint {
    pub size: u64,
    /// Every attestation that verified with a trusted party.
    pub attestations: Vec<Attestation>,
    /// Files present but not counted, and why (an untrusted TSA, a bad token...).
    pub refused: Vec<String>,
}

/// A leaf's time bracket: the attested checkpoints around it, each already checked
/// and tied to the checkpoint that proves the leaf.
#[derive(Debug, Clone, Default)]
pub struct Bracket {
    pub before: Option<AttestedCheckpoint>,
    pub after: Option<AttestedCheckpoint>,
    /// What a reader should know is missing or was refused.
    pub missing: Vec<String>,
}

impl Bracket {
    /// The first outside party to see the checkpoint without the leaf, and the moment
    /// (its time less its accuracy). The first, not the last: anyone can have a
    /// checkpoint stamped again later, which says nothing about when the leaf came.
    pub fn not_before(&self) -> Option<(u64, &Attestation)> {
        let first = self.before.as_ref()?.seen_from()?;
        Some((first.earliest(), first))
    }

    /// The first outside party to see a checkpoint holding the leaf, and the moment by
    /// which it existed (its time plus its accuracy).
    pub fn not_after(&self) -> Option<(u64, &Attestation)> {
        let first = self.after.as_ref()?.seen_by()?;
        Some((first.latest(), first))
    }
}

impl AttestedCheckpoint {
    /// The outside party whose moment of seeing it can have been earliest.
    fn seen_from(&self) -> Option<&Attestation> {
        self.attestations.iter().min_by_key(|a| a.earliest())
    }

    /// The outside party by whose moment it surely existed first.
    fn seen_by(&self) -> Option<&Attestation> {
        self.attestations.iter().min_by_key(|a| a.latest())
    }
}

/// The attestations in a package (its `attestations/` members by name), readable for
/// any of its leaves.
pub struct PackageAttestations<'a> {
    members: &'a BTreeMap<String, Vec<u8>>,
    server_key: &'a VerifierKey,
    attesters: &'a Attesters,
    /// What `check` found, by (attested size, head size).
    checked: std::cell::RefCell<BTreeMap<(u64, u64), Result<AttestedCheckpoint, LogError>>>,
}

impl<'a> PackageAttestations<'a> {
    pub fn new(
        members: &'a BTreeMap<String, Vec<u8>>,
        server_key: &'a VerifierKey,
        attesters: &'a Attesters,
    ) -> PackageAttestations<'a> {
        PackageAttestations { members, server_key, attesters, checked: Default::default() }
    }

    /// The sizes of every attested checkpoint the package carries, ascending.
    fn sizes(&self) -> Vec<u64> {
        checkpoint_sizes(self.members)
    }

    /// The bracket of leaf `index`, proven in the tree `head`, from attested checkpoints
    /// signed by the server, tied to `head` by a consistency proof, and attested by at
    /// least one trusted party. Above: the one first attested earliest (any checkpoint
    /// holding the leaf proves it existed by then; the nearest is the earliest unless
    /// one was signed late). Below: the nearest, unless it was first attested after a
    /// checkpoint holding the leaf: a server signs each checkpoint as its log grows, so
    /// that one was signed late (by a seized key, say) and bounds nothing.
    pub fn bracket(&self, index: u64, head: &Checkpoint) -> Bracket {
        let sizes = self.sizes();
        let mut bracket = Bracket::default();
        let mut nearest_found = false;
        for &size in sizes.iter().filter(|&&s| s > index) {
            // What is refused is said for the checkpoints up to the nearest usable one;
            // those further on only count if an outside party saw them earlier.
            let notes = (!nearest_found).then_some(&mut bracket.missing);
            let Some(checked) = self.usable(size, head, notes) else { continue };
            nearest_found = true;
            let by = |c: &AttestedCheckpoint| c.seen_by().map(Attestation::latest);
            if bracket.after.as_ref().is_none_or(|after| by(&checked) < by(after)) {
                bracket.after = Some(checked);
            }
        }
        let upper = bracket.not_after().map(|(at, _)| at);
        for &size in sizes.iter().rev().filter(|&&s| s <= index) {
            let Some(checked) = self.usable(size, head, Some(&mut bracket.missing)) else {
                continue;
            };
            let seen = checked.seen_from().map(Attestation::earliest);
            if seen.zip(upper).is_some_and(|(seen, upper)| seen > upper) {
                bracket.missing.push(format!(
                    "the checkpoint of size {size}, without it, was first attested after one \
                     holding it: it was signed late (by a seized key, say) and bounds nothing"
                ));
                continue;
            }
            bracket.before = Some(checked);
            break;
        }
        if bracket.before.is_none() {
            bracket.missing.push(
                "no attested checkpoint before it: when it was received is bounded below only \
                 by the server's clock"
                    .into(),
            );
        }
        if bracket.after.is_none() {
            bracket.missing.push(
                "no attested checkpoint holds it: that it existed by a given time rests on the \
                 server's clock alone"
                    .into(),
            );
        }
        bracket
    }

    /// The attested checkpoint of `size` if it verified and a trusted party attests
    /// it; what was refused goes to `notes` when given.
    fn usable(
        &self,
        size: u64,
        head: &Checkpoint,
        notes: Option<&mut Vec<String>>,
    ) -> Option<AttestedCheckpoint> {
        let mut sink = Vec::new();
        let notes = notes.unwrap_or(&mut sink);
        match self.checked(size, head) {
            Ok(checked) => {
                for why in &checked.refused {
                    notes.push(format!("checkpoint {size}: refused {why}"));
                }
                if checked.attestations.is_empty() {
                    notes.push(format!(
                        "the checkpoint of size {size} is attested by no party you trust"
                    ));
                    None
                } else {
                    Some(checked)
                }
            }
            Err(why) => {
                notes.push(format!("attestation {size}: {why}"));
                None
            }
        }
    }

    /// `check`, once per size for the whole package.
    fn checked(&self, size: u64, head: &Checkpoint) -> Result<AttestedCheckpoint, LogError> {
        let key = (size, head.size);
        if let Some(done) = self.checked.borrow().get(&key) {
            return done.clone();
        }
        let done = self.check(size, head);
        self.checked.borrow_mut().insert(key, done.clone());
        done
    }

    /// The attested checkpoint of `size`: signed by the server, of that size, and tied
    /// to `head`.
    fn tied(&self, size: u64, head: &Checkpoint) -> Result<Checkpoint, LogError> {
        let note = self.note(size)?;
        let checkpoint = Checkpoint::verify(note, self.server_key)?;
        if checkpoint.size != size {
            return Err(LogError::Checkpoint(format!("its note says size {}", checkpoint.size)));
        }
        self.tie(&checkpoint, head)?;
        Ok(checkpoint)
    }

    fn note(&self, size: u64) -> Result<&str, LogError> {
        self.members
            .get(&checkpoint_member(size))
            .and_then(|b| std::str::from_utf8(b).ok())
            .ok_or_else(|| LogError::Checkpoint("not UTF-8".into()))
    }

    /// Checks one attested checkpoint: its server signature, its tie to `head`, and
    /// every token and cosignature carried for it.
    fn check(&self, size: u64, head: &Checkpoint) -> Result<AttestedCheckpoint, LogError> {
        self.tied(size, head)?;
        let note = self.note(size)?;
        let mut checked = AttestedCheckpoint { size, ..Default::default() };
        let token_prefix = format!("{ATTESTATIONS_DIR}{size}.");
        let tokens = self.members.iter().filter_map(|(name, token)| {
            Some((name.strip_prefix(&token_prefix)?.strip_suffix(".tsr")?, token))
        });
        for (tsa, token) in tokens {
            match self.timestamp(token, note.as_bytes()) {
                Ok((stamp, anchor)) => checked.attestations.push(Attestation {
                    time: stamp.time,
                    accuracy_ms: stamp.accuracy_ms,
                    by: format!("TSA {} (trusted through {anchor})", stamp.tsa),
                }),
                Err(why) => checked.refused.push(format!("{size}.{tsa}.tsr: {why}")),
            }
        }
        if let Some(cosigned) = self.members.get(&cosigned_member(size)) {
            let text = std::str::from_utf8(cosigned).unwrap_or("");
            let Some(lines) = text.strip_prefix(note) else {
                checked.refused.push("cosigned: not this checkpoint's note".into());
                return Ok(checked);
            };
            let body = &note[..=note.find("\n\n").expect("a verified note has a blank line")];
            for line in lines.lines() {
                let verified = self
                    .attesters
                    .witnesses
                    .iter()
                    .find_map(|w| w.verify(body, line).ok().map(|time| (w, time)));
                match verified {
                    Some((witness, time)) => checked.attestations.push(Attestation {
                        time,
                        accuracy_ms: 0,
                        by: format!("witness {}", witness.name),
                    }),
                    None => checked.refused.push(
                        "a cosignature line by a witness you did not name, or that does not \
                         verify"
                            .into(),
                    ),
                }
            }
        }
        Ok(checked)
    }

    /// A token, checked against each trusted TSA anchor in turn; with the label of the
    /// anchor that holds.
    fn timestamp(&self, token: &[u8], note: &[u8]) -> Result<(Timestamp, String), TimestampError> {
        let mut last = TimestampError::Untrusted("no --tsa-cert given".into());
        for (label, trust) in &self.attesters.tsas {
            match check_token(token, note, None, trust) {
                Ok(stamp) => return Ok((stamp, label.clone())),
                Err(why) => last = why,
            }
        }
        Err(last)
    }

    /// That `checkpoint` and `head` are views of one log: the same tree when the sizes
    /// match, else a consistency proof from the smaller to the larger.
    fn tie(&self, checkpoint: &Checkpoint, head: &Checkpoint) -> Result<(), LogError> {
        let (old, new) =
            if checkpoint.size <= head.size { (checkpoint, head) } else { (head, checkpoint) };
        if old.size == new.size {
            return merkle::verify_consistency(old.size, &old.root, new.size, &new.root, &[]);
        }
        let proof = self.members.get(&consistency_member(old.size, new.size)).ok_or_else(|| {
            LogError::Proof(format!("no consistency proof from {} to {}", old.size, new.size))
        })?;
        let lines: Vec<String> =
            String::from_utf8_lossy(proof).lines().map(str::to_string).collect();
        let proof: Vec<Hash> = decode_hashes(&lines)?;
        merkle::verify_consistency(old.size, &old.root, new.size, &new.root, &proof)
    }
}

/// Adds to attestation files (`members`, by name) the consistency proof from each
/// attested checkpoint smaller than `head_size` to it, computed from `nodes` (a tree
/// rebuilt from a replica's journal, whose files carry none).
pub fn add_consistency(
    members: &mut BTreeMap<String, Vec<u8>>,
    head_size: u64,
    nodes: &impl NodeSource,
) -> io::Result<()> {
    for size in checkpoint_sizes(members).into_iter().filter(|&s| s > 0 && s < head_size) {
        members
            .insert(consistency_member(size, head_size), consistency_file(nodes, size, head_size)?);
    }
    Ok(())
}

/// A `<old>-<new>.consistency` file: the proof's hashes, base64, one per line.
fn consistency_file(nodes: &impl NodeSource, old: u64, new: u64) -> io::Result<Vec<u8>> {
    let mut text = encode_hashes(&merkle::consistency_proof(nodes, old, new)?).join("\n");
    text.push('\n');
    Ok(text.into_bytes())
}

/// Two copies of one `<size>.cosigned` file (from two bundles, or a bundle and a
/// replica anyone can write to) as one: the note, with every cosignature line either
/// carries, each once. None when they are not copies of the same note. A line that
/// does not verify is refused by name when checked, so a padded copy can add no word
/// and take none away.
pub fn merge_cosigned(kept: &[u8], other: &[u8]) -> Option<Vec<u8>> {
    // The note ends with its one signature line, after the blank line.
    let split = |text: &[u8]| -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
        let text = std::str::from_utf8(text).ok()?;
        let body = text.find("\n\n")? + 2;
        let end = body + text[body..].find('\n')? + 1;
        let lines = text[end..].lines().map(|l| format!("{l}\n").into_bytes()).collect();
        Some((text.as_bytes()[..end].to_vec(), lines))
    };
    let (note, mut lines) = split(kept)?;
    let (other_note, other_lines) = split(other)?;
    if note != other_note {
        return None;
    }
    for line in other_lines {
        if !lines.contains(&line) {
            lines.push(line);
        }
    }
    Some(lines.into_iter().fold(note, |mut all, line| {
        all.extend(line);
        all
    }))
}

/// The attested size an attestation file belongs to, from its name
/// (`attestations/<size>.…` or `attestations/<size>-<head>.consistency`).
pub fn member_size(name: &str) -> Option<u64> {
    let rest = name.strip_prefix(ATTESTATIONS_DIR)?;
    canonical_size(rest.split(['.', '-']).next()?)
}

/// From a package's attestation files (`members`, by name), those a package proving
/// `leaves` in the tree of `head_size` needs: the bracketing checkpoints' files and
/// their consistency proofs to `head_size`.
pub fn select_members(
    members: &BTreeMap<String, Vec<u8>>,
    leaves: impl IntoIterator<Item = u64>,
    head_size: u64,
) -> Vec<(String, Vec<u8>)> {
    let mut sizes = checkpoint_sizes(members);
    sizes.retain(|&size| size <= head_size);
    let mut chosen = BTreeSet::new();
    for leaf in leaves {
        let split = sizes.partition_point(|&s| s <= leaf);
        chosen.extend(split.checked_sub(1).map(|i| sizes[i]));
        chosen.extend(sizes.get(split).copied());
    }
    // One look-up a file, by the size its name gives: a pull of a busy server's
    // replica carries thousands of both.
    members
        .iter()
        .filter(|(name, _)| {
            let Some(size) = member_size(name).filter(|size| chosen.contains(size)) else {
                return false;
            };
            let rest = name.strip_prefix(ATTESTATIONS_DIR).unwrap_or("");
            let own = rest.strip_prefix(&size.to_string()).is_some_and(|r| r.starts_with('.'));
            own || rest == format!("{size}-{head_size}.consistency")
        })
        .map(|(name, bytes)| (name.clone(), bytes.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SigningKey;
    use crate::log::merkle::MemoryTree;

    #[test]
    fn checkpoints_signed_late_by_a_seized_key_neither_narrow_nor_move_a_bracket() {
        let dir = tempfile::tempdir().unwrap();
        let server = SigningKey::load_or_create(&dir.path().join("server"), "amanat/x").unwrap();
        let witness =
            SigningKey::load_or_create(&dir.path().join("witness"), "witness.example").unwrap();
        let mut tree = MemoryTree::default();
        for leaf in 0..6u8 {
            tree.append(merkle::leaf_hash(&[leaf]));
        }
        let checkpoint = |size| Checkpoint {
            origin: "amanat/x".into(),
            size,
            root: merkle::root(&tree, size).unwrap(),
        };
        // Leaf 3 arrived between 100 and 200: the log was checkpointed at sizes 1 and 5
        // then. Whoever seized the key signs sizes 3 (just below the leaf) and 4 (just
        // above) afterwards and has a witness cosign them at 300 and 400.
        let mut members = BTreeMap::new();
        for (size, time) in [(1, 100), (5, 200), (3, 300), (4, 400)] {
            let note = checkpoint(size).sign(&server);
            let line = witness.cosign(&note[..=note.find("\n\n").unwrap()], time);
            members.insert(checkpoint_member(size), note.clone().into_bytes());
            members.insert(cosigned_member(size), format!("{note}{line}").into_bytes());
        }
        add_consistency(&mut members, 6, &tree).unwrap();
        let attesters = Attesters {
            tsas: Vec::new(),
            witnesses: vec![witness.cosignature_verifier().parse().unwrap()],
        };
        let verifier = server.verifier();
        let attestations = PackageAttestations::new(&members, &verifier, &attesters);
        let bracket = attestations.bracket(3, &checkpoint(6));
        assert_eq!(bracket.not_after().map(|(at, _)| at), Some(200), "{:?}", bracket.missing);
        assert_eq!(bracket.not_before().map(|(at, _)| at), Some(100), "{:?}", bracket.missing);
        assert!(
            bracket.missing.iter().any(|m| m.contains("size 3") && m.contains("signed late")),
            "{:?}",
            bracket.missing
        );
    }

    #[test]
    fn two_copies_of_a_cosigned_note_keep_every_witness_line_of_either() {
        let dir = tempfile::tempdir().unwrap();
        let server = SigningKey::load_or_create(&dir.path().join("server"), "amanat/x").unwrap();
        let note = Checkpoint { origin: "amanat/x".into(), size: 2, root: [1; 32] }.sign(&server);
        let other = Checkpoint { origin: "amanat/x".into(), size: 2, root: [2; 32] }.sign(&server);
        let export = format!("{note}\u{2014} w1 AAAA\n");
        // A replica's copy, padded to look fuller, without w1's line.
        let replica = format!("{note}\u{2014} junk BBBB\n\u{2014} junk CCCC\n\u{2014} w2 DDDD\n");
        let merged = merge_cosigned(export.as_bytes(), replica.as_bytes()).unwrap();
        let merged = String::from_utf8(merged).unwrap();
        assert!(merged.starts_with(&note), "{merged}");
        for line in ["w1 AAAA", "w2 DDDD", "junk BBBB"] {
            assert_eq!(merged.matches(line).count(), 1, "{merged}");
        }
        let again = merge_cosigned(merged.as_bytes(), export.as_bytes()).unwrap();
        assert_eq!(again, merged.as_bytes());
        assert!(merge_cosigned(export.as_bytes(), other.as_bytes()).is_none());
    }
}
