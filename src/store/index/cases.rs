//! The index's cases and replies: codename tags, reply keys and their changes, reply
//! records, and the compaction that removes deleted ones from sled's files.

use super::{
    abort, append_leaf, checked_leaf, io, member_key, sled_io, tx_io, CaseRecord, CommitError,
    File, HashSet, Index, InlineObject, InlineTrees, LogLeaf, ObjectId, Path, ReplyKeyChange,
    ReplyRecord, SubmissionRecord, TaggedCase, Transactional, COMPACT_DUE, RESEALED, TAG_PREFIX,
};

impl Index {
    /// The cases whose codename tag begins like `tag`: candidates, to be confirmed by
    /// a constant-time comparison of the full tag.
    pub(in crate::store) fn cases_by_tag_prefix(
        &self,
        tag: &[u8; 32],
    ) -> io::Result<Vec<TaggedCase>> {
        let mut out = Vec::new();
        for item in self.cases.scan_prefix(&tag[..TAG_PREFIX]) {
            let (_, bytes) = item.map_err(sled_io)?;
            out.push(serde_json::from_slice(&bytes).map_err(io::Error::other)?);
        }
        Ok(out)
    }

    pub(in crate::store) fn case_record(&self, case: &str) -> io::Result<Option<CaseRecord>> {
        Self::get_json(&self.case_records, case.as_bytes())
    }

    /// A case's submissions, oldest first.
    pub(in crate::store) fn case_submissions(
        &self,
        case: &str,
    ) -> io::Result<Vec<SubmissionRecord>> {
        let mut out = Vec::new();
        for item in self.case_members.scan_prefix(format!("{case}/")) {
            let (key, _) = item.map_err(sled_io)?;
            let id = String::from_utf8_lossy(&key[case.len() + 1..]).into_owned();
            if let Some(record) = self.submission(&id)? {
                out.push(record);
            }
        }
        out.sort_by_key(|r| r.log_index);
        Ok(out)
    }

    /// A case's replies, oldest first.
    pub(in crate::store) fn case_replies(&self, case: &str) -> io::Result<Vec<ReplyRecord>> {
        let mut out: Vec<ReplyRecord> = Vec::new();
        for item in self.replies.scan_prefix(format!("{case}/")) {
            let (_, bytes) = item.map_err(sled_io)?;
            out.push(serde_json::from_slice(&bytes).map_err(io::Error::other)?);
        }
        out.sort_by_key(|r| r.log_index);
        Ok(out)
    }

    pub(in crate::store) fn has_reply(&self, case: &str, object: &ObjectId) -> io::Result<bool> {
        self.replies.contains_key(member_key(case, object.as_str())).map_err(sled_io)
    }

    /// Records a reply and its custody leaf in one transaction, then makes it durable.
    /// A reply already recorded is left as it is (importing twice adds nothing).
    /// Returns whether it was new.
    pub(in crate::store) fn insert_reply(
        &self,
        case: &str,
        object: &ObjectId,
        imported_at: &str,
        inline: &[InlineObject],
    ) -> Result<bool, CommitError> {
        let key = member_key(case, object.as_str());
        let leaf = checked_leaf(&LogLeaf::Reply {
            case: case.into(),
            object: object.to_string(),
            imported_at: imported_at.into(),
        })
        .map_err(CommitError::NotRecorded)?;
        let trees = (&self.replies, &self.case_records, &self.log);
        let added = (trees.0, trees.1, trees.2, &self.inline_objects, &self.inline_ids)
            .transaction(|(replies, case_records, log, objects, ids)| {
                if case_records.get(case.as_bytes())?.is_none() {
                    return Err(abort("no such case"));
                }
                if replies.get(key.as_bytes())?.is_some() {
                    return Ok(false);
                }
                let log_index = append_leaf(log, &leaf)?;
                InlineTrees { objects, ids }.insert(log_index, inline)?;
                let record = ReplyRecord {
                    object: object.clone(),
                    imported_at: imported_at.into(),
                    log_index,
                };
                let bytes = serde_json::to_vec(&record).map_err(|e| abort(&e.to_string()))?;
                replies.insert(key.as_bytes(), bytes)?;
                Ok(true)
            })
            .map_err(|e| CommitError::NotRecorded(tx_io(e)))?;
        self.make_durable().map_err(CommitError::NotDurable)?;
        Ok(added)
    }

    /// Gives a case its new keys in one transaction: the old tag entry goes, the new
    /// one and the new record take their place, and the change waits for the next
    /// export to be logged (`log_reply_key_changes`): a leaf now would mark, to the hour,
    /// when a survivor came back. Durable on return. False when the old tag was already
    /// gone (a sign-in at the same moment upgraded the case first).
    pub(in crate::store) fn replace_case_keys(
        &self,
        old_tag: &[u8; 32],
        new_tag: &[u8; 32],
        case: &CaseRecord,
    ) -> io::Result<bool> {
        let tag_key = |tag: &[u8; 32]| {
            let mut key = tag[..TAG_PREFIX].to_vec();
            key.extend_from_slice(case.case.as_bytes());
            key
        };
        let (old_key, new_key) = (tag_key(old_tag), tag_key(new_tag));
        let tagged =
            serde_json::to_vec(&TaggedCase { tag: hex::encode(new_tag), record: case.clone() })
                .map_err(io::Error::other)?;
        let record = serde_json::to_vec(case).map_err(io::Error::other)?;
        let change = ReplyKeyChange {
            case: case.case.clone(),
            recipient: case.reply_recipient.clone(),
            log_index: None,
            exported: false,
        };
        let change = serde_json::to_vec(&change).map_err(io::Error::other)?;
        let replaced = (&self.cases, &self.case_records, &self.reply_keys, &self.meta)
            .transaction(|(cases, case_records, reply_keys, meta)| {
                if cases.remove(old_key.as_slice())?.is_none() {
                    return Ok(false);
                }
                cases.insert(new_key.as_slice(), tagged.as_slice())?;
                case_records.insert(case.case.as_bytes(), record.as_slice())?;
                reply_keys.insert(case.case.as_bytes(), change.as_slice())?;
                // The old tag's bytes stay in sled's log until its space is reused: the
                // next start-up rewrites the index without them.
                meta.insert(COMPACT_DUE, &b"1"[..])?;
                Ok(true)
            })
            .map_err(tx_io)?;
        self.make_durable()?;
        Ok(replaced)
    }

    /// Logs every reply-key change not logged yet, each as a custody leaf, in one
    /// transaction, durably (before an export builds its bundle).
    pub(in crate::store) fn log_reply_key_changes(&self) -> io::Result<()> {
        let mut pending = Vec::new();
        for item in &self.reply_keys {
            let (key, bytes) = item.map_err(sled_io)?;
            let change: ReplyKeyChange =
                serde_json::from_slice(&bytes).map_err(io::Error::other)?;
            if change.log_index.is_none() {
                let leaf = LogLeaf::ReplyKey {
                    case: change.case.clone(),
                    recipient: change.recipient.clone(),
                };
                pending.push((key, change, checked_leaf(&leaf)?));
            }
        }
        if pending.is_empty() {
            return Ok(());
        }
        (&self.reply_keys, &self.log)
            .transaction(|(reply_keys, log)| {
                for (key, change, leaf) in &pending {
                    let logged = ReplyKeyChange {
                        log_index: Some(append_leaf(log, leaf)?),
                        ..change.clone()
                    };
                    let bytes = serde_json::to_vec(&logged).map_err(|e| abort(&e.to_string()))?;
                    reply_keys.insert(key, bytes)?;
                }
                Ok(())
            })
            .map_err(tx_io)?;
        self.make_durable()
    }

    /// Every case's latest logged reply-key change, in case order.
    pub(in crate::store) fn reply_key_changes(&self) -> io::Result<Vec<ReplyKeyChange>> {
        let mut out = Vec::new();
        for item in &self.reply_keys {
            let (_, bytes) = item.map_err(sled_io)?;
            let change: ReplyKeyChange =
                serde_json::from_slice(&bytes).map_err(io::Error::other)?;
            if change.log_index.is_some() {
                out.push(change);
            }
        }
        Ok(out)
    }

    /// Marks every logged reply-key change as carried out by a confirmed export.
    pub(in crate::store) fn mark_reply_keys_exported(&self) -> io::Result<()> {
        for item in &self.reply_keys {
            let (key, bytes) = item.map_err(sled_io)?;
            let change: ReplyKeyChange =
                serde_json::from_slice(&bytes).map_err(io::Error::other)?;
            if change.log_index.is_some() && !change.exported {
                let done = ReplyKeyChange { exported: true, ..change };
                let bytes = serde_json::to_vec(&done).map_err(io::Error::other)?;
                self.reply_keys.insert(key, bytes).map_err(sled_io)?;
            }
        }
        self.make_durable()
    }

    /// Whether the index should be rewritten at the next start (`compact_into`).
    pub(in crate::store) fn compaction_due(&self) -> io::Result<bool> {
        Ok(self.meta.get(COMPACT_DUE).map_err(sled_io)?.is_some())
    }

    /// Copies every tree into a fresh sled database at `to`, without the due mark:
    /// what was deleted stays behind in the old files, which the caller removes.
    pub(in crate::store) fn compact_into(&self, to: &Path) -> io::Result<()> {
        let fresh = sled::Config::new()
            .path(to)
            .cache_capacity(16 * 1024 * 1024)
            .open()
            .map_err(sled_io)?;
        // sled's export and import panic where they meet an I/O error.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fresh.import(self.db.export())))
            .map_err(|_| io::Error::other("copying the index into a fresh one failed"))?;
        fresh.open_tree("meta").and_then(|meta| meta.remove(COMPACT_DUE)).map_err(sled_io)?;
        fresh.flush().map_err(sled_io)?;
        drop(fresh);
        // Every file of the copy, blobs included, and its folders: durable before the
        // copy replaces the index.
        let mut folders = vec![to.to_path_buf()];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder)? {
                let entry = entry?;
                if entry.file_type()?.is_dir() {
                    folders.push(entry.path());
                } else {
                    File::open(entry.path())?.sync_all()?;
                }
            }
            crate::durable::sync_dir(&folder)?;
        }
        Ok(())
    }

    /// Replaces a reply by another of the same case (the old one resealed): the new one
    /// and its custody leaf in, the old record and its small object out, in one
    /// transaction; durable on return.
    pub(in crate::store) fn replace_reply(
        &self,
        case: &str,
        old: &ObjectId,
        new: &ObjectId,
        imported_at: &str,
        inline: &[InlineObject],
    ) -> Result<(), CommitError> {
        let (old_key, new_key) = (member_key(case, old.as_str()), member_key(case, new.as_str()));
        let leaf = checked_leaf(&LogLeaf::Reply {
            case: case.into(),
            object: new.to_string(),
            imported_at: imported_at.into(),
        })
        .map_err(CommitError::NotRecorded)?;
        let old_inline = [old.clone()];
        (&self.replies, &self.log, &self.inline_objects, &self.inline_ids, &self.meta)
            .transaction(|(replies, log, objects, ids, meta)| {
                if replies.remove(old_key.as_bytes())?.is_none() {
                    return Err(abort("the reply to reseal is gone"));
                }
                let log_index = append_leaf(log, &leaf)?;
                let trees = InlineTrees { objects, ids };
                trees.remove(&old_inline)?;
                meta.insert(COMPACT_DUE, &b"1"[..])?;
                trees.insert(log_index, inline)?;
                let record =
                    ReplyRecord { object: new.clone(), imported_at: imported_at.into(), log_index };
                let bytes = serde_json::to_vec(&record).map_err(|e| abort(&e.to_string()))?;
                replies.insert(new_key.as_bytes(), bytes)?;
                let count = meta.get(RESEALED)?.and_then(|v| v.as_ref().try_into().ok());
                let count = count.map_or(0, u64::from_be_bytes) + 1;
                meta.insert(RESEALED, &count.to_be_bytes()[..])?;
                Ok(())
            })
            .map_err(|e| CommitError::NotRecorded(tx_io(e)))?;
        self.make_durable().map_err(CommitError::NotDurable)
    }

    /// Replies resealed from a key of before v2: any copy of the index made before
    /// their case's upgrade reads them.
    pub(in crate::store) fn resealed_count(&self) -> io::Result<u64> {
        let value = self.meta.get(RESEALED).map_err(sled_io)?;
        Ok(value.and_then(|v| v.as_ref().try_into().ok()).map_or(0, u64::from_be_bytes))
    }

    /// Every stored reply, with its case.
    pub(in crate::store) fn all_replies(&self) -> io::Result<Vec<(String, ReplyRecord)>> {
        let mut out = Vec::new();
        for item in &self.replies {
            let (key, bytes) = item.map_err(sled_io)?;
            let case = String::from_utf8_lossy(&key).split('/').next().unwrap_or("").to_string();
            out.push((case, serde_json::from_slice(&bytes).map_err(io::Error::other)?));
        }
        Ok(out)
    }

    /// Deletes replies of `case` and those of their objects the index holds, in one
    /// transaction, durably. Returns the records removed.
    pub(in crate::store) fn remove_replies(
        &self,
        replies: &[(String, ObjectId)],
        inline: &[ObjectId],
    ) -> io::Result<()> {
        let keys: Vec<String> =
            replies.iter().map(|(case, object)| member_key(case, object.as_str())).collect();
        (&self.replies, &self.inline_objects, &self.inline_ids, &self.meta)
            .transaction(|(replies, objects, ids, meta)| {
                for key in &keys {
                    replies.remove(key.as_bytes())?;
                }
                // A reply kept in the index (before replies were files) leaves its
                // bytes in sled's log: the next start rewrites the index without them.
                if !inline.is_empty() {
                    meta.insert(COMPACT_DUE, &b"1"[..])?;
                }
                InlineTrees { objects, ids }.remove(inline)
            })
            .map_err(tx_io)?;
        self.make_durable()
    }

    /// Cases whose survivor has not signed in since the upgrade to v2 keys, the replies
    /// stored for them (readable by anyone holding a copy of the index), and all
    /// replies stored.
    pub(in crate::store) fn reply_key_counts(&self) -> io::Result<(usize, usize, usize)> {
        let mut old = HashSet::new();
        for item in &self.case_records {
            let (_, bytes) = item.map_err(sled_io)?;
            let record: CaseRecord = serde_json::from_slice(&bytes).map_err(io::Error::other)?;
            if record.on_v1_keys() {
                old.insert(record.case);
            }
        }
        let replies = self.all_replies()?;
        let exposed = replies.iter().filter(|(case, _)| old.contains(case)).count();
        Ok((old.len(), exposed, replies.len()))
    }
}
