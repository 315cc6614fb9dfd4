//! The store's cases: codename keys and tags, reply keys and their logged changes,
//! and the replies waiting for survivors.

use super::{
    io, CaseRecord, CodenameKey, ObjectId, PendingObjects, ReplyKeyChange, ReplyRecord, Store,
    SubmissionRecord, Write,
};

/// A case a codename opened.
pub struct FoundCase {
    pub record: CaseRecord,
    /// The v1 tag it was found by: it still has the keys of before v2 and must get new
    /// ones now (`upgrade_case_keys`).
    v1_tag: Option<[u8; 32]>,
}

impl FoundCase {
    pub fn needs_new_keys(&self) -> bool {
        self.v1_tag.is_some()
    }
}

impl Store {
    /// The lookup tag and the record of a new case with a codename: a fresh salt, and
    /// the reply recipient the codename key gives with it.
    pub fn new_case_keys(&self, case: &str, key: &CodenameKey) -> ([u8; 32], CaseRecord) {
        let salt = crate::keys::new_case_salt();
        let record = CaseRecord {
            case: case.to_string(),
            reply_recipient: key.reply_identity(&salt).to_public().to_string(),
            reply_salt: Some(hex::encode(salt)),
        };
        (key.lookup_tag(), record)
    }

    /// The case a codename opens, if any: by its v2 tag, or else by the tag it had
    /// before v2 (then `needs_new_keys`).
    pub fn find_case(
        &self,
        key: &CodenameKey,
        normalized_codename: &str,
    ) -> io::Result<Option<FoundCase>> {
        let v2 = key.lookup_tag();
        for candidate in self.index.cases_by_tag_prefix(&v2)? {
            let stored = hex::decode(&candidate.tag).unwrap_or_default();
            if candidate.record.reply_salt.is_some() && key.matches_tag(&stored) {
                return Ok(Some(FoundCase { record: candidate.record, v1_tag: None }));
            }
        }
        let v1 = self.secret.v1_lookup_tag(normalized_codename);
        for candidate in self.index.cases_by_tag_prefix(&v1)? {
            let stored = hex::decode(&candidate.tag).unwrap_or_default();
            if candidate.record.on_v1_keys()
                && self.secret.v1_matches_tag(normalized_codename, &stored)
            {
                return Ok(Some(FoundCase { record: candidate.record, v1_tag: Some(v1) }));
            }
        }
        Ok(None)
    }

    /// Gives a case found by its v1 tag its v2 keys: a new salt and reply recipient, the
    /// v1 tag deleted, and a reply-key change the next export logs, so reviewers learn
    /// the new recipient. Durable on return. None when a sign-in at the same moment
    /// upgraded it first (find it again). Its replies the caller reseals.
    pub fn upgrade_case_keys(
        &self,
        found: &FoundCase,
        key: &CodenameKey,
    ) -> io::Result<Option<CaseRecord>> {
        let Some(old_tag) = found.v1_tag else { return Ok(Some(found.record.clone())) };
        let (tag, record) = self.new_case_keys(&found.record.case, key);
        Ok(self.index.replace_case_keys(&old_tag, &tag, &record)?.then_some(record))
    }

    /// Logs the reply-key changes not logged yet (at the start of an export); true when
    /// some logged change has not been carried out by an export yet.
    pub fn log_reply_key_changes(&self) -> io::Result<bool> {
        self.index.log_reply_key_changes()?;
        Ok(self.index.reply_key_changes()?.iter().any(|c| !c.exported))
    }

    /// Marks the logged reply-key changes as carried out (an export was confirmed).
    pub fn mark_reply_keys_exported(&self) -> io::Result<()> {
        self.index.mark_reply_keys_exported()
    }

    /// Replaces a stored reply by `ciphertext`, the same reply resealed to its case's
    /// new key, durably, with the new one's custody leaf. It keeps the hour the reply
    /// reached the server.
    pub fn reseal_reply(&self, case: &str, old: &ReplyRecord, ciphertext: &[u8]) -> io::Result<()> {
        let (old, hour) = (&old.object, old.imported_at.as_str());
        let id = ObjectId::of(ciphertext);
        let file = self.index.inline_len(old)?.is_none();
        let pending = PendingObjects::default();
        let result = (|| {
            let mut object = self.create_file_object(&pending);
            object.write_all(ciphertext)?;
            object.persist(&id, &pending)?;
            self.commit_index(&pending, |inline| {
                self.index.replace_reply(case, old, &id, hour, inline)
            })
        })();
        if result.is_err() {
            pending.abandon();
        }
        result?;
        if file {
            self.refs.remove_unnamed(std::slice::from_ref(old), true)?;
        }
        Ok(())
    }

    /// Every case's latest reply-key change (for exports).
    pub fn reply_key_changes(&self) -> io::Result<Vec<ReplyKeyChange>> {
        self.index.reply_key_changes()
    }

    /// Deletes replies of `case` (once its survivor has read them), durably.
    pub fn remove_replies(&self, case: &str, objects: &[ObjectId]) -> io::Result<()> {
        let replies: Vec<(String, ObjectId)> =
            objects.iter().map(|id| (case.to_string(), id.clone())).collect();
        self.delete_replies(&replies)
    }

    /// Deletes replies imported at or before `cutoff_hour` (RFC 3339, compared as text),
    /// read or not: `replies.retention_days`. Returns how many went.
    pub fn expire_replies(&self, cutoff_hour: &str) -> io::Result<usize> {
        let due: Vec<(String, ObjectId)> = self
            .index
            .all_replies()?
            .into_iter()
            .filter(|(_, r)| r.imported_at.as_str() <= cutoff_hour)
            .map(|(case, r)| (case, r.object))
            .collect();
        self.delete_replies(&due)?;
        Ok(due.len())
    }

    /// Removes reply records and their ciphertext: records and small objects in one
    /// durable transaction first, then the files.
    fn delete_replies(&self, replies: &[(String, ObjectId)]) -> io::Result<()> {
        if replies.is_empty() {
            return Ok(());
        }
        let _alone = self.commit_gate.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut inline = Vec::new();
        let mut files = Vec::new();
        for (_, id) in replies {
            match self.index.inline_len(id)? {
                Some(len) => inline.push((id.clone(), len)),
                None => files.push(id.clone()),
            }
        }
        let inline_ids: Vec<ObjectId> = inline.iter().map(|(id, _)| id.clone()).collect();
        self.index.remove_replies(replies, &inline_ids)?;
        self.refs.remove_unnamed(&files, true)
    }

    pub fn case_record(&self, case: &str) -> io::Result<Option<CaseRecord>> {
        self.index.case_record(case)
    }

    /// A case's submissions, oldest first.
    pub fn case_submissions(&self, case: &str) -> io::Result<Vec<SubmissionRecord>> {
        self.index.case_submissions(case)
    }

    /// A case's replies, oldest first.
    pub fn case_replies(&self, case: &str) -> io::Result<Vec<ReplyRecord>> {
        self.index.case_replies(case)
    }

    /// Stores a reply's ciphertext for `case` and logs its custody leaf, durably.
    /// Returns false when the same reply was stored before (nothing changes).
    pub fn add_reply(&self, case: &str, ciphertext: &[u8]) -> io::Result<bool> {
        let id = ObjectId::of(ciphertext);
        // Checked before writing: re-persisting an object a record already names, then
        // abandoning it, would delete the stored copy.
        if self.index.has_reply(case, &id)? {
            return Ok(false);
        }
        // A reply is new ciphertext: bytes some record already names would be deleted
        // with the reply once it is read.
        if self.object_len(&id).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "these bytes are already stored as another object: not a new reply",
            ));
        }
        let pending = PendingObjects::default();
        let result = (|| {
            let mut object = self.create_file_object(&pending);
            object.write_all(ciphertext)?;
            object.persist(&id, &pending)?;
            let hour = crate::record::Hour::now();
            self.commit_index(&pending, |inline| self.index.insert_reply(case, &id, &hour, inline))
        })();
        if result.is_err() {
            pending.abandon();
        }
        result
    }
}
