//! Sealed files: testimonies sealed offline by the field kit when the internet is cut.
//!
//! A sealed file is a tar: `sealed.json` first (schema `amanat/sealed/v1`: the submission
//! id, object ids and the recipients fingerprint; no name, no size, no text), then
//! `objects/<id>.age`, each object made by the same sealing function the server uses.
//! The server stores the objects as they are after checking what it can without a key
//! (`intake::sealed`); a reviewer can also open a sealed file directly.

use super::{is_id_member, object_member, BundleError, Package, PackageWriter};
use crate::record::{is_hex, is_submission_id, ObjectId, SubmissionRecord};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

pub const SEALED_SCHEMA: &str = "amanat/sealed/v1";
pub const INDEX_NAME: &str = "sealed.json";
/// `sealed.json` lists ids only: a few KiB at most.
pub const MAX_INDEX_BYTES: u64 = 64 * 1024;

/// `sealed.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedIndex {
    pub schema: String,
    /// The submission's id: `submission_id` of the objects below (files from before
    /// that rule carry a random id, which the server does not use). The manifest inside
    /// carries the kit's own random id.
    pub submission: String,
    pub manifest: ObjectId,
    pub attachments: Vec<ObjectId>,
    /// Fingerprint of the recipients the kit sealed to.
    pub recipients: String,
}

/// What is wrong with a `sealed.json`, before any object is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedIndexError {
    /// Another schema: not a sealed file.
    Schema,
    /// An id or fingerprint that is not one amanat makes.
    Field,
    /// More attachments than the receiver takes.
    TooManyFiles,
    /// One object named twice.
    Duplicate,
}

impl SealedIndex {
    /// The submission record a sealed file stands for, received at `received_at` (a
    /// server's hour, or empty when a reviewer opens the file directly).
    pub fn record(&self, received_at: &str, total_bytes: u64) -> SubmissionRecord {
        let id = submission_id(&self.manifest, &self.attachments);
        let id = crate::record::SubmissionId::from(id);
        SubmissionRecord {
            case: id.clone().into(),
            id,
            received_at: received_at.into(),
            manifest: self.manifest.clone(),
            attachments: self.attachments.clone(),
            total_bytes,
            recipients: self.recipients.clone(),
            log_index: None,
        }
    }

    /// Structure only: the schema, valid ids and fingerprint, at most `max_files`
    /// attachments, no object twice (in that order).
    pub fn check(&self, max_files: usize) -> Result<(), SealedIndexError> {
        if self.schema != SEALED_SCHEMA {
            return Err(SealedIndexError::Schema);
        }
        if !is_submission_id(&self.submission) || !is_hex(&self.recipients, 64) {
            return Err(SealedIndexError::Field);
        }
        if self.attachments.len() > max_files {
            return Err(SealedIndexError::TooManyFiles);
        }
        let mut seen = HashSet::new();
        if !self.objects().iter().all(|id| seen.insert(id.clone())) {
            return Err(SealedIndexError::Duplicate);
        }
        Ok(())
    }

    /// The attachments, then the manifest.
    pub fn objects(&self) -> Vec<ObjectId> {
        let mut ids = self.attachments.clone();
        ids.push(self.manifest.clone());
        ids
    }
}

/// The id of the submission a sealed file holds: the first 128 bits of SHA-256 over
/// its object ids, so that it is bound to the sealed content. Whoever sees a sealed
/// file in transit can post other content under its id only as another submission, and
/// can never make the genuine file be refused.
pub fn submission_id(manifest: &ObjectId, attachments: &[ObjectId]) -> String {
    let mut text = String::from("amanat/sealed-id/v1\n");
    text.push_str(manifest.as_str());
    for id in attachments {
        text.push('\n');
        text.push_str(id.as_str());
    }
    ObjectId::of(text.as_bytes()).as_str()[..32].to_string()
}

/// Writes a sealed file: `sealed.json`, then each object from `objects` (a folder
/// holding `<id>` files). Returns the sink; the caller makes it durable.
pub fn write<W: Write>(out: W, index: &SealedIndex, objects: &Path) -> io::Result<W> {
    let mut package = PackageWriter::new(out);
    package.json(INDEX_NAME, index)?;
    for id in index.objects() {
        let object = File::open(objects.join(id.as_str()))?;
        let len = object.metadata()?.len();
        package.reader(&object_member(&id), len, object)?;
    }
    package.finish()
}

/// A sealed file opened by a reviewer: its index and the one record it stands for.
pub struct SealedFile {
    pub(super) package: Package,
    pub index: SealedIndex,
    /// The record of its submission, received at no server (empty hour).
    pub record: SubmissionRecord,
}

impl SealedFile {
    pub fn open(path: &Path) -> Result<SealedFile, BundleError> {
        let package = Package::read(path, INDEX_NAME, |name| is_id_member(name, "objects/"))?;
        let index: SealedIndex = package.parse_index()?;
        package.require_schema(&index.schema, SEALED_SCHEMA)?;
        let total = index.objects().iter().filter_map(|id| package.object_len(id)).sum();
        let record = index.record("", total);
        Ok(SealedFile { package, index, record })
    }

    /// What keeps it from being whole, if anything: damage, or an object it lists and
    /// does not carry (a copy cut short on a USB stick).
    pub fn missing(&self) -> Option<String> {
        if let Some(damage) = &self.package.damaged {
            return Some(damage.clone());
        }
        let absent = self
            .index
            .objects()
            .into_iter()
            .filter(|id| self.package.object_len(id).is_none())
            .count();
        (absent > 0).then(|| format!("{absent} of the objects it lists are not in it"))
    }

    /// The submission id its objects bind it to (the one a server records it under).
    pub fn bound_id(&self) -> String {
        submission_id(&self.index.manifest, &self.index.attachments)
    }
}
