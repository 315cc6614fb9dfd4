//! `amanat reply`: a reviewer answers a survivor, offline. The reply is sealed to the
//! reply recipient the survivor's own sealed manifest carried (never to anything the
//! server could have edited) and to the coalition, into a reply bundle for
//! `amanat import-replies`.

use super::report::Case;
use super::ReviewError;
use crate::bundle::reply::{self, ReplyEntry};
use crate::keys::Recipients;
use std::fs::{self, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// What `amanat reply` wrote.
#[derive(Debug, serde::Serialize)]
pub struct ReplySummary {
    pub case: String,
    pub object: String,
    pub bytes: u64,
}

pub fn write_reply(
    cases: &Path,
    case: &str,
    text: &str,
    coalition: &Recipients,
    out: &Path,
) -> Result<ReplySummary, ReviewError> {
    if !crate::record::is_submission_id(case) {
        return Err(format!("{case:?} is not a case id (32 hex characters)").into());
    }
    let testimony = cases.join(case).join("testimony.json");
    let opened: Case = fs::read(&testimony)
        .map_err(|e| {
            format!("case {case} is not among the opened cases in {} ({e})", cases.display())
        })
        .and_then(|b| {
            serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", testimony.display()))
        })?;
    if opened.case != case {
        return Err(format!(
            "{case} is a later submission of case {}: reply to that case",
            opened.case
        )
        .into());
    }
    // Two different reply keys were claimed for this case: none is trusted.
    if cases.join(case).join(super::REPLY_KEY_REFUSED_FILE).exists() {
        return Err(format!(
            "replies to case {case} are stopped: the server claimed two different new reply \
             keys for it (see {}). Check with the survivor before anything is sent; remove \
             that file only once the right key is known",
            super::REPLY_KEY_REFUSED_FILE
        )
        .into());
    }
    // A reply key logged after the first submission (the upgrade to v2 keys) replaces
    // the one its manifest carried: that one is exposed, and the server refuses it.
    let changed = cases.join(case).join(super::REPLY_KEY_FILE);
    let recipient = match fs::read(&changed) {
        Ok(bytes) => {
            let key: super::ReplyKey = serde_json::from_slice(&bytes)
                .map_err(|e| format!("{}: {e}", changed.display()))?;
            if key.case != case {
                return Err(format!("{} belongs to another case", changed.display()).into());
            }
            key.recipient
        }
        Err(_) => opened.reply_recipient.ok_or_else(|| {
            format!("case {case} has no reply key (it was not sent through the server's form)")
        })?,
    };
    if out.exists() {
        return Err(
            format!("{} exists; a reply bundle never overwrites a file", out.display()).into()
        );
    }
    let written_at = crate::record::Hour::now();
    let ciphertext = reply::seal_reply(case, &recipient, coalition, text, &written_at)?;
    let entry = ReplyEntry {
        case: case.into(),
        reply_recipient: recipient,
        object: crate::envelope::ObjectId::of(&ciphertext),
    };
    let object = entry.object.to_string();
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let result = reply::write_bundle(BufWriter::new(file), &[(entry, ciphertext)])
        .and_then(|mut w| {
            w.flush()?;
            w.into_inner().map_err(std::io::IntoInnerError::into_error)
        })
        .and_then(|f| {
            f.sync_all()?;
            f.metadata()
        });
    match result {
        Ok(meta) => Ok(ReplySummary { case: case.into(), object, bytes: meta.len() }),
        Err(e) => {
            let _ = fs::remove_file(out);
            Err(ReviewError::Io(format!("writing {}: {e}", out.display())))
        }
    }
}
