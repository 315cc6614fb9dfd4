//! The hand-off between a request on the async threads and the blocking worker that
//! seals, checks or stores its body: the body in pieces through a bounded channel
//! (memory stays a few pieces per upload, whatever its size), read on the other side as
//! an `io::Read` or sealed as an object.

use crate::store::{ObjectWriter, PendingObjects};
use crate::{envelope, keys};
use actix_web::web::Bytes;
use std::io;
use tokio::sync::mpsc;

/// Bytes handed to a blocking worker at a time. The network gives a few KiB to 64 KiB
/// at a time, and each hand-off wakes the worker's threads (three for a file): gathering
/// the body into pieces this large costs one copy of small chunks and saves most of the
/// wake-ups, which cost more than the copy (issue 22's profile).
pub(super) const BATCH: usize = 256 * 1024;
/// Pieces in flight between the network and the encrypting worker, per file: with
/// `BATCH`, at most half a MiB per upload waits in the channel.
pub(super) const CHANNEL_DEPTH: usize = 2;

pub(super) enum Chunk {
    Data(Bytes),
    End,
}

/// The blocking side of a streamed body: reads the chunks the request handler passes
/// on. A body that stops without `End` (a refusal, a disconnect, a stall) is an error,
/// never a clean end, so a cut-off upload can never look complete.
pub(super) struct ChannelReader {
    rx: mpsc::Receiver<Chunk>,
    current: Bytes,
    ended: bool,
}

impl ChannelReader {
    pub(super) fn new(rx: mpsc::Receiver<Chunk>) -> Self {
        ChannelReader { rx, current: Bytes::new(), ended: false }
    }
}

impl io::Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Chunk::Data(bytes)) => self.current = bytes,
                Some(Chunk::End) => self.ended = true,
                None => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "upload cut off")),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// The blocking half of a file upload: encrypt, hash, persist.
pub(super) fn seal_stream(
    recipients: &keys::Recipients,
    object: ObjectWriter,
    mut rx: mpsc::Receiver<Chunk>,
    pending: &PendingObjects,
) -> io::Result<envelope::SealedObject> {
    // The chunks up to `End`; a channel closed before it (a refusal, a disconnect) is an
    // error, so a cut-off upload is never finished.
    let mut ended = false;
    let mut waiting = false;
    let chunks = std::iter::from_fn(|| {
        if ended {
            return None;
        }
        // Before waiting for the network, an empty chunk: what is sealed goes to disk.
        let next = match rx.try_recv() {
            Ok(next) => Some(next),
            Err(mpsc::error::TryRecvError::Empty) if !waiting => {
                waiting = true;
                return Some(Ok(Bytes::new()));
            }
            Err(_) => rx.blocking_recv(),
        };
        waiting = false;
        match next {
            Some(Chunk::Data(bytes)) => Some(Ok(bytes)),
            Some(Chunk::End) => {
                ended = true;
                None
            }
            None => Some(Err(io::Error::new(io::ErrorKind::Interrupted, "upload abandoned"))),
        }
    });
    // No buffer: age hands over whole 64 KiB chunks.
    let (object, sealed) = envelope::seal_parallel(recipients, object, chunks)?;
    object.persist(&sealed.id, pending)?;
    Ok(sealed)
}
