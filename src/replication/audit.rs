//! `amanat replica audit`: is the replica still the copy the journal says it is? A
//! seized server's credentials can write to the bucket, so objects may have been
//! deleted or replaced, and segments dropped or edited. Without any decryption key this
//! checks every segment's signed header (one key per server, no gap from leaf 0, the
//! body the header names) and every object the headers name (there, of its length,
//! and hashing to its id). What it cannot see without the coalition's keys (a log
//! rewritten and re-signed by a seized key) `amanat open` finds: it rebuilds the log
//! from the journal and holds it to what reviewers verified before.

use super::Replica;
use crate::bundle::replica::{object_key, read_segment, segment_from, MAX_SEGMENT_BYTES};
use crate::config::ReplicaEndpoint;
use crate::record::ObjectId;
use futures_util::StreamExt;
use serde::Serialize;
use std::collections::BTreeMap;

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
}

/// Audits every server's copy in the replica.
pub fn audit(
    endpoint: &ReplicaEndpoint,
    proxy: Option<&str>,
) -> Result<AuditReport, super::BadReplica> {
    let replica = Replica::connect(endpoint, proxy).map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start: {e}"))?;
    let fail = |why: &str| format!("replica {:?}: {why}", replica.name());
    let mut report = AuditReport { replica: replica.name().to_string(), ..Default::default() };
    for server in runtime.block_on(replica.servers()).map_err(fail)? {
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
                Some(_) => {}
                None => audited.server_key = Some(header.server_key.clone()),
            }
            expected = expected.max(header.to);
            for (id, len) in header.objects {
                named.insert(id, len);
            }
        }
        audited.leaves = expected;
        let stored: BTreeMap<String, u64> = runtime
            .block_on(replica.list(&format!("{server}/objects/")))
            .map_err(fail)?
            .into_iter()
            .collect();
        for (id, len) in &named {
            let key = object_key(&server, id);
            match stored.get(&key) {
                None => {
                    problem(&mut report, format!("object {id} is missing: it was deleted"));
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
        report.servers.push(audited);
    }
    Ok(report)
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
