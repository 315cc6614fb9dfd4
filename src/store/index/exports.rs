//! What has been carried out: each submission's export mark (and purge), the
//! submissions still awaiting their first export, and the log sizes earlier bundles'
//! checkpoints had.

use super::{
    append_leaf, checked_leaf, journal_key, sled_io, tx_io, Index, InlineTrees, JournalValue,
};
use crate::log::LogLeaf;
use crate::record::{ObjectId, SubmissionRecord};
use crate::store::records::{ExportMark, LastExport};
use sled::Transactional;
use std::io;

/// In `meta`: the log size through which `unexported` holds every submission not yet
/// exported (big-endian u64), moved by every commit in its transaction.
pub(in crate::store) const UNEXPORTED_THROUGH: &str = "unexported_through";

impl Index {
    /// Submissions whose ciphertext is still here, in id order; with `unexported_only`,
    /// those never carried out, read from `unexported` so that the cost follows what is
    /// new, not everything the store has ever held.
    pub(in crate::store) fn submissions(
        &self,
        unexported_only: bool,
    ) -> io::Result<Vec<SubmissionRecord>> {
        let mut out = Vec::new();
        if unexported_only {
            for item in &self.unexported {
                let (_, bytes) = item.map_err(sled_io)?;
                out.push(serde_json::from_slice(&bytes).map_err(io::Error::other)?);
            }
            return Ok(out);
        }
        for item in &self.submissions {
            let (key, bytes) = item.map_err(sled_io)?;
            // Purged ciphertext is gone: nothing left to carry out.
            let mark: Option<ExportMark> = Self::get_json(&self.exports, &key)?;
            if mark.is_some_and(|m| m.purged) {
                continue;
            }
            out.push(serde_json::from_slice(&bytes).map_err(io::Error::other)?);
        }
        Ok(out)
    }

    /// Brings `unexported` up to the log: for a store from before it existed, every
    /// submission without an export mark, once; after that, the submissions of leaves
    /// that some other writer (an older amanat, started on this store) appended past
    /// `UNEXPORTED_THROUGH`, which every commit here moves in its own transaction. A
    /// submission missing here would never be exported, so this runs at every open.
    pub(super) fn complete_unexported(&self) -> io::Result<()> {
        let size = self.log_size()?;
        let Some(through) = self.meta.get(UNEXPORTED_THROUGH).map_err(sled_io)? else {
            self.unexported.apply_batch(self.unexported_records()?).map_err(sled_io)?;
            self.make_durable()?;
            return self.mark_unexported_through(size);
        };
        let through = u64::from_be_bytes(
            through.as_ref().try_into().map_err(|_| io::Error::other("a bad log position"))?,
        );
        if through == size {
            return self.mark_unexported_through(size);
        }
        let mut batch = sled::Batch::default();
        for index in through..size {
            let Some(bytes) = self.log.get(journal_key(index)).map_err(sled_io)? else { continue };
            if let JournalValue::Submission(id) =
                serde_json::from_slice(&bytes).map_err(io::Error::other)?
            {
                if self.exports.get(id.as_bytes()).map_err(sled_io)?.is_none() {
                    let record = self.submissions.get(id.as_bytes()).map_err(sled_io)?;
                    let record = record
                        .ok_or_else(|| io::Error::other("a logged submission has no record"))?;
                    batch.insert(id.as_bytes(), record);
                }
            }
        }
        self.unexported.apply_batch(batch).map_err(sled_io)?;
        self.make_durable()?;
        self.mark_unexported_through(size)
    }

    /// Every submission without an export mark, as a batch for `unexported`.
    fn unexported_records(&self) -> io::Result<sled::Batch> {
        let mut batch = sled::Batch::default();
        for item in &self.submissions {
            let (key, record) = item.map_err(sled_io)?;
            if self.exports.get(&key).map_err(sled_io)?.is_none() {
                batch.insert(key, record);
            }
        }
        Ok(batch)
    }

    fn mark_unexported_through(&self, size: u64) -> io::Result<()> {
        let now = size.to_be_bytes();
        if self.meta.get(UNEXPORTED_THROUGH).map_err(sled_io)?.as_deref() == Some(&now[..]) {
            return Ok(());
        }
        self.meta.insert(UNEXPORTED_THROUGH, &now[..]).map_err(sled_io)?;
        self.make_durable()
    }

    pub(in crate::store) fn export_mark(&self, id: &str) -> io::Result<Option<ExportMark>> {
        Self::get_json(&self.exports, id.as_bytes())
    }

    /// Marks submissions as carried out in `bundle`, durably, in one transaction with
    /// the export's custody leaf; remembers the log size the bundle's checkpoint had.
    pub(in crate::store) fn mark_exported(
        &self,
        last: &LastExport,
        ids: &[String],
        checkpoint_size: u64,
    ) -> io::Result<()> {
        let mark = |purged| {
            serde_json::to_vec(&ExportMark {
                bundle: last.bundle.clone(),
                exported_at: last.exported_at.clone(),
                purged,
                purged_lens: Vec::new(),
            })
        };
        let fresh = mark(false).map_err(io::Error::other)?;
        let last_bytes = serde_json::to_vec(last).map_err(io::Error::other)?;
        let mut sizes = self.export_sizes()?;
        if !sizes.contains(&checkpoint_size) {
            sizes.push(checkpoint_size);
        }
        let sizes_bytes = serde_json::to_vec(&sizes).map_err(io::Error::other)?;
        let leaf = checked_leaf(&LogLeaf::Export {
            bundle: last.bundle.clone(),
            exported_at: last.exported_at.clone(),
            submissions: ids.to_vec(),
        })?;
        (&self.exports, &self.unexported, &self.meta, &self.log)
            .transaction(|(exports, unexported, meta, log)| {
                for id in ids {
                    unexported.remove(id.as_bytes())?;
                    // Re-exporting (--all) keeps the first mark and its purge state.
                    if exports.get(id.as_bytes())?.is_none() {
                        exports.insert(id.as_bytes(), fresh.as_slice())?;
                    }
                }
                meta.insert("last_export", last_bytes.as_slice())?;
                meta.insert("export_sizes", sizes_bytes.as_slice())?;
                append_leaf(log, &leaf)?;
                Ok(())
            })
            .map_err(tx_io)?;
        self.make_durable()
    }

    /// Log sizes of the checkpoints earlier bundles carried.
    pub(in crate::store) fn export_sizes(&self) -> io::Result<Vec<u64>> {
        Ok(self.meta_get("export_sizes")?.unwrap_or_default())
    }

    /// Marks submissions purged and logs the purge as one custody leaf, in one
    /// transaction: the log never misses a purge, nor names one that did not happen.
    /// Durable with the next flush.
    pub(in crate::store) fn mark_purged(
        &self,
        due: &[(String, ExportMark)],
        purged_at: &str,
        inline: &[ObjectId],
    ) -> io::Result<()> {
        let marks = due
            .iter()
            .map(|(id, mark)| {
                serde_json::to_vec(&ExportMark { purged: true, ..mark.clone() })
                    .map(|bytes| (id.as_bytes(), bytes))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(io::Error::other)?;
        let leaf = checked_leaf(&LogLeaf::Purge {
            purged_at: purged_at.into(),
            submissions: due.iter().map(|(id, _)| id.clone()).collect(),
        })?;
        (&self.exports, &self.log, &self.inline_objects, &self.inline_ids)
            .transaction(|(exports, log, objects, ids)| {
                for (id, bytes) in &marks {
                    exports.insert(*id, bytes.as_slice())?;
                }
                InlineTrees { objects, ids }.remove(inline)?;
                append_leaf(log, &leaf)
            })
            .map(|_| ())
            .map_err(tx_io)
    }

    pub(in crate::store) fn export_counts(&self) -> io::Result<(usize, usize)> {
        let mut exported = 0;
        let mut purged = 0;
        for item in &self.exports {
            let (_, v) = item.map_err(sled_io)?;
            exported += 1;
            let mark: ExportMark = serde_json::from_slice(&v).map_err(io::Error::other)?;
            purged += usize::from(mark.purged);
        }
        Ok((exported, purged))
    }
}
