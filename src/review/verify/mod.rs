//! `amanat verify`: a lawyer's check of a disclosure package, offline, trusting neither
//! the coalition nor the server operator: only the server's published key.

mod disclosure;
mod times;

pub use disclosure::verify_disclosure;

use super::ReviewError;
use crate::bundle::{Bundle, Kind};
use crate::envelope;
use crate::keys::VerifierKey;
use crate::log::{self, ReviewState};
use serde::Serialize;
use std::fmt;
use std::fs;
use std::path::Path;

/// One thing checked, and how it went.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub what: String,
    pub ok: bool,
    /// What it proved, or why it failed.
    pub detail: String,
    /// What it does not prove, in words for the person relying on it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub not_proved: String,
}

/// What the person verifying knows from elsewhere, and chooses to accept.
#[derive(Default, Clone, Copy)]
pub struct Trust<'a> {
    /// The server key the coalition published: required for a pass.
    pub server_key: Option<&'a str>,
    /// The disclosing reviewer's custody key: required for a pass, like the server key,
    /// since a custody record anyone re-signed with a key of their own would otherwise
    /// verify.
    pub custody_key: Option<&'a str>,
    /// Accept a custody record that is unsigned, or signed by a key not compared with
    /// the reviewer's (the report says so).
    pub accept_unverified_custody: bool,
    /// The time-stamping authorities and witnesses the person trusts to attest time
    /// (`--tsa-cert`, `--witness`).
    pub attesters: Option<&'a crate::log::attested::Attesters>,
    /// Fail unless each submission's "existed by" bound is cosigned by at least this
    /// many of those witnesses (`--require-witnesses`).
    pub require_witnesses: usize,
}

/// One disclosed file.
#[derive(Debug, Clone, Serialize)]
pub struct VerifiedFile {
    pub submission: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub saved_as: Option<String>,
    pub size: Option<u64>,
    pub ciphertext_sha256: String,
    pub plaintext_sha256: Option<String>,
    pub received_at: String,
    pub log_index: Option<u64>,
    pub checkpoint_size: u64,
    /// When outside parties attest it was received (its submission's bracket), in
    /// words; empty when the package carries no attestation for it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub attested: String,
    pub verified: bool,
}

#[derive(Debug, Serialize)]
pub struct VerifyReport {
    pub case: String,
    pub server_key: String,
    pub signer: Option<String>,
    pub checks: Vec<Check>,
    pub files: Vec<VerifiedFile>,
    /// Whether the server key was compared with one the user gave (`--server-key`).
    /// Without that, the checks prove the package is what *some* key signed; only the
    /// published key ties it to the coalition's server, and there is no pass.
    pub server_key_pinned: bool,
    /// Who the survivor said may read the case, as the custody record states it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consent: Option<String>,
    /// The reviewer's reason for disclosing against that consent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consent_override: Option<String>,
    /// The custody record is unsigned, or its signer was not compared with the
    /// reviewer's key, and it was accepted by `--accept-unverified-custody`.
    pub accepted_unverified_custody: bool,
    /// Each submission's time as outside parties attest it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub times: Vec<SubmissionTime>,
    pub verified: bool,
}

/// When one submission was received, by the attestations a lawyer trusts.
#[derive(Debug, Clone, Serialize)]
pub struct SubmissionTime {
    pub submission: String,
    /// The latest moment (Unix seconds) an outside party saw the log without it.
    pub not_before: Option<u64>,
    pub not_before_by: Vec<String>,
    /// The earliest moment an outside party saw the log holding it.
    pub not_after: Option<u64>,
    pub not_after_by: Vec<String>,
    /// What is missing or was refused, in words.
    pub missing: Vec<String>,
}

impl VerifyReport {
    fn check(
        &mut self,
        what: impl Into<String>,
        result: Result<String, impl fmt::Display>,
    ) -> bool {
        self.check_limited(what, result, "")
    }

    /// A check, and what it does not prove even when it holds.
    fn check_limited(
        &mut self,
        what: impl Into<String>,
        result: Result<String, impl fmt::Display>,
        not_proved: &str,
    ) -> bool {
        let (ok, detail) = match result {
            Ok(d) => (true, d),
            Err(d) => (false, d.to_string()),
        };
        self.checks.push(Check { what: what.into(), ok, detail, not_proved: not_proved.into() });
        ok
    }

    /// Gives each file its submission's attested time, in words.
    fn attach_times(&mut self) {
        for file in &mut self.files {
            let Some(time) = self.times.iter().find(|t| t.submission == file.submission) else {
                continue;
            };
            let at = |t: Option<u64>| t.map_or("?".to_string(), times::utc_seconds);
            file.attested = match (time.not_before, time.not_after) {
                (None, None) => "the server's clock alone".into(),
                (before, after) => format!("after {} and by {}", at(before), at(after)),
            };
        }
    }

    /// The verdict in one line.
    pub fn verdict(&self) -> &'static str {
        if self.verified {
            "EVERY CHECK PASSED"
        } else if !self.server_key_pinned && self.checks.iter().filter(|c| !c.ok).count() == 1 {
            "NOT VERIFIED: the server key was not compared with the published one"
        } else {
            "VERIFICATION FAILED"
        }
    }

    /// What the verdict rests on that the reader should know, in words for them.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if !self.server_key_pinned {
            notes.push(format!(
                "The package names server key {}. Run verify again with --server-key and the key \
                 the coalition published for its server: only that comparison ties these files \
                 to its log, and without it there is no pass.",
                self.server_key
            ));
        }
        if self.accepted_unverified_custody {
            notes.push(
                "The custody record was accepted without a signature by the reviewer's known \
                 key, because --accept-unverified-custody was given: who disclosed this, to whom \
                 and when, and the survivor's consent, rest on no signature you checked."
                    .into(),
            );
        }
        if let Some(reason) = &self.consent_override {
            notes.push(format!(
                "The survivor's consent ({}) does not include a lawyer. The reviewer disclosed \
                 the case anyway, giving this reason under their signature: {reason}",
                self.consent.as_deref().unwrap_or("not stated")
            ));
        }
        notes
    }

    /// The old one-line caveat, kept for the HTML report.
    pub fn caveat(&self) -> Option<String> {
        let notes = self.notes();
        (!notes.is_empty()).then(|| notes.join(" "))
    }

    fn all_ok(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }

    /// Compares the server key with the published one; without one there is no pass.
    /// Added last, after every check the package can be held to by itself.
    fn pin(&mut self, expected: Option<&str>) {
        let what = "server key is the one the coalition published";
        let Some(expected) = expected else {
            self.check(
                what,
                Err("not compared: give --server-key with the key the coalition published"),
            );
            return;
        };
        self.server_key_pinned = true;
        let result = if self.server_key == expected.trim() {
            Ok("matches --server-key".to_string())
        } else {
            Err(format!("it is {}, not the key you gave", self.server_key))
        };
        self.check_limited(
            what,
            result,
            "that the key you gave is the coalition's: check where you got it",
        );
    }

    /// The final verdict: every check, the server key's comparison included.
    fn conclude(&mut self, trust: &Trust<'_>) {
        self.pin(trust.server_key);
        self.verified = self.all_ok();
    }
}

const MAX_SMALL: u64 = 64 << 20;

/// What `amanat verify` was given, by its first bytes: a receipt (JSON), a bundle or a
/// disclosure package (tar).
pub fn verify_any(
    path: &Path,
    identities: Option<&[age::x25519::Identity]>,
    out: Option<&Path>,
    trust: &Trust<'_>,
) -> Result<VerifyReport, ReviewError> {
    match Kind::of(path).map_err(|e| ReviewError::Io(e.to_string()))? {
        Kind::Receipt => verify_receipt(path, trust),
        Kind::Export => verify_bundle(path, trust),
        _ => verify_disclosure(path, identities, out, trust),
    }
}

fn empty_report(case: &str, server_key: &str) -> VerifyReport {
    VerifyReport {
        case: case.into(),
        server_key: server_key.into(),
        signer: None,
        checks: Vec::new(),
        files: Vec::new(),
        server_key_pinned: false,
        consent: None,
        consent_override: None,
        accepted_unverified_custody: false,
        times: Vec::new(),
        verified: false,
    }
}

/// What a log inclusion check does not prove.
const NOT_PROVED_BY_LOG: &str = "when it happened or who sent it; and the hour of receipt is \
                                 the server's own clock, not an outside party's";

/// A receipt on its own: its leaf, leaf hash, inclusion proof and signed checkpoint.
fn verify_receipt(path: &Path, trust: &Trust<'_>) -> Result<VerifyReport, ReviewError> {
    let bytes = fs::read(path).map_err(|e| ReviewError::Io(e.to_string()))?;
    let receipt: log::Receipt = serde_json::from_slice(&bytes)
        .map_err(|e| ReviewError::Package(format!("not an amanat receipt: {e}")))?;
    let mut report = empty_report(&receipt.submission, &receipt.server_key);
    let result = receipt
        .server_key
        .parse::<VerifierKey>()
        .map_err(|e| log::LogError::Key(e.to_string()))
        .and_then(|key| receipt.verify_standalone(&key))
        .map(|cp| {
            format!(
                "leaf {} in the log of {} entries, signed by the server",
                receipt.leaf_index, cp.size
            )
        });
    report.check_limited(
        format!("submission {} is in the server's log", receipt.submission),
        result,
        NOT_PROVED_BY_LOG,
    );
    // The attested part: the leaf in the first attested checkpoint holding it, and
    // what outside parties said of that checkpoint. A receipt without one (from before
    // attestation, or stripped: the file is unsigned) says so, and fails where the
    // lawyer requires witnesses.
    let key = receipt.server_key.parse::<VerifierKey>();
    if let (Ok(key), None) = (&key, &receipt.attested) {
        if let Ok(head) = log::Checkpoint::verify(&receipt.checkpoint, key) {
            let heads = [(receipt.submission.clone(), receipt.leaf_index, head)];
            times::check_times(&std::collections::BTreeMap::new(), key, &heads, trust, &mut report);
        }
    }
    if let (Ok(key), Some(attested)) = (key, &receipt.attested) {
        let held = log::Checkpoint::verify(&attested.checkpoint, &key).and_then(|head| {
            let leaf = receipt.leaf.as_bytes();
            log::check_inclusion_of(leaf, receipt.leaf_index, &attested.inclusion_proof, &head)?;
            Ok(head)
        });
        let held_detail =
            held.as_ref().map(|head| format!("leaf in the log of {} entries", head.size));
        report.check(
            format!("submission {} is in the attested checkpoint", receipt.submission),
            held_detail.map_err(Clone::clone),
        );
        if let Ok(head) = held {
            let members = attested.members(head.size);
            let heads = [(receipt.submission.clone(), receipt.leaf_index, head)];
            times::check_times(&members, &key, &heads, trust, &mut report);
        }
    }
    report.conclude(trust);
    Ok(report)
}

/// A bundle on its own: its log holds together, every record is in it, every object is
/// the one its id names. (Decryption is `amanat open`'s job.)
fn verify_bundle(path: &Path, trust: &Trust<'_>) -> Result<VerifyReport, ReviewError> {
    let bundle = Bundle::open(path).map_err(|e| ReviewError::Package(e.to_string()))?;
    let mut report = empty_report(&bundle.index.bundle, &bundle.index.log.server_key);
    let attestations = bundle.attestations().map_err(|e| ReviewError::Package(e.to_string()))?;
    let log = ReviewState::ephemeral().check_attested(&bundle.index.log, &attestations);
    let ok = report.check(
        "the bundle's checkpoint, its earlier and its attested checkpoints",
        log.as_ref().map(|l| format!("log size {}", l.checkpoint.size)).map_err(Clone::clone),
    );
    if let (true, Ok(log)) = (ok, &log) {
        let mut heads = Vec::new();
        for record in &bundle.index.submissions {
            let included = super::in_log(&bundle.index.log, log, record)
                .map(|()| format!("received {}", record.received_at));
            if let (Ok(_), Some(index)) = (&included, record.log_index) {
                heads.push((record.id.to_string(), index, log.checkpoint.clone()));
            }
            report.check(format!("submission {} is in the server's log", record.id), included);
        }
        if let Ok(key) = bundle.index.log.server_key.parse::<VerifierKey>() {
            times::check_times(&attestations, &key, &heads, trust, &mut report);
        }
    }
    for id in bundle.index.objects() {
        report.check(format!("object {id}"), same_object(bundle.object(&id), &id, "bundle"));
    }
    report.conclude(trust);
    Ok(report)
}

/// An object carried by a bundle or a package, checked against its id: "bit-identical",
/// or why not.
fn same_object(
    bytes: Option<std::io::Result<std::io::Take<fs::File>>>,
    id: &crate::record::ObjectId,
    carrier: &'static str,
) -> Result<String, ReviewError> {
    match bytes {
        None => Err(ReviewError::Package(format!("missing from the {carrier}"))),
        Some(Err(e)) => Err(ReviewError::Io(e.to_string())),
        Some(Ok(reader)) => match envelope::check_object(reader, id) {
            Ok(()) => Ok("bit-identical".into()),
            Err(envelope::ObjectCheckError::Io(e)) => Err(ReviewError::Io(e.to_string())),
            Err(_) => Err(ReviewError::Altered("altered".into())),
        },
    }
}

fn report_text(report: &VerifyReport) -> String {
    let mut t = format!(
        "amanat verification report\ncase {}\nserver key {}\ncustody signer {}\nconsent {}\nverdict: {}\n\n",
        report.case,
        report.server_key,
        report.signer.as_deref().unwrap_or("(unsigned)"),
        report.consent.as_deref().unwrap_or("(not stated)"),
        report.verdict()
    );
    for note in report.notes() {
        t.push_str(&format!("NOTE: {note}\n"));
    }
    t.push_str("\nCHECKS\n");
    for c in &report.checks {
        t.push_str(&format!("[{}] {}: {}\n", if c.ok { "ok" } else { "FAIL" }, c.what, c.detail));
        if !c.not_proved.is_empty() {
            t.push_str(&format!("     does not prove: {}\n", c.not_proved));
        }
    }
    t.push_str("\nFILES\n");
    for f in &report.files {
        t.push_str(&format!(
            "{} {:?} size {} ciphertext sha256 {} plaintext sha256 {} received {} leaf {} checkpoint size {}\n",
            if f.verified { "ok  " } else { "FAIL" },
            f.name,
            f.size.map_or("-".into(), |s| s.to_string()),
            f.ciphertext_sha256,
            f.plaintext_sha256.as_deref().unwrap_or("-"),
            f.received_at,
            f.log_index.map_or("-".into(), |i| i.to_string()),
            f.checkpoint_size
        ));
        if !f.attested.is_empty() {
            t.push_str(&format!("     attested: received {}\n", f.attested));
        }
    }
    t
}

use askama::Template;

#[derive(Template)]
#[template(path = "verification.html")]
struct ReportPage<'a> {
    report: &'a VerifyReport,
}
