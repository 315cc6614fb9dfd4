//! The CLI's side of the admin socket: `amanat status`, `export`, `purge` talk to the
//! running server; nothing here touches the store directly.

use super::{ExportOffer, PurgeReport, Request, SOCKET_NAME};
use crate::bundle::Bundle;
use crate::store::LastExport;
use serde::de::DeserializeOwned;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

pub struct AdminClient {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl AdminClient {
    pub fn connect(data_dir: &Path) -> Result<AdminClient, String> {
        let path = data_dir.join(SOCKET_NAME);
        let stream = UnixStream::connect(&path).map_err(|e| {
            format!(
                "cannot reach the server's admin socket {} ({e}). Is `amanat serve` running \
                 with this data directory?",
                path.display()
            )
        })?;
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        Ok(AdminClient { reader: BufReader::with_capacity(256 * 1024, stream), writer })
    }

    fn send(&mut self, request: &Request) -> Result<(), String> {
        let mut line = serde_json::to_vec(request).map_err(|e| e.to_string())?;
        line.push(b'\n');
        self.writer.write_all(&line).map_err(|e| format!("admin socket: {e}"))
    }

    fn receive<T: DeserializeOwned>(&mut self) -> Result<T, String> {
        let mut line = String::new();
        self.reader.read_line(&mut line).map_err(|e| format!("admin socket: {e}"))?;
        let value: serde_json::Value = serde_json::from_str(&line)
            .map_err(|_| "the server closed the admin connection without an answer".to_string())?;
        if let Some(error) = value.get("error") {
            return Err(format!("server refused: {}", error["message"].as_str().unwrap_or("?")));
        }
        serde_json::from_value(value).map_err(|e| format!("unexpected answer: {e}"))
    }

    pub fn status(mut self) -> Result<super::ServerStatus, String> {
        self.send(&Request::Status)?;
        self.receive()
    }

    /// Makes the server re-read its recipients file; its refusal if the file is bad.
    pub fn reload(mut self) -> Result<super::Reloaded, String> {
        self.send(&Request::Reload)?;
        self.receive()
    }

    pub fn list_objects(mut self) -> Result<super::ObjectList, String> {
        self.send(&Request::ListObjects)?;
        self.receive()
    }

    /// Copies one stored object's ciphertext to `out`; returns its length.
    pub fn object(mut self, id: &str, out: &mut impl Write) -> Result<u64, String> {
        self.send(&Request::Object { id: id.to_string() })?;
        let offer: super::ObjectOffer = self.receive()?;
        let copied = io::copy(&mut (&mut self.reader).take(offer.bytes), out)
            .map_err(|e| format!("copying the object: {e}"))?;
        if copied != offer.bytes {
            return Err("the server stopped in the middle of the object".into());
        }
        out.flush().map_err(|e| format!("copying the object: {e}"))?;
        Ok(copied)
    }

    pub fn purge(mut self, exported_before_days: u64) -> Result<PurgeReport, String> {
        self.send(&Request::Purge { exported_before_days })?;
        self.receive()
    }

    /// Streams a sealed file to the server, which checks and stores it like an upload.
    pub fn import_sealed(mut self, path: &Path) -> Result<super::ImportedSealed, String> {
        let mut file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let bytes = file.metadata().map_err(|e| e.to_string())?.len();
        self.send(&Request::ImportSealed { bytes })?;
        io::copy(&mut file, &mut self.writer).map_err(|e| format!("admin socket: {e}"))?;
        self.receive()
    }

    /// Hands one reply to the server; true when it was new.
    pub fn import_reply(
        mut self,
        entry: &crate::reply::ReplyEntry,
        ciphertext: &[u8],
    ) -> Result<bool, String> {
        use base64::Engine;
        self.send(&Request::ImportReply {
            case: entry.case.clone(),
            reply_recipient: entry.reply_recipient.clone(),
            object: base64::engine::general_purpose::STANDARD.encode(ciphertext),
        })?;
        let answer: super::ImportedReply = self.receive()?;
        Ok(answer.added)
    }

    /// Receives a bundle into `out`: written to a side file, fsynced, checked object by
    /// object, moved into place (never over an existing file), and only then confirmed
    /// so the server marks its submissions exported. `progress` gets bytes received.
    pub fn export(
        mut self,
        all: bool,
        out: &Path,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<Option<ExportSummary>, String> {
        if out.exists() {
            return Err(format!("{} exists; a bundle never overwrites a file", out.display()));
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
        let partial = side_file(out);
        let result = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&partial)
                .map_err(|e| format!("cannot create {}: {e}", partial.display()))?;
            let mut received = 0u64;
            let mut buf = vec![0u8; 256 * 1024];
            let mut body = (&mut self.reader).take(offer.bytes);
            loop {
                let n = body.read(&mut buf).map_err(|e| format!("admin socket: {e}"))?;
                if n == 0 {
                    break;
                }
                file.write_all(&buf[..n]).map_err(|e| format!("writing the bundle: {e}"))?;
                received += n as u64;
                progress(received, offer.bytes);
            }
            if received != offer.bytes {
                return Err("the server stopped in the middle of the bundle".to_string());
            }
            file.sync_all().map_err(|e| format!("writing the bundle: {e}"))?;
            check_bundle(&partial, &bundle_id)?;
            move_without_replacing(&partial, out)
                .map_err(|e| format!("cannot create {}: {e}", out.display()))?;
            sync_parent(out).map_err(|e| format!("writing the bundle: {e}"))
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&partial);
            return Err(e);
        }
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
fn check_bundle(path: &Path, bundle_id: &str) -> Result<(), String> {
    let bundle = Bundle::open(path).map_err(|e| e.to_string())?;
    if bundle.index.bundle != bundle_id || bundle.damaged.is_some() {
        return Err("the written bundle does not read back as sent".into());
    }
    for id in bundle.index.objects() {
        let reader = bundle
            .object(&id)
            .ok_or_else(|| format!("object {id} is missing from the written bundle"))?
            .map_err(|e| e.to_string())?;
        let actual = crate::envelope::object_id_of(reader).map_err(|e| e.to_string())?;
        if actual != id {
            return Err(format!("object {id} did not survive the copy"));
        }
    }
    Ok(())
}

/// Renames `from` to `to` unless `to` exists. A hard link does that atomically; FAT and
/// exFAT sticks have none, so there the existence check comes just before a rename.
fn move_without_replacing(from: &Path, to: &Path) -> io::Result<()> {
    match fs::hard_link(from, to) {
        Ok(()) => fs::remove_file(from),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(e),
        Err(_) if to.exists() => Err(io::ErrorKind::AlreadyExists.into()),
        Err(_) => fs::rename(from, to),
    }
}

fn side_file(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    out.with_file_name(name)
}

fn sync_parent(path: &Path) -> io::Result<()> {
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(parent)?.sync_all()
}
