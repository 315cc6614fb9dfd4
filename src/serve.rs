//! Starting the server: check keys, open and sweep the store, then listen.
//! Shared by `amanat serve` and `amanat demo`.

use crate::config::Config;
use crate::intake::{self, Intake};
use crate::keys::LiveRecipients;
use crate::store::Store;
use std::sync::Arc;

/// Why the server did not start (or stopped).
pub type StartError = String;

pub fn run(config: Config) -> Result<(), StartError> {
    // Before any secret is in memory or any file is written.
    crate::process::harden()?;
    crate::process::check_user(config.allow_root)?;
    let recipients = Arc::new(LiveRecipients::load(&config.recipients).map_err(|e| e.to_string())?);
    let store = Store::open(&config.data_dir).map_err(|e| {
        format!("cannot open the data directory {}: {e}", config.data_dir.display())
    })?;
    // Before the sweep, which counts what is stored only under a quota.
    store.usage().set_quota(config.limits.storage_quota_bytes);
    let swept = store.sweep().map_err(|e| format!("start-up sweep failed: {e}"))?;
    tracing::info!(
        recipients = recipients.current().len(),
        // The log's size is one read; counting submissions would walk every record.
        log_size = store.log_size().map_err(|e| format!("cannot read the log: {e}"))?,
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
    .map_err(|e| format!("cannot open the admin socket: {e}"))?;
    if config.retention_days > 0 || config.replies.retention_days > 0 {
        crate::admin::start_retention(
            store.clone(),
            config.retention_days,
            config.replies.retention_days,
        )
        .map_err(|e| format!("cannot start the retention purge: {e}"))?;
    }
    let followup = intake::followup::FollowUp::new(activity.clone());
    let intake = Intake { config, recipients, store, followup, activity };
    actix_web::rt::System::new()
        .block_on(intake::serve(intake))
        .map_err(|e| format!("server failed: {e}"))
}
