//! `amanat replica audit`: is the replica still the copy the journal says it is? A
//! seized server's credentials can write to the bucket, so objects may have been
//! deleted or replaced, and segments dropped or edited. Without any decryption key this
//! checks every segment's signed header (one key per server, no gap from leaf 0, the
//! body the header names) and every object the headers name (there, of its length,
//! and hashing to its id). What it cannot see without the coalition's keys (a log
//! rewritten and re-signed by a seized key) `amanat open` finds: it rebuilds the log
//! from the journal and holds it to what reviewers verified before.
//!
//! One audit alone cannot see what was removed whole: a server's entire journal, or
//! the segments at its end. With `--state`, each audit remembers per server the key,
//! how many leaves the journal held and the signed body hash of every closed segment
//! (one is rewritten only while it grows), and the next audit reports any of them
//! gone, shrunk or changed.

use super::Replica;
use crate::bundle::replica::{object_key, read_segment, segment_from, MAX_SEGMENT_BYTES};
use crate::config::ReplicaEndpoint;
use crate::record::ObjectId;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Default, Serialize)]
pub struct AuditReport {
    pub replica: String,
    pub servers: Vec<AuditedServer>,
    /// Every problem found, by name; empty when the replica holds what its journal says.
    pub problems: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct AuditedServer {
    pub server: String,
    pub server_key: Option<String>,
    pub segments: usize,
    pub leaves: u64,
    pub objects: usize,
    pub bytes_checked: u64,
    /// Objects the server deleted under its signed purge notices, as this
    /// configuration allows (`purge`, `retention_days`).
    pub purged: usize,
}

/// What earlier audits saw, per server (`--state`).
#[derive(Default, Serialize, Deserialize)]
struct AuditState {
    servers: BTreeMap<String, AuditedBefore>,
}

#[derive(Default, Serialize, Deserialize)]
struct AuditedBefore {
    server_key: String,
    leaves: u64,
    /// A closed segment's first leaf -> (its end, its signed body hash).
    closed: BTreeMap<u64, (u64, String)>,
}

/// Audits every server's copy in the replica; with `state_path`, also against what
/// the audits that wrote that file saw, and updates it.
pub fn audit(
    endpoint: &ReplicaEndpoint,
    proxy: Option<&str>,
    state_path: Option<&Path>,
) -> Result<AuditReport, super::BadReplica> {
    let (replica, runtime) = super::offline_client(endpoint, proxy)?;
    let mut state: AuditState = super::read_state(state_path, "audit")?;
    let fail = |why: &str| format!("replica {:?}: {why}", replica.name());
    let mut report = AuditReport { replica: replica.name().to_string(), ..Default::default() };
    let servers = runtime.block_on(replica.servers()).map_err(fail)?;
    for (gone, before) in state.servers.iter().filter(|(s, _)| !servers.contains(s)) {
        report.problems.push(format!(
            "server {gone}: its whole journal is gone from the replica (the last audit saw {} \
             log entries)",
            before.leaves
        ));
    }
    for server in servers {
        let problems_before = report.problems.len();
        let mut audited = AuditedServer { server: server.clone(), ..Default::default() };
        let problem = |report: &mut AuditReport, what: String| {
            report.problems.push(format!("server {server}: {what}"));
        };
        let mut segments = Vec::new();
        for (key, size) in
            runtime.block_on(replica.list(&format!("{server}/journal/"))).map_err(fail)?
        {
            match segment_from(&key) {
                Some(from) if size <= MAX_SEGMENT_BYTES => segments.push((from, key)),
                _ => problem(&mut report, format!("{key:?} is not a journal segment")),
            }
        }
        segments.sort();
        let mut named: BTreeMap<ObjectId, u64> = BTreeMap::new();
        let mut expected = 0u64;
        // Segments that verify, by the first key: (first leaf, end, signed body hash).
        let mut verified: Vec<(u64, u64, String)> = Vec::new();
        for (from, key) in &segments {
            let bytes =
                runtime.block_on(replica.get_small(key, MAX_SEGMENT_BYTES)).map_err(fail)?;
            // Its place is in its name, even when its contents cannot be read.
            if *from > expected {
                problem(
                    &mut report,
                    format!("the journal misses leaves {expected}..{from}: a segment was dropped"),
                );
            } else if *from < expected {
                problem(&mut report, format!("journal segment {from} overlaps the one before"));
            }
            let header = match read_segment(&bytes) {
                Ok(segment) => segment.header,
                Err(why) => {
                    problem(&mut report, format!("journal segment {from}: {why}"));
                    expected = expected.max(*from);
                    continue;
                }
            };
            audited.segments += 1;
            if header.server != server || header.from != *from {
                problem(&mut report, format!("journal segment {from} names another place"));
            }
            match &audited.server_key {
                Some(k) if *k != header.server_key => problem(
                    &mut report,
                    format!("journal segment {from} is signed by another key than the rest"),
                ),
                _ => {
                    audited.server_key = Some(header.server_key.clone());
                    if header.server == server && header.from == *from {
                        verified.push((header.from, header.to, header.body_sha256.clone()));
                    }
                }
            }
            expected = expected.max(header.to);
            for (id, len) in header.objects {
                named.insert(id, len);
            }
        }
        audited.leaves = expected;
        // A segment is closed once a verified one follows it: its bytes never change again.
        let closed: BTreeMap<u64, (u64, String)> = verified
            .windows(2)
            .filter(|w| w[0].1 == w[1].0)
            .map(|w| (w[0].0, (w[0].1, w[0].2.clone())))
            .collect();
        // Notices are held to the key earlier audits pinned, when there is one.
        let pinned = state.servers.get(&server).map(|b| b.server_key.clone());
        let key = pinned.filter(|k| !k.is_empty()).or_else(|| audited.server_key.clone());
        let listed = runtime.block_on(super::notices::list(&replica, &server)).map_err(fail)?;
        let notices = runtime
            .block_on(super::notices::read(&replica, endpoint, &server, &listed, key.as_deref()))
            .map_err(fail)?;
        for why in &notices.problems {
            problem(&mut report, why.clone());
        }
        let stored: BTreeMap<String, u64> = runtime
            .block_on(replica.list(&format!("{server}/objects/")))
            .map_err(fail)?
            .into_iter()
            .collect();
        for (id, len) in &named {
            let key = object_key(&server, id);
            match stored.get(&key) {
                None if notices.excuses(id) => {
                    audited.purged += 1;
                    continue;
                }
                None => {
                    let why = notices.unwanted(id);
                    problem(
                        &mut report,
                        why.unwrap_or_else(|| format!("object {id} is missing: it was deleted")),
                    );
                    continue;
                }
                Some(size) if size != len => {
                    problem(
                        &mut report,
                        format!("object {id} has {size} bytes, not {len}: it was replaced"),
                    );
                    continue;
                }
                Some(_) => {}
            }
            match runtime.block_on(hash_of(&replica, &key)) {
                Ok((hash, bytes)) => {
                    audited.bytes_checked += bytes;
                    if hash != *id {
                        problem(
                            &mut report,
                            format!("object {id} does not match its id: it was replaced"),
                        );
                    }
                }
                Err(why) => problem(&mut report, format!("object {id}: {why}")),
            }
            audited.objects += 1;
        }
        for key in stored.keys() {
            let named = key
                .rsplit('/')
                .next()
                .and_then(ObjectId::parse)
                .is_some_and(|id| named.contains_key(&id));
            if !named {
                problem(
                    &mut report,
                    format!(
                        "{key:?} is in the bucket but no journal segment names it (a push under \
                         way, or its segment was dropped)"
                    ),
                );
            }
        }
        let clean = report.problems.len() == problems_before;
        let before = state.servers.entry(server.clone()).or_default();
        compare(before, &audited, &closed, clean, &mut |what| problem(&mut report, what));
        report.servers.push(audited);
    }
    if let Some(path) = state_path {
        super::write_state(path, &state)?;
    }
    Ok(report)
}

/// Holds one server's journal to what earlier audits saw of it; then, when this audit
/// of it found nothing wrong (`clean`), remembers what it saw: the first key, the most
/// leaves, each closed segment's first hash. What went wrong once is found again, not
/// learnt: a junk file or a shortened journal never becomes the new normal.
fn compare(
    before: &mut AuditedBefore,
    now: &AuditedServer,
    closed: &BTreeMap<u64, (u64, String)>,
    clean: bool,
    problem: &mut impl FnMut(String),
) {
    if let Some(key) = &now.server_key {
        if before.server_key.is_empty() {
            if clean {
                before.server_key.clone_from(key);
            }
        } else if *key != before.server_key {
            problem(format!(
                "the journal is signed by key {key}, not by {} as at the last audit",
                before.server_key
            ));
        }
    }
    if now.leaves < before.leaves {
        problem(format!(
            "the journal ends at log entry {}, but held {} at the last audit: segments were \
             deleted from its end",
            now.leaves, before.leaves
        ));
    }
    for (from, (to, body)) in closed {
        match before.closed.get(from) {
            Some((was_to, was_body)) if (was_to, was_body) != (to, body) => problem(format!(
                "journal segment {from} changed since the last audit, though a closed segment \
                 is never rewritten: it was re-signed, or lost and put back by the server \
                 (its log says \"put back\")"
            )),
            None if clean => {
                before.closed.insert(*from, (*to, body.clone()));
            }
            Some(_) | None => {}
        }
    }
    if clean {
        before.leaves = before.leaves.max(now.leaves);
    }
}

/// The SHA-256 of a key's bytes, streamed, and their count.
async fn hash_of(replica: &Replica, key: &str) -> Result<(ObjectId, u64), &'static str> {
    let (_, mut stream) = replica.get_stream(key).await?;
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    let mut bytes = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        bytes += chunk.len() as u64;
        hash.update(&chunk);
    }
    Ok((ObjectId::from_sha256(hash.finish().as_ref()), bytes))
}
