//! The field kit: testimonies sealed offline, on a volunteer's laptop, when the
//! internet is cut. The same sealing function as the server's, the same form, into one
//! sealed file (`bundle::sealed`) to carry out on USB or send by any messenger.

mod questions;
pub mod send;

pub use questions::ask_testimony;

use crate::bundle::sealed::{self, submission_id, SealedIndex, SEALED_SCHEMA};
use crate::durable::NewFile;
use crate::envelope::{self, Attachment, Manifest, ObjectId, Origin, TextField};
use crate::keys::Recipients;
use serde::Serialize;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Why nothing was sealed.
#[derive(Debug)]
pub enum FieldkitError {
    /// The testimony is empty: it is the one thing a submission needs.
    EmptyTestimony,
    /// The sealed file would replace a file.
    Exists(PathBuf),
    /// An evidence file that cannot be read, or is not a file.
    Evidence(PathBuf, io::Error),
    /// Sealing or staging failed.
    Seal(io::Error),
    /// The sealed file could not be written.
    Write(PathBuf, io::Error),
    /// A question could not be read from the terminal.
    Terminal(io::Error),
}

impl fmt::Display for FieldkitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldkitError::EmptyTestimony => {
                f.write_str("the testimony is empty: it is the one thing a submission needs")
            }
            FieldkitError::Exists(out) => {
                write!(f, "{} exists; a sealed file never overwrites a file", out.display())
            }
            FieldkitError::Evidence(path, e) => write!(f, "{}: {e}", path.display()),
            FieldkitError::Seal(e) => write!(f, "cannot seal: {e}"),
            FieldkitError::Write(out, e) => write!(f, "cannot write {}: {e}", out.display()),
            FieldkitError::Terminal(e) => write!(f, "cannot read the answer: {e}"),
        }
    }
}

impl std::error::Error for FieldkitError {}

/// What to seal.
pub struct SealRequest<'a> {
    pub recipients: &'a Recipients,
    pub testimony: Zeroizing<String>,
    pub fields: Vec<TextField>,
    pub evidence: &'a [PathBuf],
    pub language: String,
    pub out: &'a Path,
}

#[derive(Debug, Serialize)]
pub struct SealSummary {
    pub submission: String,
    pub files: usize,
    pub bytes: u64,
}

/// Seals a testimony and its files into a sealed file, streaming each file through the
/// same sealer the server uses (memory stays bounded whatever the sizes). Ciphertext is
/// staged in a private folder beside `out` and removed on success or failure.
/// `progress` gets plaintext bytes sealed and the total.
pub fn seal(
    req: SealRequest<'_>,
    mut progress: impl FnMut(u64, u64),
) -> Result<SealSummary, FieldkitError> {
    if req.testimony.trim().is_empty() {
        return Err(FieldkitError::EmptyTestimony);
    }
    if req.out.exists() {
        return Err(FieldkitError::Exists(req.out.to_path_buf()));
    }
    let mut sizes = Vec::new();
    for path in req.evidence {
        let meta = fs::metadata(path).map_err(|e| FieldkitError::Evidence(path.clone(), e))?;
        if !meta.is_file() {
            let not_a_file = io::Error::new(io::ErrorKind::InvalidInput, "not a file");
            return Err(FieldkitError::Evidence(path.clone(), not_a_file));
        }
        sizes.push(meta.len());
    }
    let total: u64 = sizes.iter().sum();
    let submission = crate::record::new_submission_id();
    let staging = req.out.with_extension("sealing");
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .map_err(|e| FieldkitError::Write(staging.clone(), e))?;
    let result = (|| {
        let mut attachments = Vec::new();
        let mut done = 0u64;
        for path in req.evidence {
            let sealed = seal_file(req.recipients, path, &staging, |n| {
                done += n;
                progress(done, total);
            })?;
            let name =
                path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            attachments.push(Attachment {
                object: sealed.id.to_string(),
                media_type: media_type_of(&name).into(),
                name,
                size: sealed.plaintext_len,
                sha256: sealed.plaintext_sha256,
            });
        }
        let manifest = Manifest {
            schema: envelope::MANIFEST_SCHEMA.into(),
            submission: submission.clone(),
            case: submission.clone(),
            reply_recipient: None,
            reply_key_version: None,
            received_at: String::new(),
            declared_at: Some(device_time()),
            language: req.language.clone(),
            origin: Origin::Fieldkit,
            testimony: req.testimony.to_string(),
            fields: req.fields.clone(),
            attachments: attachments.clone(),
        };
        let plaintext = manifest.to_plaintext().map_err(FieldkitError::Seal)?;
        let (ciphertext, sealed) = envelope::seal_document(req.recipients, &plaintext, Vec::new())
            .map_err(FieldkitError::Seal)?;
        drop(plaintext);
        fs::write(staging.join(sealed.id.as_str()), &ciphertext).map_err(FieldkitError::Seal)?;
        let attachments: Vec<ObjectId> =
            attachments.iter().map(|a| ObjectId::parse(&a.object).expect("ids we made")).collect();
        let index = SealedIndex {
            schema: SEALED_SCHEMA.into(),
            submission: submission_id(&sealed.id, &attachments),
            manifest: sealed.id,
            attachments,
            recipients: req.recipients.fingerprint().into(),
        };
        write_sealed_file(&index, &staging, req.out).map(|bytes| (index.submission, bytes))
    })();
    let _ = fs::remove_dir_all(&staging);
    let (submission, bytes) = result?;
    Ok(SealSummary { submission, files: req.evidence.len(), bytes })
}

/// One evidence file, streamed through the sealer into `staging/<id>`.
fn seal_file(
    recipients: &Recipients,
    path: &Path,
    staging: &Path,
    mut progress: impl FnMut(u64),
) -> Result<envelope::SealedObject, FieldkitError> {
    let mut input = File::open(path).map_err(|e| FieldkitError::Evidence(path.to_path_buf(), e))?;
    let temp = staging.join("partial");
    let out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .map_err(FieldkitError::Seal)?;
    // Blocks shared with the plaintext-hashing thread by reference count, wiped when
    // the last holder drops them.
    let chunks = std::iter::from_fn(|| {
        let mut block = Zeroizing::new(vec![0u8; 256 * 1024]);
        loop {
            return match input.read(&mut block) {
                Ok(0) => None,
                Ok(n) => {
                    block.truncate(n);
                    progress(n as u64);
                    Some(Ok(Block(std::sync::Arc::new(block))))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Some(Err(io::Error::new(e.kind(), format!("{}: {e}", path.display())))),
            };
        }
    });
    let (_, sealed) =
        envelope::seal_parallel(recipients, out, chunks).map_err(FieldkitError::Seal)?;
    fs::rename(&temp, staging.join(sealed.id.as_str())).map_err(FieldkitError::Seal)?;
    Ok(sealed)
}

/// A block of a file being sealed, shared between the sealing threads.
#[derive(Clone)]
struct Block(std::sync::Arc<Zeroizing<Vec<u8>>>);

impl AsRef<[u8]> for Block {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// The sealed file: `sealed.json`, then the objects, through the one durable writer
/// (fsynced, never over an existing file).
fn write_sealed_file(
    index: &SealedIndex,
    staging: &Path,
    out: &Path,
) -> Result<u64, FieldkitError> {
    let written =
        NewFile::create(out).and_then(|file| sealed::write(file, index, staging)?.publish());
    written.map_err(|e| FieldkitError::Write(out.to_path_buf(), e))
}

/// The device clock, to the minute: what the volunteer's laptop says, recorded as its
/// word, apart from the hour a server later receives the file.
fn device_time() -> String {
    let now = time::OffsetDateTime::now_utc();
    let minute = now.replace_time(
        time::Time::from_hms(now.hour(), now.minute(), 0).expect("a valid time of day"),
    );
    minute.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// A media type from the file name, for the reviewer's report (the bytes stay as they
/// are; the report never trusts this for anything but display).
fn media_type_of(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "heic" => "image/heic",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "mp4" => "video/mp4",
        "mov" => "video/quicktime",
        "3gp" => "video/3gpp",
        "m4a" => "audio/mp4",
        "ogg" | "opus" => "audio/ogg",
        "mp3" => "audio/mpeg",
        "pdf" => "application/pdf",
        "txt" => "text/plain",
        _ => "application/octet-stream",
    }
}
