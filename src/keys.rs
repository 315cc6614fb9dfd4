//! Key material: the coalition's recipients, identity files, and the reply key derived
//! from a survivor's codename. With `envelope`, the only module that touches age keys.

use age::secrecy::{ExposeSecret, SecretString};
use ring::{digest, hkdf};
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
    current: std::sync::RwLock<std::sync::Arc<Recipients>>,
}

impl LiveRecipients {
    pub fn load(path: &Path) -> Result<LiveRecipients, KeyError> {
        let recipients = Recipients::load(path)?;
        Ok(LiveRecipients {
            path: path.to_path_buf(),
            current: std::sync::RwLock::new(std::sync::Arc::new(recipients)),
        })
    }

    /// The set in force now.
    pub fn current(&self) -> std::sync::Arc<Recipients> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reads the file again with every start-up check. On any failure the set in force
    /// stays: a half-edited file must never leave the server sealing to nobody.
    pub fn reload(&self) -> Result<std::sync::Arc<Recipients>, KeyError> {
        let fresh = match Recipients::load(&self.path) {
            Ok(fresh) => std::sync::Arc::new(fresh),
            Err(e) => {
                tracing::error!(error = %e, "recipients NOT reloaded; the previous set stays in use");
                return Err(e);
            }
        };
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh.clone();
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
    NotARecipient { path: PathBuf, line: usize },
    NoRecipients(PathBuf),
    SecretKeyPresent(PathBuf),
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
        let mut canonical: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        canonical.sort();
        canonical.dedup();
        let fingerprint =
            hex::encode(digest::digest(&digest::SHA256, canonical.join("\n").as_bytes()));
        Ok(Recipients { keys, fingerprint })
    }

    /// These recipients and one more (a case's reply recipient).
    pub fn with(&self, extra: &str) -> Result<Recipients, String> {
        let mut text: Vec<String> = self.keys.iter().map(ToString::to_string).collect();
        text.push(extra.trim().to_string());
        Recipients::parse(&text.join("\n"))
            .map_err(|_| format!("{extra:?} is not an age recipient"))
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

fn has_bare_key(bytes: &[u8]) -> bool {
    bytes.windows(15).any(|w| w == b"AGE-SECRET-KEY-")
}

fn invalid(e: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

/// Argon2id's cost for a codename key: 19 MiB and two passes (the first of OWASP's
/// recommended settings), about 50 ms of one core on the project's 2-core test machine.
/// Every guess at a codename, online or against a seized copy of the data directory,
/// costs this; the server pays it once per new case and once per sign-in attempt,
/// with derivations on at most half the cores at a time (`intake::followup`), so memory
/// stays bounded. Changing it changes every key: it is part of the v2 derivation.
pub const CODENAME_KDF_MEMORY_KIB: u32 = 19 * 1024;
pub const CODENAME_KDF_PASSES: u32 = 2;

/// The secret a codename yields on this instance: Argon2id over the normalized
/// codename, keyed by the instance secret (Argon2's secret input) with an instance
/// salt. Never stored, and nothing stored yields it: the lookup tag and every reply key
/// come from it through HMAC and HKDF, one-way, each under its own label (DESIGN:
/// Follow-up and replies).
///
/// ```text
/// K          = Argon2id(password = normalized codename,
///                       salt     = HMAC-SHA256(instance secret, "amanat/v2 codename salt")[..16],
///                       secret   = instance secret, m = 19 MiB, t = 2, p = 1)
/// lookup tag = HMAC-SHA256(K, "amanat/v2 codename lookup tag")          (stored)
/// reply key  = HKDF-SHA256(salt = case salt (16 random bytes, stored),
///                          IKM  = K, info = "amanat/v2 reply identity")  (never stored)
/// ```
pub struct CodenameKey(Zeroizing<[u8; 32]>);

const V2_SALT_LABEL: &[u8] = b"amanat/v2 codename salt";
const V2_TAG_LABEL: &[u8] = b"amanat/v2 codename lookup tag";
const V2_REPLY_LABEL: &[u8] = b"amanat/v2 reply identity";

/// The 19 MiB a derivation works in: kept and reused by whoever runs derivations, wiped
/// after every use, so that neither the allocator's caches nor freed
/// pages hold what a codename's derivation left behind.
pub struct KdfMemory(Vec<argon2::Block>);

impl KdfMemory {
    pub fn new() -> KdfMemory {
        KdfMemory(vec![argon2::Block::default(); CODENAME_KDF_MEMORY_KIB as usize])
    }
}

impl Default for KdfMemory {
    fn default() -> Self {
        KdfMemory::new()
    }
}

impl Drop for KdfMemory {
    fn drop(&mut self) {
        self.0.iter_mut().for_each(zeroize::Zeroize::zeroize);
    }
}

impl CodenameKey {
    /// Runs the memory-hard derivation (about 50 ms) in `memory`: call it off the async
    /// threads, a bounded number at a time.
    pub fn derive(
        instance_secret: &[u8],
        normalized_codename: &str,
        memory: &mut KdfMemory,
    ) -> CodenameKey {
        use argon2::{Algorithm, Argon2, Params, Version};
        let salt_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, instance_secret);
        let salt = ring::hmac::sign(&salt_key, V2_SALT_LABEL);
        let params = Params::new(CODENAME_KDF_MEMORY_KIB, CODENAME_KDF_PASSES, 1, Some(32))
            .expect("valid Argon2 parameters");
        let argon =
            Argon2::new_with_secret(instance_secret, Algorithm::Argon2id, Version::V0x13, params)
                .expect("a 32-byte secret is within Argon2's limits");
        let mut key = Zeroizing::new([0u8; 32]);
        let result = argon.hash_password_into_with_memory(
            normalized_codename.as_bytes(),
            &salt.as_ref()[..16],
            &mut key[..],
            &mut memory.0[..],
        );
        memory.0.iter_mut().for_each(zeroize::Zeroize::zeroize);
        result.expect("the inputs are within Argon2's limits");
        CodenameKey(key)
    }

    /// The tag the server stores to find the case (v2).
    pub fn lookup_tag(&self) -> [u8; 32] {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.0[..]);
        let mut tag = [0u8; 32];
        tag.copy_from_slice(ring::hmac::sign(&key, V2_TAG_LABEL).as_ref());
        tag
    }

    /// Whether `stored` is this key's lookup tag, compared in constant time.
    pub fn matches_tag(&self, stored: &[u8]) -> bool {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.0[..]);
        ring::hmac::verify(&key, V2_TAG_LABEL, stored).is_ok()
    }

    /// The age identity replies to the case with `case_salt` are sealed to.
    pub fn reply_identity(&self, case_salt: &[u8]) -> age::x25519::Identity {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, case_salt);
        let prk = salt.extract(&self.0[..]);
        let mut secret = Zeroizing::new([0u8; 32]);
        prk.expand(&[V2_REPLY_LABEL], Len32)
            .and_then(|okm| okm.fill(&mut secret[..]))
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        x25519_identity(&secret)
    }
}

/// Bytes of a case's reply-key salt.
pub const CASE_SALT_BYTES: usize = 16;

/// The lookup tag of a case made before v2: HMAC-SHA256(instance secret, codename).
/// Only to find such a case once more, at its survivor's first sign-in after the
/// upgrade, when it gets v2 keys and this tag is deleted.
pub fn v1_lookup_tag(instance_secret: &[u8], normalized_codename: &str) -> [u8; 32] {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, instance_secret);
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::hmac::sign(&key, normalized_codename.as_bytes()).as_ref());
    out
}

/// Whether `stored` is the v1 tag of `normalized_codename`, in constant time.
pub fn v1_matches_tag(instance_secret: &[u8], normalized_codename: &str, stored: &[u8]) -> bool {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, instance_secret);
    ring::hmac::verify(&key, normalized_codename.as_bytes(), stored).is_ok()
}

/// The reply identity of a case made before v2. Broken by design: HKDF-Extract with the
/// instance secret as salt *is* the stored v1 tag, so anyone with the index derives it
/// (issue 15). Used only to show a survivor, once, the replies sealed to it before
/// the case's new key, which are then deleted.
pub fn v1_reply_identity(
    instance_secret: &[u8],
    normalized_codename: &str,
) -> age::x25519::Identity {
    let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, instance_secret);
    let prk = salt.extract(normalized_codename.as_bytes());
    let mut secret = Zeroizing::new([0u8; 32]);
    prk.expand(&[b"amanat/v1 reply identity"], Len32)
        .and_then(|okm| okm.fill(&mut secret[..]))
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    x25519_identity(&secret)
}

struct Len32;

impl hkdf::KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

/// An age X25519 identity from 32 secret bytes, through age's own parser of its Bech32
/// encoding. The encoding is written into a buffer sized once and wiped on drop.
fn x25519_identity(secret: &[u8; 32]) -> age::x25519::Identity {
    let hrp = bech32::Hrp::parse("age-secret-key-").expect("valid human-readable part");
    // "AGE-SECRET-KEY-1" + 52 data characters + 6 of checksum: 74.
    let mut encoded = Zeroizing::new(String::with_capacity(96));
    bech32::encode_upper_to_fmt::<bech32::Bech32, _>(&mut *encoded, hrp, &secret[..])
        .expect("32 bytes fit in Bech32");
    age::x25519::Identity::from_str(&encoded).expect("age parses its own key encoding")
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

    #[test]
    fn reply_identity_is_stable_and_depends_on_codename_secret_and_case_salt() {
        let key = CodenameKey::derive(b"secret-one", "bafokimudero", &mut KdfMemory::new());
        let a = key.reply_identity(&[1; 16]).to_public().to_string();
        assert!(a.starts_with("age1"));
        assert_eq!(a, key.reply_identity(&[1; 16]).to_public().to_string());
        assert_ne!(a, key.reply_identity(&[2; 16]).to_public().to_string());
        let other_codename =
            CodenameKey::derive(b"secret-one", "bafokimuderu", &mut KdfMemory::new());
        assert_ne!(a, other_codename.reply_identity(&[1; 16]).to_public().to_string());
        let other_instance =
            CodenameKey::derive(b"secret-two", "bafokimudero", &mut KdfMemory::new());
        assert_ne!(a, other_instance.reply_identity(&[1; 16]).to_public().to_string());
    }

    #[test]
    fn the_lookup_tag_is_neither_the_reply_key_nor_its_hkdf_key() {
        let key = CodenameKey::derive(b"secret-one", "bafokimudero", &mut KdfMemory::new());
        let tag = key.lookup_tag();
        assert!(key.matches_tag(&tag));
        assert!(!CodenameKey::derive(b"secret-one", "bafokimuderu", &mut KdfMemory::new())
            .matches_tag(&tag));
        let salt = [7u8; 16];
        let reply = key.reply_identity(&salt).to_public().to_string();
        // What broke v1: treating the stored tag as the HKDF input or as its PRK.
        let mut tag_bytes = [0u8; 32];
        tag_bytes.copy_from_slice(&tag);
        assert_ne!(reply, x25519_identity(&tag_bytes).to_public().to_string());
        assert_ne!(
            reply,
            CodenameKey(Zeroizing::new(tag_bytes)).reply_identity(&salt).to_public().to_string()
        );
        // And the v1 construction is what the issue said: the tag is the PRK.
        let v1_tag = v1_lookup_tag(b"secret-one", "bafokimudero");
        let prk = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &v1_tag);
        let mut t1 = b"amanat/v1 reply identity".to_vec();
        t1.push(1);
        let mut okm = [0u8; 32];
        okm.copy_from_slice(ring::hmac::sign(&prk, &t1).as_ref());
        assert_eq!(
            x25519_identity(&okm).to_public().to_string(),
            v1_reply_identity(b"secret-one", "bafokimudero").to_public().to_string()
        );
    }
}

/// An Ed25519 signing key (PKCS#8, 0600). The server's signs log checkpoints and never
/// leaves its data directory; a reviewer's signs custody records. Neither decrypts.
pub struct SigningKey {
    pair: ring::signature::Ed25519KeyPair,
    name: String,
}

impl SigningKey {
    /// Loads the key, creating it on first start. `name` is the log's origin.
    pub fn load_or_create(path: &Path, name: &str) -> io::Result<SigningKey> {
        use std::os::unix::fs::OpenOptionsExt;
        let pkcs8 = match std::fs::read(path) {
            Ok(bytes) => Zeroizing::new(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let rng = ring::rand::SystemRandom::new();
                let doc = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
                    .map_err(|_| io::Error::other("cannot generate a signing key"))?;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)?;
                f.write_all(doc.as_ref())?;
                f.sync_all()?;
                if let Some(dir) = path.parent() {
                    std::fs::File::open(dir)?.sync_all()?;
                }
                Zeroizing::new(doc.as_ref().to_vec())
            }
            Err(e) => return Err(e),
        };
        let pair = ring::signature::Ed25519KeyPair::from_pkcs8(&pkcs8)
            .map_err(|_| invalid(format!("{} is not an Ed25519 key", path.display())))?;
        Ok(SigningKey { pair, name: name.to_string() })
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }

    pub fn verifier(&self) -> VerifierKey {
        use ring::signature::KeyPair;
        let mut public = [0u8; 32];
        public.copy_from_slice(self.pair.public_key().as_ref());
        VerifierKey { name: self.name.clone(), public }
    }
}

/// A signed-note verifier key: the log's name and the server's Ed25519 public key.
/// Written as `name+keyid+base64(0x01 || key)`, the C2SP signed-note form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifierKey {
    pub name: String,
    pub public: [u8; 32],
}

impl VerifierKey {
    /// SHA-256(name || "\n" || 0x01 || key), first 4 bytes (C2SP signed-note key id).
    pub fn key_id(&self) -> [u8; 4] {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(self.name.as_bytes());
        ctx.update(b"\n\x01");
        ctx.update(&self.public);
        let d = ctx.finish();
        [d.as_ref()[0], d.as_ref()[1], d.as_ref()[2], d.as_ref()[3]]
    }

    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &self.public)
            .verify(message, signature)
            .is_ok()
    }
}

impl fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use base64::Engine;
        let mut key = vec![0x01];
        key.extend_from_slice(&self.public);
        write!(
            f,
            "{}+{}+{}",
            self.name,
            hex::encode(self.key_id()),
            base64::engine::general_purpose::STANDARD.encode(key)
        )
    }
}

impl FromStr for VerifierKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        use base64::Engine;
        // Names cannot hold '+'; the base64 key can, so split from the left.
        let mut parts = s.splitn(3, '+');
        let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err("a server key is name+keyid+key".into());
        };
        let key = base64::engine::general_purpose::STANDARD
            .decode(key)
            .map_err(|_| "the server key is not base64".to_string())?;
        if key.len() != 33 || key[0] != 0x01 {
            return Err("not an Ed25519 server key".into());
        }
        let mut public = [0u8; 32];
        public.copy_from_slice(&key[1..]);
        let verifier = VerifierKey { name: name.to_string(), public };
        if hex::encode(verifier.key_id()) != id {
            return Err("the server key's id does not match its key".into());
        }
        Ok(verifier)
    }
}
