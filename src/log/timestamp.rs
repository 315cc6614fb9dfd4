//! RFC 3161 time-stamp tokens over signed checkpoints: the request the server sends a
//! time-stamping authority (TSA), and the one check of an answer, run on arrival by the
//! server and later by `verify` for a lawyer. A token says "these bytes existed by
//! this time", signed by a TSA whose certificate chains to a trust anchor the checker
//! names. It is checked as `openssl ts -verify` checks it, with two differences: the
//! certificate path is judged at the token's own time (genTime), not today, so that a
//! token stays checkable after its TSA's certificate expires (as long-term archives
//! judge it); and RFC 3161 §2.3 is enforced whole: the signer's extended key usage is
//! critical and timeStamping alone.
//!
//! The formats are RustCrypto's (`x509-tsp`, `cms`, `x509-cert`); the certificate path
//! (validity at the token's time, the timeStamping key purpose, CA constraints) and
//! the signature itself are rustls-webpki's over ring. What is composed here is only
//! CMS's own rule for signed attributes (RFC 5652 §5.4): the signature covers the DER
//! SET of signed attributes, whose message-digest attribute is the digest of the
//! TSTInfo, whose message imprint is the digest of the checkpoint.

use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::{SignedData, SignerIdentifier, SignerInfo};
use der::asn1::{Int, ObjectIdentifier, OctetString};
use der::{Decode, Encode, Tagged};
use pki_types::pem::PemObject;
use pki_types::{CertificateDer, SignatureVerificationAlgorithm, UnixTime};
use ring::digest;
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_tsp::{MessageImprint, TimeStampReq, TimeStampResp, TspVersion, TstInfo};

/// The largest answer a TSA may give: a token with a certificate chain of a few
/// certificates is a few KiB.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const ID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const ID_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
const ID_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const ID_CT_TST_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.4");
const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
const ID_MESSAGE_DIGEST: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
const ID_SIGNING_CERTIFICATE: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.12");
const ID_SIGNING_CERTIFICATE_V2: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.47");
const ID_RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const ID_SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");
const ID_SHA384_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.12");
const ID_SHA512_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.13");
const ID_ECDSA_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ID_ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
/// id-kp-timeStamping (1.3.6.1.5.5.7.3.8), as the bytes of its DER value.
const EKU_TIME_STAMPING: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x08];

/// Why a token was not accepted: each names the check that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimestampError {
    /// Not DER, cut short, or not a TimeStampResp holding a SignedData TSTInfo.
    Malformed(&'static str),
    /// The TSA answered but did not grant a token (its PKIStatus).
    NotGranted(u8),
    /// The token is over other bytes than the checkpoint's.
    WrongImprint,
    /// The token does not carry the nonce this request sent.
    WrongNonce,
    /// The signed attributes do not match the TSTInfo, or the signature fails.
    BadSignature,
    /// The signer's certificate is not in the token, or is not the one the token names.
    UnknownSigner,
    /// The signer's certificate does not chain to a trusted anchor as a timestamping
    /// certificate valid at the token's time.
    Untrusted(String),
    /// A digest or signature algorithm this checker does not accept.
    Unsupported(&'static str),
}

impl std::fmt::Display for TimestampError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TimestampError::Malformed(what) => write!(f, "malformed token: {what}"),
            TimestampError::NotGranted(status) => {
                write!(f, "the authority refused to stamp (status {status})")
            }
            TimestampError::WrongImprint => f.write_str("the token is over other bytes"),
            TimestampError::WrongNonce => f.write_str("the token does not carry our nonce"),
            TimestampError::BadSignature => f.write_str("the token's signature does not verify"),
            TimestampError::UnknownSigner => {
                f.write_str("the token does not carry the certificate that signed it")
            }
            TimestampError::Untrusted(why) => {
                write!(f, "the signer's certificate is not trusted: {why}")
            }
            TimestampError::Unsupported(what) => write!(f, "unsupported {what}"),
        }
    }
}

impl std::error::Error for TimestampError {}

impl TimestampError {
    /// A fixed word for the check that failed, for status and logs (never text from
    /// the token).
    pub fn code(&self) -> &'static str {
        match self {
            TimestampError::Malformed(_) => "malformed",
            TimestampError::NotGranted(_) => "not_granted",
            TimestampError::WrongImprint => "wrong_imprint",
            TimestampError::WrongNonce => "wrong_nonce",
            TimestampError::BadSignature => "bad_signature",
            TimestampError::UnknownSigner => "unknown_signer",
            TimestampError::Untrusted(_) => "untrusted",
            TimestampError::Unsupported(_) => "unsupported",
        }
    }
}

/// The certificates a checker trusts as time-stamping roots (a `ca_file` for the
/// server, a lawyer's `--tsa-cert` for `verify`): every certificate in the PEM file is
/// an anchor, as with `openssl ts -verify -CAfile`.
pub struct TsaTrust {
    anchors: Vec<CertificateDer<'static>>,
}

impl TsaTrust {
    pub fn from_pem(pem: &[u8]) -> Result<TsaTrust, TimestampError> {
        let anchors = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| TimestampError::Malformed("the certificate file is not PEM"))?;
        if anchors.is_empty() {
            return Err(TimestampError::Malformed("the certificate file holds no certificate"));
        }
        for anchor in &anchors {
            webpki::anchor_from_trusted_cert(anchor)
                .map_err(|e| TimestampError::Untrusted(format!("an anchor: {e}")))?;
        }
        Ok(TsaTrust { anchors })
    }
}

/// A request for a token over `message`, and what its answer must carry.
pub struct TimestampRequest {
    /// The DER TimeStampReq, sent as `application/timestamp-query`.
    pub der: Vec<u8>,
    nonce: Vec<u8>,
}

impl TimestampRequest {
    /// A SHA-256 imprint of `message`, a fresh 63-bit nonce, and a request for the
    /// TSA's certificate in the token, so the token can be checked on its own.
    pub fn new(message: &[u8]) -> TimestampRequest {
        let mut nonce = vec![0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
            .expect("the system's random source works");
        // Positive and minimally encoded: a non-zero first byte below 0x80.
        nonce[0] = (nonce[0] & 0x3f) | 0x40;
        let request = TimeStampReq {
            version: TspVersion::V1,
            message_imprint: sha256_imprint(message),
            req_policy: None,
            nonce: Some(Int::new(&nonce).expect("eight bytes make an INTEGER")),
            cert_req: true,
            extensions: None,
        };
        let der = request.to_der().expect("a request of fixed shape encodes");
        TimestampRequest { der, nonce }
    }

    /// Checks the TSA's answer to this request: a token over our message, with our
    /// nonce, from a TSA `trust` names.
    pub fn check(
        &self,
        response: &[u8],
        message: &[u8],
        trust: &TsaTrust,
    ) -> Result<Timestamp, TimestampError> {
        check_token(response, message, Some(&self.nonce), trust)
    }
}

fn sha256_imprint(message: &[u8]) -> MessageImprint {
    MessageImprint {
        hash_algorithm: AlgorithmIdentifierOwned { oid: ID_SHA256, parameters: None },
        hashed_message: OctetString::new(digest::digest(&digest::SHA256, message).as_ref())
            .expect("a digest fits an OCTET STRING"),
    }
}

/// What a checked token attests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timestamp {
    /// The TSA's time (genTime), seconds since the Unix epoch.
    pub time: u64,
    /// The TSA's stated accuracy in milliseconds (0 when it states none).
    pub accuracy_ms: u64,
    /// The signing certificate's subject, e.g. `CN=Test TSA`.
    pub tsa: String,
    /// The token's serial number, hex.
    pub serial: String,
}

/// Checks a DER TimeStampResp over `message`: granted, its TSTInfo's imprint is
/// SHA-256 of `message` (and carries `nonce`, when given), its signed attributes bind
/// that TSTInfo and the signer's certificate, the signature verifies with that
/// certificate, and the certificate chains to `trust` for timestamping at genTime.
pub fn check_token(
    response: &[u8],
    message: &[u8],
    nonce: Option<&[u8]>,
    trust: &TsaTrust,
) -> Result<Timestamp, TimestampError> {
    if response.len() > MAX_RESPONSE_BYTES {
        return Err(TimestampError::Malformed("too large"));
    }
    let response = TimeStampResp::from_der(response)
        .map_err(|_| TimestampError::Malformed("not a TimeStampResp"))?;
    let status = response.status.status as u8;
    if status > 1 {
        return Err(TimestampError::NotGranted(status));
    }
    let token = response.time_stamp_token.ok_or(TimestampError::Malformed("no token"))?;
    let (signed_data, tst_der) = signed_data(&token)?;
    let tst = TstInfo::from_der(&tst_der).map_err(|_| TimestampError::Malformed("TSTInfo"))?;
    if tst.message_imprint.hash_algorithm.oid != ID_SHA256
        || !absent_or_null(&tst.message_imprint.hash_algorithm)
        || tst.message_imprint.hashed_message != sha256_imprint(message).hashed_message
    {
        return Err(TimestampError::WrongImprint);
    }
    if let Some(nonce) = nonce {
        if tst.nonce.as_ref().map(Int::as_bytes) != Some(nonce) {
            return Err(TimestampError::WrongNonce);
        }
    }
    let time = tst.gen_time.to_unix_duration();
    let [signer] = signed_data.signer_infos.0.as_slice() else {
        return Err(TimestampError::Malformed("not exactly one signer"));
    };
    let certificates: Vec<&x509_cert::Certificate> = signed_data
        .certificates
        .iter()
        .flat_map(|set| set.0.iter())
        .filter_map(|choice| match choice {
            CertificateChoices::Certificate(cert) => Some(cert),
            CertificateChoices::Other(_) => None,
        })
        .collect();
    let signer_cert = certificates
        .iter()
        .find(|cert| names(signer, cert))
        .ok_or(TimestampError::UnknownSigner)?;
    let signer_der = signer_cert.to_der().map_err(|_| TimestampError::Malformed("certificate"))?;
    check_key_purpose(signer_cert)?;
    let signed_attributes = check_signed_attributes(signer, &tst_der, &signer_der)?;

    let end_entity_der = CertificateDer::from(signer_der.as_slice());
    let end_entity = webpki::EndEntityCert::try_from(&end_entity_der)
        .map_err(|e| TimestampError::Untrusted(e.to_string()))?;
    let anchors = trust
        .anchors
        .iter()
        .map(|anchor| webpki::anchor_from_trusted_cert(anchor).expect("checked when loaded"))
        .collect::<Vec<_>>();
    let intermediates = certificates
        .iter()
        .filter(|cert| !std::ptr::eq(**cert, *signer_cert))
        .map(|cert| cert.to_der().map(CertificateDer::from))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| TimestampError::Malformed("certificate"))?;
    end_entity
        .verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &intermediates,
            UnixTime::since_unix_epoch(time),
            webpki::KeyUsage::required(EKU_TIME_STAMPING),
            None,
            None,
        )
        .map_err(|e| TimestampError::Untrusted(e.to_string()))?;
    let signature = signer.signature.as_bytes();
    let verified = signature_algorithms(signer)?
        .iter()
        .any(|alg| end_entity.verify_signature(*alg, &signed_attributes, signature).is_ok());
    if !verified {
        return Err(TimestampError::BadSignature);
    }
    // RFC 3161 §2.4.2: the time is within genTime ± accuracy; micros round up.
    let accuracy_ms = tst.accuracy.map_or(0, |a| {
        let part = |v: Option<i16>| u64::try_from(v.unwrap_or(0)).unwrap_or(0);
        a.seconds
            .unwrap_or(0)
            .saturating_mul(1000)
            .saturating_add(part(a.millis))
            .saturating_add(part(a.micros).div_ceil(1000))
    });
    Ok(Timestamp {
        time: time.as_secs(),
        accuracy_ms,
        tsa: signer_cert.tbs_certificate.subject.to_string(),
        serial: hex::encode(tst.serial_number.as_bytes()),
    })
}

/// RFC 3161 §2.3: the TSA's certificate "MUST contain only one instance of the
/// extended key usage field extension ... with `KeyPurposeID` having value
/// id-kp-timeStamping. This extension MUST be critical." (webpki checks the purpose is
/// there; this checks it is critical and alone.)
fn check_key_purpose(cert: &x509_cert::Certificate) -> Result<(), TimestampError> {
    let untrusted = |why: &str| TimestampError::Untrusted(why.to_string());
    let id_time_stamping = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.8");
    let (critical, purposes) = cert
        .tbs_certificate
        .get::<x509_cert::ext::pkix::ExtendedKeyUsage>()
        .map_err(|_| untrusted("its extended key usage is malformed or repeated"))?
        .ok_or_else(|| untrusted("it has no extended key usage"))?;
    if !critical || purposes.0 != [id_time_stamping] {
        return Err(untrusted("its extended key usage is not critical and timeStamping alone"));
    }
    Ok(())
}

/// The SignedData inside a token and the DER TSTInfo it encapsulates.
fn signed_data(token: &ContentInfo) -> Result<(SignedData, Vec<u8>), TimestampError> {
    if token.content_type != ID_SIGNED_DATA {
        return Err(TimestampError::Malformed("not SignedData"));
    }
    let signed = token
        .content
        .decode_as::<SignedData>()
        .map_err(|_| TimestampError::Malformed("SignedData"))?;
    if signed.encap_content_info.econtent_type != ID_CT_TST_INFO {
        return Err(TimestampError::Malformed("not a TSTInfo"));
    }
    let content = signed
        .encap_content_info
        .econtent
        .as_ref()
        .ok_or(TimestampError::Malformed("no TSTInfo"))?
        .decode_as::<OctetString>()
        .map_err(|_| TimestampError::Malformed("TSTInfo is not an OCTET STRING"))?;
    let tst_der = content.as_bytes().to_vec();
    Ok((signed, tst_der))
}

/// Whether `signer` identifies `cert` (by issuer and serial, or subject key id).
fn names(signer: &SignerInfo, cert: &x509_cert::Certificate) -> bool {
    match &signer.sid {
        SignerIdentifier::IssuerAndSerialNumber(id) => {
            id.issuer == cert.tbs_certificate.issuer
                && id.serial_number == cert.tbs_certificate.serial_number
        }
        SignerIdentifier::SubjectKeyIdentifier(id) => cert
            .tbs_certificate
            .get::<x509_cert::ext::pkix::SubjectKeyIdentifier>()
            .ok()
            .flatten()
            .is_some_and(|(_, key_id)| key_id == *id),
    }
}

/// RFC 5652 §5.4 and RFC 3161 §2.4.2 (with RFC 5816): the signed attributes must name
/// the TSTInfo content type, carry the digest of the TSTInfo, and identify the signing
/// certificate by its hash (ESS signingCertificate or signingCertificateV2). Returns
/// the bytes the signature covers: the attributes as a DER SET.
fn check_signed_attributes(
    signer: &SignerInfo,
    tst_der: &[u8],
    signer_der: &[u8],
) -> Result<Vec<u8>, TimestampError> {
    let attributes = signer.signed_attrs.as_ref().ok_or(TimestampError::BadSignature)?;
    let single = |oid: ObjectIdentifier| -> Result<Option<&der::Any>, TimestampError> {
        let mut found = attributes.iter().filter(|a| a.oid == oid);
        let Some(attribute) = found.next() else { return Ok(None) };
        match (found.next(), attribute.values.as_slice()) {
            (None, [value]) => Ok(Some(value)),
            _ => Err(TimestampError::Malformed("a repeated signed attribute")),
        }
    };
    let content_type = single(ID_CONTENT_TYPE)?
        .ok_or(TimestampError::BadSignature)?
        .decode_as::<ObjectIdentifier>()
        .map_err(|_| TimestampError::Malformed("content-type attribute"))?;
    if content_type != ID_CT_TST_INFO {
        return Err(TimestampError::BadSignature);
    }
    let message_digest = single(ID_MESSAGE_DIGEST)?
        .ok_or(TimestampError::BadSignature)?
        .decode_as::<OctetString>()
        .map_err(|_| TimestampError::Malformed("message-digest attribute"))?;
    let algorithm = digest_algorithm(&signer.digest_alg)?;
    if message_digest.as_bytes() != digest::digest(algorithm, tst_der).as_ref() {
        return Err(TimestampError::BadSignature);
    }
    let cert_hash_matches = if let Some(v2) = single(ID_SIGNING_CERTIFICATE_V2)? {
        let v2 = v2
            .decode_as::<SigningCertificateV2>()
            .map_err(|_| TimestampError::Malformed("signingCertificateV2 attribute"))?;
        let first = v2.certs.first().ok_or(TimestampError::UnknownSigner)?;
        let algorithm = match &first.hash_algorithm {
            None => &digest::SHA256,
            Some(alg) => digest_algorithm(alg)?,
        };
        first.cert_hash.as_bytes() == digest::digest(algorithm, signer_der).as_ref()
    } else if let Some(v1) = single(ID_SIGNING_CERTIFICATE)? {
        let v1 = v1
            .decode_as::<SigningCertificate>()
            .map_err(|_| TimestampError::Malformed("signingCertificate attribute"))?;
        let first = v1.certs.first().ok_or(TimestampError::UnknownSigner)?;
        // ESSCertID's hash is SHA-1 by definition: an identifier, not the signature.
        first.cert_hash.as_bytes()
            == digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, signer_der).as_ref()
    } else {
        return Err(TimestampError::UnknownSigner);
    };
    if !cert_hash_matches {
        return Err(TimestampError::UnknownSigner);
    }
    attributes.to_der().map_err(|_| TimestampError::Malformed("signed attributes"))
}

fn absent_or_null(alg: &AlgorithmIdentifierOwned) -> bool {
    alg.parameters.as_ref().is_none_or(|p| p.tag() == der::Tag::Null && p.value().is_empty())
}

fn digest_algorithm(
    alg: &AlgorithmIdentifierOwned,
) -> Result<&'static digest::Algorithm, TimestampError> {
    if !absent_or_null(alg) {
        return Err(TimestampError::Unsupported("digest parameters"));
    }
    match alg.oid {
        oid if oid == ID_SHA256 => Ok(&digest::SHA256),
        oid if oid == ID_SHA384 => Ok(&digest::SHA384),
        oid if oid == ID_SHA512 => Ok(&digest::SHA512),
        oid if oid == ID_SHA1 => Err(TimestampError::Unsupported("digest SHA-1")),
        _ => Err(TimestampError::Unsupported("digest")),
    }
}

/// The webpki algorithms that may have made `signer`'s signature: its signature
/// algorithm with its digest algorithm (a bare `rsaEncryption` takes the digest from
/// the SignerInfo, as OpenSSL writes it). The certificate's key picks among them.
fn signature_algorithms(
    signer: &SignerInfo,
) -> Result<Vec<&'static dyn SignatureVerificationAlgorithm>, TimestampError> {
    use webpki::ring as alg;
    let digest = signer.digest_alg.oid;
    let algs: Vec<&'static dyn SignatureVerificationAlgorithm> =
        match (signer.signature_algorithm.oid, digest) {
            (ID_RSA_ENCRYPTION | ID_SHA256_WITH_RSA, ID_SHA256) => {
                vec![alg::RSA_PKCS1_2048_8192_SHA256]
            }
            (ID_RSA_ENCRYPTION | ID_SHA384_WITH_RSA, ID_SHA384) => {
                vec![alg::RSA_PKCS1_2048_8192_SHA384]
            }
            (ID_RSA_ENCRYPTION | ID_SHA512_WITH_RSA, ID_SHA512) => {
                vec![alg::RSA_PKCS1_2048_8192_SHA512]
            }
            (ID_ECDSA_SHA256, ID_SHA256) => vec![alg::ECDSA_P256_SHA256, alg::ECDSA_P384_SHA256],
            (ID_ECDSA_SHA384, ID_SHA384) => vec![alg::ECDSA_P256_SHA384, alg::ECDSA_P384_SHA384],
            (ID_ED25519, _) => vec![alg::ED25519],
            _ => return Err(TimestampError::Unsupported("signature algorithm")),
        };
    Ok(algs)
}

/// RFC 2634 §5.4: `SigningCertificate ::= SEQUENCE { certs SEQUENCE OF ESSCertID,
/// policies SEQUENCE OF PolicyInformation OPTIONAL }`.
#[derive(der::Sequence)]
struct SigningCertificate {
    certs: Vec<EssCertId>,
    #[asn1(optional = "true")]
    policies: Option<der::Any>,
}

/// `ESSCertID ::= SEQUENCE { certHash OCTET STRING (SHA-1), issuerSerial OPTIONAL }`.
#[derive(der::Sequence)]
struct EssCertId {
    cert_hash: OctetString,
    #[asn1(optional = "true")]
    issuer_serial: Option<der::Any>,
}

/// RFC 5035 §3: `SigningCertificateV2 ::= SEQUENCE { certs SEQUENCE OF ESSCertIDv2,
/// policies OPTIONAL }`.
#[derive(der::Sequence)]
struct SigningCertificateV2 {
    certs: Vec<EssCertIdV2>,
    #[asn1(optional = "true")]
    policies: Option<der::Any>,
}

/// `ESSCertIDv2 ::= SEQUENCE { hashAlgorithm DEFAULT sha256, certHash, issuerSerial
/// OPTIONAL }`; an absent algorithm is the default, SHA-256.
#[derive(der::Sequence)]
struct EssCertIdV2 {
    #[asn1(optional = "true")]
    hash_algorithm: Option<AlgorithmIdentifierOwned>,
    cert_hash: OctetString,
    #[asn1(optional = "true")]
    issuer_serial: Option<der::Any>,
}
