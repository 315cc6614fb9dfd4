//! Opening what `amanat replica pull` wrote: each server's journal is decrypted with
//! the reviewer's identity and rebuilt into its log, leaf by leaf; every segment must
//! be signed by one key, follow the one before with no gap, hash to the checkpoint it
//! carries, and every record must hash to its leaf. What holds becomes an export bundle
//! over the pull file's objects (its checkpoint the newest segment's, with consistency
//! proofs to every tree size this laptop verified before and inclusion proofs for each
//! new record), which `open` then checks and opens exactly as an export.

use super::ReviewError;
use crate::bundle::replica::{read_segment, Pull};
use crate::bundle::{BundleIndex, Opened, BUNDLE_SCHEMA};
use crate::keys::VerifierKey;
use crate::log::journal::{JournalBody, PurgeNotice, JOURNAL_SCHEMA};
use crate::log::merkle::{self, MemoryTree};
use crate::log::{
    encode_hashes, BundleLog, Checkpoint, EarlierCheckpoint, LogLeaf, LoggedReplyKey, ReviewState,
};
use crate::record::SubmissionRecord;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The largest decrypted body of one segment.
const MAX_BODY_BYTES: u64 = 512 << 20;

/// The most decrypted journal one open holds the records of (some three million
/// submissions): past it the rebuild stops, what came before opens, and a pull with
/// `--state` carries the rest (the records before its start are kept by id alone).
const MAX_JOURNAL_BYTES: u64 = 2 << 30;

/// For a pull file, how many bundles it gives (one per server; one, to report why,
/// when it cannot be read); None for any other file.
pub fn servers_in(path: &Path) -> Option<usize> {
    if !matches!(crate::bundle::Kind::of(path), Ok(crate::bundle::Kind::Replica)) {
        return None;
    }
    Some(Pull::open(path).map_or(1, |pull| pull.index.servers.len().max(1)))
}

/// For a pull file, every server's bundle rebuilt from its journal (for `disclose`,
/// which needs no notes: the cases were opened before); None for any other file.
pub fn bundles_in(
    path: &Path,
    identities: &[age::x25519::Identity],
    state: &ReviewState,
) -> Option<Result<Vec<crate::bundle::Bundle>, ReviewError>> {
    let servers = servers_in(path)?;
    // One server's broken journal must not keep another server's cases from a lawyer:
    // only when none can be rebuilt is it refused, with every reason.
    let mut bundles = Vec::new();
    let mut refused = Vec::new();
    for n in 0..servers {
        match candidate(path, n, identities, state) {
            (_, Ok((Opened::Export(bundle), _))) => bundles.push(bundle),
            (label, Ok(_)) => refused.push(format!("{label}: not a bundle")),
            (label, Err(e)) => refused.push(format!("{label}: {e}")),
        }
    }
    Some(if bundles.is_empty() {
        Err(ReviewError::Package(refused.join("; ")))
    } else {
        Ok(bundles)
    })
}

/// The bundle of the pull file's `n`th server, rebuilt from its journal, with a label
/// naming the file and the server, and notes for the reviewer (the replica lags, or
/// holds submissions the server purged from it); or why it was refused.
pub fn candidate(
    path: &Path,
    n: usize,
    identities: &[age::x25519::Identity],
    state: &ReviewState,
) -> (String, Result<(Opened, Vec<Note>), ReviewError>) {
    let label = path.display().to_string();
    let pull = match Pull::open(path) {
        Ok(pull) => pull,
        Err(e) => return (label, Err(ReviewError::Package(e.to_string()))),
    };
    let Some(server) = pull.index.servers.get(n) else {
        return (
            label,
            Err(ReviewError::Package("the pull file holds no server's journal".into())),
        );
    };
    let label = format!("{label} (server {})", server.server);
    let bundle = rebuild(&pull, server, identities, state).and_then(|rebuilt| {
        let bundle = Pull::bundle(path, rebuilt.index, rebuilt.attested)
            .map_err(|e| ReviewError::Package(e.to_string()))?;
        Ok((Opened::Export(bundle), rebuilt.notes))
    });
    (label, bundle)
}

fn rebuild(
    pull: &Pull,
    server: &crate::bundle::replica::PulledServer,
    identities: &[age::x25519::Identity],
    state: &ReviewState,
) -> Result<Rebuilt, ReviewError> {
    let id = &server.server;
    let mut tree = MemoryTree::default();
    let mut key: Option<(String, VerifierKey)> = None;
    let mut checkpoints: Vec<(u64, String)> = Vec::new();
    let mut records: Vec<SubmissionRecord> = Vec::new();
    let mut reply_keys: BTreeMap<String, (String, u64)> = BTreeMap::new();
    // A segment that cannot be read or does not hold stops the rebuild there: what the
    // segments before it prove still opens (a seized key or a dropped segment must not
    // take every earlier case with it), and the stop is reported as a failure.
    let mut stopped: Option<ReviewError> = None;
    // Submissions before the pull file's start, by id (see `Note::NotCarried`).
    let mut not_carried: Vec<Logged> = Vec::new();
    let mut held_bytes = 0u64;
    for member in &server.segments {
        let mut segment_records: Vec<SubmissionRecord> = Vec::new();
        let mut segment_not_carried: Vec<Logged> = Vec::new();
        let mut segment_keys: BTreeMap<String, (String, u64)> = BTreeMap::new();
        let mut apply = || -> Result<(u64, String), ReviewError> {
            let segment = pull
                .segment(member)
                .and_then(|bytes| read_segment(&bytes))
                .map_err(|why| ReviewError::Altered(format!("journal segment {member}: {why}")))?;
            let header = &segment.header;
            let at = format!("journal segment {}..{}", header.from, header.to);
            if header.server != *id {
                return Err(ReviewError::Altered(format!("{at} belongs to another server")));
            }
            if header.from != tree.size() {
                return Err(ReviewError::Altered(format!(
                    "the journal misses leaves {}..{}: a segment was dropped from the replica",
                    tree.size(),
                    header.from
                )));
            }
            let verifier = match &key {
                Some((text, verifier)) if *text == header.server_key => verifier.clone(),
                Some(_) => {
                    return Err(ReviewError::Altered(format!(
                        "{at} is signed by another key than the segments before it"
                    )))
                }
                None => {
                    let verifier: VerifierKey = header
                        .server_key
                        .parse()
                        .map_err(|_| ReviewError::Altered(format!("{at}: a malformed key")))?;
                    // Held to the key this laptop pinned before anything is decrypted.
                    if let Some(pinned) = state.known_key(&verifier.name) {
                        if pinned != header.server_key {
                            return Err(ReviewError::Altered(format!(
                                "SERVER KEY CHANGED: this laptop holds {} to key {pinned}, but its \
                                 journal in the replica is signed by {}; refusing",
                                verifier.name, header.server_key
                            )));
                        }
                    }
                    key = Some((header.server_key.clone(), verifier.clone()));
                    verifier
                }
            };
            let mut plaintext = super::LimitedWriter::new(MAX_BODY_BYTES);
            plaintext =
                crate::envelope::open_object(segment.body.as_slice(), identities, plaintext)
                    .map_err(|e| {
                        ReviewError::Altered(format!(
                            "{at}: cannot decrypt it with this identity: {e}"
                        ))
                    })?
                    .0;
            if header.to > server.new_from {
                held_bytes += plaintext.bytes().len() as u64;
                if held_bytes > MAX_JOURNAL_BYTES {
                    return Err(ReviewError::Package(format!(
                        "{at}: the journal from where this pull file starts is larger than one \
                         open holds ({} GiB decrypted); the entries before {} opened: for \
                         the rest, `amanat replica pull --since {}` and open that",
                        MAX_JOURNAL_BYTES >> 30,
                        header.from,
                        header.from
                    )));
                }
            }
            let body: JournalBody = serde_json::from_slice(plaintext.bytes())
                .map_err(|e| ReviewError::Altered(format!("{at}: not a journal: {e}")))?;
            if body.schema != JOURNAL_SCHEMA
                || body.server != *id
                || body.from != header.from
                || body.to != header.to
                || body.leaves.len() as u64 != header.to - header.from
            {
                return Err(ReviewError::Altered(format!(
                    "{at}: its body does not match its signed header"
                )));
            }
            let named: BTreeSet<_> = header.objects.iter().map(|(id, _)| id.clone()).collect();
            for (offset, leaf) in body.leaves.iter().enumerate() {
                let index = header.from + offset as u64;
                let hash = leaf.hash().map_err(|e| ReviewError::Altered(format!("{at}: {e}")))?;
                if let Some(record) = &leaf.submission {
                    if record.log_index != Some(index) || LogLeaf::from(record).hash() != hash {
                        return Err(ReviewError::Altered(format!(
                            "{at}: the record of leaf {index} is not the one the log holds"
                        )));
                    }
                    if !record.object_ids().iter().all(|o| named.contains(o)) {
                        return Err(ReviewError::Altered(format!(
                            "{at}: leaf {index} names an object its header does not"
                        )));
                    }
                    // The pull file's index (written by the networked machine, signed by
                    // no one) says from where it carries objects. The journal comes
                    // whole, so each submission before that is known by name and held
                    // to the cases this laptop has, never skipped on the index's word.
                    if index >= server.new_from {
                        segment_records.push(record.clone());
                    } else {
                        segment_not_carried.push(Logged::of(record, &header.server_key));
                    }
                }
                if let Some(change) = &leaf.reply_key {
                    let logged = LogLeaf::ReplyKey {
                        case: change.case.clone(),
                        recipient: change.recipient.clone(),
                    };
                    if logged.validate().is_err() || logged.hash() != hash {
                        return Err(ReviewError::Altered(format!(
                            "{at}: the reply-key change of leaf {index} is not the one the log holds"
                        )));
                    }
                    segment_keys.insert(change.case.clone(), (change.recipient.clone(), index));
                }
                tree.append(hash);
            }
            let checkpoint = Checkpoint::verify(&body.checkpoint, &verifier)
                .map_err(|e| ReviewError::Altered(format!("{at}: {e}")))?;
            let root =
                merkle::root(&tree, header.to).map_err(|e| ReviewError::Altered(e.to_string()))?;
            if checkpoint.size != header.to || checkpoint.root != root {
                return Err(ReviewError::Altered(format!(
                    "{at}: its leaves do not hash to the checkpoint it carries: the journal was altered"
                )));
            }
            Ok((header.to, body.checkpoint))
        };
        match apply() {
            Ok(done) => {
                checkpoints.push(done);
                records.append(&mut segment_records);
                not_carried.append(&mut segment_not_carried);
                reply_keys.append(&mut segment_keys);
            }
            Err(why) if checkpoints.is_empty() => return Err(why),
            Err(why) => {
                stopped = Some(why);
                break;
            }
        }
    }
    let (Some((server_key, verifier)), Some((size, checkpoint))) =
        (key, checkpoints.last().cloned())
    else {
        return Err(ReviewError::Package("the replica holds no journal for this server".into()));
    };
    let proof_err = |e: std::io::Error| ReviewError::Altered(e.to_string());
    let known = state.known_sizes(&verifier.name);
    let verified_size = known.last().copied().unwrap_or(0);
    let mut notes = Vec::new();
    if size < verified_size {
        notes.push(Note::Behind(format!(
            "replica {:?} holds server {id}'s log only up to entry {size}, but this laptop \
             verified {verified_size} entries before: the replica lags behind, or lost the entries \
             after {size} (run `amanat replica audit --state` on it)",
            pull.index.replica
        )));
    }
    // The failure goes last: it is the word that counts for this server.
    if let Some(why) = stopped {
        let next = match why {
            // Too large to hold at once: the message says how to open the rest.
            ReviewError::Package(_) => "",
            _ => ": run `amanat replica audit` on the replica and pull from another",
        };
        notes.push(Note::Stopped(format!(
            "{why}. The entries before {size} were verified and open; those after are not \
             opened from this pull{next}"
        )));
    }
    let mut sizes: BTreeSet<u64> = checkpoints.iter().map(|(s, _)| *s).collect();
    sizes.extend(known);
    let mut earlier = Vec::new();
    for old in sizes.into_iter().filter(|&s| s > 0 && s < size) {
        earlier.push(EarlierCheckpoint {
            size: old,
            root: B64.encode(merkle::root(&tree, old).map_err(proof_err)?),
            proof: encode_hashes(&merkle::consistency_proof(&tree, old, size).map_err(proof_err)?),
        });
    }
    notes.extend(
        not_carried
            .into_iter()
            .map(|submission| Note::NotCarried { submission, from: server.new_from }),
    );
    // What the server deleted from the replica under its own signed notice is not
    // damage: its submission was exported before, and is said so rather than failed.
    let deleted = purge_notices(pull, server, &server_key);
    records.retain(|record| {
        let missing: Vec<_> = record
            .object_ids()
            .into_iter()
            .filter(|o| pull.package.object_len(o).is_none())
            .collect();
        // Excused only when every object it lacks was deleted under a notice.
        let days: Option<Vec<&String>> = missing.iter().map(|o| deleted.get(o)).collect();
        match days.and_then(|days| days.first().map(|d| (*d).clone())) {
            Some(day) => {
                notes.push(Note::Purged { submission: Logged::of(record, &server_key), day });
                false
            }
            None => true,
        }
    });
    let mut inclusion = BTreeMap::new();
    for record in &records {
        let index = record.log_index.unwrap_or_default();
        let proof = merkle::inclusion_proof(&tree, index, size).map_err(proof_err)?;
        inclusion.insert(record.id.to_string(), encode_hashes(&proof));
    }
    let mut logged_keys = Vec::new();
    for (case, (recipient, log_index)) in reply_keys {
        let proof = merkle::inclusion_proof(&tree, log_index, size).map_err(proof_err)?;
        logged_keys.push(LoggedReplyKey {
            case,
            recipient,
            log_index,
            inclusion_proof: encode_hashes(&proof),
        });
    }
    // The attested checkpoints around its records, tied to its head by proofs from
    // the rebuilt tree, so open and disclose have the outside parties' time as from an
    // export.
    let files = pull.attestations(server).map_err(|e| ReviewError::Package(e.to_string()))?;
    let files = trusted_attestations(files, &verifier, &tree, size);
    let leaves = records.iter().filter_map(|r| r.log_index);
    let mut attested: BTreeMap<String, Vec<u8>> =
        crate::log::attested::select_members(&files, leaves, size).into_iter().collect();
    crate::log::attested::add_consistency(&mut attested, size, &tree).map_err(proof_err)?;
    let log = BundleLog { server_key, checkpoint, earlier, inclusion, reply_keys: logged_keys };
    let index = BundleIndex {
        schema: BUNDLE_SCHEMA.into(),
        bundle: bundle_name(id, &pull.index.replica, size),
        server: id.clone(),
        created_at: pull.index.pulled_at.clone(),
        submissions: records,
        log,
    };
    Ok(Rebuilt { index, notes, attested })
}

/// Of a replica's attestation files (anyone holding the bucket can add, edit or drop
/// them), those of checkpoints this rebuilt log vouches for: a checkpoint note signed by
/// the server's key alone (one signature line: what the TSAs stamped), of the size its
/// name says, no larger than the head, with the tree's own root at that size; and the
/// tokens and cosignatures of those checkpoints only. So a planted or padded file can
/// neither stand nearer a record than the real checkpoints nor push them out.
fn trusted_attestations(
    files: BTreeMap<String, Vec<u8>>,
    verifier: &VerifierKey,
    tree: &MemoryTree,
    head: u64,
) -> BTreeMap<String, Vec<u8>> {
    let size_of = crate::log::attested::member_size;
    let vouched = |name: &str, bytes: &[u8]| -> Option<u64> {
        let size = size_of(name)?;
        let note = std::str::from_utf8(bytes).ok()?;
        let one_signature =
            note.split_once("\n\n")?.1.lines().filter(|l| !l.is_empty()).count() == 1;
        let checkpoint = Checkpoint::verify(note, verifier).ok()?;
        let root = merkle::root(tree, size).ok()?;
        (one_signature && size <= head && checkpoint.size == size && checkpoint.root == root)
            .then_some(size)
    };
    let sizes: BTreeSet<u64> = files
        .iter()
        .filter(|(name, _)| name.ends_with(".checkpoint"))
        .filter_map(|(name, bytes)| vouched(name, bytes))
        .collect();
    files
        .into_iter()
        .filter(|(name, _)| {
            !name.ends_with(".consistency") && size_of(name).is_some_and(|s| sizes.contains(&s))
        })
        .collect()
}

/// One server's bundle rebuilt from a pull file.
struct Rebuilt {
    index: BundleIndex,
    notes: Vec<Note>,
    attested: BTreeMap<String, Vec<u8>>,
}

/// What the reviewer is told about a replica besides its submissions.
pub enum Note {
    /// The journal broke off (a segment dropped, altered or unreadable): what came
    /// before opens, and this is a failure.
    Stopped(String),
    /// It holds less of the server's log than this laptop verified before.
    Behind(String),
    /// A submission whose objects the server deleted from the replica after export,
    /// under its signed notice of `day`.
    Purged { submission: Logged, day: String },
    /// A submission before log entry `from`, where the pull file starts carrying
    /// objects (`replica pull --state`): a failure unless this laptop has its case.
    NotCarried { submission: Logged, from: u64 },
}

/// A submission by its id and its place in a server's log: a case folder of that id
/// counts as this submission's only if it was opened from the same log and entry.
pub struct Logged {
    pub id: String,
    pub server_key: String,
    pub log_index: Option<u64>,
}

impl Logged {
    fn of(record: &SubmissionRecord, server_key: &str) -> Logged {
        Logged {
            id: record.id.to_string(),
            server_key: server_key.to_string(),
            log_index: record.log_index,
        }
    }

    /// Whether this laptop has its case in `out`.
    fn opened_in(&self, out: &Path) -> CaseHere {
        let dir = out.join(&self.id);
        match super::report::another_submission(&dir, Some(&self.server_key), self.log_index) {
            Some(why) => CaseHere::Another(why),
            None if dir.is_dir() => CaseHere::Same,
            None => CaseHere::No,
        }
    }
}

/// A submission's case on this laptop.
enum CaseHere {
    Same,
    No,
    /// Another submission of the same id is open, and why that is said.
    Another(String),
}

/// What the reviewer is told of a replica's notes (a case this laptop opened from its
/// export before stays as it is, and needs no word).
pub fn outcomes_of(label: &str, notes: Vec<Note>, out: &Path) -> Vec<super::Outcome> {
    let mut outcomes = Vec::new();
    for note in notes {
        match note {
            Note::Stopped(reason) => outcomes.push(super::Outcome {
                status: super::Status::Failed,
                ..super::note(label, super::Status::Failed, reason)
            }),
            Note::Behind(reason) => {
                outcomes.push(super::note(label, super::Status::ReplicaBehind, reason));
            }
            Note::Purged { submission, .. } | Note::NotCarried { submission, .. }
                if !matches!(submission.opened_in(out), CaseHere::No) =>
            {
                if let CaseHere::Another(why) = submission.opened_in(out) {
                    outcomes.push(super::note(&submission.id, super::Status::Failed, why));
                }
            }
            Note::NotCarried { submission: Logged { id: submission, .. }, from } => {
                let reason = format!(
                    "submission {submission} comes before log entry {from}, from where this pull \
                     file carries objects, and this laptop has no case of it: pull again with a \
                     new --state file (or none)"
                );
                outcomes.push(super::note(&submission, super::Status::Failed, reason));
            }
            Note::Purged { submission: Logged { id: submission, .. }, day } => {
                let reason = format!(
                    "submission {submission} was exported, then deleted from the replica by \
                     the server's signed purge notice of {day}: open it from the export that \
                     carried it"
                );
                outcomes.push(super::note(&submission, super::Status::PurgedFromReplica, reason));
            }
        }
    }
    outcomes
}

/// Each object the server's valid purge notices in the pull file name, with the
/// notice's day: notices signed by the journal's key, for the replica the pull came
/// from, for a reason the puller's configuration lets the server delete for. Any other
/// notice excuses nothing.
fn purge_notices(
    pull: &Pull,
    server: &crate::bundle::replica::PulledServer,
    server_key: &str,
) -> BTreeMap<crate::record::ObjectId, String> {
    let mut deleted = BTreeMap::new();
    let prefix = format!("purged/{}/", server.server);
    let members: BTreeSet<&String> =
        server.notices.iter().filter(|m| m.starts_with(&prefix)).collect();
    for member in members {
        let verified = pull.notice(member).ok().and_then(|note| {
            PurgeNotice::verify_for(&note, &server.server, server_key, &pull.index.replica).ok()
        });
        let Some(notice) =
            verified.filter(|n| n.allowed_by(pull.index.purge, pull.index.retention_days))
        else {
            continue;
        };
        for (id, _) in notice.objects {
            deleted.insert(id, notice.day.clone());
        }
    }
    deleted
}

/// A stable name for the bundle rebuilt from one server's journal at one size.
fn bundle_name(server: &str, replica: &str, size: u64) -> String {
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{replica}\n{server}\n{size}").as_bytes(),
    );
    hex::encode(&digest.as_ref()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_attestation_files_of_checkpoints_the_rebuilt_log_vouches_for_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let key =
            crate::keys::SigningKey::load_or_create(&dir.path().join("k"), "amanat/x").unwrap();
        let mut tree = MemoryTree::default();
        for leaf in [b"a", b"b", b"c"] {
            tree.append(merkle::leaf_hash(leaf));
        }
        let note = |size: u64, root: merkle::Hash| {
            Checkpoint { origin: "amanat/x".into(), size, root }.sign(&key).into_bytes()
        };
        let root = |size| merkle::root(&tree, size).unwrap();
        let name = |n: &str| format!("attestations/{n}");
        let mut padded = note(2, root(2));
        padded.extend_from_slice("\u{2014} junk AAAA\n".as_bytes());
        let files: BTreeMap<String, Vec<u8>> = [
            (name("1.checkpoint"), note(1, root(1))),
            (name("1.tsa.tsr"), b"token".to_vec()),
            // Padded with another signature line: not what the TSA stamped.
            (name("2.checkpoint"), padded),
            (name("2.tsa.tsr"), b"token".to_vec()),
            // Another root than the log's at its size: a fork.
            (name("3.checkpoint"), note(3, [7; 32])),
            (name("3.cosigned"), b"cosigned".to_vec()),
            // Its name says another size than its note.
            (name("4.checkpoint"), note(1, root(1))),
            (name("1-3.consistency"), b"planted".to_vec()),
        ]
        .into_iter()
        .collect();
        let kept = trusted_attestations(files, &key.verifier(), &tree, 3);
        let names: Vec<&str> = kept.keys().map(String::as_str).collect();
        assert_eq!(names, ["attestations/1.checkpoint", "attestations/1.tsa.tsr"]);
    }
}
