//! Disclosure packages: one case for one lawyer. `disclosure.json` (schema
//! `amanat/disclosure/v1`) first, then `custody.json` (who disclosed what to whom, and
//! when), its signature `custody.sig`, `VERIFY.txt`, and for each object
//! `objects/<id>.age` exactly as the server received it and `keys/<id>.age`, its age file
//! key encrypted to the lawyer; and `attestations/`, the outside parties' word on when
//! the server's log held each submission (see `log::attested`).

use super::{is_attestation_member, is_id_member, BundleError, Package};
use crate::record::{ObjectId, SubmissionRecord};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::Path;

pub const DISCLOSURE_SCHEMA: &str = "amanat/disclosure/v1";
pub const CUSTODY_SCHEMA: &str = "amanat/custody/v1";
pub const INDEX_NAME: &str = "disclosure.json";
pub const CUSTODY_NAME: &str = "custody.json";
pub const CUSTODY_SIGNATURE_NAME: &str = "custody.sig";
pub const VERIFY_NAME: &str = "VERIFY.txt";

/// `disclosure.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisclosureIndex {
    pub schema: String,
    pub case: String,
    /// The server's signed-note verifier key (`name+keyid+key`).
    pub server_key: String,
    pub submissions: Vec<DisclosedSubmission>,
}

/// One submission of the case and the proof it is in the server's log.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisclosedSubmission {
    pub record: SubmissionRecord,
    /// Signed note the inclusion proof leads to.
    pub checkpoint: String,
    pub inclusion_proof: Vec<String>,
}

/// `custody.json`: who disclosed what to whom, and when.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Custody {
    pub schema: String,
    pub case: String,
    /// UTC hour of the disclosure.
    pub disclosed_at: String,
    /// The lawyer's age recipient.
    pub to: String,
    /// The reviewer's custody verifier key, if signed.
    pub by: Option<String>,
    /// Every object disclosed, sorted.
    pub objects: Vec<String>,
    /// Who the survivor said may read the case (the form's `consent_readers`:
    /// coalition, lawyers or investigators), or "not stated".
    #[serde(default)]
    pub consent: String,
    /// Why the case was disclosed although that consent does not cover a lawyer: the
    /// reviewer's own words (`--override-consent`), under their signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_override: Option<String>,
    /// SHA-256 (hex) of the package's VERIFY.txt, so that instructions rewritten on
    /// the way fail the custody signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_txt_sha256: Option<String>,
    /// Every `attestations/` file of the package and its SHA-256 (hex), so that no
    /// attestation can be added, dropped or changed on the way without failing the
    /// custody signature (packages from before attestations have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestations: Option<std::collections::BTreeMap<String, String>>,
}

impl DisclosureIndex {
    pub fn objects(&self) -> Vec<ObjectId> {
        let mut seen = HashSet::new();
        self.submissions
            .iter()
            .flat_map(|s| s.record.object_ids())
            .filter(|id| seen.insert(id.clone()))
            .collect()
    }
}

/// `keys/<id>.age`: an object's file key, encrypted to the lawyer.
pub fn key_member(id: &ObjectId) -> String {
    format!("keys/{id}.age")
}

/// Reads a disclosure package's structure: its index first, then only the members the
/// format names.
pub fn read(path: &Path) -> Result<(Package, DisclosureIndex), BundleError> {
    let package = Package::read(path, INDEX_NAME, |name| {
        is_id_member(name, "objects/")
            || is_id_member(name, "keys/")
            || is_attestation_member(name)
            || [CUSTODY_NAME, CUSTODY_SIGNATURE_NAME, VERIFY_NAME].contains(&name)
    })?;
    let index: DisclosureIndex = package.parse_index()?;
    if index.schema != DISCLOSURE_SCHEMA {
        return Err(BundleError::BadIndex(format!(
            "not a disclosure package (schema {:?})",
            index.schema
        )));
    }
    Ok((package, index))
}
