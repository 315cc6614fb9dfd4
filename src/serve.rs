//! Starting the server: check keys, open and sweep the store, then listen.
//! Shared by `amanat serve` and `amanat demo`.

use crate::config::Config;
use crate::intake::{self, Intake};
use crate::keys::LiveRecipients;
use crate::store::Store;
use std::sync::Arc;

/// Why the server did not start (or stopped). Each says what to do.
#[derive(Debug)]
pub enum StartError {
    Hardening(crate::process::HardeningError),
    Keys(crate::keys::KeyError),
    DataDir(std::path::PathBuf, std::io::Error),
    Sweep(std::io::Error),
    Log(std::io::Error),
    AdminSocket(std::io::Error),
    Retention(std::io::Error),
    Attestation(crate::attestation::BadAttester),
    Replication(crate::replication::BadReplica),
    Server(std::io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Hardening(e) => e.fmt(f),
            StartError::Keys(e) => e.fmt(f),
            StartError::DataDir(dir, e) => {
                write!(f, "cannot open the data directory {}: {e}", dir.display())
            }
            StartError::Sweep(e) => write!(f, "start-up sweep failed: {e}"),
            StartError::Log(e) => write!(f, "cannot read the log: {e}"),
            StartError::AdminSocket(e) => write!(f, "cannot open the admin socket: {e}"),
            StartError::Retention(e) => write!(f, "cannot start the retention purge: {e}"),
            StartError::Attestation(e) => e.fmt(f),
            StartError::Replication(e) => e.fmt(f),
            StartError::Server(e) => write!(f, "server failed: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

pub fn run(config: Config) -> Result<(), StartError> {
    // Before any secret is in memory or any file is written.
    crate::process::harden().map_err(StartError::Hardening)?;
    crate::process::check_user(config.allow_root).map_err(StartError::Hardening)?;
    let recipients = Arc::new(
        LiveRecipients::load(&config.recipients, config.require_quorum)
            .map_err(StartError::Keys)?,
    );
    let store = Store::open(&config.data_dir)
        .map_err(|e| StartError::DataDir(config.data_dir.clone(), e))?;
    // Before the sweep, which counts what is stored only under a quota.
    store.usage().set_quota(config.limits.storage_quota_bytes);
    let swept = store.sweep().map_err(StartError::Sweep)?;
    tracing::info!(
        recipients = recipients.current().len(),
        // The log's size is one read; counting submissions would walk every record.
        log_size = store.log_size().map_err(StartError::Log)?,
        swept_temp_files = swept.temp_files,
        swept_orphan_objects = swept.orphan_objects,
        "store ready"
    );
    let store = Arc::new(store);
    let activity = intake::activity::Activity::new(
        config.limits.max_concurrent_uploads,
        config.limits.max_concurrent_texts,
    );
    crate::admin::start(
        store.clone(),
        recipients.clone(),
        activity.clone(),
        &config.data_dir,
        config.limits.clone(),
    )
    .map_err(StartError::AdminSocket)?;
    if config.retention_days > 0 || config.replies.retention_days > 0 {
        crate::admin::start_retention(
            store.clone(),
            config.retention_days,
            config.replies.retention_days,
        )
        .map_err(StartError::Retention)?;
    }
    crate::attestation::start(store.clone(), &config.attestation)
        .map_err(StartError::Attestation)?;
    let ack_wait = crate::replication::start(store.clone(), recipients.clone(), &config)
        .map_err(StartError::Replication)?;
    let followup = intake::followup::FollowUp::new(activity.clone());
    let uploads = Arc::new(crate::intake::resumable::Uploads::new(&config.uploads));
    let intake = Intake { config, recipients, store, followup, activity, ack_wait, uploads };
    actix_web::rt::System::new().block_on(intake::serve(intake)).map_err(StartError::Server)
}
