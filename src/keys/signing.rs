//! Ed25519 signing keys: the server's signs its log's checkpoints, a reviewer's signs
//! custody records; and their signed-note verifier form (`name+keyid+key`).

use super::invalid;
use ring::digest;
use std::fmt;
use std::io::{self, Write};
use std::path::Path;
use std::str::FromStr;
use zeroize::Zeroizing;

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

    /// This key as a witness's: its cosignature/v1 verifier key (C2SP tlog-cosignature),
    /// `name+keyid+base64(0x04 || key)`. A key used for cosignatures must not also sign
    /// notes: Ed25519's message does not say which statement was meant.
    pub fn cosignature_verifier(&self) -> String {
        use base64::Engine;
        let verifier = self.verifier();
        let mut key = vec![COSIGNATURE_V1];
        key.extend_from_slice(&verifier.public);
        format!(
            "{}+{}+{}",
            self.name,
            hex::encode(cosignature_key_id(&self.name, &verifier.public)),
            base64::engine::general_purpose::STANDARD.encode(key)
        )
    }

    /// A cosignature/v1 line over a checkpoint's note text (its lines up to and with the
    /// final newline, no signatures) at `timestamp` seconds since the epoch: the message
    /// is `cosignature/v1\ntime <ts>\n` and the text; the line carries the key id, the
    /// timestamp (8 bytes, big-endian) and the signature.
    pub fn cosign(&self, note_text: &str, timestamp: u64) -> String {
        use base64::Engine;
        let message = format!("cosignature/v1\ntime {timestamp}\n{note_text}");
        let verifier = self.verifier();
        let mut blob = cosignature_key_id(&self.name, &verifier.public).to_vec();
        blob.extend_from_slice(&timestamp.to_be_bytes());
        blob.extend_from_slice(self.pair.sign(message.as_bytes()).as_ref());
        format!(
            "\u{2014} {} {}\n",
            self.name,
            base64::engine::general_purpose::STANDARD.encode(blob)
        )
    }

    /// A key from its 32-byte seed (known-answer tests only).
    #[cfg(test)]
    fn from_seed(seed: &[u8], name: &str) -> SigningKey {
        let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(seed).unwrap();
        SigningKey { pair, name: name.to_string() }
    }
}

/// A witness's cosignature/v1 verifier key (`name+keyid+base64(0x04 || key)`), to check
/// the cosignatures a witness gave a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CosignatureVerifier {
    pub name: String,
    pub public: [u8; 32],
}

/// Why a cosignature line does not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CosignatureError {
    /// Not this witness's line (another name or key id): ignored, not refused.
    NotThisWitness,
    Malformed(&'static str),
    /// The signature does not verify over this note text and time: refuse the note.
    Invalid,
}

impl fmt::Display for CosignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CosignatureError::NotThisWitness => f.write_str("not a cosignature by this witness"),
            CosignatureError::Malformed(why) => write!(f, "a malformed cosignature: {why}"),
            CosignatureError::Invalid => {
                f.write_str("the cosignature does not verify over this checkpoint")
            }
        }
    }
}

impl std::error::Error for CosignatureError {}

impl FromStr for CosignatureVerifier {
    type Err = NotAVerifierKey;
    fn from_str(s: &str) -> Result<Self, NotAVerifierKey> {
        let (name, public) = parse_vkey(s, COSIGNATURE_V1, cosignature_key_id)?;
        Ok(CosignatureVerifier { name, public })
    }
}

impl CosignatureVerifier {
    /// Checks one signature line (`— name base64`, with or without its newline) over a
    /// checkpoint's note text; returns the time the witness gave it (seconds).
    pub fn verify(&self, note_text: &str, line: &str) -> Result<u64, CosignatureError> {
        use base64::Engine;
        let line = line.strip_suffix('\n').unwrap_or(line);
        let rest =
            line.strip_prefix("\u{2014} ").ok_or(CosignatureError::Malformed("no em dash"))?;
        let (name, blob) = rest.split_once(' ').ok_or(CosignatureError::Malformed("no name"))?;
        let blob = base64::engine::general_purpose::STANDARD
            .decode(blob)
            .map_err(|_| CosignatureError::Malformed("not base64"))?;
        if name != self.name
            || blob.len() < 4
            || blob[..4] != cosignature_key_id(name, &self.public)
        {
            return Err(CosignatureError::NotThisWitness);
        }
        if blob.len() != 76 {
            return Err(CosignatureError::Malformed("not 76 bytes"));
        }
        let time = u64::from_be_bytes(blob[4..12].try_into().expect("8 bytes"));
        if time == 0 || time > i64::MAX as u64 {
            return Err(CosignatureError::Malformed("a time out of range"));
        }
        let message = format!("cosignature/v1\ntime {time}\n{note_text}");
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &self.public)
            .verify(message.as_bytes(), &blob[12..])
            .map(|()| time)
            .map_err(|_| CosignatureError::Invalid)
    }
}

/// The signature type of a timestamped Ed25519 checkpoint cosignature (C2SP signed-note).
const COSIGNATURE_V1: u8 = 0x04;

/// SHA-256(name || "\n" || 0x04 || key), first 4 bytes.
fn cosignature_key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(name.as_bytes());
    ctx.update(&[b'\n', COSIGNATURE_V1]);
    ctx.update(public);
    let d = ctx.finish();
    [d.as_ref()[0], d.as_ref()[1], d.as_ref()[2], d.as_ref()[3]]
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

/// Text that is not a signed-note Ed25519 verifier key, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAVerifierKey(pub &'static str);

impl fmt::Display for NotAVerifierKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for NotAVerifierKey {}

/// A signed-note verifier key's parts: `name+keyid+base64(kind || key)`, checked to be
/// of `kind` and its id to be `key_id(name, key)`.
fn parse_vkey(
    s: &str,
    kind: u8,
    key_id: impl Fn(&str, &[u8; 32]) -> [u8; 4],
) -> Result<(String, [u8; 32]), NotAVerifierKey> {
    use base64::Engine;
    // Names cannot hold '+'; the base64 key can, so split from the left.
    let mut parts = s.splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(NotAVerifierKey("a key is name+keyid+key"));
    };
    let key = base64::engine::general_purpose::STANDARD
        .decode(key)
        .map_err(|_| NotAVerifierKey("the key is not base64"))?;
    if key.len() != 33 || key[0] != kind {
        return Err(NotAVerifierKey(if kind == COSIGNATURE_V1 {
            "not a cosignature/v1 (Ed25519) witness key"
        } else {
            "not an Ed25519 server key"
        }));
    }
    let public: [u8; 32] = key[1..].try_into().expect("32 bytes");
    if name.is_empty() || hex::encode(key_id(name, &public)) != id {
        return Err(NotAVerifierKey("the key's id does not match its key"));
    }
    Ok((name.to_string(), public))
}

impl FromStr for VerifierKey {
    type Err = NotAVerifierKey;
    fn from_str(s: &str) -> Result<Self, NotAVerifierKey> {
        let (name, public) = parse_vkey(s, 0x01, |name, public| {
            VerifierKey { name: name.to_string(), public: *public }.key_id()
        })?;
        Ok(VerifierKey { name, public })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    /// transparency-dev/formats' witness test key `Wit1` (its Ed25519 seed), and the
    /// C2SP tlog-cosignature example checkpoint and time: the line an independent
    /// implementation (Python `cryptography`, the spec's message format) computed.
    #[test]
    fn a_cosignature_is_the_one_the_spec_describes() {
        let skey = base64::engine::general_purpose::STANDARD
            .decode("AeadRiG7XM4XiieCHzD8lxysXMwcViy5nYsoXURWGrlE")
            .unwrap();
        let key = SigningKey::from_seed(&skey[1..], "Wit1");
        assert_eq!(
            key.cosignature_verifier(),
            "Wit1+9b3fb2d5+BFhZSmQj9+SoL+p/nN0Hh76xXmF7QcHfytUrI1XfSClk"
        );
        assert_eq!(
            key.verifier().to_string(),
            "Wit1+55ee4561+AVhZSmQj9+SoL+p/nN0Hh76xXmF7QcHfytUrI1XfSClk"
        );
        let text =
            "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        assert_eq!(
            key.cosign(text, 1_679_315_147),
            "\u{2014} Wit1 mz+y1QAAAABkGFDLM1oW1Cge43o711GHdmI8QPG1MhuOkQO1kJrg6IUc0qRplRuA9XSmt/d3Y7NujslnO7vHC5/XpLwYsn8xvJ8eAQ==\n"
        );
    }

    #[test]
    fn a_cosignature_verifies_over_its_text_and_nothing_else() {
        let witness: CosignatureVerifier =
            "Wit1+9b3fb2d5+BFhZSmQj9+SoL+p/nN0Hh76xXmF7QcHfytUrI1XfSClk".parse().unwrap();
        let text =
            "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
        let line = "\u{2014} Wit1 mz+y1QAAAABkGFDLM1oW1Cge43o711GHdmI8QPG1MhuOkQO1kJrg6IUc0qRplRuA9XSmt/d3Y7NujslnO7vHC5/XpLwYsn8xvJ8eAQ==";
        assert_eq!(witness.verify(text, line), Ok(1_679_315_147));
        let other = text.replace("20852163", "20852164");
        assert_eq!(witness.verify(&other, line), Err(CosignatureError::Invalid));
        let renamed = line.replace("Wit1", "Wit2");
        assert_eq!(witness.verify(text, &renamed), Err(CosignatureError::NotThisWitness));
        // The spec's own example line is by another key: not this witness's.
        let spec = "\u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==";
        assert_eq!(witness.verify(text, spec), Err(CosignatureError::NotThisWitness));
        assert!("remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"
            .parse::<CosignatureVerifier>()
            .is_ok());
        assert!("remora.n621.de+da77ade8+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"
            .parse::<CosignatureVerifier>()
            .is_err());
        // A note key (0x01) is not a witness key.
        assert!("Wit1+55ee4561+AVhZSmQj9+SoL+p/nN0Hh76xXmF7QcHfytUrI1XfSClk"
            .parse::<CosignatureVerifier>()
            .is_err());
    }

    /// transparency-dev/formats' real cosignature verifier key: its key id.
    #[test]
    fn a_cosignature_key_id_is_the_c2sp_one() {
        let key = base64::engine::general_purpose::STANDARD
            .decode("BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2")
            .unwrap();
        let public: [u8; 32] = key[1..].try_into().unwrap();
        assert_eq!(hex::encode(cosignature_key_id("remora.n621.de", &public)), "da77ade7");
    }
}
