//! Opening: one age object in, its plaintext out, hashed on the way so the object is
//! also checked against its id; padding cut off and checked; file keys captured for a
//! lawyer or used from one.

use super::{
    digest, fmt, io, padded_size, HashingReader, ObjectCheckError, ObjectId, Read, Write, Zeroizing,
};

/// What opening one object proved.
#[derive(Clone, Debug)]
pub struct OpenedObject {
    /// The id its bytes hash to (compare with the id it was stored under).
    pub id: ObjectId,
    pub plaintext_len: u64,
    pub plaintext_sha256: String,
}

impl OpenedObject {
    /// The check of an object against its id, for bytes that were decrypted: their
    /// hash, taken on the way, against the id they were stored under.
    pub fn check_id(&self, id: &ObjectId) -> Result<(), ObjectCheckError> {
        if self.id == *id {
            Ok(())
        } else {
            Err(ObjectCheckError::Mismatch)
        }
    }
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
                id: ObjectId::from_sha256(ciphertext_sha256.as_ref()),
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
                } else {
                    usize::from(b == MAC_LINE[0])
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
