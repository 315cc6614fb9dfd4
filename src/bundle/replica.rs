//! What replicas hold and what `amanat replica pull` carries away from them.
//!
//! In a replica's bucket, under each server's id:
//! ```text
//! <server>/objects/<id>             every object exactly as stored
//! <server>/journal/<from, 20 digits>.seg   a journal segment (log::journal)
//! <server>/purged/<day>-<hash>.notice       a signed purge notice, put before the
//!                                           server deletes what it names
//! <server>/attestations/<size>.checkpoint   an attested checkpoint, its TSA tokens
//!   (.<tsa>.tsr) and witnesses' cosignatures (.cosigned), as in an export
//! ```
//! A segment is a POSIX tar: `segment.note` (its signed header), then `journal.age`
//! (its body, age-encrypted to the coalition).
//!
//! A pull file is a tar too: `replica.json` (schema `amanat/replica/v1`), then every
//! segment of each server as `journal/<server>/<from>.seg`, then the objects of the
//! submissions new since the last pull as `objects/<id>.age`, and each server's purge
//! notices as `purged/<server>/<name>` and the files of its attested checkpoints as
//! `attested/<server>/<name>`: `amanat open` reads it like an export, one bundle per
//! server.

use super::{is_id_member, BundleError, Package, PackageWriter};
use crate::log::journal::SegmentHeader;
use serde::{Deserialize, Serialize};
use std::io::{self, Read};
use std::path::Path;

pub const REPLICA_SCHEMA: &str = "amanat/replica/v1";
pub const INDEX_NAME: &str = "replica.json";
const NOTE_MEMBER: &str = "segment.note";
const BODY_MEMBER: &str = "journal.age";
/// A segment's header names at most a segment's objects; its body holds a segment's
/// records. Far above both, and small enough to read whole.
pub const MAX_SEGMENT_BYTES: u64 = 256 << 20;
const MAX_NOTE_BYTES: u64 = 128 << 20;

/// A segment's key in the bucket.
pub fn segment_key(server: &str, from: u64) -> String {
    format!("{server}/journal/{from:020}.seg")
}

/// An object's key in the bucket.
pub fn object_key(server: &str, id: &crate::record::ObjectId) -> String {
    format!("{server}/objects/{id}")
}

/// A purge notice's key in the bucket: its day (as ten digits, `YYYYMMDD00`), then a
/// hash of the note, so the same notice put twice (a retry) is one object and two
/// never collide.
pub fn notice_key(server: &str, note: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, note.as_bytes());
    let hour = note
        .lines()
        .find_map(|l| l.strip_prefix("day "))
        .map(|h| h.chars().filter(char::is_ascii_digit).take(10).collect::<String>())
        .unwrap_or_default();
    format!("{server}/purged/{hour}-{}.notice", hex::encode(&digest.as_ref()[..8]))
}

/// An attestation file's key in the bucket, from its package member name
/// (`attestations/<name>`).
pub fn attestation_key(server: &str, member: &str) -> String {
    format!("{server}/{member}")
}

/// An attestation file's member name in a pull file, from its key in the bucket, when
/// it is named as an attestation file.
pub fn attestation_member(server: &str, key: &str) -> Option<String> {
    let name = key.strip_prefix(&format!("{server}/attestations/"))?;
    super::is_attestation_member(&format!("attestations/{name}"))
        .then(|| format!("attested/{server}/{name}"))
}

/// The package name (`attestations/<name>`) of a pull file's attestation member.
pub fn attestation_name(server: &str, member: &str) -> Option<String> {
    let name = member.strip_prefix(&format!("attested/{server}/"))?;
    let package_name = format!("attestations/{name}");
    super::is_attestation_member(&package_name).then_some(package_name)
}

/// A purge notice's member name in a pull file, from its key in the bucket.
pub fn notice_member(server: &str, key: &str) -> Option<String> {
    let name = key.rsplit('/').next()?;
    is_notice_name(name).then(|| format!("purged/{server}/{name}"))
}

fn is_notice_name(name: &str) -> bool {
    name.strip_suffix(".notice").is_some_and(|stem| {
        stem.len() == 10 + 1 + 16
            && stem
                .bytes()
                .enumerate()
                .all(|(i, b)| if i == 10 { b == b'-' } else { b.is_ascii_hexdigit() })
    })
}

/// Notices are small: a line per object, a pass's worth of objects at most. One
/// server's notices, together, are held to a bound as well.
pub const MAX_NOTICE_BYTES: u64 = 4 << 20;
pub const MAX_NOTICES_BYTES: u64 = 64 << 20;

/// A segment's first leaf, from its name in the bucket or in a pull file.
pub fn segment_from(name: &str) -> Option<u64> {
    let digits = name.rsplit('/').next()?.strip_suffix(".seg")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// A segment as stored: its tar bytes.
pub fn write_segment(note: &str, body: &[u8]) -> io::Result<Vec<u8>> {
    let mut package = PackageWriter::new(Vec::new());
    package.bytes(NOTE_MEMBER, note.as_bytes())?;
    package.bytes(BODY_MEMBER, body)?;
    package.finish()
}

/// A segment read back: its header (signature checked against the key it names) and
/// its encrypted body, whose hash the header holds.
pub struct ReadSegment {
    pub header: SegmentHeader,
    pub note: String,
    pub body: Vec<u8>,
}

/// Reads a segment's tar from memory and checks it holds together: the header's
/// signature, the body's hash. Which key signed is for the caller to judge.
pub fn read_segment(bytes: &[u8]) -> Result<ReadSegment, BundleError> {
    if bytes.len() as u64 > MAX_SEGMENT_BYTES {
        return Err("the segment is too large".into());
    }
    let mut archive = tar::Archive::new(bytes);
    let mut note = None;
    let mut body = None;
    for entry in archive.entries().map_err(|e| format!("not a segment: {e}"))? {
        let mut entry = entry.map_err(|e| format!("a damaged segment: {e}"))?;
        let name = entry.path().map_err(|e| e.to_string())?.to_string_lossy().into_owned();
        let mut data = Vec::new();
        (&mut entry).take(MAX_SEGMENT_BYTES).read_to_end(&mut data).map_err(|e| e.to_string())?;
        match name.as_str() {
            NOTE_MEMBER if note.is_none() && body.is_none() => {
                if data.len() as u64 > MAX_NOTE_BYTES {
                    return Err("the segment's header is too large".into());
                }
                note = Some(String::from_utf8(data).map_err(|_| "a header that is not text")?);
            }
            BODY_MEMBER if note.is_some() && body.is_none() => body = Some(data),
            other => return Err(BundleError::UnexpectedMember(other.to_string())),
        }
    }
    let (Some(note), Some(body)) = (note, body) else {
        return Err("the segment lacks its header or its body".into());
    };
    let header = SegmentHeader::verify(&note).map_err(|e| e.to_string())?;
    if crate::record::ObjectId::of(&body).as_str() != header.body_sha256 {
        return Err(BundleError::Damaged(format!(
            "the body of segment {}..{} is not the one its signed header names: it was altered",
            header.from, header.to
        )));
    }
    Ok(ReadSegment { header, note, body })
}

/// `replica.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullIndex {
    pub schema: String,
    /// The replica's name in the puller's configuration.
    pub replica: String,
    /// Whether that configuration lets the server delete from the replica what it
    /// purges, or for retention: `open` accepts deletions under a purge notice only then.
    #[serde(default)]
    pub purge: bool,
    #[serde(default)]
    pub retention_days: u64,
    /// UTC hour of the pull.
    pub pulled_at: String,
    pub servers: Vec<PulledServer>,
}

/// What a pull carries of one server.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PulledServer {
    pub server: String,
    /// Submissions at or after this leaf are new in this pull: their objects are in
    /// it. Earlier leaves come for the log alone (a previous pull carried them).
    pub new_from: u64,
    /// Every segment, in order, as members `journal/<server>/<from>.seg`.
    pub segments: Vec<String>,
    /// Every purge notice of the server's, as members `purged/<server>/<name>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notices: Vec<String>,
    /// The attestation files of its attested checkpoints (TSA tokens, witnesses'
    /// cosignatures), as members `attested/<server>/<name>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attestations: Vec<String>,
}

/// A segment's member name in a pull file.
pub fn segment_member(server: &str, from: u64) -> String {
    format!("journal/{server}/{from:020}.seg")
}

/// Begins a pull file: its index. Segments (`PackageWriter::bytes`) and objects
/// (`PackageWriter::reader`) follow.
pub fn begin_pull<W: io::Write>(out: W, index: &PullIndex) -> io::Result<PackageWriter<W>> {
    let mut package = PackageWriter::new(out);
    package.json(INDEX_NAME, index)?;
    Ok(package)
}

/// An opened pull file: its index, and where each member lies.
pub struct Pull {
    pub package: Package,
    pub index: PullIndex,
}

impl Pull {
    pub fn open(path: &Path) -> Result<Pull, BundleError> {
        let package = Package::read(path, INDEX_NAME, |name| {
            is_id_member(name, "objects/")
                || (name.starts_with("journal/") && segment_from(name).is_some())
                || (name.starts_with("purged/")
                    && name.rsplit('/').next().is_some_and(is_notice_name))
                || (name.starts_with("attested/")
                    && name
                        .split('/')
                        .nth(1)
                        .is_some_and(|server| attestation_name(server, name).is_some()))
        })?;
        let index: PullIndex = package.parse_index()?;
        package.require_schema(&index.schema, REPLICA_SCHEMA)?;
        Ok(Pull { package, index })
    }

    /// One segment member, read whole (bounded).
    pub fn segment(&self, member: &str) -> Result<Vec<u8>, BundleError> {
        match self.package.read_member(member, MAX_SEGMENT_BYTES) {
            Some(Ok(bytes)) => Ok(bytes),
            Some(Err(e)) => Err(BundleError::Damaged(format!("cannot read {member}: {e}"))),
            None => Err(BundleError::Damaged(format!("{member} is missing from the pull file"))),
        }
    }

    /// One purge notice member, as text (bounded).
    pub fn notice(&self, member: &str) -> Result<String, BundleError> {
        match self.package.read_member(member, MAX_NOTICE_BYTES) {
            Some(Ok(bytes)) => String::from_utf8(bytes)
                .map_err(|_| BundleError::Damaged(format!("{member} is not text"))),
            Some(Err(e)) => Err(BundleError::Damaged(format!("cannot read {member}: {e}"))),
            None => Err(BundleError::Damaged(format!("{member} is missing from the pull file"))),
        }
    }

    /// An export bundle over this file's objects, for one server whose journal the
    /// reviewer has decrypted and checked (`review::replica`), with the attestation
    /// files chosen for it.
    pub fn bundle(
        path: &Path,
        index: super::BundleIndex,
        attested: std::collections::BTreeMap<String, Vec<u8>>,
    ) -> Result<super::Bundle, BundleError> {
        let package = Pull::open(path)?.package;
        let damaged = package.damaged.clone();
        Ok(super::Bundle { package, index, damaged, attested: Some(attested) })
    }

    /// One server's attestation files in this file, by package name
    /// (`attestations/<name>`), each and all bounded as in an export.
    pub fn attestations(
        &self,
        server: &PulledServer,
    ) -> Result<std::collections::BTreeMap<String, Vec<u8>>, BundleError> {
        let mut files = std::collections::BTreeMap::new();
        let mut total = 0u64;
        for member in &server.attestations {
            let Some(name) = attestation_name(&server.server, member) else { continue };
            // One the pull could not fetch is left out, as if the bucket lacked it.
            let Some(Ok(bytes)) = self.package.read_member(member, super::MAX_ATTESTATION_BYTES)
            else {
                continue;
            };
            total += bytes.len() as u64;
            if files.len() >= super::MAX_ATTESTATION_FILES
                || total > super::MAX_ATTESTATION_TOTAL_BYTES
            {
                return Err("more attestation files than a package may carry".into());
            }
            files.insert(name, bytes);
        }
        Ok(files)
    }
}
