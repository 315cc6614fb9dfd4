//! `amanat witness`: a partner organisation witnesses another's intake log, on the
//! C2SP tlog-witness protocol (<https://c2sp.org/tlog-witness>). For each log it is
//! configured with, it keeps the latest checkpoint it cosigned, durably, and cosigns a
//! new one (C2SP tlog-cosignature, cosignature/v1) only when the log's key signed it
//! and a consistency proof shows it extends the one it holds: never a rollback, never a
//! fork, also across restarts. What it learns is what a checkpoint says: the log's name,
//! its size and its root, at the times it is asked.

mod http;

pub use http::serve;

use crate::keys::{SigningKey, VerifierKey};
use crate::log::{decode_hashes, merkle, Checkpoint};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// `witness.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    /// Where to listen, e.g. `127.0.0.1:7380` (a Tor onion service in front of it).
    pub listen: String,
    /// Where the latest cosigned checkpoint of each log is kept.
    pub data_dir: PathBuf,
    /// The witness's name: its key name in every cosignature.
    pub name: String,
    /// The file `amanat witness keygen` wrote.
    pub signing_key: PathBuf,
    /// Run as root (throwaway test machines only), as the intake's `allow_root`.
    #[serde(default)]
    pub allow_root: bool,
    /// The logs it witnesses.
    #[serde(rename = "log", default)]
    pub logs: Vec<WitnessedLog>,
}

/// One `[[log]]`: a log's origin and its verifier key, as `amanat status` prints it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessedLog {
    pub origin: String,
    pub key: String,
}

/// Why the witness did not start.
#[derive(Debug)]
pub enum WitnessError {
    Config(PathBuf, String),
    Key(PathBuf, io::Error),
    DataDir(PathBuf, io::Error),
    Server(io::Error),
}

impl fmt::Display for WitnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WitnessError::Config(path, why) => {
                write!(f, "witness configuration {}: {why}", path.display())
            }
            WitnessError::Key(path, e) => {
                write!(f, "cannot use the witness key {}: {e}", path.display())
            }
            WitnessError::DataDir(path, e) => {
                write!(f, "cannot use the data directory {}: {e}", path.display())
            }
            WitnessError::Server(e) => write!(f, "witness server failed: {e}"),
        }
    }
}

impl std::error::Error for WitnessError {}

impl WitnessConfig {
    pub fn load(path: &Path) -> Result<WitnessConfig, WitnessError> {
        let bad = |why: String| WitnessError::Config(path.to_path_buf(), why);
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let config: WitnessConfig = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if config.name.is_empty() || config.name.contains(|c: char| c.is_whitespace() || c == '+') {
            return Err(bad("name must be non-empty, without spaces or '+'".into()));
        }
        if config.logs.is_empty() {
            return Err(bad("no [[log]] to witness".into()));
        }
        let mut origins = std::collections::HashSet::new();
        for log in &config.logs {
            if !origins.insert(log.origin.as_str()) {
                return Err(bad(format!("log {:?} is listed twice", log.origin)));
            }
            let key: VerifierKey =
                log.key.parse().map_err(|e| bad(format!("log {:?}: {e}", log.origin)))?;
            if key.name != log.origin {
                return Err(bad(format!(
                    "log {:?}: its key is named {:?}; a log signs as its origin",
                    log.origin, key.name
                )));
            }
        }
        Ok(config)
    }
}

/// A refusal, with the status C2SP tlog-witness gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 400: the request is not an add-checkpoint body.
    Malformed(&'static str),
    /// 400: the old size is above the checkpoint's.
    OldSizeTooLarge,
    /// 403: no valid signature by the log's key (or the checkpoint is malformed).
    NotSigned,
    /// 404: a log this witness does not witness.
    UnknownLog,
    /// 409: the old size is not the size this witness holds; carries that size.
    Conflict(u64),
    /// 422: the proof does not show that the checkpoint extends the one held.
    NotConsistent(&'static str),
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Refusal::Malformed(_) | Refusal::OldSizeTooLarge => 400,
            Refusal::NotSigned => 403,
            Refusal::UnknownLog => 404,
            Refusal::Conflict(_) => 409,
            Refusal::NotConsistent(_) => 422,
        }
    }

    /// A stable code, as the intake's refusals have.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Malformed(_) => "malformed_request",
            Refusal::OldSizeTooLarge => "old_size_too_large",
            Refusal::NotSigned => "not_signed",
            Refusal::UnknownLog => "unknown_log",
            Refusal::Conflict(_) => "size_conflict",
            Refusal::NotConsistent(_) => "not_consistent",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Malformed(why) | Refusal::NotConsistent(why) => f.write_str(why),
            Refusal::OldSizeTooLarge => f.write_str("the old size is above the checkpoint's"),
            Refusal::NotSigned => f.write_str("not signed by the log's key"),
            Refusal::UnknownLog => f.write_str("this witness does not witness that log"),
            Refusal::Conflict(size) => write!(f, "this witness holds size {size}"),
        }
    }
}

/// What the witness holds of one log, in `data_dir/logs/<sha256(origin)>.json`.
#[derive(Debug, Serialize, Deserialize)]
struct Held {
    size: u64,
    /// Base64 root of the tree of `size` leaves.
    root: String,
    /// The checkpoint's text and the log's signature line over it, as evidence.
    checkpoint: String,
    /// The time of the last cosignature (seconds): the next is never earlier.
    #[serde(default)]
    cosigned_at: u64,
}

/// An add-checkpoint request's parts.
struct AddCheckpoint<'a> {
    old: u64,
    proof: Vec<merkle::Hash>,
    note: &'a str,
}

/// Proof lines a request may carry (C2SP tlog-witness: at most 63).
const MAX_PROOF_LINES: usize = 63;

fn parse(body: &[u8]) -> Result<AddCheckpoint<'_>, Refusal> {
    let text = std::str::from_utf8(body).map_err(|_| Refusal::Malformed("not UTF-8"))?;
    let (first, mut rest) = text.split_once('\n').ok_or(Refusal::Malformed("no \"old\" line"))?;
    let old = first.strip_prefix("old ").ok_or(Refusal::Malformed("no \"old\" line"))?;
    let canonical = old == "0" || (!old.starts_with('0') && !old.is_empty());
    let old: u64 = old
        .parse()
        .ok()
        .filter(|_| canonical && old.bytes().all(|b| b.is_ascii_digit()))
        .ok_or(Refusal::Malformed("the old size is not a decimal number"))?;
    let mut lines = Vec::new();
    loop {
        let (line, after) =
            rest.split_once('\n').ok_or(Refusal::Malformed("no blank line before the note"))?;
        rest = after;
        if line.is_empty() {
            break;
        }
        if lines.len() == MAX_PROOF_LINES {
            return Err(Refusal::Malformed("more than 63 proof lines"));
        }
        lines.push(line.to_string());
    }
    let proof = decode_hashes(&lines)
        .map_err(|_| Refusal::Malformed("a proof line is not base64 SHA-256"))?;
    Ok(AddCheckpoint { old, proof, note: rest })
}

/// The note's text: its lines up to the blank line before the signatures, with the
/// final newline (what the log signed and what a cosignature covers).
fn note_text(note: &str) -> Option<&str> {
    note.find("\n\n").map(|at| &note[..=at])
}

/// A note a strict verifier would accept, in the one spelling of its tree: no control
/// character but newlines, one blank line before the signatures, signature lines
/// only, and a size in decimal without leading zeros or sign. The witness cosigns no
/// other spelling of a tree it holds.
fn is_strict_note(note: &str) -> bool {
    let Some(text) = note_text(note) else { return false };
    let signatures = &note[text.len() + 1..];
    let size = text.split('\n').nth(1).unwrap_or("");
    let canonical = size == "0" || (!size.starts_with('0') && !size.is_empty());
    !note.chars().any(|c| c.is_control() && c != '\n')
        && canonical
        && size.bytes().all(|b| b.is_ascii_digit())
        && !signatures.is_empty()
        && signatures.ends_with('\n')
        && signatures.lines().all(|l| l.starts_with("\u{2014} "))
}

/// The log's signature line in `note`: the evidence kept with its text.
fn log_signature_line<'a>(note: &'a str, key: &VerifierKey) -> Option<&'a str> {
    let prefix = format!("\u{2014} {} ", key.name);
    note.lines().find(|l| l.starts_with(&prefix))
}

/// The root of the empty tree, SHA-256 of nothing.
fn empty_root() -> merkle::Hash {
    let d = ring::digest::digest(&ring::digest::SHA256, b"");
    d.as_ref().try_into().expect("32 bytes")
}

pub struct Witness {
    key: SigningKey,
    logs: HashMap<String, VerifierKey>,
    dir: PathBuf,
    /// `data_dir/cosigned-logs`: every origin it has cosigned for, one per line.
    marker: PathBuf,
    /// One add-checkpoint at a time: the size check and the write are one step.
    lock: Mutex<()>,
    /// `data_dir/lock`, held exclusively while the witness runs: a second process on
    /// the same directory would make the size check and the write two steps again.
    _running: std::fs::File,
}

impl Witness {
    pub fn open(config: &WitnessConfig) -> Result<Witness, WitnessError> {
        if !config.signing_key.is_file() {
            return Err(WitnessError::Key(
                config.signing_key.clone(),
                io::Error::new(io::ErrorKind::NotFound, "make it with `amanat witness keygen`"),
            ));
        }
        let key = SigningKey::load_or_create(&config.signing_key, &config.name)
            .map_err(|e| WitnessError::Key(config.signing_key.clone(), e))?;
        let logs: HashMap<String, VerifierKey> = config
            .logs
            .iter()
            .map(|l| (l.origin.clone(), l.key.parse().expect("checked by load")))
            .collect();
        if logs.values().any(|k| k.public == key.verifier().public) {
            return Err(WitnessError::Key(
                config.signing_key.clone(),
                io::Error::other("it is a witnessed log's own key: a witness needs its own"),
            ));
        }
        let dir = config.data_dir.join("logs");
        std::fs::create_dir_all(&dir).map_err(|e| WitnessError::DataDir(dir.clone(), e))?;
        let in_data_dir = |e| WitnessError::DataDir(config.data_dir.clone(), e);
        let running = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(config.data_dir.join("lock"))
            .map_err(in_data_dir)?;
        rustix::fs::flock(&running, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
            |_| in_data_dir(io::Error::other("another witness runs on this data directory")),
        )?;
        // What it cosigned must not be forgotten: a log it held whose file is gone (an
        // unmounted volume, a restored backup) would let a fork from an older size
        // through. Such a witness is retired, not restarted.
        let marker = config.data_dir.join("cosigned-logs");
        let cosigned = std::fs::read_to_string(&marker).unwrap_or_default();
        for origin in cosigned.lines().filter(|o| logs.contains_key(*o)) {
            if !Self::held_path_in(&dir, origin).exists() {
                return Err(WitnessError::DataDir(
                    dir.clone(),
                    io::Error::other(format!(
                        "the checkpoint held for {origin:?} is gone: this witness must be \
                         retired (a new key and a new name), never restarted without it"
                    )),
                ));
            }
        }
        Ok(Witness { key, logs, dir, marker, lock: Mutex::new(()), _running: running })
    }

    /// This witness's cosignature verifier key.
    pub fn verifier(&self) -> String {
        self.key.cosignature_verifier()
    }

    fn held_path(&self, origin: &str) -> PathBuf {
        Self::held_path_in(&self.dir, origin)
    }

    fn held_path_in(dir: &Path, origin: &str) -> PathBuf {
        let name = ring::digest::digest(&ring::digest::SHA256, origin.as_bytes());
        dir.join(format!("{}.json", hex::encode(name.as_ref())))
    }

    /// Records that `origin` has a held checkpoint, before its first is written.
    fn mark_cosigned(&self, origin: &str) -> io::Result<()> {
        let mut known = std::fs::read_to_string(&self.marker).unwrap_or_default();
        if known.lines().any(|o| o == origin) {
            return Ok(());
        }
        known.push_str(origin);
        known.push('\n');
        crate::durable::replace(&self.marker, known.as_bytes())
    }

    fn held(&self, origin: &str) -> io::Result<Option<Held>> {
        match std::fs::read(self.held_path(origin)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(io::Error::other),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Handles one add-checkpoint body at `now` (seconds): the cosignature line, once
    /// the new checkpoint is durably held. `Err(Ok(refusal))` refuses the request;
    /// `Err(Err(io))` is the witness's own failure (nothing was cosigned).
    pub fn add_checkpoint(
        &self,
        body: &[u8],
        now: impl FnOnce() -> u64,
    ) -> Result<String, Result<Refusal, io::Error>> {
        let request = parse(body).map_err(Ok)?;
        let origin = request.note.split('\n').next().unwrap_or("");
        let key = self.logs.get(origin).ok_or(Ok(Refusal::UnknownLog))?;
        if !is_strict_note(request.note) {
            return Err(Ok(Refusal::NotSigned));
        }
        let checkpoint =
            Checkpoint::verify(request.note, key).map_err(|_| Ok(Refusal::NotSigned))?;
        let text = note_text(request.note).ok_or(Ok(Refusal::NotSigned))?;
        if request.old > checkpoint.size {
            return Err(Ok(Refusal::OldSizeTooLarge));
        }
        let _one_at_a_time = self.lock.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Read under the lock, and never before the last cosignature: the times a
        // witness gives grow with the trees it cosigns.
        let now = now();
        let held = self.held(origin).map_err(Err)?;
        let held_size = held.as_ref().map_or(0, |h| h.size);
        if request.old != held_size {
            return Err(Ok(Refusal::Conflict(held_size)));
        }
        let inconsistent = |why| Err(Ok(Refusal::NotConsistent(why)));
        if checkpoint.size == 0 && checkpoint.root != empty_root() {
            return inconsistent("a tree of size 0 has the empty root");
        }
        match held.as_ref().filter(|h| h.size > 0) {
            None if !request.proof.is_empty() => {
                return inconsistent("no proof is needed from size 0");
            }
            None => {}
            Some(held) => {
                let root: merkle::Hash = B64
                    .decode(&held.root)
                    .ok()
                    .and_then(|r| r.try_into().ok())
                    .ok_or_else(|| Err(io::Error::other("the held root is damaged")))?;
                if merkle::verify_consistency(
                    held.size,
                    &root,
                    checkpoint.size,
                    &checkpoint.root,
                    &request.proof,
                )
                .is_err()
                {
                    return inconsistent(
                        "the proof does not show this checkpoint extends the held one",
                    );
                }
            }
        }
        let root = B64.encode(checkpoint.root);
        let cosigned_at = now.max(held.as_ref().map_or(0, |h| h.cosigned_at)).max(1);
        let unchanged = held.as_ref().is_some_and(|h| h.size == checkpoint.size && h.root == root);
        if !unchanged {
            let signature = log_signature_line(request.note, key).unwrap_or("");
            let now_held = Held {
                size: checkpoint.size,
                root,
                checkpoint: format!("{text}\n{signature}\n"),
                cosigned_at,
            };
            let json =
                serde_json::to_vec_pretty(&now_held).map_err(|e| Err(io::Error::other(e)))?;
            // Held durably before the answer: a cosignature is never given for a state a
            // crash could forget. The head it holds already is cosigned again unwritten.
            if held.is_none() {
                self.mark_cosigned(origin).map_err(Err)?;
            }
            crate::durable::replace(&self.held_path(origin), &json).map_err(Err)?;
        }
        Ok(self.key.cosign(text, cosigned_at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_configuration_names_every_option() {
        let shipped: WitnessConfig = toml::from_str(include_str!("../../config/witness.toml"))
            .expect("config/witness.toml parses");
        assert_eq!(shipped.name, "witness.example.org");
        assert_eq!(shipped.logs.len(), 1);
        assert!(toml::from_str::<WitnessConfig>("lisen = \"x\"").is_err(), "typos refused");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.toml");
        let log = &shipped.logs[0];
        let twice = format!(
            "{}\n[[log]]\norigin = \"{}\"\nkey = \"{}\"\n",
            include_str!("../../config/witness.toml"),
            log.origin,
            log.key
        );
        std::fs::write(&path, include_str!("../../config/witness.toml")).unwrap();
        WitnessConfig::load(&path).expect("the shipped example loads");
        std::fs::write(&path, twice).unwrap();
        let refused = WitnessConfig::load(&path).unwrap_err().to_string();
        assert!(refused.contains("listed twice"), "{refused}");
    }

    #[test]
    fn a_request_body_is_read_exactly_as_the_spec_writes_it() {
        let proof = "KgEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        let body = format!("old 3\n{proof}\n\norigin\n5\nroot\n\n\u{2014} origin sig\n");
        let parsed = parse(body.as_bytes()).unwrap();
        assert_eq!((parsed.old, parsed.proof.len()), (3, 1));
        assert_eq!(note_text(parsed.note), Some("origin\n5\nroot\n"));
        for bad in ["old 03\n\n", "old -1\n\n", "old 1\n", "old 1\nxyz\n\n", "new 1\n\n"] {
            assert!(matches!(parse(bad.as_bytes()), Err(Refusal::Malformed(_))), "{bad:?}");
        }
        let long = format!("old 1\n{}\n", format!("{proof}\n").repeat(64));
        assert_eq!(
            parse(long.as_bytes()).err(),
            Some(Refusal::Malformed("more than 63 proof lines"))
        );
    }
}
