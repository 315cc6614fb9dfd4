//! THE format: objects, manifests, streaming encryption and hashing. The only module
//! that encrypts with age; the server, the field kit and the reviewer all come here.
//!
//! An object is one age v1 file encrypted to every coalition recipient; its id is the
//! lowercase hex SHA-256 of the ciphertext, so anyone can check an object against its id
//! without a key.

mod manifest;
mod open;
mod seal;

pub use crate::record::ObjectId;
pub use manifest::{Attachment, Manifest, Origin, TextField, MANIFEST_SCHEMA};
pub use open::{
    check_header, file_key_of, open_file, open_object, open_object_with_file_key, FileKeyBytes,
    OpenError, OpenedObject,
};
pub use seal::{seal_bytes, seal_document, seal_parallel, SealedObject, Sealer};

use crate::keys::Recipients;
use ring::digest;
use std::fmt;
use std::io::{self, Read, Write};
use zeroize::Zeroizing;

/// Why bytes are not the object an id names.
#[derive(Debug)]
pub enum ObjectCheckError {
    Io(io::Error),
    /// Fewer or more bytes than expected: a cut-off or padded copy.
    Length {
        expected: u64,
        got: u64,
    },
    /// Other bytes: altered or swapped.
    Mismatch,
}

impl fmt::Display for ObjectCheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectCheckError::Io(e) => write!(f, "cannot read it: {e}"),
            ObjectCheckError::Length { expected, got } => {
                write!(f, "{got} bytes where {expected} were announced: cut off")
            }
            ObjectCheckError::Mismatch => f.write_str("does not match its id: altered"),
        }
    }
}

impl std::error::Error for ObjectCheckError {}

/// The one check of an object against its id, without a key: reads `ciphertext` to
/// its end, copying it into `out` as it hashes, and refuses it unless it is exactly
/// `expected_len` bytes (when given) whose SHA-256 is `id`. Every copy of an object
/// that crosses a boundary (a sealed file into the store, a bundle to disk, a bundle
/// or a package to a reviewer or a lawyer) goes through here.
pub fn copy_checked<W: Write>(
    ciphertext: impl Read,
    id: &ObjectId,
    expected_len: Option<u64>,
    out: W,
) -> Result<W, ObjectCheckError> {
    let mut ciphertext = ciphertext;
    let mut writer = HashingWriter::new(out);
    io::copy(&mut ciphertext, &mut writer).map_err(ObjectCheckError::Io)?;
    let (out, hash, len) = writer.finish();
    if let Some(expected) = expected_len.filter(|&e| e != len) {
        return Err(ObjectCheckError::Length { expected, got: len });
    }
    if ObjectId::from_sha256(hash.as_ref()) != *id {
        return Err(ObjectCheckError::Mismatch);
    }
    Ok(out)
}

/// `copy_checked` that keeps nothing: are these bytes the object `id` names?
pub fn check_object(ciphertext: impl Read, id: &ObjectId) -> Result<(), ObjectCheckError> {
    copy_checked(ciphertext, id, None, io::sink()).map(drop)
}

/// The id of an object read from `ciphertext`, without decrypting it.
pub fn object_id_of(ciphertext: impl Read) -> io::Result<ObjectId> {
    let mut reader = HashingReader::new(ciphertext);
    io::copy(&mut reader, &mut io::sink())?;
    Ok(ObjectId::from_sha256(reader.finish().0.as_ref()))
}

/// The size an object's plaintext is padded to: PADMÉ (Nikitin et al., "Reducing
/// Metadata Leakage from Encrypted Files and Communication with PURBs", PETS 2019).
/// A length of E = ⌊log₂ L⌋ bits keeps only its top ⌊log₂ E⌋ + 1 bits; the rest are
/// rounded up. At most 12 % more bytes (under 3 % past 1 MiB), and a seized object's
/// size says only which of a few hundred buckets its file falls in, not its size to the
/// byte (a photo's exact size can be matched against a seized phone). The true size and
/// SHA-256 are in the sealed manifest.
pub fn padded_size(len: u64) -> u64 {
    if len < 2 {
        return len;
    }
    let e = 63 - u64::from(len.leading_zeros());
    let s = 64 - u64::from(e.leading_zeros());
    let mask = (1u64 << (e - s)) - 1;
    len.saturating_add(mask) & !mask
}

/// What pads a file: zeros, cut off again by the manifest's size. A document (JSON)
/// is padded with spaces instead, which JSON allows at its end, so that even stock
/// `age -d` gives back a valid document.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// Writes `count` bytes of `fill` (0 or b' ') to `out`, a block at a time: padding,
/// and the zeros a file is overwritten with before it is deleted.
pub(crate) fn write_padding(out: &mut impl Write, fill: u8, mut count: u64) -> io::Result<()> {
    let spaces = [b' '; 4096];
    let block: &[u8] = if fill == 0 { &ZEROS } else { &spaces };
    debug_assert!(fill == 0 || fill == b' ');
    while count > 0 {
        let n = count.min(block.len() as u64) as usize;
        out.write_all(&block[..n])?;
        count -= n as u64;
    }
    Ok(())
}

/// Reads bytes through while computing their SHA-256 and length.
struct HashingReader<R> {
    inner: R,
    hash: digest::Context,
    len: u64,
}

impl<R> HashingReader<R> {
    fn new(inner: R) -> Self {
        HashingReader { inner, hash: digest::Context::new(&digest::SHA256), len: 0 }
    }

    fn finish(self) -> (digest::Digest, u64) {
        (self.hash.finish(), self.len)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// Passes bytes through while computing their SHA-256 and length.
/// Hashes (SHA-256) and counts what passes through to `inner`: how a stored object's
/// id is computed as it is written.
pub struct HashingWriter<W> {
    inner: W,
    hash: digest::Context,
    len: u64,
}

impl<W> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter { inner, hash: digest::Context::new(&digest::SHA256), len: 0 }
    }

    pub fn finish(self) -> (W, digest::Digest, u64) {
        (self.inner, self.hash.finish(), self.len)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn sealed_object_decrypts_and_its_id_is_the_ciphertext_hash() {
        let id = age::x25519::Identity::generate();
        let recipients = Recipients::parse(&id.to_public().to_string()).unwrap();
        let plaintext = vec![7u8; 200_000];
        let (ciphertext, sealed) = seal_bytes(&recipients, &plaintext, Vec::new()).unwrap();
        assert_eq!(sealed.id, ObjectId::of(&ciphertext));
        assert_eq!(sealed.ciphertext_len, ciphertext.len() as u64);
        assert_eq!(sealed.plaintext_len, 200_000);
        assert_eq!(
            sealed.plaintext_sha256,
            hex::encode(digest::digest(&digest::SHA256, &plaintext))
        );
        let decryptor = age::Decryptor::new(&ciphertext[..]).unwrap();
        let mut out = Vec::new();
        decryptor
            .decrypt(std::iter::once(&id as &dyn age::Identity))
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, plaintext);
    }

    #[test]
    fn an_overlong_header_is_refused_quickly() {
        let mut crafted = b"age-encryption.org/v1\n".to_vec();
        for _ in 0..200_000 {
            crafted.extend_from_slice(b"-> a\n\n");
        }
        let identity = age::x25519::Identity::generate();
        // Without the limit the age crate spends hours on this.
        match open_object(&crafted[..], &[identity], Vec::new()) {
            Err(OpenError::Header(why)) => assert!(why.contains("too long"), "{why}"),
            other => panic!("expected a refused header, got {:?}", other.map(|(_, o)| o)),
        }
    }

    #[test]
    fn a_disclosed_file_key_opens_exactly_that_object() {
        let id = age::x25519::Identity::generate();
        let recipients = Recipients::parse(&id.to_public().to_string()).unwrap();
        let (object, _) = seal_bytes(&recipients, b"evidence", Vec::new()).unwrap();
        let (other, _) = seal_bytes(&recipients, b"other", Vec::new()).unwrap();
        let key = file_key_of(&object[..], std::slice::from_ref(&id)).unwrap();
        let (plain, opened) =
            open_object_with_file_key(&object[..], &key, Vec::new(), None).unwrap();
        assert_eq!(plain, b"evidence");
        assert_eq!(opened.id, ObjectId::of(&object));
        // The key of one object opens no other, and a flipped key opens nothing.
        assert!(open_object_with_file_key(&other[..], &key, Vec::new(), None).is_err());
        let mut wrong = *key;
        wrong[0] ^= 1;
        assert!(open_object_with_file_key(&object[..], &wrong, Vec::new(), None).is_err());
        let stranger = age::x25519::Identity::generate();
        assert!(matches!(
            file_key_of(&object[..], &[stranger]),
            Err(OpenError::NoMatchingIdentity)
        ));
    }

    #[test]
    fn padme_hides_all_but_the_top_bits_of_a_size_and_costs_at_most_an_eighth() {
        assert_eq!(padded_size(0), 0);
        assert_eq!(padded_size(1), 1);
        assert_eq!(padded_size(1000), 1024);
        assert_eq!(padded_size(1_234_567), 1_245_184);
        let mut buckets = std::collections::BTreeSet::new();
        for len in (2..3_000_000u64).step_by(997) {
            let padded = padded_size(len);
            assert!(padded >= len && (padded - len) * 100 <= len * 12, "{len} -> {padded}");
            assert_eq!(padded_size(padded), padded, "a bucket pads to itself");
            buckets.insert(padded);
        }
        assert!(buckets.len() < 400, "{} sizes for 3,000 lengths", buckets.len());
    }

    #[test]
    fn a_file_is_padded_with_zeros_and_opens_to_its_own_bytes() {
        let id = age::x25519::Identity::generate();
        let recipients = Recipients::parse(&id.to_public().to_string()).unwrap();
        let file: Vec<u8> = (0..300_001u32).map(|i| (i % 251) as u8 + 1).collect();
        let chunks = file.chunks(64 * 1024).map(|c| Ok(c.to_vec()));
        let (ciphertext, sealed) = seal_parallel(&recipients, Vec::new(), chunks).unwrap();
        assert_eq!(sealed.plaintext_len, file.len() as u64);
        let whole = {
            let d = age::Decryptor::new(&ciphertext[..]).unwrap();
            let mut out = Vec::new();
            d.decrypt(std::iter::once(&id as &dyn age::Identity))
                .unwrap()
                .read_to_end(&mut out)
                .unwrap();
            out
        };
        assert_eq!(whole.len() as u64, padded_size(file.len() as u64));
        assert!(whole.starts_with(&file) && whole[file.len()..].iter().all(|&b| b == 0));
        let (back, opened) =
            open_file(&ciphertext[..], std::slice::from_ref(&id), Vec::new(), file.len() as u64)
                .unwrap();
        assert_eq!((back, opened.plaintext_sha256), (file.clone(), sealed.plaintext_sha256));
        // A size the object does not pad from is refused.
        assert!(open_file(&ciphertext[..], &[id], Vec::new(), 200_000).is_err());
    }

    #[test]
    fn a_document_is_padded_with_spaces_and_still_parses() {
        let id = age::x25519::Identity::generate();
        let recipients = Recipients::parse(&id.to_public().to_string()).unwrap();
        let json = format!(r#"{{"testimony":"beaten in the basement{}"}}"#, ".".repeat(1000));
        let json = json.as_bytes();
        let (ciphertext, _) = seal_document(&recipients, json, Vec::new()).unwrap();
        let (plain, _) = open_object(&ciphertext[..], &[id], Vec::new()).unwrap();
        assert_eq!(plain.len() as u64, padded_size(json.len() as u64));
        let value: serde_json::Value = serde_json::from_slice(&plain).unwrap();
        assert!(plain.len() > json.len(), "padded");
        assert!(value["testimony"].as_str().unwrap().starts_with("beaten in the basement"));
    }

    #[test]
    fn object_ids_are_strict() {
        assert!(ObjectId::parse(&"a".repeat(64)).is_some());
        assert!(ObjectId::parse(&"A".repeat(64)).is_none());
        assert!(ObjectId::parse("../etc/passwd").is_none());
        assert!(ObjectId::parse(&"a".repeat(63)).is_none());
    }
}
