//! Deleting copies from a replica, where its settings ask for it (`purge`,
//! `retention_days` in `[[replicas]]`): which submissions' objects are due there, the
//! signed purge notice (`log::journal::PurgeNotice`) the server puts in the bucket
//! before deleting, and which submissions each replica has deleted, kept durably so a
//! crash repeats a deletion (harmless) but never forgets one.
//!
//! Only submissions exported by a reviewer, and already in that replica, are ever due;
//! an object another submission still needs there stays.

use super::Store;
use crate::log::journal::{PurgeNotice, PurgeReason};
use crate::record::{Hour, ObjectId};
use std::collections::{BTreeMap, BTreeSet};
use std::io;

/// `replica-deleted/<replica>/<submission>`: that replica no longer holds its objects.
const DELETED: &str = "replica-deleted/";
/// Submissions one pass deletes at most (the rest wait for the next pass).
const MAX_PER_PASS: usize = 1000;

/// What one replica's settings let the server delete there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeletionRule {
    /// Follow the server's purges.
    pub purge: bool,
    /// Delete what was exported this many days ago (0: never).
    pub retention_days: u64,
}

/// Deletions due in one replica: the submissions, and for each reason the objects that
/// go (no submission still kept there names them) with their lengths.
#[derive(Debug, Default)]
pub struct DueDeletions {
    pub submissions: Vec<String>,
    pub objects: BTreeMap<PurgeReason, Vec<(ObjectId, u64)>>,
}

impl Store {
    /// What replica `name` should delete now under `rule` (empty when nothing is due
    /// or the rule deletes nothing).
    pub fn due_deletions(&self, name: &str, rule: DeletionRule) -> io::Result<DueDeletions> {
        let cutoff = (rule.retention_days > 0).then(|| Hour::cutoff_days_ago(rule.retention_days));
        self.due_deletions_before(name, rule.purge, cutoff.as_deref())
    }

    /// `due_deletions` with the retention cutoff given (an RFC 3339 time; exports at or
    /// before it are past retention).
    pub(super) fn due_deletions_before(
        &self,
        name: &str,
        purge: bool,
        retention_cutoff: Option<&str>,
    ) -> io::Result<DueDeletions> {
        let mut due = DueDeletions::default();
        if !purge && retention_cutoff.is_none() {
            return Ok(due);
        }
        let through = self.replica_progress(name)?.through;
        let mut keep: BTreeSet<ObjectId> = BTreeSet::new();
        let mut going = Vec::new();
        for record in self.index.all_submissions()? {
            if self.index.meta_get::<bool>(&deleted_key(name, &record.id))?.is_some() {
                continue;
            }
            let in_replica = record.log_index.is_some_and(|i| i < through);
            let reason = match self.index.export_mark(&record.id)? {
                Some(mark) if in_replica && going.len() < MAX_PER_PASS => {
                    if purge && mark.purged {
                        Some(PurgeReason::Purged)
                    } else if retention_cutoff.is_some_and(|c| mark.exported_at.as_str() <= c) {
                        Some(PurgeReason::Retention)
                    } else {
                        None
                    }
                }
                _ => None,
            };
            match reason {
                Some(reason) => going.push((record, reason)),
                None => keep.extend(record.object_ids()),
            }
        }
        let mut claimed = BTreeSet::new();
        for (record, reason) in going {
            for (id, len) in self.journal_lens(&record)? {
                // An object whose length was never kept was never replicated either.
                let Some(len) = len.stored() else { continue };
                if !keep.contains(&id) && claimed.insert(id.clone()) {
                    due.objects.entry(reason).or_default().push((id, len));
                }
            }
            due.submissions.push(record.id.to_string());
        }
        for objects in due.objects.values_mut() {
            objects.sort();
        }
        Ok(due)
    }

    /// The signed notice of deleting `objects` from replica `replica`, for `reason`.
    pub fn purge_notice(
        &self,
        replica: &str,
        reason: PurgeReason,
        objects: Vec<(ObjectId, u64)>,
    ) -> io::Result<String> {
        let hour = Hour::now();
        let notice = PurgeNotice {
            server: self.server_id()?,
            server_key: self.key.verifier().to_string(),
            replica: replica.to_string(),
            day: format!("{}T00:00:00Z", &hour[..10]),
            reason,
            objects,
        };
        Ok(notice.sign(&self.key))
    }

    /// Records, durably, that replica `name` no longer holds these submissions' objects.
    pub fn record_deletions(&self, name: &str, submissions: &[String]) -> io::Result<()> {
        let entries: Vec<(String, bool)> =
            submissions.iter().map(|id| (deleted_key(name, id), true)).collect();
        self.index.meta_put_all(&entries)
    }

    /// The objects replica `name` should hold that this server can still send: those of
    /// the submissions among its first `through` leaves that it was not told to delete.
    pub fn objects_owed(&self, name: &str, through: u64) -> io::Result<Vec<(ObjectId, u64)>> {
        let mut owed = BTreeMap::new();
        for record in self.index.all_submissions()? {
            if record.log_index.is_none_or(|i| i >= through)
                || self.index.meta_get::<bool>(&deleted_key(name, &record.id))?.is_some()
            {
                continue;
            }
            for (id, len) in self.journal_lens(&record)? {
                if let super::journal::ObjectLen::Here(len) = len {
                    owed.insert(id, len);
                }
            }
        }
        Ok(owed.into_iter().collect())
    }

    /// Wakes when a purge on this server deleted something (replicas that follow
    /// purges look then, not only once an hour).
    pub fn watch_purges(&self) -> tokio::sync::watch::Receiver<u64> {
        self.purges.subscribe()
    }
}

fn deleted_key(replica: &str, submission: &str) -> String {
    format!("{DELETED}{replica}/{submission}")
}
