//! When each submission was received, by the word of outside parties: the report's
//! time checks for disclosure packages and receipts, over the one reading of
//! attestation files (`log::attested::PackageAttestations`).

use super::{SubmissionTime, Trust, VerifyReport};
use crate::keys::VerifierKey;
use crate::log::attested::{AttestedCheckpoint, Attesters, PackageAttestations};
use crate::log::Checkpoint;
use std::collections::BTreeMap;

/// Each submission's time bracket from the attestations a package or receipt carries, checked
/// against the parties the lawyer trusts. Missing attestations narrow nothing: the
/// report says what is missing, and what the times then rest on.
pub(super) fn check_times(
    members: &BTreeMap<String, Vec<u8>>,
    key: &VerifierKey,
    heads: &[(String, u64, Checkpoint)],
    trust: &Trust<'_>,
    report: &mut VerifyReport,
) {
    let none = Attesters { tsas: Vec::new(), witnesses: Vec::new() };
    let attesters = trust.attesters.unwrap_or(&none);
    let attestations = PackageAttestations::new(members, key, attesters);
    for (id, index, head) in heads {
        let bracket = attestations.bracket(*index, head);
        let witnesses = bracket.after.as_ref().map_or(0, |after| {
            let by: std::collections::BTreeSet<&str> = after
                .attestations
                .iter()
                .filter(|a| a.by.starts_with("witness "))
                .map(|a| a.by.as_str())
                .collect();
            by.len()
        });
        let not_before = bracket.not_before().map(|(at, _)| at);
        let not_after = bracket.not_after().map(|(at, _)| at);
        let mut detail = format!(
            "received {} by {}",
            not_before.map_or("at a time no outside party bounds".into(), |at| {
                format!("after {}", attested_moment(at, bracket.before.as_ref()))
            }),
            not_after.map_or("a time no outside party attests".into(), |at| {
                attested_moment(at, bracket.after.as_ref())
            }),
        );
        for missing in &bracket.missing {
            detail.push_str(&format!("; {missing}"));
        }
        // The checkpoint without the leaf was attested before the one with it, or the
        // attestations contradict each other.
        let inverted = matches!((not_before, not_after), (Some(b), Some(a)) if b > a);
        let result = if inverted {
            Err(format!("the attestations contradict each other: {detail}"))
        } else if witnesses < trust.require_witnesses {
            Err(format!(
                "{} witness(es) you named cosigned a checkpoint holding it, {} required; {detail}",
                witnesses, trust.require_witnesses
            ))
        } else {
            Ok(detail)
        };
        report.check_limited(format!("time of submission {id}"), result, NOT_PROVED_BY_TIME);
        let by = |side: &Option<AttestedCheckpoint>| {
            side.iter().flat_map(|c| c.attestations.iter().map(|a| a.by.clone())).collect()
        };
        report.times.push(SubmissionTime {
            submission: id.clone(),
            not_before,
            not_before_by: by(&bracket.before),
            not_after,
            not_after_by: by(&bracket.after),
            missing: bracket.missing.clone(),
        });
    }
}

/// What an attested bound does not prove.
const NOT_PROVED_BY_TIME: &str = "the lower bound is the moment an outside party saw a \
    checkpoint without this submission, which the server signed moments before asking; \
    the upper bound is proven by the parties named, each on its own";

/// "2026-12-02 04:10:05 UTC (TSA CN=..., ±1.5 s; witness w1 at ...)": one bound and
/// every attestation of its checkpoint.
fn attested_moment(moment: u64, checkpoint: Option<&AttestedCheckpoint>) -> String {
    let all = checkpoint.map_or(&[][..], |c| c.attestations.as_slice());
    let each: Vec<String> = all
        .iter()
        .map(|a| {
            let accuracy = if a.accuracy_ms > 0 {
                format!(" ±{}.{:03} s", a.accuracy_ms / 1000, a.accuracy_ms % 1000)
            } else {
                String::new()
            };
            format!("{} at {}{accuracy}", a.by, utc_seconds(a.time))
        })
        .collect();
    let size = checkpoint.map_or(0, |c| c.size);
    format!("{} (checkpoint {size}: {})", utc_seconds(moment), each.join("; "))
}

pub(super) fn utc_seconds(time: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(time as i64)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("{time} s after 1970"))
}
