//! The admin API: a Unix socket `data_dir/admin.sock` (mode 0600), never TCP. Only
//! someone already on the host, as the server's user, can reach it.
//!
//! Protocol: the client sends one JSON request line; the server answers one JSON line.
//! `export` is the one exchange with more: after its answer line come exactly `bytes`
//! bytes of bundle; the client writes and fsyncs them, then sends
//! `{"op":"confirm","bundle":...}` on the same connection, and only then are the
//! submissions marked exported. A client that dies before confirming marks nothing.

pub mod client;

use crate::bundle::reply;
use crate::bundle::{self, BundleIndex, BUNDLE_SCHEMA};
use crate::config::Limits;
use crate::intake::activity::{Activity, Saturation};
use crate::intake::error::AdminRefusal;
use crate::keys::LiveRecipients;
use crate::store::{LastExport, Store};
use serde::{Deserialize, Serialize};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const SOCKET_NAME: &str = "admin.sock";
/// Requests are a few words of JSON, or one reply (base64 of at most 128 KiB).
const MAX_REQUEST_BYTES: u64 = 256 * 1024;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Status,
    Export {
        all: bool,
    },
    Confirm {
        bundle: String,
    },
    Purge {
        exported_before_days: u64,
    },
    /// One reply from a reply bundle, its ciphertext in base64.
    ImportReply {
        case: String,
        reply_recipient: String,
        object: String,
    },
    /// A sealed file from a field kit; exactly `bytes` bytes of it follow the line.
    ImportSealed {
        bytes: u64,
    },
    /// Re-read the recipients file (as SIGHUP does).
    Reload,
    /// One stored object's ciphertext, as kept: `ObjectOffer`, then its bytes.
    Object {
        id: String,
    },
    /// Every stored object's id and size (never content).
    ListObjects,
}

/// The answer to `list_objects`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ObjectList {
    pub objects: Vec<ListedObject>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ListedObject {
    pub id: String,
    pub bytes: u64,
}

/// The answer to `object`, followed on the wire by exactly `bytes` bytes of ciphertext.
#[derive(Debug, Serialize, Deserialize)]
pub struct ObjectOffer {
    pub bytes: u64,
}

/// The answer to `reload`: the set new submissions are now sealed to.
#[derive(Debug, Serialize, Deserialize)]
pub struct Reloaded {
    pub recipients: usize,
    pub fingerprint: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ImportedSealed {
    pub id: String,
    pub received_at: String,
    pub already_imported: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ImportedReply {
    /// False when the same reply was imported before.
    pub added: bool,
}

/// The answer to `export`, followed on the wire by `bytes` bytes of bundle.
#[derive(Debug, Serialize, Deserialize)]
pub struct ExportOffer {
    /// None when there is nothing to export.
    pub bundle: Option<String>,
    pub submissions: usize,
    pub bytes: u64,
    /// Submissions left out because an object of theirs is not stored; not marked
    /// exported.
    #[serde(default)]
    pub missing: Vec<MissingObject>,
}

/// A submission an export could not carry whole.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MissingObject {
    pub submission: String,
    pub object: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct PurgeReport {
    pub purged_submissions: usize,
    pub freed_bytes: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AdminError {
    pub code: String,
    pub message: String,
}

/// The answer to `status`: the store's counts and the intake's lanes.
#[derive(Debug, Serialize, Deserialize)]
pub struct ServerStatus {
    #[serde(flatten)]
    pub store: crate::store::StoreStatus,
    #[serde(default)]
    pub intake: Saturation,
    /// Each witness's last cosigned size and last error (never the note itself).
    #[serde(default)]
    pub witnesses: Vec<WitnessStatus>,
    /// Each time-stamping authority's last stamped size and last error.
    #[serde(default)]
    pub timestamping: Vec<TsaStatus>,
    /// The largest checkpoint any outside party attested (0: none yet).
    #[serde(default)]
    pub attested_size: u64,
    /// Each replica's backlog, oldest pending submission and last success.
    #[serde(default)]
    pub replicas: Vec<crate::store::ReplicaHealth>,
}

/// One TSA, as `status` shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct TsaStatus {
    pub name: String,
    #[serde(flatten)]
    pub stamped: crate::store::Stamped,
}

/// One witness, as `status` shows it: its name and what the store keeps of it.
#[derive(Debug, Serialize, Deserialize)]
pub struct WitnessStatus {
    pub name: String,
    #[serde(flatten)]
    pub witnessed: crate::store::Witnessed,
}

/// Binds the socket (replacing a stale one) and serves it on its own thread.
pub fn start(
    store: Arc<Store>,
    recipients: Arc<LiveRecipients>,
    activity: Arc<Activity>,
    data_dir: &Path,
    limits: Limits,
) -> io::Result<PathBuf> {
    let path = data_dir.join(SOCKET_NAME);
    if path.exists() {
        // A socket left by a killed server: nobody answers on it any more.
        if UnixStream::connect(&path).is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!(
                    "{} is in use: is another amanat serving this data directory?",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(&path)?;
    }
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    std::thread::Builder::new().name("admin".into()).spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else {
                // Out of file descriptors or similar: wait instead of spinning.
                std::thread::sleep(std::time::Duration::from_millis(100));
                continue;
            };
            let (store, recipients) = (store.clone(), recipients.clone());
            let (activity, limits) = (activity.clone(), limits.clone());
            let _ = std::thread::Builder::new()
                .name("admin-conn".into())
                .spawn(move || serve_connection(&store, &recipients, &activity, &limits, stream));
        }
    })?;
    Ok(path)
}

fn serve_connection(
    store: &Store,
    recipients: &LiveRecipients,
    activity: &Activity,
    limits: &Limits,
    stream: UnixStream,
) {
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut writer = stream;
    let request = match read_line::<Request>(&mut reader) {
        Ok(r) => r,
        Err(e) => {
            let _ = answer_error(&mut writer, AdminRefusal::BadRequest.code(), &e.to_string());
            return;
        }
    };
    let result = match request {
        Request::Status => store.status().and_then(|status| {
            let witnesses = store
                .witnessed()?
                .into_iter()
                .map(|(name, witnessed)| WitnessStatus { name, witnessed })
                .collect();
            let intake = activity.saturation();
            let timestamping = store
                .stamped()?
                .into_iter()
                .map(|(name, stamped)| TsaStatus { name, stamped })
                .collect();
            let attested_size = store.newest_attested()?.map_or(0, |a| a.size);
            let replicas = store.replica_health()?;
            answer(
                &mut writer,
                &ServerStatus {
                    store: status,
                    intake,
                    witnesses,
                    timestamping,
                    attested_size,
                    replicas,
                },
            )
        }),
        Request::Export { all } => export(store, all, &mut reader, &mut writer),
        Request::Confirm { .. } => answer_error(
            &mut writer,
            AdminRefusal::BadRequest.code(),
            "confirm only follows an export",
        ),
        Request::Purge { exported_before_days } => {
            purge(store, exported_before_days).and_then(|report| answer(&mut writer, &report))
        }
        Request::ImportSealed { bytes } => {
            // The same checks as an upload over HTTP, on the bytes that follow. What a
            // refusal leaves unread is drained, so the client reads the answer instead
            // of a reset connection.
            let mut body = (&mut reader).take(bytes);
            let result = crate::intake::sealed::ingest(store, limits, &mut body);
            let _ = io::copy(&mut body, &mut io::sink());
            match result {
                Ok(done) => {
                    tracing::info!(already = done.already_imported, "sealed file imported");
                    answer(
                        &mut writer,
                        &ImportedSealed {
                            id: done.record.id.into(),
                            received_at: done.record.received_at,
                            already_imported: done.already_imported,
                        },
                    )
                }
                Err(e) => answer_error(&mut writer, e.code(), &e.message(limits)),
            }
        }
        Request::Object { id } => match crate::envelope::ObjectId::parse(&id) {
            Some(id) => match store.open_object(&id) {
                Ok((object, bytes)) => answer(&mut writer, &ObjectOffer { bytes })
                    .and_then(|()| io::copy(&mut object.take(bytes), &mut writer).map(drop)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => answer_error(
                    &mut writer,
                    AdminRefusal::NoSuchObject.code(),
                    "no object with that id is stored",
                ),
                Err(e) => Err(e),
            },
            None => answer_error(
                &mut writer,
                AdminRefusal::BadRequest.code(),
                "an object id is 64 hex digits",
            ),
        },
        Request::ListObjects => store.list_objects().and_then(|objects| {
            let objects = objects
                .into_iter()
                .map(|(id, bytes)| ListedObject { id: id.to_string(), bytes })
                .collect();
            answer(&mut writer, &ObjectList { objects })
        }),
        Request::Reload => match recipients.reload() {
            Ok(set) => answer(
                &mut writer,
                &Reloaded { recipients: set.len(), fingerprint: set.fingerprint().into() },
            ),
            Err(e) => {
                answer_error(&mut writer, AdminRefusal::RecipientsRefused.code(), &e.to_string())
            }
        },
        Request::ImportReply { case, reply_recipient, object } => {
            match import_reply(store, case, reply_recipient, &object) {
                Ok(Ok(added)) => answer(&mut writer, &ImportedReply { added }),
                Ok(Err(refusal)) => answer_error(
                    &mut writer,
                    AdminRefusal::ReplyRefused.code(),
                    &refusal.to_string(),
                ),
                Err(e) => Err(e),
            }
        }
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "admin request failed");
        let _ = answer_error(&mut writer, AdminRefusal::Failed.code(), &e.to_string());
    }
}

fn export(
    store: &Store,
    all: bool,
    reader: &mut BufReader<UnixStream>,
    writer: &mut UnixStream,
) -> io::Result<()> {
    // Reply-key changes since the last export become leaves now, before the bundle's
    // checkpoint, which then proves them; one not yet carried out is reason enough for
    // a bundle, so that reviewers learn where to seal the survivor's replies.
    let new_reply_keys = store.log_reply_key_changes()?;
    let mut submissions = store.submissions_to_export(all)?;
    // One lost object must not keep every other testimony on the server: its record is
    // named and left out, the rest go.
    let (lens, missing) = store.object_lens(&submissions)?;
    let missing: Vec<MissingObject> = missing
        .into_iter()
        .map(|(submission, object)| MissingObject { submission, object: object.to_string() })
        .collect();
    submissions.retain(|r| !missing.iter().any(|m| m.submission == r.id));
    if !missing.is_empty() {
        tracing::error!(submissions = missing.len(), "export: objects missing from the store");
    }
    if submissions.is_empty() && !new_reply_keys {
        return answer(writer, &ExportOffer { bundle: None, submissions: 0, bytes: 0, missing });
    }
    let (log, head) = store.bundle_log(&submissions)?;
    let checkpoint_size = head.size;
    let attestations = store.attestation_members(&submissions, checkpoint_size)?;
    let index = BundleIndex {
        schema: BUNDLE_SCHEMA.into(),
        bundle: crate::record::random_hex(16),
        server: store.server_id()?,
        created_at: crate::record::Hour::now(),
        submissions,
        log,
    };
    let index_len = serde_json::to_vec_pretty(&index).map_err(io::Error::other)?.len() as u64;
    let sizes = index.objects().iter().map(|id| lens.get(id).copied()).collect::<Option<Vec<_>>>();
    let sizes = sizes.ok_or_else(|| io::Error::other("an object of the bundle has no length"))?;
    let sizes = attestations.iter().map(|(_, bytes)| bytes.len() as u64).chain(sizes);
    let bytes = bundle::export::bundle_len(index_len, sizes);
    let ids: Vec<String> = index.submissions.iter().map(|r| r.id.to_string()).collect();
    answer(
        writer,
        &ExportOffer { bundle: Some(index.bundle.clone()), submissions: ids.len(), bytes, missing },
    )?;
    let mut counted = CountingWriter { inner: io::BufWriter::new(&mut *writer), count: 0 };
    counted = bundle::export::write(counted, &index, &attestations, |id| store.open_object(id))?;
    counted.flush()?;
    if counted.count != bytes {
        return Err(io::Error::other("bundle size differs from the announced size"));
    }
    drop(counted);
    // Only a confirmed, durable copy counts as carried out.
    match read_line::<Request>(reader)? {
        Request::Confirm { bundle } if bundle == index.bundle => {
            let last = LastExport {
                bundle: index.bundle.clone(),
                exported_at: crate::record::Hour::now(),
                submissions: ids.len(),
            };
            store.mark_exported(&last, &ids, checkpoint_size)?;
            store.mark_reply_keys_exported()?;
            tracing::info!(submissions = ids.len(), "export confirmed");
            answer(writer, &last)
        }
        _ => answer_error(
            writer,
            AdminRefusal::NotConfirmed.code(),
            "the export was not confirmed; nothing marked",
        ),
    }
}

/// Why the server refused a reply (the admin answer `reply_refused`).
#[derive(Debug)]
enum ReplyRefusal {
    NotBase64,
    Object(reply::ReplyError),
    NoSuchCase(String),
    /// The case's reply key is still one of before v2, derivable from the index.
    OldKeys(String),
    OtherRecipient(String),
    /// Another reply with the same bytes under another case.
    Conflict(io::Error),
}

impl std::fmt::Display for ReplyRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplyRefusal::NotBase64 => f.write_str("the reply is not base64"),
            ReplyRefusal::Object(e) => e.fmt(f),
            ReplyRefusal::NoSuchCase(case) => write!(f, "this server holds no case {case}"),
            ReplyRefusal::OldKeys(case) => write!(
                f,
                "case {case} still has the reply key it was given before v2, which anyone \
                 holding a copy of this server's index can derive, so the reply was not stored. \
                 The case gets a new key when its survivor next signs in; export after that, \
                 open the bundle, and write the reply again (amanat reply then uses the new key)"
            ),
            ReplyRefusal::OtherRecipient(case) => write!(
                f,
                "the reply for case {case} was sealed to another recipient than the case's"
            ),
            ReplyRefusal::Conflict(e) => e.fmt(f),
        }
    }
}

/// Stores one reply after checking what can be checked without a key: a well-formed
/// age object, for a case this server holds, sealed to that case's reply recipient.
/// The outer error is the server's; the inner one refuses the reply.
fn import_reply(
    store: &Store,
    case: String,
    reply_recipient: String,
    object: &str,
) -> io::Result<Result<bool, ReplyRefusal>> {
    use base64::Engine;
    let Ok(ciphertext) = base64::engine::general_purpose::STANDARD.decode(object) else {
        return Ok(Err(ReplyRefusal::NotBase64));
    };
    let entry = reply::ReplyEntry {
        case,
        reply_recipient,
        object: crate::envelope::ObjectId::of(&ciphertext),
    };
    if let Err(refusal) = reply::check_reply_object(&entry, &ciphertext) {
        return Ok(Err(ReplyRefusal::Object(refusal)));
    }
    match store.case_record(&entry.case)? {
        None => return Ok(Err(ReplyRefusal::NoSuchCase(entry.case.clone()))),
        Some(record) if record.on_v1_keys() => {
            return Ok(Err(ReplyRefusal::OldKeys(entry.case.clone())))
        }
        Some(record) if record.reply_recipient != entry.reply_recipient => {
            return Ok(Err(ReplyRefusal::OtherRecipient(entry.case.clone())))
        }
        Some(_) => {}
    }
    let added = match store.add_reply(&entry.case, &ciphertext) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Ok(Err(ReplyRefusal::Conflict(e)))
        }
        other => other?,
    };
    tracing::info!(added, "reply imported");
    Ok(Ok(added))
}

fn purge(store: &Store, days: u64) -> io::Result<PurgeReport> {
    let cutoff = crate::record::Hour::cutoff_days_ago(days);
    let (purged_submissions, freed_bytes) = store.purge_exported_before(&cutoff)?;
    tracing::info!(
        submissions = purged_submissions,
        bytes = freed_bytes,
        "purged exported ciphertext"
    );
    Ok(PurgeReport { purged_submissions, freed_bytes })
}

/// Every hour: purges exported ciphertext past `retention_days` and deletes replies past
/// `replies.retention_days` (when set), so what a seizure finds shrinks to what has not
/// been carried out or read yet.
pub fn start_retention(store: Arc<Store>, days: u64, reply_days: u64) -> io::Result<()> {
    std::thread::Builder::new().name("retention".into()).spawn(move || loop {
        if days > 0 {
            if let Err(e) = purge(&store, days) {
                tracing::error!(error = %e, "retention purge failed");
            }
        }
        if reply_days > 0 {
            match store.expire_replies(&crate::record::Hour::cutoff_days_ago(reply_days)) {
                Ok(0) => {}
                Ok(n) => tracing::info!(replies = n, "deleted replies past their retention"),
                Err(e) => tracing::error!(error = %e, "reply retention failed"),
            }
        }
        std::thread::sleep(std::time::Duration::from_secs(3600));
    })?;
    Ok(())
}

fn read_line<T: for<'de> Deserialize<'de>>(reader: &mut impl BufRead) -> io::Result<T> {
    let mut line = String::new();
    reader.take(MAX_REQUEST_BYTES).read_line(&mut line)?;
    serde_json::from_str(line.trim_end()).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn answer<T: Serialize>(writer: &mut impl Write, value: &T) -> io::Result<()> {
    let mut line = serde_json::to_vec(value).map_err(io::Error::other)?;
    line.push(b'\n');
    writer.write_all(&line)?;
    writer.flush()
}

fn answer_error(writer: &mut impl Write, code: &str, message: &str) -> io::Result<()> {
    answer(
        writer,
        &serde_json::json!({"error": AdminError { code: code.into(), message: message.into() }}),
    )
}

struct CountingWriter<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
