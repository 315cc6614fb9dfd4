//! Sealing: plaintext in, one age object out, padded and hashed on the way, with the
//! id known when the last byte is written. The server's uploads, the field kit's files,
//! manifests, replies and disclosed file keys all come through here.

use super::{digest, io, padded_size, write_padding, HashingWriter, ObjectId, Recipients, Write};

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
        let hashing =
            self.stream.finish()?.into_inner().map_err(std::io::IntoInnerError::into_error)?;
        let (out, ciphertext_sha256, ciphertext_len) = hashing.finish();
        Ok((
            out,
            SealedObject {
                id: ObjectId::from_sha256(ciphertext_sha256.as_ref()),
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
/// An empty chunk says the caller has nothing more for now: the ciphertext gathered so
/// far goes to `out` (an upload that stalls is on disk, not held in memory).
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
    // Bounded: memory stays a few pieces per stage whatever the file's size (pieces of
    // up to a quarter MiB: the callers' chunks, and the ciphertext gathered below).
    const DEPTH: usize = 2;
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
            let mut stream = encryptor.wrap_output(ChannelWriter::new(cipher_tx))?;
            let mut len = 0u64;
            for chunk in chunks {
                let chunk = chunk?;
                if chunk.as_ref().is_empty() {
                    stream.flush()?;
                    continue;
                }
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
                id: ObjectId::from_sha256(ciphertext_sha256.as_ref()),
                ciphertext_len,
                plaintext_len,
                plaintext_sha256: hex::encode(plaintext_sha256),
            },
        ))
    })
}

/// Ciphertext handed to the writing thread at a time: age writes 64 KiB chunks, and
/// each hand-off wakes that thread.
const CIPHER_PIECE: usize = 256 * 1024;

/// Hands what age writes to the ciphertext thread of `seal_parallel`, gathered into
/// pieces of `CIPHER_PIECE` (the same one copy as a piece per write).
struct ChannelWriter {
    to: std::sync::mpsc::SyncSender<Vec<u8>>,
    piece: Vec<u8>,
}

impl ChannelWriter {
    fn new(to: std::sync::mpsc::SyncSender<Vec<u8>>) -> ChannelWriter {
        ChannelWriter { to, piece: Vec::new() }
    }

    fn hand_over(&mut self) -> io::Result<()> {
        if self.piece.is_empty() {
            return Ok(());
        }
        // The next write reserves a new piece; the last one costs nothing.
        self.to.send(std::mem::take(&mut self.piece)).map_err(|_| stage_gone())
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.piece.capacity() == 0 {
            self.piece.reserve_exact(CIPHER_PIECE);
        }
        self.piece.extend_from_slice(buf);
        if self.piece.len() >= CIPHER_PIECE - 64 * 1024 {
            self.hand_over()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.hand_over()
    }
}

impl Drop for ChannelWriter {
    fn drop(&mut self) {
        // age's `finish` writes the last chunk and hands the writer back, dropped at once:
        // the end is the last piece.
        let _ = self.hand_over();
    }
}

fn stage_gone() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "a sealing thread stopped")
}
