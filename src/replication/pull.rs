//! `amanat replica pull`: everything new in a replica, for every server it holds,
//! into one file that the air-gapped `amanat open` reads like an export. It needs no
//! decryption key: it copies ciphertext and signed headers, checks what can be checked
//! without the coalition's keys (each header's signature, one key per server, no gap
//! between segments, each object's hash), and says what did not hold.

use crate::bundle::object_member;
use crate::bundle::replica::{
    attestation_member, begin_pull, notice_member, read_segment, segment_from, segment_member,
    PullIndex, PulledServer, MAX_SEGMENT_BYTES, REPLICA_SCHEMA,
};
use crate::config::ReplicaEndpoint;
use crate::record::{Hour, ObjectId};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// What one pull carried, for people and `--json`.
#[derive(Debug, Default, Serialize)]
pub struct PullReport {
    pub out: PathBuf,
    pub servers: Vec<PulledSummary>,
    /// What did not hold, by name: a reviewer's `open` refuses what it touches, and
    /// `amanat replica audit` looks further.
    pub problems: Vec<String>,
    /// Servers in the bucket that `--server` did not name, left out.
    pub left_out: Vec<String>,
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct PulledSummary {
    pub server: String,
    pub segments: usize,
    /// Leaves of its log the journal holds.
    pub leaves: u64,
    /// Leaves whose objects this file carries (new since the last pull, from the
    /// segment holding the first new one).
    pub new_leaves: u64,
    pub objects: usize,
}

/// What earlier pulls carried, per server: the leaves they covered (`--state`).
#[derive(Default, Serialize, Deserialize)]
struct PullState {
    servers: BTreeMap<String, u64>,
}

/// Pulls replica `endpoint` into `out` (a new file). With `state`, only the objects
/// of leaves new since the pull that last wrote that file come along (the journal
/// always comes whole: `open` rebuilds the log from it), and the file is updated.
/// With `only`, just those servers come, and the others are named as left out; with
/// `since`, objects come from that log entry on whatever the state says.
pub fn pull(
    endpoint: &ReplicaEndpoint,
    proxy: Option<&str>,
    out: &Path,
    state_path: Option<&Path>,
    only: &[String],
    since: Option<u64>,
) -> Result<PullReport, super::BadReplica> {
    let (replica, runtime) = super::offline_client(endpoint, proxy)?;
    let mut state: PullState = super::read_state(state_path, "pull")?;
    let since_of = |state: &PullState, server: &str| {
        since.unwrap_or_else(|| state.servers.get(server).copied().unwrap_or(0))
    };
    let fail = |why: &str| format!("replica {:?}: {why}", replica.name());
    let mut servers = runtime.block_on(replica.servers()).map_err(fail)?;
    let mut report = PullReport { out: out.to_path_buf(), ..Default::default() };
    if !only.is_empty() {
        let (named, others): (Vec<String>, Vec<String>) =
            servers.into_iter().partition(|s| only.contains(s));
        (servers, report.left_out) = (named, others);
        for missing in only.iter().filter(|s| !servers.contains(s)) {
            report.problems.push(format!("server {missing}: the replica holds no journal of it"));
        }
    }
    // The segment names first: the index lists them before their bytes follow.
    let mut listed = Vec::new();
    for server in &servers {
        let keys = runtime.block_on(replica.list(&format!("{server}/journal/"))).map_err(fail)?;
        let mut froms: Vec<(u64, String)> = Vec::new();
        for (key, size) in keys {
            match segment_from(&key) {
                Some(from) if size <= MAX_SEGMENT_BYTES => froms.push((from, key)),
                _ => report
                    .problems
                    .push(format!("server {server}: {key:?} is not a journal segment")),
            }
        }
        froms.sort();
        let notices = runtime.block_on(super::notices::list(&replica, server)).map_err(fail)?;
        let attested =
            runtime.block_on(replica.list(&format!("{server}/attestations/"))).map_err(fail)?;
        let attested = bounded_attestations(server, attested, &mut report.problems);
        listed.push((server.clone(), froms, notices, attested));
    }
    let index = PullIndex {
        schema: REPLICA_SCHEMA.into(),
        replica: replica.name().to_string(),
        purge: endpoint.purge,
        retention_days: endpoint.retention_days,
        pulled_at: Hour::now(),
        servers: listed
            .iter()
            .map(|(server, froms, notices, attested)| PulledServer {
                server: server.clone(),
                new_from: first_new(froms, since_of(&state, server)),
                segments: froms.iter().map(|(from, _)| segment_member(server, *from)).collect(),
                notices: notices.iter().filter_map(|(k, _)| notice_member(server, k)).collect(),
                attestations: attested.iter().map(|(_, member)| member.clone()).collect(),
            })
            .collect(),
    };
    let file =
        crate::durable::NewFile::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut package = begin_pull(io::BufWriter::new(file), &index).map_err(|e| e.to_string())?;
    // Each server's objects from its own prefix: one server's journal never decides
    // where another's objects are fetched from.
    let mut wanted: BTreeMap<(String, ObjectId), u64> = BTreeMap::new();
    // Servers some of whose leaves or objects did not come whole: their next pull
    // carries everything again. A stray file beside the journal (a junk notice or
    // attestation, which excuse or add nothing) is reported but holds nothing back, or
    // anyone who can write the bucket could make every pull a full one.
    let mut held_back: BTreeSet<String> = BTreeSet::new();
    let mut deleted: BTreeMap<String, super::notices::Notices> = BTreeMap::new();
    for (server, froms, listed_notices, attested) in &listed {
        let new_from = first_new(froms, since_of(&state, server));
        let mut summary = PulledSummary {
            server: server.clone(),
            segments: froms.len(),
            leaves: 0,
            new_leaves: 0,
            objects: 0,
        };
        let mut key_of_server: Option<String> = None;
        let mut expected = 0u64;
        for (from, key) in froms {
            let bytes =
                runtime.block_on(replica.get_small(key, MAX_SEGMENT_BYTES)).map_err(fail)?;
            package.bytes(&segment_member(server, *from), &bytes).map_err(|e| e.to_string())?;
            // Its place is in its name, even when its contents cannot be read.
            let mut hold = |why: String| {
                report.problems.push(format!("server {server}: {why}"));
                held_back.insert(server.clone());
            };
            if *from != expected {
                hold(format!("the journal misses leaves {expected}..{from}"));
            }
            let segment = match read_segment(&bytes) {
                Ok(segment) => segment.header,
                Err(why) => {
                    hold(format!("segment {from}: {why}"));
                    expected = *from;
                    continue;
                }
            };
            if segment.server != *server || segment.from != *from {
                hold(format!("segment {from} names another place"));
            }
            match &key_of_server {
                Some(k) if *k != segment.server_key => {
                    hold(format!("segment {from} is signed by another key"));
                }
                Some(_) => {}
                None => key_of_server = Some(segment.server_key.clone()),
            }
            expected = segment.to;
            summary.leaves = summary.leaves.max(segment.to);
            if segment.from >= new_from {
                summary.new_leaves += segment.to - segment.from;
                for (id, len) in segment.objects {
                    wanted.entry((server.clone(), id)).or_insert(len);
                }
            }
        }
        // The server's purge notices come along for `open` to check; objects they name
        // may be gone, as this configuration allows or not.
        let notices = runtime
            .block_on(super::notices::read(
                &replica,
                endpoint,
                server,
                listed_notices,
                key_of_server.as_deref(),
            ))
            .map_err(fail)?;
        for (member, note) in &notices.raw {
            package.bytes(member, note.as_bytes()).map_err(|e| e.to_string())?;
        }
        for why in &notices.problems {
            report.problems.push(format!("server {server}: {why}"));
        }
        deleted.insert(server.clone(), notices);
        for (key, member) in attested {
            match runtime.block_on(replica.get_small(key, crate::bundle::MAX_ATTESTATION_BYTES)) {
                Ok(bytes) => package.bytes(member, &bytes).map_err(|e| e.to_string())?,
                Err(why) => report.problems.push(format!("server {server}: {key:?}: {why}")),
            }
        }
        report.servers.push(summary);
    }
    for ((server, id), len) in &wanted {
        let mut hold = |why: String| {
            report.problems.push(format!("server {server}: {why}"));
            held_back.insert(server.clone());
        };
        let key = crate::bundle::replica::object_key(server, id);
        let got = runtime.block_on(replica.get_stream(&key));
        let (size, stream) = match got {
            Ok(got) => got,
            Err(why) => {
                let notices = &deleted[server];
                match notices.unwanted(id) {
                    None if why == super::s3::NOT_FOUND && notices.excuses(id) => {}
                    Some(unwanted) => hold(unwanted),
                    None => hold(format!("object {id}: {why}")),
                }
                continue;
            }
        };
        if size != *len {
            hold(format!(
                "object {id} has {size} bytes in the replica, not the {len} its journal names: \
                 it was replaced"
            ));
            continue;
        }
        let mut reader = StreamReader::new(&runtime, stream);
        package.reader(&object_member(id), size, &mut reader).map_err(|e| e.to_string())?;
        let failed = reader.failed.is_some();
        let hash = reader.hash.finish();
        if failed || ObjectId::from_sha256(hash.as_ref()) != *id {
            hold(format!(
                "object {id} in the replica does not match its id: it was replaced or damaged"
            ));
        }
        if let Some(s) = report.servers.iter_mut().find(|s| s.server == *server) {
            s.objects += 1;
        }
    }
    let file = package.finish().map_err(|e| e.to_string())?;
    let file = file.into_inner().map_err(|e| e.into_error().to_string())?;
    report.bytes = file.publish().map_err(|e| format!("{}: {e}", out.display()))?;
    if let Some(path) = state_path {
        // A server's next pull starts past this one only when all its leaves and objects
        // came whole: otherwise it carries everything again, so nothing skipped is ever
        // skipped for good.
        for summary in &report.servers {
            if !held_back.contains(&summary.server) {
                state.servers.insert(summary.server.clone(), summary.leaves);
            }
        }
        super::write_state(path, &state)?;
    }
    Ok(report)
}

/// Reads an object's stream of chunks as `Read`, hashing as it goes.
struct StreamReader<'a> {
    runtime: &'a tokio::runtime::Runtime,
    stream: futures_util::stream::BoxStream<'static, Result<bytes::Bytes, &'static str>>,
    chunk: bytes::Bytes,
    hash: ring::digest::Context,
    failed: Option<&'static str>,
}

impl<'a> StreamReader<'a> {
    fn new(
        runtime: &'a tokio::runtime::Runtime,
        stream: futures_util::stream::BoxStream<'static, Result<bytes::Bytes, &'static str>>,
    ) -> Self {
        StreamReader {
            runtime,
            stream,
            chunk: bytes::Bytes::new(),
            hash: ring::digest::Context::new(&ring::digest::SHA256),
            failed: None,
        }
    }
}

impl Read for StreamReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.runtime.block_on(self.stream.next()) {
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(why)) => {
                    self.failed = Some(why);
                    return Err(io::Error::other(why));
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.hash.update(&buf[..n]);
        bytes::Buf::advance(&mut self.chunk, n);
        Ok(n)
    }
}

/// The first leaf whose objects a pull carries: the start of the segment holding the
/// first leaf no earlier pull covered (segments are contiguous, named by their first
/// leaf), so a segment is never carried in part.
/// A server's attestation files in the bucket, as (key, pull member), within the
/// bounds of a package; what does not fit or is misnamed is reported.
fn bounded_attestations(
    server: &str,
    listed: Vec<(String, u64)>,
    problems: &mut Vec<String>,
) -> Vec<(String, String)> {
    let mut kept = Vec::new();
    let mut total = 0u64;
    for (key, size) in listed {
        match attestation_member(server, &key) {
            Some(member)
                if size <= crate::bundle::MAX_ATTESTATION_BYTES
                    && total + size <= crate::bundle::MAX_ATTESTATION_TOTAL_BYTES
                    && kept.len() < crate::bundle::MAX_ATTESTATION_FILES =>
            {
                total += size;
                kept.push((key, member));
            }
            _ => problems.push(format!(
                "server {server}: {key:?} is not an attestation file a pull may carry"
            )),
        }
    }
    kept
}

fn first_new(froms: &[(u64, String)], since: u64) -> u64 {
    froms.iter().map(|(from, _)| *from).filter(|&from| from <= since).max().unwrap_or(0)
}
