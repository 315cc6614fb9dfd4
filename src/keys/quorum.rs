//! Quorum keys: an age X25519 identity that exists only when K of its N holders bring
//! their shares together. `init` draws the identity's secret as a scalar of
//! ristretto255's prime-order group, splits it with Feldman's verifiable secret sharing
//! (vsss-rs), encrypts each share to its holder's own age recipient, and publishes the
//! quorum's recipient and the polynomial's commitments; the secret is never written.
//! `rebuild` checks every share against those commitments before anything is combined
//! (a share of another quorum, of an earlier holder set, altered, given twice, or given
//! with another holder's key is named and refused), rebuilds the identity in memory and
//! checks it against the published recipient.
//!
//! The identity's 32 bytes are the scalar's canonical encoding: X25519 clamps them when
//! used, so the same shares always give the same age identity, and stock `age` reads it.

use curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT;
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::Identity as _;
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::{Read, Write};
use std::path::Path;
use std::str::FromStr;
use vsss_rs::curve25519::{WrappedRistretto, WrappedScalar};
use vsss_rs::{FeldmanVerifierSet, IdentifierPrimeField, ReadableShareSet, ValueGroup};
use zeroize::{Zeroize, Zeroizing};

/// The most holders one quorum has.
pub const MAX_HOLDERS: usize = 255;
const FORMAT: &str = "amanat-quorum 1";

type Share = (IdentifierPrimeField<WrappedScalar>, IdentifierPrimeField<WrappedScalar>);
type Commitment = ValueGroup<WrappedRistretto>;

/// What `quorum.pub` says: the recipient, who holds shares, and the commitments that
/// let anyone check a share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumPublic {
    pub recipient: String,
    pub threshold: usize,
    /// Holder n's own age recipient at place n - 1.
    pub holders: Vec<String>,
    /// Feldman's commitments to the polynomial's coefficients, compressed; the first is
    /// to the secret itself.
    commitments: Vec<[u8; 32]>,
}

/// Why a quorum could not be made or used.
#[derive(Debug)]
pub enum QuorumError {
    /// A bad request (threshold, holders), in words for a person.
    Refused(String),
    /// A `quorum.pub` that is not one.
    Public(String),
    /// A share refused, naming it (its file) and why.
    Share(String, String),
    /// Fewer good shares than the threshold.
    TooFew {
        have: usize,
        need: usize,
    },
    Io(std::io::Error),
}

impl fmt::Display for QuorumError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuorumError::Refused(why) | QuorumError::Public(why) => f.write_str(why),
            QuorumError::Share(name, why) => write!(f, "share {name} refused: {why}"),
            QuorumError::TooFew { have, need } => write!(
                f,
                "{have} of the {need} shares needed: nothing was opened; bring {} more \
                 holders with their shares",
                need - have
            ),
            QuorumError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<std::io::Error> for QuorumError {
    fn from(e: std::io::Error) -> QuorumError {
        QuorumError::Io(e)
    }
}

/// What a share file holds, inside its age encryption to the holder.
#[derive(serde::Serialize, serde::Deserialize)]
struct ShareFile {
    /// The quorum's recipient.
    quorum: String,
    /// SHA-256 of the holder set and commitments it was issued with.
    set: String,
    holder: usize,
    /// The share's value, a scalar's canonical encoding in hex.
    share: String,
}

impl Drop for ShareFile {
    fn drop(&mut self) {
        self.share.zeroize();
    }
}

impl QuorumPublic {
    /// `quorum.pub`'s text: the recipient alone on its first line, everything else in
    /// comments, so that stock `age -R quorum.pub` encrypts to the quorum and to nothing
    /// else (a holder's recipient there as a line of its own would let that holder read
    /// alone).
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "{}\n# Any {} of the {} holders below together hold this recipient's identity.\n\
             # Put this file's lines in keys/recipients.txt as they are.\n# {FORMAT}\n\
             # threshold {}\n",
            self.recipient,
            self.threshold,
            self.holders.len(),
            self.threshold
        );
        for (n, holder) in self.holders.iter().enumerate() {
            text.push_str(&format!("# holder {} {holder}\n", n + 1));
        }
        for (n, c) in self.commitments.iter().enumerate() {
            text.push_str(&format!("# commitment {n} {}\n", hex::encode(c)));
        }
        text
    }

    /// Reads `quorum.pub`: every line checked, every commitment a point of the group, no
    /// recipient but the first.
    pub fn parse(text: &str) -> Result<QuorumPublic, QuorumError> {
        let bad = |why: &str| QuorumError::Public(format!("not a quorum.pub: {why}"));
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        // Recipients are kept in age's own spelling, so that comparisons and the set's
        // digest do not depend on how the file spelled them.
        let first = lines.next().ok_or_else(|| bad("empty"))?;
        let recipient = age::x25519::Recipient::from_str(first)
            .map_err(|_| bad("no age1 recipient first"))?
            .to_string();
        let (mut format, mut threshold) = (false, None);
        let (mut holders, mut commitments) = (Vec::new(), Vec::new());
        for line in lines {
            let Some(comment) = line.strip_prefix('#') else {
                return Err(bad("a second recipient would read without the quorum"));
            };
            let words: Vec<&str> = comment.split_whitespace().collect();
            match words[..] {
                [first, ..] if first == FORMAT.split(' ').next().unwrap_or_default() => {
                    if comment.trim() != FORMAT || format {
                        return Err(bad("another format's"));
                    }
                    format = true;
                }
                ["threshold", k] if threshold.is_none() => {
                    threshold = Some(k.parse::<usize>().map_err(|_| bad("threshold"))?);
                }
                ["holder", n, holder] if n.parse() == Ok(holders.len() + 1) => {
                    let holder =
                        age::x25519::Recipient::from_str(holder).map_err(|_| bad("a holder"))?;
                    holders.push(holder.to_string());
                }
                ["commitment", n, point] if n.parse() == Ok(commitments.len()) => {
                    let bytes: [u8; 32] = hex::decode(point)
                        .ok()
                        .and_then(|b| b.try_into().ok())
                        .ok_or_else(|| bad("a commitment"))?;
                    let point = CompressedRistretto(bytes)
                        .decompress()
                        .ok_or_else(|| bad("a commitment"))?;
                    // A commitment to zero would make the polynomial's degree, and so the
                    // shares needed, smaller than the threshold the file states.
                    if point == RistrettoPoint::identity() {
                        return Err(bad("a commitment to zero"));
                    }
                    commitments.push(bytes);
                }
                ["threshold" | "holder" | "commitment", ..] => {
                    return Err(bad(&format!("{line:?}")));
                }
                _ => {}
            }
        }
        let threshold = threshold.ok_or_else(|| bad("no threshold"))?;
        if !format || threshold < 2 || threshold > holders.len() || commitments.len() != threshold {
            return Err(bad("its threshold, holders and commitments do not agree"));
        }
        Ok(QuorumPublic { recipient, threshold, holders, commitments })
    }

    /// The holder set and commitments, as a share names them: SHA-256 of this text.
    pub fn set(&self) -> String {
        hex::encode(Sha256::digest(self.to_text().as_bytes()))
    }

    /// vsss-rs's verifier set: the generator, then the commitments.
    fn verifiers(&self) -> Vec<Commitment> {
        let point = |c: &[u8; 32]| CompressedRistretto(*c).decompress().unwrap_or_default();
        let generator = ValueGroup(WrappedRistretto(RISTRETTO_BASEPOINT_POINT));
        let commitments = self.commitments.iter().map(|c| ValueGroup(WrappedRistretto(point(c))));
        std::iter::once(generator).chain(commitments).collect()
    }
}

/// A quorum made: its public part, and each holder's share file's bytes (age, armored,
/// to that holder alone), in holder order.
pub struct Made {
    pub public: QuorumPublic,
    pub shares: Vec<Vec<u8>>,
    /// For a reshare, the holder set it replaces (its digest, as old shares name it)
    /// and that set's threshold.
    pub replaces: Option<(String, usize)>,
}

/// Makes a quorum of `threshold` of `holders`.
pub fn init(threshold: usize, holders: &[String]) -> Result<Made, QuorumError> {
    let (holders, recipients) = holder_recipients(threshold, holders)?;
    let secret = Zeroizing::new(Scalar::random(&mut rand_core::OsRng));
    split(&secret, threshold, &holders, &recipients)
}

/// The same quorum's identity for a new holder set and threshold: the K shares brought
/// are checked and combined as for opening, and the secret is split afresh, so the new
/// commitments (all but the secret's own) and the set a share names change, and no old
/// share counts with the new `quorum.pub`.
pub fn reshare(
    public: &QuorumPublic,
    brought: &[Brought<'_>],
    threshold: usize,
    holders: &[String],
) -> Result<Made, QuorumError> {
    let (holders, recipients) = holder_recipients(threshold, holders)?;
    let secret = rebuild_secret(public, brought)?;
    let made = split(&secret, threshold, &holders, &recipients)?;
    Ok(Made { replaces: Some((public.set(), public.threshold)), ..made })
}

/// The holders' own recipients (in age's spelling, and parsed), after the threshold and
/// holder set are checked.
fn holder_recipients(
    threshold: usize,
    holders: &[String],
) -> Result<(Vec<String>, Vec<age::x25519::Recipient>), QuorumError> {
    if holders.len() > MAX_HOLDERS || threshold < 2 || threshold > holders.len() {
        return Err(QuorumError::Refused(format!(
            "a quorum needs a threshold of at least 2 and at most its holders ({} given, at \
             most {MAX_HOLDERS})",
            holders.len()
        )));
    }
    let mut recipients = Vec::new();
    for holder in holders {
        let recipient = age::x25519::Recipient::from_str(holder)
            .map_err(|_| QuorumError::Refused(format!("{holder:?} is not an age1 recipient")))?;
        if recipients.contains(&recipient) {
            return Err(QuorumError::Refused(format!("{holder} is given twice: each holder once")));
        }
        recipients.push(recipient);
    }
    Ok((recipients.iter().map(ToString::to_string).collect(), recipients))
}

/// `secret` split among `holders` with a fresh random polynomial, each share sealed to
/// its holder.
fn split(
    secret: &Scalar,
    threshold: usize,
    holders: &[String],
    recipients: &[age::x25519::Recipient],
) -> Result<Made, QuorumError> {
    let identity = identity_of(secret)?;
    let split = <WipedVsss as vsss_rs::Feldman<Share, Commitment>>::split_secret_with_verifier(
        threshold,
        holders.len(),
        &IdentifierPrimeField(WrappedScalar(*secret)),
        None,
        &mut rand_core::OsRng,
    )
    .map_err(|e| QuorumError::Refused(format!("the secret could not be split: {e:?}")))?;
    let (mut shares, verifiers) = split;
    let made = seal_shares(&shares, &verifiers, identity, threshold, holders, recipients);
    for share in &mut shares {
        share.1 .0 .0.zeroize();
    }
    made
}

/// vsss-rs's Feldman split with a polynomial wiped when it is dropped: its first
/// coefficient is the secret itself, and the polynomial vsss-rs keeps by default (a plain
/// `Vec`) is freed unwiped. The sharing is vsss-rs's own; only where it keeps the
/// coefficients is ours.
struct WipedVsss;

struct WipedPolynomial(Vec<Share>);

impl Drop for WipedPolynomial {
    fn drop(&mut self) {
        for coefficient in &mut self.0 {
            coefficient.0 .0 .0.zeroize();
            coefficient.1 .0 .0.zeroize();
        }
    }
}

impl vsss_rs::Polynomial<Share> for WipedPolynomial {
    fn create(size_hint: usize) -> Self {
        WipedPolynomial(vec![Share::default(); size_hint])
    }

    fn coefficients(&self) -> &[Share] {
        &self.0
    }

    fn coefficients_mut(&mut self) -> &mut [Share] {
        &mut self.0
    }
}

impl vsss_rs::Shamir<Share> for WipedVsss {
    type InnerPolynomial = WipedPolynomial;
    type ShareSet = Vec<Share>;
}

impl vsss_rs::Feldman<Share, Commitment> for WipedVsss {
    type VerifierSet = Vec<Commitment>;
}

/// The public part and each holder's sealed share, from vsss-rs's split.
fn seal_shares(
    shares: &[Share],
    verifiers: &[Commitment],
    identity: age::x25519::Identity,
    threshold: usize,
    holders: &[String],
    recipients: &[age::x25519::Recipient],
) -> Result<Made, QuorumError> {
    let refused = |why: &str| Err(QuorumError::Refused(why.into()));
    // vsss-rs gives the generator first (ristretto255's own), then the commitments.
    let Some((generator, commitments)) = verifiers.split_first() else {
        return refused("the secret's commitments are missing");
    };
    if generator.0 .0 != RISTRETTO_BASEPOINT_POINT || commitments.len() != threshold {
        return refused("the secret's commitments are not on ristretto255's generator");
    }
    let public = QuorumPublic {
        recipient: identity.to_public().to_string(),
        threshold,
        holders: holders.to_vec(),
        commitments: commitments.iter().map(|v| v.0 .0.compress().to_bytes()).collect(),
    };
    let set = public.set();
    let mut files = Vec::new();
    for (n, (share, recipient)) in shares.iter().zip(recipients).enumerate() {
        // Holder n + 1 holds the share at x = n + 1.
        if share.0 .0 .0 != Scalar::from(n as u64 + 1) {
            return refused("the shares were not numbered 1 to N");
        }
        let value = Zeroizing::new(share.1 .0 .0.to_bytes());
        let file = ShareFile {
            quorum: public.recipient.clone(),
            set: set.clone(),
            holder: n + 1,
            share: hex::encode(&value[..]),
        };
        // Written into room made up front: a growing Vec would leave copies of the share.
        let mut json = Zeroizing::new(Vec::with_capacity(4096));
        serde_json::to_writer(&mut *json, &file).map_err(std::io::Error::other)?;
        files.push(seal_to(recipient, &json)?);
    }
    Ok(Made { public, shares: files, replaces: None })
}

/// `plain` encrypted to one holder (armored, as stock `age -a` writes).
fn seal_to(holder: &age::x25519::Recipient, plain: &[u8]) -> std::io::Result<Vec<u8>> {
    use age::armor::{ArmoredWriter, Format};
    let encryptor = age::Encryptor::with_recipients(std::iter::once(holder as &dyn age::Recipient))
        .map_err(std::io::Error::other)?;
    let mut out = Vec::new();
    let armor = ArmoredWriter::wrap_output(&mut out, Format::AsciiArmor)?;
    let mut writer = encryptor.wrap_output(armor)?;
    writer.write_all(plain)?;
    writer.finish()?.finish()?;
    Ok(out)
}

/// A share file opened with its holder's identities.
fn unseal(
    bytes: &[u8],
    identities: &[age::x25519::Identity],
) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let reader = age::armor::ArmoredReader::new(bytes);
    let decryptor = age::Decryptor::new(reader).map_err(std::io::Error::other)?;
    let mut stream = decryptor
        .decrypt(identities.iter().map(|i| i as &dyn age::Identity))
        .map_err(std::io::Error::other)?;
    // A share file is a few hundred bytes; a larger one is not one. The buffer is made
    // large enough up front so that no copy of the share is left behind by a reallocation.
    const MOST: usize = 64 * 1024;
    let mut plain = Zeroizing::new(Vec::with_capacity(MOST + 1));
    (&mut stream).take(MOST as u64).read_to_end(&mut plain)?;
    Ok(plain)
}

/// The age identity whose secret is `scalar`'s 32 bytes.
fn identity_of(scalar: &Scalar) -> Result<age::x25519::Identity, QuorumError> {
    let bytes = Zeroizing::new(scalar.to_bytes());
    let hrp = bech32::Hrp::parse("age-secret-key-").map_err(std::io::Error::other)?;
    // Both spellings of the secret are wiped when dropped, not only the one age reads.
    let lower = Zeroizing::new(
        bech32::encode::<bech32::Bech32>(hrp, &bytes[..]).map_err(std::io::Error::other)?,
    );
    let text = Zeroizing::new(lower.to_uppercase());
    age::x25519::Identity::from_str(&text)
        .map_err(|e| QuorumError::Refused(format!("no identity from the secret: {e}")))
}

/// One holder's share file, with that holder's own identities.
pub struct Brought<'a> {
    /// How the share is named in messages (its file's path).
    pub name: String,
    pub bytes: Vec<u8>,
    pub identities: &'a [age::x25519::Identity],
}

/// The quorum's identity, rebuilt from the shares brought, each checked first.
pub fn rebuild(
    public: &QuorumPublic,
    brought: &[Brought<'_>],
) -> Result<age::x25519::Identity, QuorumError> {
    identity_of(&*rebuild_secret(public, brought)?)
}

/// The quorum's secret, from K shares each checked against the commitments, and the
/// result checked against the published commitment and recipient.
fn rebuild_secret(
    public: &QuorumPublic,
    brought: &[Brought<'_>],
) -> Result<Zeroizing<Scalar>, QuorumError> {
    let set = public.set();
    let verifiers = public.verifiers();
    // Room for every share up front: a growing Vec would leave copies of shares behind.
    let mut shares: Vec<Share> = Vec::with_capacity(brought.len());
    let mut holders_seen = Vec::new();
    for share in brought {
        let refuse = |why: &str| QuorumError::Share(share.name.clone(), why.to_string());
        let plain = unseal(&share.bytes, share.identities)
            .map_err(|_| refuse("its holder's identity given with it does not open it"))?;
        let file: ShareFile =
            serde_json::from_slice(&plain).map_err(|_| refuse("not a share file"))?;
        if file.quorum != public.recipient {
            return Err(refuse("it is a share of another quorum"));
        }
        if file.set != set {
            return Err(refuse(
                "it was issued for another holder set of this quorum (a share from before a \
                 reshare no longer counts)",
            ));
        }
        if file.holder == 0 || file.holder > public.holders.len() {
            return Err(refuse("its holder is not in the quorum"));
        }
        let own = &public.holders[file.holder - 1];
        if !share.identities.iter().any(|i| i.to_public().to_string() == *own) {
            return Err(refuse("it was given with another holder's identity"));
        }
        if holders_seen.contains(&file.holder) {
            return Err(refuse(&format!("holder {}'s share is given twice", file.holder)));
        }
        let mut value = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(&file.share, &mut value[..])
            .map_err(|_| refuse("its value is not a scalar"))?;
        let value: Option<Scalar> = Scalar::from_canonical_bytes(*value).into();
        let value = value.ok_or_else(|| refuse("its value is not a scalar"))?;
        let candidate: Share = (
            IdentifierPrimeField(WrappedScalar(Scalar::from(file.holder as u64))),
            IdentifierPrimeField(WrappedScalar(value)),
        );
        if verifiers.verify_share(&candidate).is_err() {
            return Err(refuse("it does not match the quorum's commitments: it was altered"));
        }
        holders_seen.push(file.holder);
        shares.push(candidate);
    }
    if shares.len() < public.threshold {
        return Err(QuorumError::TooFew { have: shares.len(), need: public.threshold });
    }
    let combined = shares.combine();
    for share in &mut shares {
        share.1 .0 .0.zeroize();
    }
    let secret = Zeroizing::new(
        combined.map_err(|e| QuorumError::Refused(format!("not combined: {e:?}")))?.0 .0,
    );
    let on_commitment = RistrettoPoint::mul_base(&secret).compress().to_bytes();
    let identity = identity_of(&secret)?;
    if public.commitments.first() != Some(&on_commitment)
        || identity.to_public().to_string() != public.recipient
    {
        return Err(QuorumError::Refused(
            "the shares combine to another key than the quorum's: nothing was opened".into(),
        ));
    }
    Ok(secret)
}

/// Writes a quorum into `out` (a new folder): `quorum.pub`, `<n>.share` per holder, and
/// `ceremony.txt` saying who holds what.
pub fn write(made: &Made, out: &Path) -> Result<(), QuorumError> {
    std::fs::create_dir(out)?;
    // A half-written quorum folder is removed: nothing partial is left to hand out.
    write_into(made, out).inspect_err(|_| {
        let _ = std::fs::remove_dir_all(out);
    })
}

fn write_into(made: &Made, out: &Path) -> Result<(), QuorumError> {
    crate::durable::write_new(&out.join("quorum.pub"), made.public.to_text().as_bytes())?;
    let mut ceremony = format!(
        "amanat quorum ceremony, {}\nrecipient {}\nany {} of {} holders open what is sealed \
         to it; the secret was made in memory and never written.\n",
        crate::record::Hour::now(),
        made.public.recipient,
        made.public.threshold,
        made.public.holders.len()
    );
    ceremony.push_str(&format!("holder set {}\n", made.public.set()));
    if let Some((old, k)) = &made.replaces {
        ceremony.push_str(&format!(
            "reshared from the holder set {old}: its shares no longer count with this \
             quorum.pub, but {k} of them would still rebuild the key with the old one, so \
             every old holder destroys their old share now.\n"
        ));
    }
    ceremony.push('\n');
    for (n, (holder, share)) in made.public.holders.iter().zip(&made.shares).enumerate() {
        let name = format!("{}.share", n + 1);
        crate::durable::write_new(&out.join(&name), share)?;
        ceremony.push_str(&format!(
            "holder {}: {holder} holds {name} (SHA-256 {})\n",
            n + 1,
            hex::encode(Sha256::digest(share))
        ));
    }
    crate::durable::write_new(&out.join("ceremony.txt"), ceremony.as_bytes())?;
    crate::durable::sync_parent(out)?;
    Ok(())
}
