//! `amanat review merge --cases DIR --from OTHER`: another reviewer's triage brought
//! into this cases folder. Only the trail is merged: the other trail's changes this
//! one lacks are appended (each checked as a change recorded here is), and merging
//! twice adds nothing. Case folders are never copied from another folder, which could
//! hold anything in plain text (a forged testimony, a changed consent, a report with a
//! script): the submissions the other folder has and this one lacks are named, to be
//! opened here from their bundles with `amanat open`, which verifies every byte.

use super::triage::Trail;
use std::fs;
use std::io;
use std::path::Path;

#[derive(Debug, Default)]
pub struct Merged {
    /// Triage changes appended.
    pub changes: usize,
    /// Submissions the other folder holds and this one lacks.
    pub not_here: Vec<String>,
}

pub fn merge(into: &Path, from: &Path) -> io::Result<Merged> {
    if fs::canonicalize(into)? == fs::canonicalize(from)? {
        return Err(io::Error::other("--from is the cases folder itself"));
    }
    let mut not_here: Vec<String> = fs::read_dir(from)?
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str().map(String::from))
        .filter(|name| crate::record::is_submission_id(name))
        .filter(|name| from.join(name).join("testimony.json").is_file())
        .filter(|name| !into.join(name).join("testimony.json").is_file())
        .collect();
    not_here.sort();
    let changes = Trail::open(into)?.merge_from(from)?;
    Ok(Merged { changes, not_here })
}
