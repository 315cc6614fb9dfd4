//! What replication reads from the store: journal segments of the log (see
//! `log::journal`), each replica's progress through the log, durably, and how its last
//! push went, in memory. The log is the replication queue: every leaf (and with it
//! every record and object a submission adds) is written to it in the record's own
//! transaction, so a replica's progress is one number, its next leaf, and nothing
//! acknowledged can be missed or sent twice by a crash.

use super::index::{JournalValue, RawJournalLeaf};
use super::Store;
use crate::keys::Recipients;
use crate::log::journal::{
    JournalBody, JournalLeaf, ReplyKeyChange, SegmentHeader, JOURNAL_SCHEMA,
};
use crate::record::{Hour, ObjectId};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use std::collections::BTreeMap;
use std::io;

const REPLICA: &str = "replica/";
/// `replica-segment/<replica>/<first leaf, 20 digits>`: a segment pushed there.
const SEGMENTS: &str = "replica-segment/";
/// `replica-attested/<replica>/<member>`: the hash of the attestation file sent there.
const ATTESTED_SENT: &str = "replica-attested/";

fn attested_key(replica: &str, member: &str) -> String {
    format!("{ATTESTED_SENT}{replica}/{member}")
}

/// How far one replica holds the log, kept durably in the index.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplicaProgress {
    /// The first leaf of the segment still growing.
    pub segment_from: u64,
    /// Leaves below this are in the replica, objects and journal both.
    pub through: u64,
}

/// How one replica is doing, for `amanat status`: never a key, an object's name or a
/// store's own error text.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplicaHealth {
    pub name: String,
    /// Leaves of the log the replica holds.
    pub through: u64,
    /// Leaves not in it yet.
    pub backlog: u64,
    /// The hour of receipt of the oldest submission not in it yet.
    pub oldest_pending: Option<String>,
    /// When a push last succeeded (UTC, to the minute; kept in memory only).
    pub last_success: Option<String>,
    /// Why the last push failed, in fixed words, if it did.
    pub last_error: Option<String>,
    pub failures: u32,
}

/// Where an object's length comes from, for the journal.
pub(super) enum ObjectLen {
    Here(u64),
    Purged(u64),
    /// Purged by a version that did not keep lengths.
    Unknown,
}

impl ObjectLen {
    pub(super) fn stored(&self) -> Option<u64> {
        match *self {
            ObjectLen::Here(len) | ObjectLen::Purged(len) => Some(len),
            ObjectLen::Unknown => None,
        }
    }
}

/// One segment, made: its header, the header's signed note and the encrypted body.
pub struct Segment {
    pub header: SegmentHeader,
    pub note: String,
    pub body: Vec<u8>,
}

impl Store {
    /// The segment of leaves `from..to`: every leaf's hash, each submission's record
    /// and each reply-key change, with the checkpoint at `to`, sealed to `recipients`;
    /// and its header, signed. The objects to send with it are in the header.
    pub fn journal_segment(
        &self,
        from: u64,
        to: u64,
        recipients: &Recipients,
    ) -> io::Result<Segment> {
        let server = self.server_id()?;
        let raw = self.index.journal(from, to)?;
        let mut objects = BTreeMap::new();
        let mut leaves = Vec::with_capacity(raw.len());
        for RawJournalLeaf { hash, value, record } in raw {
            if let Some(record) = &record {
                for (id, len) in self.journal_lens(record)? {
                    objects.insert(
                        id,
                        len.stored().ok_or_else(|| {
                            io::Error::other("an object purged before its length was kept")
                        })?,
                    );
                }
            }
            let reply_key = match value {
                Some(JournalValue::ReplyKey { case, recipient }) => {
                    Some(ReplyKeyChange { case, recipient })
                }
                _ => None,
            };
            leaves.push(JournalLeaf { hash: B64.encode(hash), submission: record, reply_key });
        }
        let (_, checkpoint) = self.prover().signed_head(to)?;
        let body = JournalBody {
            schema: JOURNAL_SCHEMA.into(),
            server: server.clone(),
            from,
            to,
            checkpoint,
            leaves,
        };
        let json = zeroize::Zeroizing::new(serde_json::to_vec(&body).map_err(io::Error::other)?);
        let (body, _) = crate::envelope::seal_document(recipients, &json, Vec::new())?;
        let header = SegmentHeader {
            server,
            server_key: self.key.verifier().to_string(),
            from,
            to,
            body_sha256: ObjectId::of(&body).to_string(),
            objects: objects.into_iter().collect(),
        };
        let note = header.sign(&self.key);
        Ok(Segment { header, note, body })
    }

    /// How far replica `name` holds the log.
    pub fn replica_progress(&self, name: &str) -> io::Result<ReplicaProgress> {
        Ok(self.index.meta_get(&format!("{REPLICA}{name}"))?.unwrap_or_default())
    }

    /// Records, durably, how far replica `name` holds the log (and the segment that
    /// ends there, for `replica_segments`), and tells whoever waits on it.
    pub fn record_replica_progress(&self, name: &str, progress: ReplicaProgress) -> io::Result<()> {
        let mut entries = vec![(format!("{REPLICA}{name}"), progress)];
        if progress.through > progress.segment_from {
            let segment = format!("{SEGMENTS}{name}/{:020}", progress.segment_from);
            entries.push((segment, progress));
        }
        self.index.meta_put_all(&entries)?;
        self.replicated.send_modify(|all| {
            all.insert(name.to_string(), progress.through);
        });
        Ok(())
    }

    /// The attestation files of `files` replica `name` does not hold yet in this form
    /// (a checkpoint's cosignatures grow as witnesses answer: the file is sent again).
    pub fn attestations_owed(
        &self,
        name: &str,
        files: Vec<(String, Vec<u8>)>,
    ) -> io::Result<Vec<(String, Vec<u8>)>> {
        let mut owed = Vec::new();
        for (member, bytes) in files {
            let sent: Option<String> = self.index.meta_get(&attested_key(name, &member))?;
            if sent.as_deref() != Some(ObjectId::of(&bytes).as_str()) {
                owed.push((member, bytes));
            }
        }
        Ok(owed)
    }

    /// Records, durably, that replica `name` holds these attestation files.
    pub fn record_attestations_sent(
        &self,
        name: &str,
        files: &[(String, Vec<u8>)],
    ) -> io::Result<()> {
        let entries: Vec<(String, String)> = files
            .iter()
            .map(|(member, bytes)| (attested_key(name, member), ObjectId::of(bytes).to_string()))
            .collect();
        self.index.meta_put_all(&entries)
    }

    /// Every journal segment pushed to replica `name`, as (first leaf, end), in order:
    /// what the bucket should hold (`replication` checks it does, and puts back what
    /// went missing).
    pub fn replica_segments(&self, name: &str) -> io::Result<Vec<(u64, u64)>> {
        let segments: Vec<(String, ReplicaProgress)> =
            self.index.meta_prefixed(&format!("{SEGMENTS}{name}/"))?;
        Ok(segments.into_iter().map(|(_, s)| (s.segment_from, s.through)).collect())
    }

    /// The objects of the submissions among leaves `from..to` still on this server,
    /// each with its length (what was purged before any replica held it is with the
    /// reviewers already, and cannot be sent).
    pub fn journal_objects(&self, from: u64, to: u64) -> io::Result<Vec<(ObjectId, u64)>> {
        let mut objects = BTreeMap::new();
        for leaf in self.index.journal(from, to)? {
            if let Some(record) = &leaf.record {
                for (id, len) in self.journal_lens(record)? {
                    if let ObjectLen::Here(len) = len {
                        objects.insert(id, len);
                    }
                }
            }
        }
        Ok(objects.into_iter().collect())
    }

    /// Each of `record`'s objects with its length: on this server, or kept by the purge
    /// that deleted it.
    pub(super) fn journal_lens(
        &self,
        record: &crate::record::SubmissionRecord,
    ) -> io::Result<Vec<(ObjectId, ObjectLen)>> {
        let mut purged: Option<BTreeMap<ObjectId, u64>> = None;
        let mut out = Vec::new();
        for id in record.object_ids() {
            let len = match self.object_len(&id) {
                Ok(len) => ObjectLen::Here(len),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    let purged = match &mut purged {
                        Some(purged) => purged,
                        None => purged.insert(
                            self.index
                                .export_mark(&record.id)?
                                .map(|m| m.purged_lens.into_iter().collect())
                                .unwrap_or_default(),
                        ),
                    };
                    purged.get(&id).map_or(ObjectLen::Unknown, |&len| ObjectLen::Purged(len))
                }
                Err(e) => return Err(e),
            };
            out.push((id, len));
        }
        Ok(out)
    }

    /// The lowest leaf not yet in every configured replica (`u64::MAX` with none):
    /// a purge leaves what is at or above it.
    pub(super) fn replicated_by_all(&self) -> io::Result<u64> {
        let names: Vec<String> = self
            .replicas
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        let mut lowest = u64::MAX;
        for name in names {
            lowest = lowest.min(self.replica_progress(&name)?.through);
        }
        Ok(lowest)
    }

    /// The log's size, made durable first: replication never sends a leaf that a crash
    /// could still take back (and give its index to another submission).
    pub fn durable_log_size(&self) -> io::Result<u64> {
        let size = self.log_size()?;
        self.index.flush_durable()?;
        Ok(size)
    }

    /// Wakes on every commit (replication waits on it when it has caught up).
    pub fn watch_commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.grew.subscribe()
    }

    /// Each replica's `through` as it changes.
    pub fn watch_replicated(&self) -> tokio::sync::watch::Receiver<BTreeMap<String, u64>> {
        self.replicated.subscribe()
    }

    /// The hour of receipt of the first submission at or after leaf `from`, if any.
    pub fn first_submission_hour(&self, from: u64) -> io::Result<Option<String>> {
        let size = self.log_size()?;
        let mut at = from;
        while at < size {
            let to = (at + 64).min(size);
            for leaf in self.index.journal(at, to)? {
                if let Some(record) = leaf.record {
                    return Ok(Some(record.received_at));
                }
            }
            at = to;
        }
        Ok(None)
    }

    /// Replication's last word on replica `name` (in memory: lost on restart).
    pub fn set_replica_health(&self, health: ReplicaHealth) {
        let mut all = self.replicas.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        all.insert(health.name.clone(), health);
    }

    /// Every configured replica's health, its backlog read now.
    pub fn replica_health(&self) -> io::Result<Vec<ReplicaHealth>> {
        let known: Vec<ReplicaHealth> = self
            .replicas
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        let size = self.log_size()?;
        let mut out = Vec::with_capacity(known.len());
        for mut health in known {
            let progress = self.replica_progress(&health.name)?;
            health.through = progress.through;
            health.backlog = size.saturating_sub(progress.through);
            health.oldest_pending = self.first_submission_hour(progress.through)?;
            out.push(health);
        }
        Ok(out)
    }
}

/// The time now to the minute, for a replica's last success.
pub fn minute_now() -> String {
    let now = time::OffsetDateTime::now_utc();
    let minute = now.replace_second(0).and_then(|t| t.replace_nanosecond(0)).unwrap_or(now);
    minute.format(&time::format_description::well_known::Rfc3339).unwrap_or_else(|_| Hour::now())
}
