//! Case keys: everything derived from a survivor's codename, and the server's instance
//! secret that keys it. The secret is read here and never handed out: the store keeps
//! an `InstanceSecret` and asks it for keys and tags.

use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::str::FromStr;
use zeroize::Zeroizing;

/// The server's instance secret (`data/instance.secret`, 32 random bytes, 0600): the
/// key of every codename tag and an input of every codename key. A copy of the data
/// directory holds it, so nothing derived from it alone may open anything (the
/// codename itself must be guessed through Argon2id, `CodenameKey`).
pub struct InstanceSecret(Zeroizing<Vec<u8>>);

impl InstanceSecret {
    /// Reads the secret, creating it on first start (fsynced, with its folder).
    pub fn load_or_create(path: &Path) -> io::Result<InstanceSecret> {
        match File::open(path) {
            Ok(mut f) => {
                let mut secret = Zeroizing::new(Vec::new());
                f.read_to_end(&mut secret)?;
                if secret.len() != 32 {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{} is damaged (expected 32 bytes)", path.display()),
                    ));
                }
                Ok(InstanceSecret(secret))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let mut secret = Zeroizing::new(vec![0u8; 32]);
                SystemRandom::new().fill(&mut secret).expect("the system random source works");
                let mut f =
                    OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
                f.write_all(&secret)?;
                f.sync_all()?;
                crate::durable::sync_parent(path)?;
                Ok(InstanceSecret(secret))
            }
            Err(e) => Err(e),
        }
    }

    /// The v2 key of a normalized codename (Argon2id; see `CodenameKey::derive`).
    pub fn codename_key(&self, normalized_codename: &str, memory: &mut KdfMemory) -> CodenameKey {
        CodenameKey::derive(&self.0, normalized_codename, memory)
    }

    /// The lookup tag a case had before v2.
    pub fn v1_lookup_tag(&self, normalized_codename: &str) -> [u8; 32] {
        v1_lookup_tag(&self.0, normalized_codename)
    }

    /// Whether `stored` is the v1 tag of this codename (constant time).
    pub fn v1_matches_tag(&self, normalized_codename: &str, stored: &[u8]) -> bool {
        v1_matches_tag(&self.0, normalized_codename, stored)
    }

    /// The reply identity a case had before v2: to reseal its replies at its upgrade.
    pub fn v1_reply_identity(&self, normalized_codename: &str) -> age::x25519::Identity {
        v1_reply_identity(&self.0, normalized_codename)
    }
}

/// A fresh random case salt, for a new case's or an upgraded case's reply key.
pub fn new_case_salt() -> [u8; CASE_SALT_BYTES] {
    let mut salt = [0u8; CASE_SALT_BYTES];
    SystemRandom::new().fill(&mut salt).expect("the system random source works");
    salt
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
    fn derive(
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
fn v1_lookup_tag(instance_secret: &[u8], normalized_codename: &str) -> [u8; 32] {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, instance_secret);
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::hmac::sign(&key, normalized_codename.as_bytes()).as_ref());
    out
}

/// Whether `stored` is the v1 tag of `normalized_codename`, in constant time.
fn v1_matches_tag(instance_secret: &[u8], normalized_codename: &str, stored: &[u8]) -> bool {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, instance_secret);
    ring::hmac::verify(&key, normalized_codename.as_bytes(), stored).is_ok()
}

/// The reply identity of a case made before v2. Broken by design: HKDF-Extract with the
/// instance secret as salt *is* the stored v1 tag, so anyone with the index derives it
/// (issue 15). Used only to show a survivor, once, the replies sealed to it before
/// the case's new key, which are then deleted.
fn v1_reply_identity(instance_secret: &[u8], normalized_codename: &str) -> age::x25519::Identity {
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

    /// Every survivor's case key hangs on these exact bytes: a change of label, salt or
    /// parameter would lock them all out, and no other test would notice.
    #[test]
    fn the_v2_derivation_gives_the_same_keys_as_always() {
        let key = CodenameKey::derive(&[7u8; 32], "bafokimudero", &mut KdfMemory::new());
        assert_eq!(
            hex::encode(key.lookup_tag()),
            "127396a26b34125d47e006e257ac85d1c481939a4e143f4ac2a1139951b7792a"
        );
        assert_eq!(
            key.reply_identity(&[9u8; 16]).to_public().to_string(),
            "age1rxectd7p2nhps9rzee4uzlrhzd7pwdeyue0uj4z4c0rvax23p3kslwvje9"
        );
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
