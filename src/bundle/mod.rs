//! Bundles: what an export carries from the server to an offline reviewer. A POSIX tar
//! anyone can list, holding `bundle.json` (schema `amanat/bundle/v1`) first, then every
//! object exactly as stored, as `objects/<id>.age`.
//!
//! Writing needs only ciphertext and records; reading checks structure and indexes the
//! objects without decrypting anything (decryption is `review`'s job).

use crate::envelope::ObjectId;
use crate::store::SubmissionRecord;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub const BUNDLE_SCHEMA: &str = "amanat/bundle/v1";
const INDEX_NAME: &str = "bundle.json";
const BLOCK: u64 = 512;
/// `bundle.json` is records only; anything larger is not a bundle we wrote.
const MAX_INDEX_BYTES: u64 = 256 << 20;

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

/// The log evidence a bundle carries: the server key, a signed checkpoint, proofs that
/// it extends every earlier export's checkpoint, and each record's inclusion proof.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleLog {
    /// Signed-note verifier key (`name+keyid+key`).
    pub server_key: String,
    /// Signed note (C2SP checkpoint) at the time of export.
    pub checkpoint: String,
    pub earlier: Vec<EarlierCheckpoint>,
    /// Submission id -> base64 inclusion proof against `checkpoint`.
    pub inclusion: std::collections::BTreeMap<String, Vec<String>>,
    /// Every case's latest reply key change, with its inclusion proof against
    /// `checkpoint`: where reviewers seal replies from now on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reply_keys: Vec<LoggedReplyKey>,
}

/// A logged change of a case's reply key (`LogLeaf::ReplyKey`) and its proof.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggedReplyKey {
    pub case: String,
    pub recipient: String,
    pub log_index: u64,
    pub inclusion_proof: Vec<String>,
}

impl LoggedReplyKey {
    pub fn log_leaf(&self) -> crate::log::LogLeaf {
        crate::log::LogLeaf::ReplyKey { case: self.case.clone(), recipient: self.recipient.clone() }
    }
}

/// An earlier export's tree head and the consistency proof from it to `checkpoint`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlierCheckpoint {
    pub size: u64,
    /// Base64 root hash.
    pub root: String,
    pub proof: Vec<String>,
}

impl BundleIndex {
    /// Every object the records name, each once, in record order.
    pub fn objects(&self) -> Vec<ObjectId> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for record in &self.submissions {
            for id in record.object_ids() {
                if seen.insert(id.clone()) {
                    out.push(id);
                }
            }
        }
        out
    }
}

fn object_entry_name(id: &ObjectId) -> String {
    format!("objects/{id}.age")
}

/// The exact size of the tar `write` produces, known before writing so the admin socket
/// can announce it.
pub fn bundle_len(index_bytes: u64, object_sizes: impl IntoIterator<Item = u64>) -> u64 {
    let entry = |size: u64| BLOCK + size.div_ceil(BLOCK) * BLOCK;
    entry(index_bytes) + object_sizes.into_iter().map(entry).sum::<u64>() + 2 * BLOCK
}

/// Writes a bundle: `bundle.json`, then each object from `open_object` (a reader and its
/// exact length). Returns the sink; the caller makes it durable.
pub fn write<W: Write, R: Read>(
    out: W,
    index: &BundleIndex,
    mut open_object: impl FnMut(&ObjectId) -> io::Result<(R, u64)>,
) -> io::Result<W> {
    let mut tar = tar::Builder::new(out);
    let json = serde_json::to_vec_pretty(index).map_err(io::Error::other)?;
    tar.append(&header(INDEX_NAME, json.len() as u64)?, json.as_slice())?;
    for id in index.objects() {
        let (object, len) = open_object(&id)?;
        // `take` guards the announced length even if the file changed underneath.
        tar.append(&header(&object_entry_name(&id), len)?, object.take(len))?;
    }
    tar.into_inner()
}

/// A ustar header for a regular member: no owner, no time, mode 0600.
pub(crate) fn header(name: &str, size: u64) -> io::Result<tar::Header> {
    let mut header = tar::Header::new_ustar();
    header.set_path(name)?;
    header.set_size(size);
    header.set_mode(0o600);
    header.set_entry_type(tar::EntryType::Regular);
    // No owner, no time: a bundle says nothing about the host or the moment beyond
    // `created_at`.
    header.set_mtime(0);
    header.set_cksum();
    Ok(header)
}

/// Why a file could not be read as a bundle at all.
#[derive(Debug)]
pub enum BundleError {
    Io(io::Error),
    /// Not a tar, or a damaged or truncated one.
    NotATar(String),
    MissingIndex,
    BadIndex(String),
    /// A member other than `bundle.json` and `objects/<64 hex>.age`, or a duplicate.
    UnexpectedMember(String),
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BundleError::Io(e) => write!(f, "cannot read the bundle: {e}"),
            BundleError::NotATar(why) => {
                write!(f, "not a readable bundle (damaged or truncated tar): {why}")
            }
            BundleError::MissingIndex => write!(f, "the bundle has no bundle.json"),
            BundleError::BadIndex(why) => write!(f, "bundle.json is not valid: {why}"),
            BundleError::UnexpectedMember(name) => {
                write!(f, "the bundle holds an unexpected member {name:?}")
            }
        }
    }
}

impl std::error::Error for BundleError {}

impl From<io::Error> for BundleError {
    fn from(e: io::Error) -> Self {
        BundleError::Io(e)
    }
}

/// A tar read for its structure, not its contents: one JSON index member first, then
/// named regular files, each once. Bundles and disclosure packages are both this.
pub struct Package {
    path: PathBuf,
    pub index: Vec<u8>,
    members: HashMap<String, (u64, u64)>,
    /// Set when the tar is cut short or damaged after the index: members read before
    /// that point are still usable, the rest are missing.
    pub damaged: Option<String>,
}

impl Package {
    /// Reads `index_name` (which must come first) and every member `allowed` accepts.
    pub fn read(
        path: &Path,
        index_name: &str,
        allowed: impl Fn(&str) -> bool,
    ) -> Result<Package, BundleError> {
        let file = File::open(path)?;
        let file_len = file.metadata()?.len();
        let mut archive = tar::Archive::new(file);
        let mut index = None;
        let mut members = HashMap::new();
        let mut damaged = None;
        let entries =
            archive.entries_with_seek().map_err(|e| BundleError::NotATar(e.to_string()))?;
        for entry in entries {
            let mut entry = match entry {
                Ok(entry) => entry,
                Err(e) if index.is_some() => {
                    damaged = Some(e.to_string());
                    break;
                }
                Err(e) => return Err(BundleError::NotATar(e.to_string())),
            };
            let name = entry
                .path()
                .map_err(|e| BundleError::NotATar(e.to_string()))?
                .to_string_lossy()
                .into_owned();
            if entry.header().entry_type() != tar::EntryType::Regular {
                return Err(BundleError::UnexpectedMember(name));
            }
            let (offset, size) = (entry.raw_file_position(), entry.size());
            if offset + size > file_len {
                if index.is_none() {
                    return Err(BundleError::NotATar(format!("{name} is cut short")));
                }
                damaged = Some(format!("the file is cut short inside {name}"));
                break;
            }
            if index.is_none() {
                if name != index_name {
                    return Err(BundleError::MissingIndex);
                }
                if size > MAX_INDEX_BYTES {
                    return Err(BundleError::BadIndex("too large".into()));
                }
                let mut json = Vec::with_capacity(size as usize);
                entry.read_to_end(&mut json)?;
                index = Some(json);
                continue;
            }
            if !allowed(&name) || members.contains_key(&name) {
                return Err(BundleError::UnexpectedMember(name));
            }
            members.insert(name, (offset, size));
        }
        let index = index.ok_or(BundleError::MissingIndex)?;
        Ok(Package { path: path.to_path_buf(), index, members, damaged })
    }

    /// The bytes of one member, if present.
    pub fn member(&self, name: &str) -> Option<io::Result<io::Take<File>>> {
        let &(offset, size) = self.members.get(name)?;
        Some(File::open(&self.path).and_then(|mut f| {
            f.seek(SeekFrom::Start(offset))?;
            Ok(f.take(size))
        }))
    }

    pub fn member_len(&self, name: &str) -> Option<u64> {
        self.members.get(name).map(|&(_, size)| size)
    }

    /// A small member read whole (JSON, signatures), bounded.
    pub fn read_member(&self, name: &str, max: u64) -> Option<io::Result<Vec<u8>>> {
        let reader = self.member(name)?;
        Some(reader.and_then(|r| {
            let mut out = Vec::new();
            r.take(max).read_to_end(&mut out)?;
            Ok(out)
        }))
    }
}

/// `objects/<64 hex>.age`, the name of a stored object in a tar.
pub fn object_member(id: &ObjectId) -> String {
    object_entry_name(id)
}

/// Whether the tar's first member is named `name` (from its header's name field).
fn first_member_is(path: &Path, name: &str) -> io::Result<bool> {
    let mut head = [0u8; 100];
    let mut file = File::open(path)?;
    let mut read = 0;
    while read < head.len() {
        match file.read(&mut head[read..])? {
            0 => break,
            n => read += n,
        }
    }
    let field = &head[..read];
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    Ok(&field[..end] == name.as_bytes())
}

/// The id in an `objects/<64 hex>.age` member name.
pub fn object_member_id(name: &str) -> Option<ObjectId> {
    name.strip_prefix("objects/")
        .and_then(|rest| rest.strip_suffix(".age"))
        .and_then(ObjectId::parse)
}

/// True for `prefix/<64 hex>.age`.
pub fn is_id_member(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .and_then(|rest| rest.strip_suffix(".age"))
        .and_then(ObjectId::parse)
        .is_some()
}

/// An opened bundle: its index, and where each object's bytes lie in the file.
pub struct Bundle {
    package: Package,
    pub index: BundleIndex,
    pub damaged: Option<String>,
    /// A field kit's sealed file rather than a server's bundle: one submission, in no
    /// server's log, its index made from `sealed.json`.
    pub sealed: bool,
}

impl Bundle {
    /// Reads the tar's structure (not the object bytes): `bundle.json` first, then only
    /// `objects/<64 hex>.age`, each once. Damage after `bundle.json` (a truncated copy)
    /// is recorded in `damaged`, so that the whole objects before it can still be used.
    pub fn open(path: &Path) -> Result<Bundle, BundleError> {
        if first_member_is(path, crate::sealed::INDEX_NAME)? {
            return Self::open_sealed(path);
        }
        let package = Package::read(path, INDEX_NAME, |name| is_id_member(name, "objects/"))?;
        let index: BundleIndex = serde_json::from_slice(&package.index)
            .map_err(|e| BundleError::BadIndex(e.to_string()))?;
        if index.schema != BUNDLE_SCHEMA {
            return Err(BundleError::BadIndex(format!("schema {:?}", index.schema)));
        }
        let damaged = package.damaged.clone();
        Ok(Bundle { package, index, damaged, sealed: false })
    }

    /// A sealed file read as a bundle of one submission, so `open` treats both alike.
    fn open_sealed(path: &Path) -> Result<Bundle, BundleError> {
        use crate::sealed::{SealedIndex, INDEX_NAME as SEALED_INDEX, SEALED_SCHEMA};
        let package = Package::read(path, SEALED_INDEX, |name| is_id_member(name, "objects/"))?;
        let sealed: SealedIndex = serde_json::from_slice(&package.index)
            .map_err(|e| BundleError::BadIndex(e.to_string()))?;
        if sealed.schema != SEALED_SCHEMA {
            return Err(BundleError::BadIndex(format!("schema {:?}", sealed.schema)));
        }
        let total =
            sealed.objects().iter().filter_map(|id| package.member_len(&object_member(id))).sum();
        let index = BundleIndex {
            schema: BUNDLE_SCHEMA.into(),
            bundle: format!("sealed-{}", sealed.submission),
            server: "fieldkit".into(),
            created_at: String::new(),
            submissions: vec![sealed.record("", total)],
            log: BundleLog {
                server_key: String::new(),
                checkpoint: String::new(),
                earlier: Vec::new(),
                inclusion: Default::default(),
                reply_keys: Vec::new(),
            },
        };
        let damaged = package.damaged.clone();
        Ok(Bundle { package, index, damaged, sealed: true })
    }

    /// The stored bytes of one object, if the bundle carries it. The caller checks them
    /// against the id.
    pub fn object(&self, id: &ObjectId) -> Option<io::Result<io::Take<File>>> {
        self.package.member(&object_entry_name(id))
    }

    pub fn object_len(&self, id: &ObjectId) -> Option<u64> {
        self.package.member_len(&object_entry_name(id))
    }
}
