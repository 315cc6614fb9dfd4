//! Outside parties attesting the intake log. Whenever the log has grown past what an
//! attester holds, the server signs the checkpoint at the log's size and asks each
//! configured RFC 3161 time-stamping authority for a token over the note's bytes, and
//! each witness (C2SP tlog-witness, partner organisations running `amanat witness`) to
//! cosign it with the consistency proof from the size that witness last cosigned. Each
//! answer is checked before it is kept, durably, in the index (`store::attested`). An
//! attester that is down, slow or wrong is recorded and retried with backoff, never
//! delaying or refusing a submission: this runs on its own thread.

use crate::config::{Attestation, TsaEndpoint, WitnessEndpoint};
use crate::keys::CosignatureVerifier;
use crate::log::attested::is_attester_name;
use crate::log::encode_hashes;
use crate::log::timestamp::{TimestampRequest, TsaTrust, MAX_RESPONSE_BYTES};
use crate::record::Hour;
use crate::store::{self, Stamped, Store, Witnessed};
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long one request may take, connection to answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A witness's answer: a few cosignature lines, or its size.
const MAX_WITNESS_ANSWER_BYTES: u64 = 16 * 1024;
/// The first retry after a failure; each further failure doubles it, up to the interval.
const FIRST_RETRY: Duration = Duration::from_secs(5);

/// A configured witness, its key checked.
struct Witness {
    url: String,
    key: CosignatureVerifier,
}

/// A configured TSA, its trust anchors read.
struct Tsa {
    name: String,
    url: String,
    trust: TsaTrust,
}

enum Party {
    Witness(Witness),
    Tsa(Tsa),
}

/// One attester and when to ask it next.
struct Attester {
    party: Party,
    due: Instant,
    failures: u32,
}

/// Why the attestation step did not start.
#[derive(Debug)]
pub struct BadAttester(pub String);

impl std::fmt::Display for BadAttester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadAttester {}

/// Checks the attesters' keys and anchors and starts the attestation thread (none
/// when no attester is configured).
pub fn start(store: Arc<Store>, config: &Attestation) -> Result<(), BadAttester> {
    let mut parties = Vec::new();
    for WitnessEndpoint { url, key } in &config.witnesses {
        let key = key
            .parse()
            .map_err(|e| BadAttester(format!("[[attestation.witness]] {url}: its key: {e}")))?;
        parties.push(Party::Witness(Witness { url: url.clone(), key }));
    }
    for TsaEndpoint { name, url, ca_file } in &config.tsas {
        let bad = |why: String| BadAttester(format!("[[attestation.tsa]] {name:?}: {why}"));
        if !is_attester_name(name) {
            return Err(bad("name must be 1-32 lowercase letters, digits or dashes".into()));
        }
        let pem = std::fs::read(ca_file).map_err(|e| bad(format!("ca_file {ca_file:?}: {e}")))?;
        let trust = TsaTrust::from_pem(&pem).map_err(|e| bad(format!("ca_file: {e}")))?;
        parties.push(Party::Tsa(Tsa { name: name.clone(), url: url.clone(), trust }));
    }
    if parties.is_empty() {
        return Ok(());
    }
    let mut names = std::collections::HashSet::new();
    let unique = parties.iter().all(|party| {
        names.insert(match party {
            Party::Witness(w) => format!("witness/{}", w.key.name),
            Party::Tsa(t) => format!("tsa/{}", t.name),
        })
    });
    if !unique {
        return Err(BadAttester(
            "two witnesses, or two TSAs, have one name: each keeps its own record".into(),
        ));
    }
    // No redirect (an attester, or anyone on the path, must not send the server to
    // another host) and no proxy from the environment: only the configured one.
    let proxy = match &config.proxy {
        Some(url) => Some(
            ureq::Proxy::new(url).map_err(|e| BadAttester(format!("attestation.proxy: {e}")))?,
        ),
        None => None,
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(REQUEST_TIMEOUT))
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(proxy)
        .build()
        .into();
    let interval = Duration::from_secs(config.interval_secs);
    let now = Instant::now();
    let mut attesters: Vec<Attester> =
        parties.into_iter().map(|party| Attester { party, due: now, failures: 0 }).collect();
    std::thread::Builder::new()
        .name("attestation".into())
        .spawn(move || loop {
            round(&store, &agent, &mut attesters, interval);
            let next = attesters.iter().map(|a| a.due).min().unwrap_or(now);
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        })
        .map(drop)
        .map_err(|e| BadAttester(format!("attestation: cannot start: {e}")))
}

/// Asks every attester that is due about the checkpoint at the log's size now, so that
/// the TSAs and witnesses asked together attest the same checkpoint.
fn round(store: &Store, agent: &ureq::Agent, attesters: &mut [Attester], interval: Duration) {
    let size = match store.log_size() {
        Ok(size) => size,
        Err(e) => {
            tracing::error!(error = %e, "attestation: cannot read the log's size");
            return;
        }
    };
    let now = Instant::now();
    for attester in attesters.iter_mut().filter(|a| a.due <= now) {
        let ok = match &attester.party {
            Party::Witness(witness) => attest(store, agent, witness, size),
            Party::Tsa(tsa) => stamp(store, agent, tsa, size),
        };
        attester.failures = if ok { 0 } else { attester.failures.saturating_add(1) };
        let wait = if ok {
            interval
        } else {
            FIRST_RETRY.saturating_mul(1 << (attester.failures - 1).min(16)).min(interval)
        };
        attester.due = Instant::now() + wait;
    }
}

/// Why an attester gave nothing: fixed words, never text the attester chose.
#[derive(Debug)]
enum AskError {
    Internal,
    /// A witness holds a larger tree than this log: a fork, or our rollback.
    Ahead(u64),
    Unreachable,
    Unreadable,
    BadCosignature,
    BadAnswer,
    /// A TSA's token failed a check (`TimestampError::code`).
    BadToken(&'static str),
    Refused(u16),
}

impl std::fmt::Display for AskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AskError::Internal => f.write_str("internal: this server could not make the request"),
            AskError::Ahead(size) => {
                write!(f, "ahead: the witness holds size {size}, larger than this log")
            }
            AskError::Unreachable => f.write_str("unreachable: no answer in time"),
            AskError::Unreadable => f.write_str("unreadable: the answer was cut or too large"),
            AskError::BadCosignature => {
                f.write_str("bad_cosignature: no line verifies with the witness's key")
            }
            AskError::BadAnswer => f.write_str("bad_answer: a 409 without a size"),
            AskError::BadToken(code) => write!(f, "bad_token: {code}"),
            AskError::Refused(status) => write!(f, "refused: status {status}"),
        }
    }
}

fn internal(e: impl std::fmt::Display) -> AskError {
    tracing::error!(error = %e, "attestation: cannot make or keep an attestation");
    AskError::Internal
}

/// Whether an attester that holds `held` (last asked in hour `last`) is to be asked
/// about the checkpoint at `size`: when the log grew past what it holds, and once a day
/// regardless (`day_ago`: this time yesterday), so that a quiet log still shows, in
/// status and to the attester, that attestation works.
fn due(held: u64, size: u64, last: Option<&str>, day_ago: &str) -> bool {
    size > 0 && (held < size || last.is_some_and(|at| at < day_ago))
}

/// One round with one TSA: a token over the checkpoint at `size`, if it has not
/// stamped that size yet (or not for a day). Returns whether the TSA is in order.
fn stamp(store: &Store, agent: &ureq::Agent, tsa: &Tsa, size: u64) -> bool {
    let stamped = store.stamped().map(|all| all.into_iter().find(|(n, _)| *n == tsa.name));
    let mut state = match stamped {
        Ok(found) => found.map(|(_, s)| s).unwrap_or_default(),
        Err(e) => {
            internal(e);
            return false;
        }
    };
    if !due(state.size, size, state.stamped_at.as_deref(), &Hour::cutoff_days_ago(1)) {
        return true;
    }
    let outcome = (|| {
        let (_, note, _) = store.attestation_request(0, size).map_err(internal)?;
        let request = TimestampRequest::new(note.as_bytes());
        let mut response = agent
            .post(&tsa.url)
            .header("Content-Type", "application/timestamp-query")
            .send(&request.der[..])
            .map_err(|_| AskError::Unreachable)?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(AskError::Refused(status));
        }
        let mut token = Vec::new();
        response
            .body_mut()
            .as_reader()
            .take(MAX_RESPONSE_BYTES as u64 + 1)
            .read_to_end(&mut token)
            .map_err(|_| AskError::Unreadable)?;
        if token.len() > MAX_RESPONSE_BYTES {
            return Err(AskError::Unreadable);
        }
        request
            .check(&token, note.as_bytes(), &tsa.trust)
            .map_err(|e| AskError::BadToken(e.code()))?;
        let token = store::Attestation::Token { tsa: tsa.name.clone(), response: token };
        store.record_attestation(size, &note, token).map_err(internal)
    })();
    let ok = outcome.is_ok();
    match outcome {
        Ok(()) => {
            state = Stamped { size, stamped_at: Some(Hour::now()), ..Stamped::default() };
            tracing::info!("attestation: stamped by a TSA");
        }
        Err(why) => {
            tracing::warn!(why = %why, "attestation: a TSA did not stamp");
            state.last_error = Some(why.to_string());
            state.last_error_at = Some(Hour::now());
        }
    }
    if let Err(e) = store.record_stamped(&tsa.name, &state) {
        tracing::error!(error = %e, "attestation: cannot record a TSA's answer");
    }
    ok
}

/// One round with one witness: ask it to cosign the checkpoint at `size` if the log
/// grew past what it holds, and record what it said. Returns whether it is in order.
fn attest(store: &Store, agent: &ureq::Agent, witness: &Witness, size: u64) -> bool {
    let name = witness.key.name.clone();
    let mut state = match store.witnessed() {
        Ok(all) => all.into_iter().find(|(n, _)| *n == name).map(|(_, s)| s).unwrap_or_default(),
        Err(e) => {
            internal(e);
            return false;
        }
    };
    let daily = state.size >= size
        && due(state.size, size, state.cosigned_at.as_deref(), &Hour::cutoff_days_ago(1));
    let outcome = ask(store, agent, witness, state.size, size, daily).and_then(|answer| {
        match answer {
            // The witness holds another size than we thought (it was restored, or
            // another server of ours asked it): prove from there, once.
            Answer::Conflict(held) if held != state.size => {
                ask(store, agent, witness, held, size, true)
            }
            other => Ok(other),
        }
    });
    let ok = matches!(outcome, Ok(Answer::UpToDate | Answer::Cosigned { .. }));
    match outcome {
        Ok(Answer::UpToDate) => return true,
        Ok(Answer::Cosigned { note, line }) => {
            let cosignature =
                store::Attestation::Cosignature { witness: name.clone(), line: line.clone() };
            if let Err(e) = store.record_attestation(size, &note, cosignature) {
                internal(e);
                return false;
            }
            state = Witnessed {
                size,
                cosigned: format!("{note}{line}\n"),
                cosigned_at: Some(Hour::now()),
                last_error: None,
                last_error_at: None,
            };
            tracing::info!("attestation: cosigned by a witness");
        }
        Ok(Answer::Conflict(held)) => {
            state.last_error = Some(format!("size_conflict: the witness holds size {held}"));
            state.last_error_at = Some(Hour::now());
        }
        Err(why) => {
            tracing::warn!(why = %why, "attestation: a witness did not cosign");
            state.last_error = Some(why.to_string());
            state.last_error_at = Some(Hour::now());
        }
    }
    if let Err(e) = store.record_witnessed(&name, &state) {
        tracing::error!(error = %e, "attestation: cannot record a witness's answer");
    }
    ok
}

enum Answer {
    /// The log has not grown past what the witness cosigned.
    UpToDate,
    /// The checkpoint's note and the witness's cosignature line over it.
    Cosigned { note: String, line: String },
    /// 409: the size the witness holds.
    Conflict(u64),
}

/// One add-checkpoint request for the checkpoint at `size` from `from` (also when the
/// log has not grown past it, with `again`); the answer, or why there is none.
fn ask(
    store: &Store,
    agent: &ureq::Agent,
    witness: &Witness,
    from: u64,
    size: u64,
    again: bool,
) -> Result<Answer, AskError> {
    if from > size {
        return Err(AskError::Ahead(from));
    }
    if size == 0 || (size == from && !again) {
        return Ok(Answer::UpToDate);
    }
    let (_, note, proof) = store.attestation_request(from, size).map_err(internal)?;
    let mut body = format!("old {from}\n");
    for line in encode_hashes(&proof) {
        body.push_str(&line);
        body.push('\n');
    }
    body.push('\n');
    body.push_str(&note);
    let url = format!("{}/add-checkpoint", witness.url.trim_end_matches('/'));
    let mut response = agent.post(&url).send(body.as_bytes()).map_err(|_| AskError::Unreachable)?;
    let status = response.status().as_u16();
    let mut answer = String::new();
    response
        .body_mut()
        .as_reader()
        .take(MAX_WITNESS_ANSWER_BYTES)
        .read_to_string(&mut answer)
        .map_err(|_| AskError::Unreadable)?;
    match status {
        200 => {
            let text = &note[..=note.find("\n\n").ok_or(AskError::Internal)?];
            let line = answer
                .lines()
                .find(|line| witness.key.verify(text, line).is_ok())
                .ok_or(AskError::BadCosignature)?
                .to_string();
            Ok(Answer::Cosigned { note, line })
        }
        409 => answer.trim_end().parse().map(Answer::Conflict).map_err(|_| AskError::BadAnswer),
        other => Err(AskError::Refused(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::due;

    #[test]
    fn an_attester_is_asked_when_the_log_grew_and_daily_regardless() {
        let yesterday = "2026-12-01T06:00:00Z";
        // Nothing to attest in an empty log.
        assert!(!due(0, 0, None, yesterday));
        // The log grew past what it holds, whenever it was last asked.
        assert!(due(0, 3, None, yesterday));
        assert!(due(3, 4, Some("2026-12-02T05:00:00Z"), yesterday));
        // Up to date and asked within the day: not again.
        assert!(!due(4, 4, Some("2026-12-02T05:00:00Z"), yesterday));
        assert!(!due(4, 4, Some(yesterday), yesterday));
        // Up to date but last asked over a day ago: again, on the same checkpoint.
        assert!(due(4, 4, Some("2026-12-01T05:00:00Z"), yesterday));
    }
}
