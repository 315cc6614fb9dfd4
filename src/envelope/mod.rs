//! THE format: objects, manifests, streaming encryption and hashing. The only module
//! that encrypts with age; the server, the field kit and the reviewer all come here.
//!
//! An object is one age v1 file encrypted to every coalition recipient; its id is the
//! lowercase hex SHA-256 of the ciphertext, so anyone can check an object against its id
//! without a key.

mod manifest;

pub use manifest::{Attachment, Manifest, Origin, TextField, MANIFEST_SCHEMA};

use crate::keys::Recipients;
use ring::digest;
use std::fmt;
use std::io::{self, Write};

/// Hex SHA-256 of an object's ciphertext.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct ObjectId(String);

impl ObjectId {
    /// Accepts exactly 64 lowercase hex digits, so an id is always safe as a file name.
    pub fn parse(s: &str) -> Option<ObjectId> {
        (s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .then(|| ObjectId(s.to_string()))
    }

    /// The id of the given ciphertext bytes.
    pub fn of(ciphertext: &[u8]) -> ObjectId {
        ObjectId(hex::encode(digest::digest(&digest::SHA256, ciphertext)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ObjectId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        ObjectId::parse(&s).ok_or_else(|| "object id must be 64 lowercase hex digits".into())
    }
}

impl From<ObjectId> for String {
    fn from(id: ObjectId) -> String {
        id.0
    }
}

/// What sealing one object produced.
#[derive(Clone, Debug)]
pub struct SealedObject {
    pub id: ObjectId,
    pub ciphertext_len: u64,
    pub plaintext_len: u64,
    /// Hex SHA-256 of the plaintext. Goes only into the (encrypted) manifest.
    pub plaintext_sha256: String,
}

/// Encrypts a stream to all recipients while hashing both sides, in one pass.
pub struct Sealer<W: Write> {
    stream: age::stream::StreamWriter<HashingWriter<W>>,
    plaintext: digest::Context,
    plaintext_len: u64,
}

impl<W: Write> Sealer<W> {
    pub fn new(recipients: &Recipients, out: W) -> io::Result<Self> {
        let encryptor = age::Encryptor::with_recipients(recipients.as_age())
            .map_err(|e| io::Error::other(e.to_string()))?;
        let stream = encryptor.wrap_output(HashingWriter::new(out))?;
        Ok(Sealer {
            stream,
            plaintext: digest::Context::new(&digest::SHA256),
            plaintext_len: 0,
        })
    }

    pub fn write(&mut self, plaintext: &[u8]) -> io::Result<()> {
        self.plaintext.update(plaintext);
        self.plaintext_len += plaintext.len() as u64;
        self.stream.write_all(plaintext)
    }

    /// Writes the final age chunk and returns the sink with what was sealed. The caller
    /// still owns durability (fsync, rename).
    pub fn finish(self) -> io::Result<(W, SealedObject)> {
        let hashing = self.stream.finish()?;
        let (out, ciphertext_sha256, ciphertext_len) = hashing.finish();
        Ok((
            out,
            SealedObject {
                id: ObjectId(hex::encode(ciphertext_sha256)),
                ciphertext_len,
                plaintext_len: self.plaintext_len,
                plaintext_sha256: hex::encode(self.plaintext.finish()),
            },
        ))
    }
}

/// Seals a small plaintext held in memory (a manifest) in one call.
pub fn seal_bytes<W: Write>(
    recipients: &Recipients,
    plaintext: &[u8],
    out: W,
) -> io::Result<(W, SealedObject)> {
    let mut sealer = Sealer::new(recipients, out)?;
    sealer.write(plaintext)?;
    sealer.finish()
}

/// Passes bytes through while computing their SHA-256 and length.
struct HashingWriter<W> {
    inner: W,
    hash: digest::Context,
    len: u64,
}

impl<W> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hash: digest::Context::new(&digest::SHA256),
            len: 0,
        }
    }

    fn finish(self) -> (W, digest::Digest, u64) {
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
    fn object_ids_are_strict() {
        assert!(ObjectId::parse(&"a".repeat(64)).is_some());
        assert!(ObjectId::parse(&"A".repeat(64)).is_none());
        assert!(ObjectId::parse("../etc/passwd").is_none());
        assert!(ObjectId::parse(&"a".repeat(63)).is_none());
    }
}
