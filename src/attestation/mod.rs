//! Outside parties attesting the intake log. Every interval in which the log grew, the
//! server asks each configured witness (C2SP tlog-witness, partner organisations
//! running `amanat witness`) to cosign its newest checkpoint, with the consistency
//! proof from the size that witness last cosigned, checks the cosignature, and keeps it
//! durably. A witness that is down, slow or wrong is recorded and retried at the next
//! interval: it never delays or refuses a submission. RFC 3161 time-stamping
//! authorities come next (issue 17).

use crate::config::{Attestation, WitnessEndpoint};
use crate::keys::CosignatureVerifier;
use crate::log::encode_hashes;
use crate::record::Hour;
use crate::store::{Store, Witnessed};
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

/// How long one request to a witness may take, connection to answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// A witness's answer: a few cosignature lines, or its size.
const MAX_ANSWER_BYTES: u64 = 16 * 1024;

/// A configured witness, its key checked.
struct Witness {
    url: String,
    key: CosignatureVerifier,
}

/// Why the attestation step did not start.
#[derive(Debug)]
pub struct BadWitness(pub String);

impl std::fmt::Display for BadWitness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[[attestation.witness]] {}", self.0)
    }
}

impl std::error::Error for BadWitness {}

/// Checks the witnesses' keys and starts the attestation thread (none when no witness
/// is configured).
pub fn start(store: Arc<Store>, config: &Attestation) -> Result<(), BadWitness> {
    let witnesses = config
        .witnesses
        .iter()
        .map(|WitnessEndpoint { url, key }| {
            let key = key.parse().map_err(|e| BadWitness(format!("{url}: its key: {e}")))?;
            Ok(Witness { url: url.clone(), key })
        })
        .collect::<Result<Vec<_>, BadWitness>>()?;
    if witnesses.is_empty() {
        return Ok(());
    }
    let mut names = std::collections::HashSet::new();
    if !witnesses.iter().all(|w| names.insert(w.key.name.clone())) {
        return Err(BadWitness("two witnesses have one name: each keeps its own record".into()));
    }
    let interval = Duration::from_secs(config.interval_secs);
    // No redirect (a witness, or anyone on the path, must not send the server to
    // another host) and no proxy from the environment: only the configured address.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(REQUEST_TIMEOUT))
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .build()
        .into();
    std::thread::Builder::new()
        .name("attestation".into())
        .spawn(move || loop {
            for witness in &witnesses {
                attest(&store, &agent, witness);
            }
            std::thread::sleep(interval);
        })
        .map(drop)
        .map_err(|e| BadWitness(format!("cannot start: {e}")))
}

/// One round with one witness: ask it to cosign the newest checkpoint if the log grew
/// past what it holds, and record what it said.
fn attest(store: &Store, agent: &ureq::Agent, witness: &Witness) {
    let name = witness.key.name.clone();
    let mut state = match store.witnessed() {
        Ok(all) => all.into_iter().find(|(n, _)| *n == name).map(|(_, s)| s).unwrap_or_default(),
        Err(e) => {
            tracing::error!(error = %e, "attestation: cannot read the witnesses' state");
            return;
        }
    };
    let outcome = ask(store, agent, witness, state.size, false).and_then(|answer| match answer {
        // The witness holds another size than we thought (it was restored, or another
        // server of ours asked it): prove from there, once.
        Answer::Conflict(held) if held != state.size => ask(store, agent, witness, held, true),
        other => Ok(other),
    });
    match outcome {
        Ok(Answer::UpToDate) => return,
        Ok(Answer::Cosigned { size, cosigned }) => {
            state = Witnessed {
                size,
                cosigned,
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
}

/// Why a witness gave no cosignature: fixed words, never text the witness chose.
#[derive(Debug)]
enum AskError {
    Internal,
    /// It holds a larger tree than this log: a fork, or our rollback.
    Ahead(u64),
    Unreachable,
    Unreadable,
    BadCosignature,
    BadAnswer,
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
            AskError::Refused(status) => write!(f, "refused: status {status}"),
        }
    }
}

enum Answer {
    /// The log has not grown past what the witness cosigned.
    UpToDate,
    Cosigned {
        size: u64,
        cosigned: String,
    },
    /// 409: the size the witness holds.
    Conflict(u64),
}

/// One add-checkpoint request from `from` (also when the log has not grown past it,
/// with `again`); the answer, or why there is none.
fn ask(
    store: &Store,
    agent: &ureq::Agent,
    witness: &Witness,
    from: u64,
    again: bool,
) -> Result<Answer, AskError> {
    let (head, note, proof) = store.attestation_request(from).map_err(|e| {
        tracing::error!(error = %e, "attestation: cannot make a checkpoint");
        AskError::Internal
    })?;
    if head.size == 0 || (head.size == from && from > 0 && !again) {
        return Ok(Answer::UpToDate);
    }
    if from > head.size {
        return Err(AskError::Ahead(from));
    }
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
        .take(MAX_ANSWER_BYTES)
        .read_to_string(&mut answer)
        .map_err(|_| AskError::Unreadable)?;
    match status {
        200 => {
            let text = &note[..=note.find("\n\n").ok_or(AskError::Internal)?];
            let line = answer
                .lines()
                .find(|line| witness.key.verify(text, line).is_ok())
                .ok_or(AskError::BadCosignature)?;
            Ok(Answer::Cosigned { size: head.size, cosigned: format!("{note}{line}\n") })
        }
        409 => answer.trim_end().parse().map(Answer::Conflict).map_err(|_| AskError::BadAnswer),
        other => Err(AskError::Refused(other)),
    }
}
