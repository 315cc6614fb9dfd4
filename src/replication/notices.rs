//! A server's purge notices in a replica (`log::journal::PurgeNotice`), read and
//! checked for `audit` and `pull`: which of the journal's objects the server itself
//! deleted there, when, and whether this configuration lets it.

use super::Replica;
use crate::bundle::replica::{notice_member, MAX_NOTICES_BYTES, MAX_NOTICE_BYTES};
use crate::config::ReplicaEndpoint;
use crate::log::journal::{PurgeNotice, PurgeReason};
use crate::record::ObjectId;
use std::collections::BTreeMap;

/// What a server's notices say.
#[derive(Default)]
pub(super) struct Notices {
    /// Each valid notice: its member name in a pull file and its text.
    pub raw: Vec<(String, String)>,
    /// Each object a valid notice names: the day of its deletion, and whether this
    /// configuration lets the server delete for that reason.
    pub deleted: BTreeMap<ObjectId, (String, PurgeReason, bool)>,
    /// Notices that do not hold, by name.
    pub problems: Vec<String>,
}

impl Notices {
    /// Whether `id`, missing from the bucket, was deleted as this configuration allows.
    pub fn excuses(&self, id: &ObjectId) -> bool {
        self.deleted.get(id).is_some_and(|(_, _, allowed)| *allowed)
    }

    /// How a missing object that a notice names is reported where this configuration
    /// does not let the server delete it (None: no notice names it, or it may).
    pub fn unwanted(&self, id: &ObjectId) -> Option<String> {
        let (day, reason, allowed) = self.deleted.get(id)?;
        (!allowed).then(|| {
            format!(
                "object {id} was deleted by the server ({}, notice of {day}), but this \
                 configuration does not let it delete {} in this replica",
                match reason {
                    PurgeReason::Purged => "purged after export",
                    PurgeReason::Retention => "past the replica's retention",
                },
                match reason {
                    PurgeReason::Purged => "what it purges (purge = false)",
                    PurgeReason::Retention => "for retention (retention_days = 0)",
                }
            )
        })
    }
}

/// The keys of a server's notices in the bucket, with their sizes.
pub(super) async fn list(
    replica: &Replica,
    server: &str,
) -> Result<Vec<(String, u64)>, &'static str> {
    replica.list(&format!("{server}/purged/")).await
}

/// Reads and checks the notices `listed` for `server`: each signed by the key that
/// signs its journal (None when no segment could be read: then none is trusted) and
/// for this replica by the name `endpoint` gives it; all of them within a bound.
pub(super) async fn read(
    replica: &Replica,
    endpoint: &ReplicaEndpoint,
    server: &str,
    listed: &[(String, u64)],
    server_key: Option<&str>,
) -> Result<Notices, &'static str> {
    let mut notices = Notices::default();
    let mut total = 0u64;
    for (key, size) in listed.iter().cloned() {
        let Some(member) = notice_member(server, &key).filter(|_| size <= MAX_NOTICE_BYTES) else {
            notices.problems.push(format!("{key:?} is not a purge notice"));
            continue;
        };
        total += size;
        if total > MAX_NOTICES_BYTES {
            notices
                .problems
                .push("more purge notices than any server writes: the rest were not read".into());
            break;
        }
        let bytes = replica.get_small(&key, MAX_NOTICE_BYTES).await?;
        let checked =
            String::from_utf8(bytes).map_err(|_| "it is not text".to_string()).and_then(|note| {
                let key = server_key.ok_or("there is no journal segment to hold it to")?;
                PurgeNotice::verify_for(&note, server, key, &endpoint.name)
                    .map(|notice| (note, notice))
                    .map_err(|e| e.to_string())
            });
        match checked {
            Ok((note, notice)) => {
                let allowed = notice.allowed_by(endpoint.purge, endpoint.retention_days);
                for (id, _) in notice.objects {
                    notices.deleted.insert(id, (notice.day.clone(), notice.reason, allowed));
                }
                notices.raw.push((member, note));
            }
            Err(why) => notices.problems.push(format!("purge notice {key:?}: {why}")),
        }
    }
    Ok(notices)
}
