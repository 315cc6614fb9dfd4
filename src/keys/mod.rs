//! Key material: the coalition's recipients, identity files and their passphrases,
//! the keys derived from a survivor's codename (`codename`), and signing keys
//! (`signing`). With `envelope`, the only module that touches age keys.

mod codename;
pub mod quorum;
mod signing;

pub use codename::{
    new_case_salt, CodenameKey, InstanceSecret, KdfMemory, CASE_SALT_BYTES,
    CODENAME_KDF_MEMORY_KIB, CODENAME_KDF_PASSES,
};
pub use signing::{
    CosignatureError, CosignatureVerifier, NotAVerifierKey, SigningKey, VerifierKey,
};

use age::secrecy::{ExposeSecret, SecretString};
use ring::digest;
use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use zeroize::Zeroizing;

/// The coalition's public keys: every object is encrypted to all of them.
#[derive(Clone)]
pub struct Recipients {
    keys: Vec<age::x25519::Recipient>,
    fingerprint: String,
}

/// The recipients new submissions are sealed to, replaced as a whole by `reload`
/// (SIGHUP or `amanat reload`). An upload takes the set once, when it starts, and
/// seals every object of its submission to that set even if a reload comes meanwhile.
pub struct LiveRecipients {
    path: PathBuf,
    /// `require_quorum`: every recipient must be a quorum's, at start and at each reload.
    require_quorum: bool,
    current: std::sync::RwLock<std::sync::Arc<Recipients>>,
}

impl LiveRecipients {
    pub fn load(path: &Path, require_quorum: bool) -> Result<LiveRecipients, KeyError> {
        let recipients = Recipients::load_for_server(path, require_quorum)?;
        Ok(LiveRecipients {
            path: path.to_path_buf(),
            require_quorum,
            current: std::sync::RwLock::new(std::sync::Arc::new(recipients)),
        })
    }

    /// The set in force now.
    pub fn current(&self) -> std::sync::Arc<Recipients> {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Reads the file again with every start-up check. On any failure the set in force
    /// stays: a half-edited file must never leave the server sealing to nobody.
    pub fn reload(&self) -> Result<std::sync::Arc<Recipients>, KeyError> {
        let fresh = match Recipients::load_for_server(&self.path, self.require_quorum) {
            Ok(fresh) => std::sync::Arc::new(fresh),
            Err(e) => {
                tracing::error!(error = %e, "recipients NOT reloaded; the previous set stays in use");
                return Err(e);
            }
        };
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = fresh.clone();
        tracing::warn!(
            recipients = fresh.len(),
            fingerprint = fresh.fingerprint(),
            "recipients reloaded; new submissions are sealed to this set"
        );
        Ok(fresh)
    }
}

/// Why the server will not start with the configured keys. Messages say what to do.
#[derive(Debug)]
pub enum KeyError {
    Unreadable(PathBuf, io::Error),
    NotARecipient {
        path: PathBuf,
        line: usize,
    },
    NoRecipients(PathBuf),
    SecretKeyPresent(PathBuf),
    /// A single recipient given on the command line that is not `age1...`.
    BadRecipient(String),
    /// An identity file that cannot be used, and why.
    Identity(PathBuf, io::Error),
    /// A passphrase that cannot be had (no terminal, an empty file, two that differ).
    Passphrase(String),
    /// With `require_quorum`: a recipient that no quorum.pub beside the file names.
    NotAQuorum {
        path: PathBuf,
        recipient: String,
    },
    /// A quorum.pub beside the recipients file that cannot be read as one.
    BadQuorum(PathBuf, String),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Unreadable(p, e) => write!(
                f,
                "cannot read {}: {e}. The recipients file must hold the coalition's public \
                 keys (age1...), one per line, and every file beside it must be readable \
                 (amanat checks that none is a secret key).",
                p.display()
            ),
            KeyError::NotARecipient { path, line } => write!(
                f,
                "line {line} of {} is not an age recipient. Each line must be one public key \
                 starting with age1 (or a # comment); fix or remove that line.",
                path.display()
            ),
            KeyError::NoRecipients(p) => write!(
                f,
                "{} holds no recipient, so nobody could read what survivors send. Add the \
                 coalition's public keys (age1...), one per line; `amanat keygen` on an \
                 offline machine makes one.",
                p.display()
            ),
            KeyError::BadRecipient(r) => write!(f, "{r:?} is not an age recipient"),
            KeyError::Identity(p, e) => write!(f, "cannot use the identity {}: {e}", p.display()),
            KeyError::Passphrase(why) => f.write_str(why),
            KeyError::NotAQuorum { path, recipient } => write!(
                f,
                "require_quorum is on, but {recipient} in {} is not a quorum's recipient: no \
                 quorum.pub beside that file names it, so one key alone could read what \
                 arrives. On an offline machine run `amanat quorum init --threshold \
                 K --holder age1... --holder age1... --out DIR`, copy DIR/quorum.pub beside \
                 {} and its first line into it, and remove this recipient (or set \
                 require_quorum = false to accept single keys).",
                path.display(),
                path.display()
            ),
            KeyError::BadQuorum(p, why) => write!(
                f,
                "{}: {why}. Copy the quorum.pub that `amanat quorum init` wrote, unchanged.",
                p.display()
            ),
            KeyError::SecretKeyPresent(p) => write!(
                f,
                "{} holds an age secret key. Decryption keys must never be on the server: \
                 move that file to an offline machine, then start again.",
                p.display()
            ),
        }
    }
}

impl std::error::Error for KeyError {}

impl Recipients {
    /// Reads a recipients file (one `age1...` per line, `#` comments, blank lines) and
    /// refuses if any file beside it holds a secret key.
    pub fn load(path: &Path) -> Result<Recipients, KeyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| KeyError::Unreadable(path.to_path_buf(), e))?;
        if let Some(dir) = path.parent() {
            refuse_secret_keys(if dir.as_os_str().is_empty() { Path::new(".") } else { dir })?;
        }
        let recipients = Self::parse(&text).map_err(|line| {
            if looks_secret(text.as_bytes()) {
                KeyError::SecretKeyPresent(path.to_path_buf())
            } else {
                KeyError::NotARecipient { path: path.to_path_buf(), line }
            }
        })?;
        if recipients.keys.is_empty() {
            return Err(KeyError::NoRecipients(path.to_path_buf()));
        }
        Ok(recipients)
    }

    /// `load`, and with `require_quorum` every recipient must be the first line of a
    /// `quorum.pub` (or `NAME.quorum.pub`) beside the file, each read in full.
    pub fn load_for_server(path: &Path, require_quorum: bool) -> Result<Recipients, KeyError> {
        let recipients = Recipients::load(path)?;
        if !require_quorum {
            return Ok(recipients);
        }
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let mut quorums = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| KeyError::Unreadable(dir.into(), e))? {
            let file = entry.map_err(|e| KeyError::Unreadable(dir.into(), e))?.path();
            let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if name == "quorum.pub" || name.ends_with(".quorum.pub") {
                let text = std::fs::read_to_string(&file)
                    .map_err(|e| KeyError::Unreadable(file.clone(), e))?;
                let public = quorum::QuorumPublic::parse(&text)
                    .map_err(|e| KeyError::BadQuorum(file.clone(), e.to_string()))?;
                quorums.push(public.recipient);
            }
        }
        let single = recipients.keys.iter().map(ToString::to_string).find(|r| !quorums.contains(r));
        match single {
            Some(recipient) => Err(KeyError::NotAQuorum { path: path.to_path_buf(), recipient }),
            None => Ok(recipients),
        }
    }

    /// Parses recipients text; on failure returns the 1-based number of the bad line.
    pub fn parse(text: &str) -> Result<Recipients, usize> {
        let mut keys = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            keys.push(age::x25519::Recipient::from_str(line).map_err(|_| number + 1)?);
        }
        let mut canonical: Vec<String> =
            keys.iter().map(std::string::ToString::to_string).collect();
        canonical.sort();
        canonical.dedup();
        let fingerprint =
            hex::encode(digest::digest(&digest::SHA256, canonical.join("\n").as_bytes()));
        Ok(Recipients { keys, fingerprint })
    }

    /// These recipients and one more (a case's reply recipient).
    pub fn with(&self, extra: &str) -> Result<Recipients, KeyError> {
        let mut text: Vec<String> = self.keys.iter().map(ToString::to_string).collect();
        text.push(extra.trim().to_string());
        Recipients::parse(&text.join("\n")).map_err(|_| KeyError::BadRecipient(extra.into()))
    }

    /// The age recipients, for the encryptor.
    pub fn as_age(&self) -> impl Iterator<Item = &dyn age::Recipient> {
        self.keys.iter().map(|k| k as &dyn age::Recipient)
    }

    /// SHA-256 (hex) of the sorted, de-duplicated recipient strings: records which key
    /// set an object was encrypted to without naming the keys.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// True when bytes look like an age identity: a bare secret key, or an age file
/// (binary or armored), which is how passphrase-protected identities are stored.
fn looks_secret(bytes: &[u8]) -> bool {
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle));
    has(b"AGE-SECRET-KEY-")
        || bytes.starts_with(b"age-encryption.org/v1")
        || has(b"-----BEGIN AGE ENCRYPTED FILE-----")
}

fn refuse_secret_keys(dir: &Path) -> Result<(), KeyError> {
    let mut pending = vec![dir.to_path_buf()];
    let mut visited = 0;
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| KeyError::Unreadable(dir.clone(), e))?;
        for entry in entries {
            let path = entry.map_err(|e| KeyError::Unreadable(dir.clone(), e))?.path();
            visited += 1;
            if visited > 10_000 {
                break;
            }
            // Follow links: a link to an identity is an identity in keys/.
            let meta =
                std::fs::metadata(&path).map_err(|e| KeyError::Unreadable(path.clone(), e))?;
            if meta.is_dir() {
                pending.push(path);
            } else if meta.is_file() {
                // A file we cannot read could be a key: refuse rather than guess.
                let mut head = Vec::new();
                std::fs::File::open(&path)
                    .and_then(|f| f.take(1 << 20).read_to_end(&mut head))
                    .map_err(|e| KeyError::Unreadable(path.clone(), e))?;
                if looks_secret(&head) {
                    return Err(KeyError::SecretKeyPresent(path));
                }
            }
        }
    }
    Ok(())
}

/// A fresh identity file: its text (to be written 0600) and its public recipient.
pub struct NewIdentity {
    pub file_text: Zeroizing<String>,
    pub recipient: String,
}

/// Generates an X25519 identity in the format `age-keygen` writes.
pub fn generate_identity(label: &str) -> NewIdentity {
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let created = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut text = Zeroizing::new(String::new());
    text.push_str(&format!("# created: {created}\n# public key: {recipient}\n"));
    if !label.is_empty() {
        text.push_str(&format!("# {label}\n"));
    }
    text.push_str(identity.to_string().expose_secret());
    text.push('\n');
    NewIdentity { file_text: text, recipient }
}

/// Encrypts an identity file with a passphrase (age's scrypt recipient, ASCII-armored),
/// the form stock `age -d -i FILE` accepts and prompts for.
pub fn protect_with_passphrase(plain: &str, passphrase: SecretString) -> io::Result<Vec<u8>> {
    use age::armor::{ArmoredWriter, Format};
    let encryptor = age::Encryptor::with_user_passphrase(passphrase);
    let mut out = Vec::new();
    let armor = ArmoredWriter::wrap_output(&mut out, Format::AsciiArmor)?;
    let mut writer = encryptor.wrap_output(armor)?;
    writer.write_all(plain.as_bytes())?;
    writer.finish()?.finish()?;
    Ok(out)
}

/// Reads identities from a file, plain or passphrase-protected.
pub fn read_identities(
    path: &Path,
    passphrase: impl FnOnce() -> io::Result<SecretString>,
) -> io::Result<Vec<age::x25519::Identity>> {
    let bytes = Zeroizing::new(std::fs::read(path)?);
    let plain: Zeroizing<Vec<u8>> = if looks_secret(&bytes) && !has_bare_key(&bytes) {
        let reader = age::armor::ArmoredReader::new(&bytes[..]);
        let decryptor = age::Decryptor::new(reader).map_err(invalid)?;
        let identity = age::scrypt::Identity::new(passphrase()?);
        let mut stream = decryptor
            .decrypt(std::iter::once(&identity as &dyn age::Identity))
            .map_err(|_| invalid("wrong passphrase, or not an identity file"))?;
        let mut plain = Zeroizing::new(Vec::new());
        stream.read_to_end(&mut plain)?;
        plain
    } else {
        bytes
    };
    let text = std::str::from_utf8(&plain).map_err(|_| invalid("identity file is not text"))?;
    let mut identities = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        identities
            .push(age::x25519::Identity::from_str(line).map_err(|_| {
                invalid("identity file holds a line that is not an age secret key")
            })?);
    }
    if identities.is_empty() {
        return Err(invalid("identity file holds no secret key"));
    }
    Ok(identities)
}

/// A coalition or lawyer identity file, asking for its passphrase when it has one: from
/// the first line of `passphrase_file`, else on the terminal.
pub fn load_identities(
    identity: &Path,
    passphrase_file: Option<&Path>,
) -> Result<Vec<age::x25519::Identity>, KeyError> {
    read_identities(identity, || match passphrase_file {
        Some(path) => passphrase_from_file(path).map_err(io::Error::other),
        None if std::io::IsTerminal::is_terminal(&std::io::stdin()) => {
            rpassword::prompt_password(format!("Passphrase for {}: ", identity.display()))
                .map(SecretString::from)
        }
        None => Err(io::Error::other(
            "the identity is passphrase-protected: use --passphrase-file FILE or a terminal",
        )),
    })
    .map_err(|e| KeyError::Identity(identity.to_path_buf(), e))
}

/// The first line of a passphrase file.
pub fn passphrase_from_file(path: &Path) -> Result<SecretString, KeyError> {
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
        KeyError::Passphrase(format!("cannot read the passphrase file {}: {e}", path.display()))
    })?);
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(KeyError::Passphrase(format!(
            "the passphrase file {} is empty",
            path.display()
        )));
    }
    Ok(SecretString::from(line.to_string()))
}

/// A new passphrase, typed twice on the terminal.
pub fn prompt_new_passphrase() -> Result<SecretString, KeyError> {
    let refused = |why: &str| KeyError::Passphrase(why.into());
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Err(refused(
            "no terminal to ask for a passphrase: use --passphrase-file FILE, or \
             --no-passphrase on an encrypted machine",
        ));
    }
    let ask = |prompt: &str| {
        rpassword::prompt_password(prompt)
            .map(Zeroizing::new)
            .map_err(|e| KeyError::Passphrase(e.to_string()))
    };
    let first = ask("Passphrase for the new identity: ")?;
    let second = ask("Same passphrase again: ")?;
    if first.is_empty() {
        return Err(refused("the passphrase is empty"));
    }
    if *first != *second {
        return Err(refused("the two passphrases differ; nothing was written"));
    }
    Ok(SecretString::from(first.to_string()))
}

fn has_bare_key(bytes: &[u8]) -> bool {
    bytes.windows(15).any(|w| w == b"AGE-SECRET-KEY-")
}

pub(crate) fn invalid(e: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_file_parses_with_comments_and_rejects_junk() {
        let a = generate_identity("").recipient;
        let b = generate_identity("").recipient;
        let ok = Recipients::parse(&format!("# coalition\n{a}\n\n  {b}  \n")).unwrap();
        assert_eq!(ok.len(), 2);
        // Same set in another order: same fingerprint.
        let again = Recipients::parse(&format!("{b}\n{a}\n")).unwrap();
        assert_eq!(ok.fingerprint(), again.fingerprint());
        assert_eq!(Recipients::parse(&format!("{a}\nnot-a-key\n")).err(), Some(2));
    }

    #[test]
    fn passphrase_protected_identity_round_trips() {
        let id = generate_identity("test");
        let sealed = protect_with_passphrase(&id.file_text, "correct horse".into()).unwrap();
        assert!(sealed.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"));
        assert!(!String::from_utf8_lossy(&sealed).contains("AGE-SECRET-KEY-"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key.age");
        std::fs::write(&path, &sealed).unwrap();
        let ids = read_identities(&path, || Ok("correct horse".into())).unwrap();
        assert_eq!(ids[0].to_public().to_string(), id.recipient);
        assert!(read_identities(&path, || Ok("wrong".into())).is_err());
    }
}
