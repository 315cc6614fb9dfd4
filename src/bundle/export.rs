//! Export bundles: what an export carries from the server to an offline reviewer.
//! `bundle.json` (schema `amanat/bundle/v1`) first, then the attestations that bracket
//! its records' times (`attestations/`, see `log::attested`), then every object exactly
//! as stored, as `objects/<id>.age`.

use super::{
    is_attestation_member, is_id_member, object_member, objects_of, BundleError, Package,
    PackageWriter,
};
use crate::log::BundleLog;
use crate::record::{ObjectId, SubmissionRecord};
use serde::{Deserialize, Serialize};
use std::io::{self, Read, Write};
use std::path::Path;

pub const BUNDLE_SCHEMA: &str = "amanat/bundle/v1";
pub const INDEX_NAME: &str = "bundle.json";

/// `bundle.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleIndex {
    pub schema: String,
    pub bundle: String,
    /// The id of the server instance that exported it.
    pub server: String,
    /// UTC hour the bundle was made.
    pub created_at: String,
    pub submissions: Vec<SubmissionRecord>,
    /// What ties the records to the server's signed log.
    pub log: BundleLog,
}

impl BundleIndex {
    /// Every object the records name, each once, in record order.
    pub fn objects(&self) -> Vec<ObjectId> {
        objects_of(&self.submissions)
    }
}

/// The exact size of the tar `write` produces, known before writing so the admin socket
/// can announce it.
pub fn bundle_len(index_bytes: u64, object_sizes: impl IntoIterator<Item = u64>) -> u64 {
    super::tar_len(index_bytes, object_sizes)
}

/// Writes a bundle: `bundle.json`, the attestation files, then each object from
/// `open_object` (a reader and its exact length). Returns the sink; the caller makes it
/// durable.
pub fn write<W: Write, R: Read>(
    out: W,
    index: &BundleIndex,
    attestations: &[(String, Vec<u8>)],
    mut open_object: impl FnMut(&ObjectId) -> io::Result<(R, u64)>,
) -> io::Result<W> {
    let mut package = PackageWriter::new(out);
    package.json(INDEX_NAME, index)?;
    for (name, bytes) in attestations {
        package.bytes(name, bytes)?;
    }
    for id in index.objects() {
        let (object, len) = open_object(&id)?;
        package.reader(&object_member(&id), len, object)?;
    }
    package.finish()
}

/// An opened export bundle: its index, and where each object's bytes lie in the file.
pub struct Bundle {
    pub(super) package: Package,
    pub index: BundleIndex,
    pub damaged: Option<String>,
    /// For a bundle rebuilt from a replica: its attestation files, chosen and proven
    /// consistent with its head when it was rebuilt (an export carries its own).
    pub(super) attested: Option<std::collections::BTreeMap<String, Vec<u8>>>,
}

impl Bundle {
    /// Reads the tar's structure (not the object bytes): `bundle.json` first, then only
    /// `objects/<64 hex>.age`, each once. Damage after `bundle.json` (a truncated copy)
    /// is recorded in `damaged`, so that the whole objects before it can still be used.
    pub fn open(path: &Path) -> Result<Bundle, BundleError> {
        let package = Package::read(path, INDEX_NAME, |name| {
            is_id_member(name, "objects/") || is_attestation_member(name)
        })?;
        let index: BundleIndex = package.parse_index()?;
        package.require_schema(&index.schema, BUNDLE_SCHEMA)?;
        let damaged = package.damaged.clone();
        Ok(Bundle { package, index, damaged, attested: None })
    }

    /// The stored bytes of one object, if the bundle carries it. The caller checks them
    /// against the id.
    pub fn object(&self, id: &ObjectId) -> Option<io::Result<io::Take<std::fs::File>>> {
        self.package.object(id)
    }

    pub fn object_len(&self, id: &ObjectId) -> Option<u64> {
        self.package.object_len(id)
    }

    /// The attestation files the bundle carries, by name.
    /// Whether it was rebuilt from a replica's journal (its attestation files came from a
    /// bucket anyone holding it can write), not exported by the server.
    pub fn from_replica(&self) -> bool {
        self.attested.is_some()
    }

    pub fn attestations(&self) -> io::Result<std::collections::BTreeMap<String, Vec<u8>>> {
        match &self.attested {
            Some(attested) => Ok(attested.clone()),
            None => self.package.attestations(),
        }
    }
}
