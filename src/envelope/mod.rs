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
use std::io::{self, Read, Write};
use zeroize::Zeroizing;

/// Hex SHA-256 of an object's ciphertext.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct ObjectId(String);

impl ObjectId {
    /// Accepts exactly 64 lowercase hex digits, so an id is always safe as a file name.
    pub fn parse(s: &str) -> Option<ObjectId> {
        (s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
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

/// The id of an object read from `ciphertext`, without decrypting it.
pub fn object_id_of(ciphertext: impl Read) -> io::Result<ObjectId> {
    let mut reader = HashingReader::new(ciphertext);
    io::copy(&mut reader, &mut io::sink())?;
    Ok(ObjectId(hex::encode(reader.finish().0)))
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
    /// The buffer takes age's header: age reports a failed header write with its kind
    /// erased, and a full disk must stay a full disk (507), so the header's bytes reach
    /// the sink later, through calls that keep the error's kind. Writes of whole age
    /// chunks bypass the buffer.
    stream: age::stream::StreamWriter<io::BufWriter<HashingWriter<W>>>,
    plaintext: digest::Context,
    plaintext_len: u64,
}

impl<W: Write> Sealer<W> {
    pub fn new(recipients: &Recipients, out: W) -> io::Result<Self> {
        let encryptor = age::Encryptor::with_recipients(recipients.as_age())
            .map_err(|e| io::Error::other(e.to_string()))?;
        let stream = encryptor.wrap_output(io::BufWriter::new(HashingWriter::new(out)))?;
        Ok(Sealer { stream, plaintext: digest::Context::new(&digest::SHA256), plaintext_len: 0 })
    }

    pub fn write(&mut self, plaintext: &[u8]) -> io::Result<()> {
        self.plaintext.update(plaintext);
        self.plaintext_len += plaintext.len() as u64;
        self.stream.write_all(plaintext)
    }

    /// Writes the final age chunk and returns the sink with what was sealed. The caller
    /// still owns durability (fsync, rename).
    pub fn finish(self) -> io::Result<(W, SealedObject)> {
        let hashing = self.stream.finish()?.into_inner().map_err(|e| e.into_error())?;
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

/// Seals a stream of chunks like `Sealer`, on three threads at once: the caller's
/// encrypts, one more hashes the plaintext, and one more hashes the ciphertext and
/// writes it to `out`. SHA-256 twice costs as much as the encryption itself, so a large
/// file takes about as long as encrypting it alone (bench/: figure 1). Chunks are
/// handed to the plaintext thread by clone: pass a cheap one (`Bytes`, `Arc<[u8]>`).
/// A chunk that is an `Err` stops sealing with that error; nothing is finished then.
pub fn seal_parallel<C, W>(
    recipients: &Recipients,
    out: W,
    chunks: impl Iterator<Item = io::Result<C>>,
) -> io::Result<(W, SealedObject)>
where
    C: AsRef<[u8]> + Clone + Send,
    W: Write + Send,
{
    use std::sync::mpsc::sync_channel;
    // Bounded: memory stays a few chunks per stage whatever the file's size.
    const DEPTH: usize = 8;
    std::thread::scope(|scope| {
        let (plain_tx, plain_rx) = sync_channel::<C>(DEPTH);
        let plaintext = scope.spawn(move || {
            let mut hash = digest::Context::new(&digest::SHA256);
            let mut len = 0u64;
            for chunk in plain_rx {
                hash.update(chunk.as_ref());
                len += chunk.as_ref().len() as u64;
            }
            (hash.finish(), len)
        });
        let (cipher_tx, cipher_rx) = sync_channel::<Vec<u8>>(DEPTH);
        let writer = scope.spawn(move || -> io::Result<(W, digest::Digest, u64)> {
            let mut out = HashingWriter::new(out);
            for piece in cipher_rx {
                out.write_all(&piece)?;
            }
            out.flush()?;
            Ok(out.finish())
        });

        let encrypted = (|| -> io::Result<()> {
            let encryptor = age::Encryptor::with_recipients(recipients.as_age())
                .map_err(|e| io::Error::other(e.to_string()))?;
            let mut stream = encryptor.wrap_output(ChannelWriter(cipher_tx))?;
            for chunk in chunks {
                let chunk = chunk?;
                plain_tx.send(chunk.clone()).map_err(|_| stage_gone())?;
                stream.write_all(chunk.as_ref())?;
            }
            // Dropping the channel writer (inside) tells the writer thread the end came.
            stream.finish().map(drop)
        })();
        drop(plain_tx);
        let (plaintext_sha256, plaintext_len) = plaintext.join().expect("plaintext hashing");
        let written = writer.join().expect("ciphertext writing");
        // The writer's own error (a full disk) explains a failed send better than the
        // broken channel the encrypting side saw.
        let (out, ciphertext_sha256, ciphertext_len) = written?;
        encrypted?;
        Ok((
            out,
            SealedObject {
                id: ObjectId(hex::encode(ciphertext_sha256)),
                ciphertext_len,
                plaintext_len,
                plaintext_sha256: hex::encode(plaintext_sha256),
            },
        ))
    })
}

/// Hands what age writes to the ciphertext thread of `seal_parallel`.
struct ChannelWriter(std::sync::mpsc::SyncSender<Vec<u8>>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.send(buf.to_vec()).map_err(|_| stage_gone())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn stage_gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "a sealing thread stopped")
}

/// What opening one object proved.
#[derive(Clone, Debug)]
pub struct OpenedObject {
    /// The id its bytes hash to (compare with the id it was stored under).
    pub id: ObjectId,
    pub plaintext_len: u64,
    pub plaintext_sha256: String,
}

/// Why an object could not be opened. Never carries plaintext.
#[derive(Debug)]
pub enum OpenError {
    /// Not an age file, or a header we cannot parse.
    Header(String),
    /// None of the given identities is a recipient of this object.
    NoMatchingIdentity,
    /// The encrypted payload failed authentication: altered or truncated.
    Payload(String),
    /// Writing the plaintext failed.
    Output(io::Error),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Header(e) => write!(f, "not a valid age object ({e})"),
            OpenError::NoMatchingIdentity => {
                write!(f, "none of the given identities can decrypt it (wrong key?)")
            }
            OpenError::Payload(e) => {
                write!(f, "its encrypted content is altered or cut short ({e})")
            }
            OpenError::Output(e) => write!(f, "cannot write the decrypted content: {e}"),
        }
    }
}

impl std::error::Error for OpenError {}

/// Decrypts one object, streaming, while hashing both sides: the one decryption
/// function of amanat (reviewer, verification, replies). Plaintext is written to
/// `plaintext` as it is authenticated chunk by chunk; on error the caller must discard
/// what was written.
pub fn open_object<R: Read + Send, W: Write + Send>(
    ciphertext: R,
    identities: &[age::x25519::Identity],
    plaintext: W,
) -> Result<(W, OpenedObject), OpenError> {
    open_object_as(ciphertext, &AnyOf(identities), plaintext)
}

/// Tries each identity in turn.
struct AnyOf<'a>(&'a [age::x25519::Identity]);

impl age::Identity for AnyOf<'_> {
    fn unwrap_stanza(
        &self,
        stanza: &age_core::format::Stanza,
    ) -> Option<Result<age_core::format::FileKey, age::DecryptError>> {
        self.0.iter().find_map(|i| i.unwrap_stanza(stanza))
    }
}

/// Decrypts on the caller's thread while one more thread reads and hashes the
/// ciphertext and another hashes and writes the plaintext: three SHA-256-or-ChaCha
/// passes over every byte, at once instead of one after another (bench/: figure 4).
fn open_object_as<R: Read + Send, W: Write + Send>(
    ciphertext: R,
    identity: &dyn age::Identity,
    plaintext: W,
) -> Result<(W, OpenedObject), OpenError> {
    use std::sync::mpsc::sync_channel;
    const DEPTH: usize = 8;
    std::thread::scope(|scope| {
        let (cipher_tx, cipher_rx) = sync_channel::<io::Result<Vec<u8>>>(DEPTH);
        let reader = scope.spawn(move || {
            let mut hashing = HashingReader::new(ciphertext);
            loop {
                let mut block = vec![0u8; 256 * 1024];
                let sent = match hashing.read(&mut block) {
                    Ok(0) => break,
                    Ok(n) => {
                        block.truncate(n);
                        cipher_tx.send(Ok(block))
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => cipher_tx.send(Err(e)),
                };
                if sent.is_err() {
                    // The decrypting side stopped (an error): stop reading.
                    break;
                }
            }
            hashing.finish().0
        });
        let (plain_tx, plain_rx) = sync_channel::<Zeroizing<Vec<u8>>>(DEPTH);
        let writer = scope.spawn(move || -> io::Result<(W, digest::Digest, u64)> {
            let mut plaintext = plaintext;
            let mut hash = digest::Context::new(&digest::SHA256);
            let mut len = 0u64;
            for piece in plain_rx {
                hash.update(&piece);
                len += piece.len() as u64;
                plaintext.write_all(&piece)?;
            }
            Ok((plaintext, hash.finish(), len))
        });

        let decrypted = (|| -> Result<(), OpenError> {
            let guarded =
                HeaderLimit::new(BlockReader { rx: cipher_rx, current: Vec::new(), at: 0 });
            let mut input = io::BufReader::with_capacity(256 * 1024, guarded);
            let decryptor = age::Decryptor::new_buffered(&mut input)
                .map_err(|e| OpenError::Header(e.to_string()))?;
            let mut stream = decryptor.decrypt(std::iter::once(identity)).map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => OpenError::NoMatchingIdentity,
                other => OpenError::Header(other.to_string()),
            })?;
            loop {
                let mut piece = Zeroizing::new(vec![0u8; 64 * 1024]);
                let n = match stream.read(&mut piece) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(OpenError::Payload(e.to_string())),
                };
                piece.truncate(n);
                if plain_tx.send(piece).is_err() {
                    // The writer failed; its error is reported below.
                    break;
                }
            }
            drop(stream);
            // Whatever follows the final age chunk is not part of the object: refuse it.
            let mut rest = [0u8; 1];
            if input.read(&mut rest).map_err(|e| OpenError::Payload(e.to_string()))? != 0 {
                return Err(OpenError::Payload("trailing data after the end of the object".into()));
            }
            Ok(())
        })();
        drop(plain_tx);
        let written = writer.join().expect("plaintext writing");
        let ciphertext_sha256 = reader.join().expect("ciphertext reading");
        let (plaintext, plaintext_sha256, len) = written.map_err(OpenError::Output)?;
        decrypted?;
        Ok((
            plaintext,
            OpenedObject {
                id: ObjectId(hex::encode(ciphertext_sha256)),
                plaintext_len: len,
                plaintext_sha256: hex::encode(plaintext_sha256),
            },
        ))
    })
}

/// The decrypting side of `open_object_as`: the ciphertext blocks the reader thread
/// passes on, as a `Read`; the reader's error, if any, in its place.
struct BlockReader {
    rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    current: Vec<u8>,
    at: usize,
}

impl Read for BlockReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.current.len() {
            match self.rx.recv() {
                Ok(block) => {
                    self.current = block?;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len() - self.at);
        buf[..n].copy_from_slice(&self.current[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Longest age header we accept. Ours are a few hundred bytes per recipient; the age
/// crate re-parses a header from its start after every line, so a crafted megabyte of
/// stanzas would take it hours.
const MAX_HEADER_BYTES: u64 = 16 * 1024;

/// Fails the read once `MAX_HEADER_BYTES` have passed without the header's MAC line
/// (`\n--- `) having begun.
struct HeaderLimit<R> {
    inner: R,
    seen: u64,
    /// How much of "\n--- " the last bytes matched; `None` once the header is over.
    matched: Option<usize>,
}

impl<R> HeaderLimit<R> {
    fn new(inner: R) -> Self {
        HeaderLimit { inner, seen: 0, matched: Some(0) }
    }
}

impl<R: Read> Read for HeaderLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        const MAC_LINE: &[u8] = b"\n--- ";
        let n = self.inner.read(buf)?;
        if let Some(mut matched) = self.matched {
            for &b in &buf[..n] {
                matched = if b == MAC_LINE[matched] {
                    matched + 1
                } else if b == MAC_LINE[0] {
                    1
                } else {
                    0
                };
                if matched == MAC_LINE.len() {
                    self.matched = None;
                    return Ok(n);
                }
                self.seen += 1;
                if self.seen > MAX_HEADER_BYTES {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "age header too long"));
                }
            }
            self.matched = Some(matched);
        }
        Ok(n)
    }
}

/// Checks that `ciphertext` begins with a well-formed age header (within our header
/// limit), without any key: what the server can check of ciphertext it did not make.
pub fn check_header(ciphertext: impl Read) -> Result<(), OpenError> {
    let input = io::BufReader::new(HeaderLimit::new(ciphertext));
    age::Decryptor::new_buffered(input).map(|_| ()).map_err(|e| OpenError::Header(e.to_string()))
}

/// An age file key: 16 bytes that decrypt exactly one object. Disclosed to a lawyer
/// (encrypted to the lawyer's key) instead of re-encrypting the evidence.
pub type FileKeyBytes = zeroize::Zeroizing<[u8; 16]>;

/// Reads an object's file key with one of `identities`, from its header only.
pub fn file_key_of(
    ciphertext: impl Read,
    identities: &[age::x25519::Identity],
) -> Result<FileKeyBytes, OpenError> {
    let capture = CapturingIdentity { inner: identities, captured: Default::default() };
    let input = io::BufReader::new(HeaderLimit::new(ciphertext));
    let decryptor =
        age::Decryptor::new_buffered(input).map_err(|e| OpenError::Header(e.to_string()))?;
    decryptor.decrypt(std::iter::once(&capture as &dyn age::Identity)).map_err(|e| match e {
        age::DecryptError::NoMatchingKeys => OpenError::NoMatchingIdentity,
        other => OpenError::Header(other.to_string()),
    })?;
    capture.captured.into_inner().ok_or(OpenError::NoMatchingIdentity)
}

/// Decrypts an object with a disclosed file key instead of an identity. age still checks
/// the header MAC with that key and authenticates every chunk.
pub fn open_object_with_file_key<R: Read + Send, W: Write + Send>(
    ciphertext: R,
    file_key: &[u8; 16],
    plaintext: W,
) -> Result<(W, OpenedObject), OpenError> {
    open_object_as(ciphertext, &KnownFileKey(zeroize::Zeroizing::new(*file_key)), plaintext)
}

/// Unwraps with the given identities and keeps a copy of the file key.
struct CapturingIdentity<'a> {
    inner: &'a [age::x25519::Identity],
    captured: std::cell::RefCell<Option<FileKeyBytes>>,
}

impl age::Identity for CapturingIdentity<'_> {
    fn unwrap_stanza(
        &self,
        stanza: &age_core::format::Stanza,
    ) -> Option<Result<age_core::format::FileKey, age::DecryptError>> {
        use age::secrecy::ExposeSecret;
        let result = self.inner.iter().find_map(|i| i.unwrap_stanza(stanza))?;
        Some(result.inspect(|key| {
            *self.captured.borrow_mut() = Some(zeroize::Zeroizing::new(*key.expose_secret()));
        }))
    }
}

/// Supplies a known file key for any stanza: the lawyer's side of a disclosure.
struct KnownFileKey(FileKeyBytes);

impl age::Identity for KnownFileKey {
    fn unwrap_stanza(
        &self,
        _stanza: &age_core::format::Stanza,
    ) -> Option<Result<age_core::format::FileKey, age::DecryptError>> {
        let key = *self.0;
        Some(Ok(age_core::format::FileKey::init_with_mut(|k| *k = key)))
    }
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
        let (plain, opened) = open_object_with_file_key(&object[..], &key, Vec::new()).unwrap();
        assert_eq!(plain, b"evidence");
        assert_eq!(opened.id, ObjectId::of(&object));
        // The key of one object opens no other, and a flipped key opens nothing.
        assert!(open_object_with_file_key(&other[..], &key, Vec::new()).is_err());
        let mut wrong = *key;
        wrong[0] ^= 1;
        assert!(open_object_with_file_key(&object[..], &wrong, Vec::new()).is_err());
        let stranger = age::x25519::Identity::generate();
        assert!(matches!(
            file_key_of(&object[..], &[stranger]),
            Err(OpenError::NoMatchingIdentity)
        ));
    }

    #[test]
    fn object_ids_are_strict() {
        assert!(ObjectId::parse(&"a".repeat(64)).is_some());
        assert!(ObjectId::parse(&"A".repeat(64)).is_none());
        assert!(ObjectId::parse("../etc/passwd").is_none());
        assert!(ObjectId::parse(&"a".repeat(63)).is_none());
    }
}
