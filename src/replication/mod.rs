//! Copies of the intake on S3-compatible object storage run by partners elsewhere
//! (Garage nodes): every object exactly as stored, and the journal (`log::journal`)
//! that makes a replica, with the coalition's keys, a complete, verifiable copy.
//!
//! The log is the queue (`store::journal`): a replica's progress is its next leaf,
//! recorded durably after that leaf's objects and its journal segment are in the
//! bucket. So a crash or a SIGKILL repeats at most one push, whose writes are the same
//! objects under the same keys (content-addressed) and the same segment rewritten.
//! Each replica has its own worker on the replication thread; one that is down is
//! retried with backoff and never delays or refuses a survivor, unless the operator
//! asked for acknowledgements to wait on replicas (`replication.ack`).

mod audit;
mod notices;
mod pull;
mod s3;

pub use audit::{audit, AuditReport};
pub use pull::{pull, PullReport};
pub use s3::Replica;

use crate::config::{AckPolicy, Config};
use crate::keys::LiveRecipients;
use crate::store::{minute_now, ReplicaHealth, ReplicaProgress, Store};
use std::sync::Arc;
use std::time::Duration;

/// The first retry after a failure; each further failure doubles it, up to the cap.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(60);
/// How often a caught-up worker looks again without being woken.
const IDLE_POLL: Duration = Duration::from_secs(5);
/// Objects one replica uploads (or deletes) at once.
const OBJECTS_AT_ONCE: usize = 4;
/// How often a replica with a retention looks for copies past it.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// How often a caught-up worker looks for attestations it has not sent.
const ATTEST_EVERY: Duration = Duration::from_secs(3600);
/// How often a worker checks the bucket still holds what it pushed there.
const HEAL_EVERY: Duration = Duration::from_secs(24 * 3600);

/// Why replication did not start.
#[derive(Debug)]
pub struct BadReplica(pub String);

impl std::fmt::Display for BadReplica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadReplica {}

impl From<String> for BadReplica {
    fn from(why: String) -> Self {
        BadReplica(why)
    }
}

impl From<BadReplica> for String {
    fn from(bad: BadReplica) -> Self {
        bad.0
    }
}

/// A replica's client and a runtime to drive it, for the commands that run on a
/// reviewer's networked machine (`audit`, `pull`).
fn offline_client(
    endpoint: &crate::config::ReplicaEndpoint,
    proxy: Option<&str>,
) -> Result<(Replica, tokio::runtime::Runtime), BadReplica> {
    let replica = Replica::connect(endpoint, proxy)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start: {e}"))?;
    Ok((replica, runtime))
}

/// A command's state file (`--state`), or its empty state when there is none yet.
fn read_state<T: Default + serde::de::DeserializeOwned>(
    path: Option<&std::path::Path>,
    what: &str,
) -> Result<T, BadReplica> {
    match path.map(std::fs::read) {
        Some(Ok(bytes)) => serde_json::from_slice(&bytes)
            .map_err(|e| format!("the {what} state file is not valid: {e}").into()),
        Some(Err(e)) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("cannot read the {what} state file: {e}").into())
        }
        _ => Ok(T::default()),
    }
}

/// Replaces a command's state file, durably.
fn write_state<T: serde::Serialize>(path: &std::path::Path, state: &T) -> Result<(), BadReplica> {
    let bytes = serde_json::to_vec_pretty(state).map_err(|e| e.to_string())?;
    crate::durable::replace(path, &bytes).map_err(|e| format!("{}: {e}", path.display()).into())
}

/// What the intake needs of replication: whether, and how long, an acknowledgement
/// waits for replicas.
#[derive(Clone)]
pub struct AckWait {
    pub min_replicas: usize,
    pub deadline: Duration,
}

/// Checks every replica's settings and secret and starts the replication thread (none
/// when no replica is configured). Returns what acknowledgements must wait for.
pub fn start(
    store: Arc<Store>,
    recipients: Arc<LiveRecipients>,
    config: &Config,
) -> Result<Option<AckWait>, BadReplica> {
    if config.replicas.is_empty() {
        return Ok(None);
    }
    let replicas = config
        .replicas
        .iter()
        .map(|endpoint| Replica::connect(endpoint, config.replication.proxy.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    let segment_leaves = config.replication.segment_leaves;
    for replica in &replicas {
        // Announced once, so an acknowledgement waiting on replicas sees where each is.
        store
            .replica_progress(replica.name())
            .and_then(|p| store.record_replica_progress(replica.name(), p))
            .map_err(|e| {
                BadReplica(format!("replica {:?}: cannot read its progress: {e}", replica.name()))
            })?;
        store.set_replica_health(ReplicaHealth {
            name: replica.name().to_string(),
            ..Default::default()
        });
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| BadReplica(format!("cannot start replication: {e}")))?;
    std::thread::Builder::new()
        .name("replication".into())
        .spawn(move || {
            runtime.block_on(futures_util::future::join_all(replicas.into_iter().map(|replica| {
                let (store, recipients) = (store.clone(), recipients.clone());
                async move { run(replica, store, recipients, segment_leaves).await }
            })));
        })
        .map_err(|e| BadReplica(format!("cannot start replication: {e}")))?;
    Ok((config.replication.ack == AckPolicy::Replicated).then(|| AckWait {
        min_replicas: config.replication.min_replicas,
        deadline: Duration::from_secs(config.replication.ack_deadline_secs),
    }))
}

/// One replica's worker: push what the log holds beyond the replica's progress, wait
/// for the next commit, and so on forever.
async fn run(
    replica: Replica,
    store: Arc<Store>,
    recipients: Arc<LiveRecipients>,
    segment_leaves: u64,
) {
    let mut commits = store.watch_commits();
    let mut upkeep = Upkeep::new(&store);
    let mut health = ReplicaHealth { name: replica.name().to_string(), ..Default::default() };
    loop {
        let pushed = async {
            let size = store.durable_log_size().map_err(|_| "cannot read the log")?;
            let progress =
                store.replica_progress(replica.name()).map_err(|_| "cannot read its progress")?;
            if progress.through >= size {
                upkeep.when_caught_up(&replica, &store, &recipients).await?;
                return Ok(false);
            }
            let next = push(&replica, &store, &recipients, progress, size, segment_leaves).await?;
            store
                .record_replica_progress(replica.name(), next)
                .map_err(|_| "cannot record its progress")?;
            Ok::<bool, &'static str>(true)
        }
        .await;
        match pushed {
            Ok(true) => {
                upkeep.replica_grew();
                health.last_success = Some(minute_now());
                health.last_error = None;
                health.failures = 0;
                store.set_replica_health(health.clone());
            }
            Ok(false) => {
                // Caught up: wait for a commit (or look again in a while).
                commits.borrow_and_update();
                let _ = tokio::time::timeout(IDLE_POLL, commits.changed()).await;
            }
            Err(why) => {
                health.failures = health.failures.saturating_add(1);
                if health.failures == 1 {
                    tracing::warn!(
                        replica = replica.name(),
                        error = why,
                        "replication failed; retrying"
                    );
                }
                health.last_error = Some(why.to_string());
                store.set_replica_health(health.clone());
                let backoff = FIRST_RETRY
                    .saturating_mul(1 << health.failures.saturating_sub(1).min(6))
                    .min(MAX_RETRY);
                tokio::time::sleep(backoff).await;
            }
        }
    }
}

/// What a caught-up worker looks after besides the log: deletions its settings ask
/// for (after each purge on the server, and hourly for retention), what the bucket
/// lost (at start, then daily), and attestations (as they are recorded, when the
/// replica holds more of the log, and hourly).
struct Upkeep {
    purges: tokio::sync::watch::Receiver<u64>,
    attested: tokio::sync::watch::Receiver<u64>,
    next_prune: tokio::time::Instant,
    next_heal: tokio::time::Instant,
    next_attest: tokio::time::Instant,
}

impl Upkeep {
    fn new(store: &Store) -> Upkeep {
        let now = tokio::time::Instant::now();
        Upkeep {
            purges: store.watch_purges(),
            attested: store.watch_attestations(),
            next_prune: now,
            next_heal: now,
            next_attest: now,
        }
    }

    /// The replica holds more of the log: attestations of it may go too.
    fn replica_grew(&mut self) {
        self.next_attest = tokio::time::Instant::now();
    }

    async fn when_caught_up(
        &mut self,
        replica: &Replica,
        store: &Store,
        recipients: &LiveRecipients,
    ) -> Result<(), &'static str> {
        let now = tokio::time::Instant::now();
        let prune_now = replica.rule.purge && self.purges.has_changed().unwrap_or(false)
            || now >= self.next_prune;
        if prune_now && (replica.rule.purge || replica.rule.retention_days > 0) {
            self.purges.borrow_and_update();
            // A failed pass is tried again at the next round (after the backoff).
            self.next_prune = now;
            prune(replica, store).await?;
            self.next_prune = now + PRUNE_EVERY;
        }
        // After the deletions, so that one object it cannot put back never holds them up.
        if tokio::time::Instant::now() >= self.next_heal {
            heal(replica, store, recipients).await?;
            self.next_heal = tokio::time::Instant::now() + HEAL_EVERY;
        }
        // Last: a failing attestation put holds up neither deletions nor healing.
        if self.attested.has_changed().unwrap_or(false)
            || tokio::time::Instant::now() >= self.next_attest
        {
            self.attested.borrow_and_update();
            self.next_attest = tokio::time::Instant::now();
            push_attestations(replica, store).await?;
            self.next_attest += ATTEST_EVERY;
        }
        Ok(())
    }
}

/// Sends the objects of leaves `progress.through..` (up to the end of the growing
/// segment), then that segment; returns the progress to record.
async fn push(
    replica: &Replica,
    store: &Store,
    recipients: &LiveRecipients,
    progress: ReplicaProgress,
    size: u64,
    segment_leaves: u64,
) -> Result<ReplicaProgress, &'static str> {
    // A full segment is closed: the next one begins where it ended.
    let segment_from = if progress.through - progress.segment_from >= segment_leaves {
        progress.through
    } else {
        progress.segment_from
    };
    let to = size.min(segment_from + segment_leaves);
    let server = store.server_id().map_err(|_| "cannot read the server id")?;
    let objects =
        store.journal_objects(progress.through, to).map_err(|_| "cannot read the journal")?;
    put_objects(replica, store, &server, objects).await?;
    put_segment(replica, store, recipients, segment_from, to).await?;
    Ok(ReplicaProgress { segment_from, through: to })
}

async fn put_objects(
    replica: &Replica,
    store: &Store,
    server: &str,
    objects: Vec<(crate::record::ObjectId, u64)>,
) -> Result<(), &'static str> {
    use futures_util::stream::TryStreamExt;
    futures_util::stream::iter(objects.into_iter().map(Ok::<_, &'static str>))
        .try_for_each_concurrent(OBJECTS_AT_ONCE, |(id, len)| async move {
            replica.put_object(server, store, &id, len).await
        })
        .await
}

async fn put_segment(
    replica: &Replica,
    store: &Store,
    recipients: &LiveRecipients,
    from: u64,
    to: u64,
) -> Result<(), &'static str> {
    let segment = store
        .journal_segment(from, to, &recipients.current())
        .map_err(|_| "cannot make the journal segment")?;
    replica.put_segment(&segment).await
}

/// Sends the files of every attested checkpoint the replica holds the log for (TSA
/// tokens, witnesses' cosignatures) that it does not hold yet in their present form.
async fn push_attestations(replica: &Replica, store: &Store) -> Result<(), &'static str> {
    let through =
        store.replica_progress(replica.name()).map_err(|_| "cannot read its progress")?.through;
    let owed = store
        .attestation_files(through)
        .and_then(|files| store.attestations_owed(replica.name(), files))
        .map_err(|_| "cannot read the attestations")?;
    if owed.is_empty() {
        return Ok(());
    }
    let server = store.server_id().map_err(|_| "cannot read the server id")?;
    for (member, bytes) in &owed {
        replica.put_attestation(&server, member, bytes).await?;
    }
    store
        .record_attestations_sent(replica.name(), &owed)
        .map_err(|_| "cannot record the attestations sent")
}

/// Puts back what the bucket lost of what this server pushed there: objects it still
/// holds, and journal segments (deleted with a seized key, or by mistake). Returns how
/// many it put back. A segment put back is sealed afresh, so an audit holding its
/// earlier hash (`replica audit --state`) names it as changed: someone should look.
async fn heal(
    replica: &Replica,
    store: &Store,
    recipients: &LiveRecipients,
) -> Result<usize, &'static str> {
    let server = store.server_id().map_err(|_| "cannot read the server id")?;
    let through =
        store.replica_progress(replica.name()).map_err(|_| "cannot read its progress")?.through;
    let objects: std::collections::BTreeMap<String, u64> =
        replica.list(&format!("{server}/objects/")).await?.into_iter().collect();
    let owed =
        store.objects_owed(replica.name(), through).map_err(|_| "cannot read the journal")?;
    // Gone, or of another length (cut short, or replaced by other bytes).
    let missing: Vec<_> = owed
        .into_iter()
        .filter(|(id, len)| {
            objects.get(&crate::bundle::replica::object_key(&server, id)) != Some(len)
        })
        .collect();
    let mut restored = missing.len();
    put_objects(replica, store, &server, missing).await?;
    let segments: std::collections::BTreeSet<String> =
        replica.list(&format!("{server}/journal/")).await?.into_iter().map(|(k, _)| k).collect();
    let pushed = store.replica_segments(replica.name()).map_err(|_| "cannot read its progress")?;
    for (from, to) in pushed {
        if to <= through && !segments.contains(&crate::bundle::replica::segment_key(&server, from))
        {
            put_segment(replica, store, recipients, from, to).await?;
            restored += 1;
        }
    }
    // Attestation files gone or of another length (a partial write, or edited).
    let listed: std::collections::BTreeMap<String, u64> =
        replica.list(&format!("{server}/attestations/")).await?.into_iter().collect();
    let files = store.attestation_files(through).map_err(|_| "cannot read the attestations")?;
    for (member, bytes) in files {
        let key = crate::bundle::replica::attestation_key(&server, &member);
        if listed.get(&key) != Some(&(bytes.len() as u64)) {
            replica.put_attestation(&server, &member, &bytes).await?;
            restored += 1;
        }
    }
    if restored > 0 {
        tracing::warn!(
            replica = replica.name(),
            restored,
            "the replica had lost objects or journal segments this server pushed; put back"
        );
    }
    Ok(restored)
}

/// Deletes from the replica what its settings say is due (`[[replicas]]` `purge`,
/// `retention_days`): each batch announced first by a notice the server signs into the
/// bucket, then recorded durably once deleted (a crash repeats it, which is harmless).
async fn prune(replica: &Replica, store: &Store) -> Result<(), &'static str> {
    let due = store
        .due_deletions(replica.name(), replica.rule)
        .map_err(|_| "cannot read what is due for deletion")?;
    if due.submissions.is_empty() {
        return Ok(());
    }
    let server = store.server_id().map_err(|_| "cannot read the server id")?;
    use futures_util::stream::TryStreamExt;
    for (reason, objects) in due.objects {
        let note = store
            .purge_notice(replica.name(), reason, objects.clone())
            .map_err(|_| "cannot sign the purge notice")?;
        replica.put_notice(&server, &note).await?;
        futures_util::stream::iter(objects.into_iter().map(Ok::<_, &'static str>))
            .try_for_each_concurrent(OBJECTS_AT_ONCE, |(id, _)| {
                let server = server.as_str();
                async move { replica.delete_object(server, &id).await }
            })
            .await?;
    }
    store
        .record_deletions(replica.name(), &due.submissions)
        .map_err(|_| "cannot record the deletions")?;
    tracing::info!(
        replica = replica.name(),
        submissions = due.submissions.len(),
        "deleted from the replica as its settings ask"
    );
    Ok(())
}

/// How a submission stood with the replicas when its acknowledgement was sent (only
/// under `replication.ack = "replicated"`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Replicated {
    /// Replicas holding it.
    pub replicas: usize,
    /// Replicas the configuration asks for.
    pub required: usize,
    /// False when the deadline passed first: it is stored here, durably, and will reach
    /// the replicas when they come back.
    pub complete: bool,
    /// Said plainly when it did not reach them in time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<&'static str>,
}

/// Waits, up to the deadline, until leaf `leaf` is in `ack.min_replicas` replicas.
pub async fn wait_for(store: &Store, leaf: u64, ack: &AckWait) -> Replicated {
    let mut watch = store.watch_replicated();
    let holding = |all: &std::collections::BTreeMap<String, u64>| {
        all.values().filter(|&&through| through > leaf).count()
    };
    let waited = tokio::time::timeout(ack.deadline, async {
        loop {
            if holding(&watch.borrow_and_update()) >= ack.min_replicas {
                return;
            }
            if watch.changed().await.is_err() {
                // Replication stopped: nothing more will arrive.
                std::future::pending::<()>().await;
            }
        }
    })
    .await;
    let replicas = holding(&watch.borrow());
    let complete = waited.is_ok();
    let message = (!complete).then_some(
        "stored durably on this server, but not yet copied to enough replicas within the \
         deadline: it will be copied when they answer; nothing needs to be sent again",
    );
    Replicated { replicas, required: ack.min_replicas, complete, message }
}
