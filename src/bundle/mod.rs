//! Every file that travels, and the one place that knows their formats. Each is a POSIX
//! tar anyone can list: one JSON index member first, then named regular members, each
//! once, objects as `objects/<id>.age` exactly as stored.
//!
//! - `export`: what the server's export carries to the offline reviewers (`bundle.json`).
//! - `sealed`: a field kit's sealed testimony (`sealed.json`).
//! - `reply`: the coalition's replies to survivors (`replies.json`).
//! - `disclosure`: one case for one lawyer (`disclosure.json`).
//! - `replica`: journal segments in a replica's bucket, and what `replica pull` carries
//!   away from it (`replica.json`).
//!
//! Reading checks structure and indexes the members without decrypting anything;
//! writing needs only ciphertext. Packages are written to disk through
//! `durable::NewFile`, which never replaces a file.

pub mod disclosure;
pub mod export;
pub mod replica;
pub mod reply;
pub mod sealed;

pub use export::{Bundle, BundleIndex, BUNDLE_SCHEMA};
pub use sealed::SealedFile;

use crate::log::BundleLog;
use crate::record::{ObjectId, SubmissionRecord};
use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const BLOCK: u64 = 512;

/// What a file is, from its first bytes: the one sniffer of package kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A receipt: JSON, not a tar.
    Receipt,
    Export,
    Sealed,
    Replies,
    Disclosure,
    /// What `amanat replica pull` wrote.
    Replica,
    Unknown,
}

impl Kind {
    /// Reads the first 512 bytes: a receipt starts with `{`; a package's first tar
    /// header names its index member.
    pub fn of(path: &Path) -> io::Result<Kind> {
        let mut head = Vec::with_capacity(512);
        File::open(path)?.take(512).read_to_end(&mut head)?;
        if head.trim_ascii_start().starts_with(b"{") {
            return Ok(Kind::Receipt);
        }
        let name = &head[..head.len().min(100)];
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        Ok(match name {
            b"bundle.json" => Kind::Export,
            b"sealed.json" => Kind::Sealed,
            b"replies.json" => Kind::Replies,
            b"disclosure.json" => Kind::Disclosure,
            b"replica.json" => Kind::Replica,
            _ => Kind::Unknown,
        })
    }
}

/// A package a reviewer opens into case folders: a server's export, or a field kit's
/// sealed file read directly (one submission, in no server's log).
pub enum Opened {
    Export(Bundle),
    Sealed(SealedFile),
}

impl Opened {
    /// Opens either kind, by its first member.
    pub fn open(path: &Path) -> Result<Opened, BundleError> {
        match Kind::of(path)? {
            Kind::Sealed => SealedFile::open(path).map(Opened::Sealed),
            _ => Bundle::open(path).map(Opened::Export),
        }
    }

    /// The submissions it carries.
    pub fn submissions(&self) -> &[SubmissionRecord] {
        match self {
            Opened::Export(bundle) => &bundle.index.submissions,
            Opened::Sealed(sealed) => std::slice::from_ref(&sealed.record),
        }
    }

    /// The attestation files it carries (none for a sealed file).
    pub fn attestations(&self) -> io::Result<std::collections::BTreeMap<String, Vec<u8>>> {
        match self {
            Opened::Export(bundle) => bundle.attestations(),
            Opened::Sealed(_) => Ok(std::collections::BTreeMap::new()),
        }
    }

    /// The server log evidence; none for a sealed file.
    pub fn log(&self) -> Option<&BundleLog> {
        match self {
            Opened::Export(bundle) => Some(&bundle.index.log),
            Opened::Sealed(_) => None,
        }
    }

    /// The bundle's id, or `sealed-<submission>` for a sealed file.
    pub fn name(&self) -> String {
        match self {
            Opened::Export(bundle) => bundle.index.bundle.clone(),
            Opened::Sealed(sealed) => format!("sealed-{}", sealed.record.id),
        }
    }

    /// The exporting server's id, or `fieldkit`.
    pub fn server(&self) -> &str {
        match self {
            Opened::Export(bundle) => &bundle.index.server,
            Opened::Sealed(_) => "fieldkit",
        }
    }

    pub fn package(&self) -> &Package {
        match self {
            Opened::Export(bundle) => &bundle.package,
            Opened::Sealed(sealed) => &sealed.package,
        }
    }

    /// Every object the submissions name, each once.
    pub fn objects(&self) -> Vec<ObjectId> {
        objects_of(self.submissions())
    }
}

/// Every object `records` name, each once, in record order.
pub fn objects_of(records: &[SubmissionRecord]) -> Vec<ObjectId> {
    let mut seen = std::collections::HashSet::new();
    records
        .iter()
        .flat_map(SubmissionRecord::object_ids)
        .filter(|id| seen.insert(id.clone()))
        .collect()
}

/// The exact size of a tar of an index of `index_bytes` and members of the given sizes,
/// known before writing so the admin socket can announce it.
pub fn tar_len(index_bytes: u64, member_sizes: impl IntoIterator<Item = u64>) -> u64 {
    let entry = |size: u64| BLOCK + size.div_ceil(BLOCK) * BLOCK;
    entry(index_bytes) + member_sizes.into_iter().map(entry).sum::<u64>() + 2 * BLOCK
}

/// Writes a package's members in order: the one tar writer of every format.
pub struct PackageWriter<W: Write> {
    tar: tar::Builder<W>,
}

impl<W: Write> PackageWriter<W> {
    pub fn new(out: W) -> Self {
        PackageWriter { tar: tar::Builder::new(out) }
    }

    /// A member from bytes in memory (an index, a signature, a key).
    pub fn bytes(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        self.tar.append(&header(name, data.len() as u64)?, data)
    }

    /// A member of exactly `len` bytes from `reader`; `take` guards the announced
    /// length even if a file changed underneath.
    pub fn reader(&mut self, name: &str, len: u64, reader: impl Read) -> io::Result<()> {
        self.tar.append(&header(name, len)?, reader.take(len))
    }

    /// An index member as pretty JSON.
    pub fn json(&mut self, name: &str, value: &impl serde::Serialize) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
        self.bytes(name, &json)
    }

    /// Writes the end of the archive and gives back the sink (the caller makes it
    /// durable).
    pub fn finish(self) -> io::Result<W> {
        self.tar.into_inner()
    }
}

/// A ustar header for a regular member: no owner, no time, mode 0600.
fn header(name: &str, size: u64) -> io::Result<tar::Header> {
    let mut header = tar::Header::new_ustar();
    header.set_path(name)?;
    header.set_size(size);
    header.set_mode(0o600);
    header.set_entry_type(tar::EntryType::Regular);
    // No owner, no time: a package says nothing about the host or the moment beyond
    // what its index states.
    header.set_mtime(0);
    header.set_cksum();
    Ok(header)
}

/// Why a file could not be read as a package at all.
#[derive(Debug)]
pub enum BundleError {
    Io(io::Error),
    /// Not a tar, or a damaged or truncated one.
    NotATar(String),
    /// The first member is not the index the format begins with.
    MissingIndex(&'static str),
    /// The index is not valid JSON of its format, or of another schema.
    BadIndex(String),
    /// A member other than the index and those the format allows, or a duplicate.
    UnexpectedMember(String),
    /// A member that is not what its format says (a journal segment that does not hold
    /// together, say).
    Damaged(String),
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BundleError::Io(e) => write!(f, "cannot read the bundle: {e}"),
            BundleError::NotATar(why) => {
                write!(f, "not a readable bundle (damaged or truncated tar): {why}")
            }
            BundleError::MissingIndex(name) => write!(f, "the package has no {name} first"),
            BundleError::BadIndex(why) | BundleError::Damaged(why) => f.write_str(why),
            BundleError::UnexpectedMember(name) => {
                write!(f, "the bundle holds an unexpected member {name:?}")
            }
        }
    }
}

impl std::error::Error for BundleError {}

impl From<String> for BundleError {
    fn from(why: String) -> Self {
        BundleError::Damaged(why)
    }
}

impl From<&str> for BundleError {
    fn from(why: &str) -> Self {
        BundleError::Damaged(why.to_string())
    }
}

impl From<io::Error> for BundleError {
    fn from(e: io::Error) -> Self {
        BundleError::Io(e)
    }
}

/// `bundle.json` and the like are records only; anything larger is not a package we
/// wrote.
const MAX_INDEX_BYTES: u64 = 256 << 20;

/// A tar read for its structure, not its contents: one JSON index member first, then
/// named regular files, each once. Every package format is this.
pub struct Package {
    path: PathBuf,
    index_name: &'static str,
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
        index_name: &'static str,
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
                    return Err(BundleError::MissingIndex(index_name));
                }
                if size > MAX_INDEX_BYTES {
                    return Err(BundleError::BadIndex(format!("{index_name} is too large")));
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
        let index = index.ok_or(BundleError::MissingIndex(index_name))?;
        Ok(Package { path: path.to_path_buf(), index_name, index, members, damaged })
    }

    /// The index parsed as `T`.
    pub fn parse_index<T: serde::de::DeserializeOwned>(&self) -> Result<T, BundleError> {
        serde_json::from_slice(&self.index)
            .map_err(|e| BundleError::BadIndex(format!("{} is not valid: {e}", self.index_name)))
    }

    /// Refuses an index of another schema than the format's.
    pub fn require_schema(&self, found: &str, expected: &str) -> Result<(), BundleError> {
        if found == expected {
            Ok(())
        } else {
            Err(BundleError::BadIndex(format!(
                "{} is not valid: schema {found:?}",
                self.index_name
            )))
        }
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

    /// Every attestation file the package carries, by name, each read whole (bounded
    /// in size and number, so a crafted package cannot fill a laptop's memory).
    pub fn attestations(&self) -> io::Result<std::collections::BTreeMap<String, Vec<u8>>> {
        let mut out = std::collections::BTreeMap::new();
        let names: Vec<&String> =
            self.members.keys().filter(|n| is_attestation_member(n)).collect();
        if names.len() > MAX_ATTESTATION_FILES {
            return Err(io::Error::other(format!(
                "{} attestation files, more than the {MAX_ATTESTATION_FILES} a package may carry",
                names.len()
            )));
        }
        let total: u64 = names.iter().map(|name| self.member_len(name).unwrap_or(0)).sum();
        if total > MAX_ATTESTATION_TOTAL_BYTES {
            return Err(io::Error::other(format!("{total} bytes of attestation files")));
        }
        for name in names {
            if self.member_len(name).unwrap_or(0) > MAX_ATTESTATION_BYTES {
                return Err(io::Error::other(format!("{name} is too large")));
            }
            let bytes = self.read_member(name, MAX_ATTESTATION_BYTES).expect("a member")?;
            out.insert(name.clone(), bytes);
        }
        Ok(out)
    }

    /// The stored bytes of one object, if the package carries it. The caller checks
    /// them against the id (`envelope::check_object`).
    pub fn object(&self, id: &ObjectId) -> Option<io::Result<io::Take<File>>> {
        self.member(&object_member(id))
    }

    pub fn object_len(&self, id: &ObjectId) -> Option<u64> {
        self.member_len(&object_member(id))
    }
}

/// `attestations/<size>.checkpoint`, `.cosigned`, `.<tsa>.tsr` or
/// `<a>-<b>.consistency`: short names of digits, lowercase letters, dots and dashes.
pub fn is_attestation_member(name: &str) -> bool {
    name.strip_prefix(crate::log::attested::ATTESTATIONS_DIR).is_some_and(|rest| {
        (1..=80).contains(&rest.len())
            && rest.starts_with(|c: char| c.is_ascii_digit())
            && !rest.contains("..")
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    })
}

/// The largest attestation file a package may carry: a token with its chain.
pub const MAX_ATTESTATION_BYTES: u64 = crate::log::timestamp::MAX_RESPONSE_BYTES as u64;
/// At most this many attestation files, and bytes in all: a few files of a few KiB per
/// checkpoint bracketing each of a package's submissions (an `export --all` of years
/// of intake at the default interval stays well below), so a crafted package cannot
/// fill a laptop's memory.
pub const MAX_ATTESTATION_FILES: usize = 65_536;
pub const MAX_ATTESTATION_TOTAL_BYTES: u64 = 256 << 20;

/// `objects/<64 hex>.age`, the name of a stored object in a tar.
pub fn object_member(id: &ObjectId) -> String {
    format!("objects/{id}.age")
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
