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

    /// Pads what was written so far to `padded_size` with `fill` (b' ' for a JSON
    /// document). The padding is encrypted, but not hashed or counted as plaintext.
    pub fn pad(&mut self, fill: u8) -> io::Result<()> {
        write_padding(&mut self.stream, fill, padded_size(self.plaintext_len) - self.plaintext_len)
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

/// Seals a JSON document held in memory (a manifest, a reply), padded with spaces to
/// its `padded_size`: stock `age -d` gives back the document, which still parses.
pub fn seal_document<W: Write>(
    recipients: &Recipients,
    json: &[u8],
    out: W,
) -> io::Result<(W, SealedObject)> {
    let mut sealer = Sealer::new(recipients, out)?;
    sealer.write(json)?;
    sealer.pad(b' ')?;
    sealer.finish()
}

/// Seals bytes held in memory exactly as they are, unpadded (a disclosed file key, whose
/// size says nothing).
pub fn seal_bytes<W: Write>(
    recipients: &Recipients,
    plaintext: &[u8],
    out: W,
) -> io::Result<(W, SealedObject)> {
    let mut sealer = Sealer::new(recipients, out)?;
    sealer.write(plaintext)?;
    sealer.finish()
}

/// Seals a stream of chunks (a file) like `Sealer`, padded with zeros to `padded_size`,
/// on three threads at once: the caller's
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
            let mut len = 0u64;
            for chunk in chunks {
                let chunk = chunk?;
                len += chunk.as_ref().len() as u64;
                plain_tx.send(chunk.clone()).map_err(|_| stage_gone())?;
                stream.write_all(chunk.as_ref())?;
            }
            write_padding(&mut stream, 0, padded_size(len) - len)?;
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
    open_object_as(ciphertext, &AnyOf(identities), plaintext, None)
}

/// Decrypts a file's object like `open_object`, giving back its first `size` bytes (the
/// manifest's size): the zeros `seal_parallel` padded it with are checked, not written.
/// An object from before padding (exactly `size` bytes) opens the same way.
pub fn open_file<R: Read + Send, W: Write + Send>(
    ciphertext: R,
    identities: &[age::x25519::Identity],
    plaintext: W,
    size: u64,
) -> Result<(W, OpenedObject), OpenError> {
    open_object_as(ciphertext, &AnyOf(identities), plaintext, Some(size))
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
    size: Option<u64>,
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
            let mut total = 0u64;
            let keep = size.unwrap_or(u64::MAX);
            for piece in plain_rx {
                let kept = (keep - len).min(piece.len() as u64) as usize;
                let (file, padding) = piece.split_at(kept);
                if padding.iter().any(|&b| b != 0) {
                    return Err(padding_error("the object holds more than the file it names"));
                }
                hash.update(file);
                len += kept as u64;
                total += piece.len() as u64;
                plaintext.write_all(file)?;
            }
            if let Some(size) = size {
                if total != size && total != padded_size(size) {
                    return Err(padding_error("the object is not the size its file pads to"));
                }
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
        let (plaintext, plaintext_sha256, len) = written.map_err(|e| match padding_of(&e) {
            Some(why) => OpenError::Payload(why),
            None => OpenError::Output(e),
        })?;
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

/// A padding that is not what `seal_parallel` writes: the object's content is wrong,
/// not the output.
#[derive(Debug)]
struct PaddingError(&'static str);

impl fmt::Display for PaddingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for PaddingError {}

fn padding_error(why: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, PaddingError(why))
}

fn padding_of(e: &io::Error) -> Option<String> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<PaddingError>()).map(|p| p.0.to_string())
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
/// `size`: as for `open_file`, or None for a document, given back whole.
pub fn open_object_with_file_key<R: Read + Send, W: Write + Send>(
    ciphertext: R,
    file_key: &[u8; 16],
    plaintext: W,
    size: Option<u64>,
) -> Result<(W, OpenedObject), OpenError> {
    let key = KnownFileKey(zeroize::Zeroizing::new(*file_key));
    open_object_as(ciphertext, &key, plaintext, size)
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
