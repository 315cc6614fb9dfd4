//! The CLI's side of the admin socket: `amanat status`, `export`, `purge` talk to the
//! running server; nothing here touches the store directly.

use super::{ExportOffer, PurgeReport, Request, SOCKET_NAME};
use crate::bundle::Bundle;
use crate::durable::NewFile;
use crate::store::LastExport;
use serde::de::DeserializeOwned;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// Why an admin request did not go through.
#[derive(Debug)]
pub enum ClientError {
    /// No server listens on the data directory's socket.
    Unreachable(PathBuf, io::Error),
    Socket(io::Error),
    /// The server closed the connection without an answer.
    Closed,
    /// The server refused, with one of the stable codes (`intake::error::AdminRefusal`
    /// or an intake code for an imported sealed file).
    Refused {
        code: String,
        message: String,
    },
    /// An answer this client does not understand (a server of another version).
    Unexpected(String),
    /// A file to send or to write.
    File(PathBuf, io::Error),
    /// The server stopped in the middle of a transfer.
    Truncated(&'static str),
    /// The written bundle does not read back as the server sent it.
    BadCopy(String),
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Unreachable(path, e) => write!(
                f,
                "cannot reach the server's admin socket {} ({e}). Is `amanat serve` running \
                 with this data directory?",
                path.display()
            ),
            ClientError::Socket(e) => write!(f, "admin socket: {e}"),
            ClientError::Closed => {
                f.write_str("the server closed the admin connection without an answer")
            }
            ClientError::Refused { message, .. } => write!(f, "server refused: {message}"),
            ClientError::Unexpected(why) => write!(f, "unexpected answer: {why}"),
            ClientError::File(path, e) => write!(f, "{}: {e}", path.display()),
            ClientError::Truncated(what) => write!(f, "the server stopped in the middle of {what}"),
            ClientError::BadCopy(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ClientError {}

pub struct AdminClient {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl AdminClient {
    pub fn connect(data_dir: &Path) -> Result<AdminClient, ClientError> {
        let path = data_dir.join(SOCKET_NAME);
        let stream =
            UnixStream::connect(&path).map_err(|e| ClientError::Unreachable(path.clone(), e))?;
        let writer = stream.try_clone().map_err(ClientError::Socket)?;
        Ok(AdminClient { reader: BufReader::with_capacity(256 * 1024, stream), writer })
    }

    fn send(&mut self, request: &Request) -> Result<(), ClientError> {
        let mut line = serde_json::to_vec(request).map_err(|e| ClientError::Socket(e.into()))?;
        line.push(b'\n');
        self.writer.write_all(&line).map_err(ClientError::Socket)
    }

    fn receive<T: DeserializeOwned>(&mut self) -> Result<T, ClientError> {
        let mut line = String::new();
        self.reader.read_line(&mut line).map_err(ClientError::Socket)?;
        let value: serde_json::Value =
            serde_json::from_str(&line).map_err(|_| ClientError::Closed)?;
        if let Some(error) = value.get("error") {
            return Err(ClientError::Refused {
                code: error["code"].as_str().unwrap_or("").into(),
                message: error["message"].as_str().unwrap_or("?").into(),
            });
        }
        serde_json::from_value(value).map_err(|e| ClientError::Unexpected(e.to_string()))
    }

    pub fn status(mut self) -> Result<super::ServerStatus, ClientError> {
        self.send(&Request::Status)?;
        self.receive()
    }

    /// Makes the server re-read its recipients file; its refusal if the file is bad.
    pub fn reload(mut self) -> Result<super::Reloaded, ClientError> {
        self.send(&Request::Reload)?;
        self.receive()
    }

    pub fn list_objects(mut self) -> Result<super::ObjectList, ClientError> {
        self.send(&Request::ListObjects)?;
        self.receive()
    }

    /// Copies one stored object's ciphertext to `out`; returns its length.
    pub fn object(mut self, id: &str, out: &mut impl Write) -> Result<u64, ClientError> {
        self.send(&Request::Object { id: id.to_string() })?;
        let offer: super::ObjectOffer = self.receive()?;
        let copied = io::copy(&mut (&mut self.reader).take(offer.bytes), out)
            .map_err(ClientError::Socket)?;
        if copied != offer.bytes {
            return Err(ClientError::Truncated("the object"));
        }
        out.flush().map_err(ClientError::Socket)?;
        Ok(copied)
    }

    pub fn purge(mut self, exported_before_days: u64) -> Result<PurgeReport, ClientError> {
        self.send(&Request::Purge { exported_before_days })?;
        self.receive()
    }

    /// Streams a sealed file to the server, which checks and stores it like an upload.
    pub fn import_sealed(mut self, path: &Path) -> Result<super::ImportedSealed, ClientError> {
        let file_error = |e| ClientError::File(path.to_path_buf(), e);
        let mut file = File::open(path).map_err(file_error)?;
        let bytes = file.metadata().map_err(file_error)?.len();
        self.send(&Request::ImportSealed { bytes })?;
        io::copy(&mut file, &mut self.writer).map_err(ClientError::Socket)?;
        self.receive()
    }

    /// Hands one reply to the server; true when it was new.
    pub fn import_reply(
        mut self,
        entry: &crate::bundle::reply::ReplyEntry,
        ciphertext: &[u8],
    ) -> Result<bool, ClientError> {
        use base64::Engine;
        self.send(&Request::ImportReply {
            case: entry.case.clone(),
            reply_recipient: entry.reply_recipient.clone(),
            object: base64::engine::general_purpose::STANDARD.encode(ciphertext),
        })?;
        let answer: super::ImportedReply = self.receive()?;
        Ok(answer.added)
    }

    /// Receives a bundle into `out` through the durable package writer: fsynced,
    /// checked object by object, moved into place (never over an existing file), and
    /// only then confirmed so the server marks its submissions exported. `progress`
    /// gets bytes received.
    pub fn export(
        mut self,
        all: bool,
        out: &Path,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<Option<ExportSummary>, ClientError> {
        let file_error = |e| ClientError::File(out.to_path_buf(), e);
        if out.exists() {
            return Err(file_error(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "exists; a bundle never overwrites a file",
            )));
        }
        self.send(&Request::Export { all })?;
        let offer: ExportOffer = self.receive()?;
        let Some(bundle_id) = offer.bundle else {
            return Ok((!offer.missing.is_empty()).then(|| ExportSummary {
                bundle: String::new(),
                submissions: 0,
                bytes: 0,
                missing: offer.missing,
            }));
        };
        let mut file = NewFile::create(out).map_err(file_error)?;
        let mut received = 0u64;
        let mut buf = vec![0u8; 256 * 1024];
        let mut body = (&mut self.reader).take(offer.bytes);
        loop {
            let n = body.read(&mut buf).map_err(ClientError::Socket)?;
            if n == 0 {
                break;
            }
            file.write_all(&buf[..n]).map_err(file_error)?;
            received += n as u64;
            progress(received, offer.bytes);
        }
        if received != offer.bytes {
            return Err(ClientError::Truncated("the bundle"));
        }
        file.flush().map_err(file_error)?;
        check_bundle(file.partial_path(), &bundle_id)?;
        file.publish().map_err(file_error)?;
        self.send(&Request::Confirm { bundle: bundle_id.clone() })?;
        let last: LastExport = self.receive()?;
        Ok(Some(ExportSummary {
            bundle: last.bundle,
            submissions: last.submissions,
            bytes: offer.bytes,
            missing: offer.missing,
        }))
    }
}

#[derive(Debug, serde::Serialize)]
pub struct ExportSummary {
    pub bundle: String,
    pub submissions: usize,
    pub bytes: u64,
    /// Submissions left out: an object of theirs is not stored.
    pub missing: Vec<super::MissingObject>,
}

/// Reads the written bundle back: its index is ours and every object is whole.
fn check_bundle(path: &Path, bundle_id: &str) -> Result<(), ClientError> {
    let bundle = Bundle::open(path).map_err(|e| ClientError::BadCopy(e.to_string()))?;
    if bundle.index.bundle != bundle_id || bundle.damaged.is_some() {
        return Err(ClientError::BadCopy("the written bundle does not read back as sent".into()));
    }
    for id in bundle.index.objects() {
        let reader = bundle
            .object(&id)
            .ok_or_else(|| {
                ClientError::BadCopy(format!("object {id} is missing from the written bundle"))
            })?
            .map_err(|e| ClientError::File(path.to_path_buf(), e))?;
        crate::envelope::check_object(reader, &id)
            .map_err(|_| ClientError::BadCopy(format!("object {id} did not survive the copy")))?;
    }
    Ok(())
}
