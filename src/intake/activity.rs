//! What the intake is doing, in counts only: how full its lanes are (for `/healthz` and
//! `amanat status`), and one line per hour of traffic for the log. No line is written
//! per request at the default level: a line's own time, even without content, could be
//! matched with a record's hour or a network observer's notes; an hour's totals cannot
//! be joined to any one submission.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// The intake's lanes and this hour's traffic.
pub struct Activity {
    /// One permit per upload with files being received (`limits.max_concurrent_uploads`).
    pub uploads: Arc<Semaphore>,
    upload_slots: usize,
    /// One permit per text-only testimony being received (`limits.max_concurrent_texts`):
    /// its own lane, which waits instead of refusing, so that a survivor without files
    /// is never told the server is busy because files are arriving.
    pub texts: Arc<Semaphore>,
    text_slots: usize,
    /// Codename derivations waiting or running.
    pub codename_checks: AtomicUsize,
    hour: Mutex<HourTotals>,
    /// The hour (since the epoch) the last request was counted in.
    counted_hour: AtomicU64,
}

/// Hours since the epoch, now.
fn hour_number() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| d.as_secs() / 3600)
}

/// How full the intake is, for `/healthz` and `amanat status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Saturation {
    pub uploads_in_progress: usize,
    pub upload_slots: usize,
    pub texts_in_progress: usize,
    pub text_slots: usize,
    pub codename_checks_queued: usize,
    /// Every upload slot is taken: new uploads with files are refused (503).
    pub saturated: bool,
    /// Uploads refused as busy so far this hour.
    pub busy_refusals_this_hour: u64,
}

/// One hour's traffic: what the hourly log line says.
#[derive(Default)]
struct HourTotals {
    hour: String,
    requests: u64,
    bytes_in: u64,
    bytes_out: u64,
    /// Refusals by stable error code.
    refused: BTreeMap<&'static str, u64>,
}

impl Activity {
    pub fn new(upload_slots: usize, text_slots: usize) -> Arc<Activity> {
        Arc::new(Activity {
            uploads: Arc::new(Semaphore::new(upload_slots)),
            upload_slots,
            texts: Arc::new(Semaphore::new(text_slots)),
            text_slots,
            codename_checks: AtomicUsize::new(0),
            hour: Mutex::new(HourTotals { hour: crate::record::Hour::now(), ..Default::default() }),
            counted_hour: AtomicU64::new(hour_number()),
        })
    }

    pub fn saturation(&self) -> Saturation {
        let uploads = self.upload_slots - self.uploads.available_permits();
        let busy = self.lock().refused.get("busy").copied().unwrap_or(0);
        Saturation {
            uploads_in_progress: uploads,
            upload_slots: self.upload_slots,
            texts_in_progress: self.text_slots - self.texts.available_permits(),
            text_slots: self.text_slots,
            codename_checks_queued: self.codename_checks.load(Ordering::Relaxed),
            saturated: uploads >= self.upload_slots,
            busy_refusals_this_hour: busy,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HourTotals> {
        self.hour.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts one answered request; a new hour first writes the last one's line. The
    /// clock is read as a number here: formatting it is for the once-an-hour line.
    pub fn count(&self, refused: Option<&'static str>, bytes_in: u64, bytes_out: u64) {
        let hour = hour_number();
        if self.counted_hour.swap(hour, Ordering::Relaxed) != hour {
            self.roll_hour();
        }
        let mut totals = self.lock();
        totals.requests += 1;
        totals.bytes_in += bytes_in;
        totals.bytes_out += bytes_out;
        if let Some(code) = refused {
            *totals.refused.entry(code).or_insert(0) += 1;
        }
    }

    /// Writes the finished hour's line, once the clock has passed it (called at a
    /// request's first count in a new hour, and once a minute).
    pub fn roll_hour(&self) {
        if let Some(line) = self.finish_hour(&crate::record::Hour::now()) {
            tracing::info!("{line}");
        }
    }

    /// The line of the hour that `now` (an hour, RFC 3339) ends, if it ends one; the
    /// totals start again from zero.
    fn finish_hour(&self, now: &str) -> Option<String> {
        let mut totals = self.lock();
        if totals.hour == now {
            return None;
        }
        let fresh = HourTotals { hour: now.to_string(), ..Default::default() };
        let done = std::mem::replace(&mut *totals, fresh);
        let refused: Vec<String> = done.refused.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        Some(format!(
            "traffic in the hour hour={} requests={} refused={} bytes_in={} bytes_out={}",
            done.hour,
            done.requests,
            if refused.is_empty() { "-".to_string() } else { refused.join(",") },
            done.bytes_in,
            done.bytes_out
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hour_of_traffic_is_one_line_of_totals_and_nothing_of_any_one_request() {
        let activity = Activity::new(4, 4);
        let hour = activity.lock().hour.clone();
        activity.count(None, 2_000, 900);
        activity.count(Some("busy"), 0, 200);
        activity.count(Some("busy"), 0, 200);
        activity.count(Some("submission_too_large"), 5_000_000, 300);
        assert_eq!(activity.finish_hour(&hour), None, "the hour is not over");
        assert_eq!(activity.saturation().busy_refusals_this_hour, 2);
        let line = activity.finish_hour("2999-01-01T00:00:00Z").expect("the hour's line");
        assert_eq!(
            line,
            format!(
                "traffic in the hour hour={hour} requests=4 refused=busy:2,submission_too_large:1 \
                 bytes_in=5002000 bytes_out=1600"
            )
        );
        assert_eq!(activity.saturation().busy_refusals_this_hour, 0, "a new hour starts at 0");
        let quiet = activity.finish_hour("2999-01-01T01:00:00Z").unwrap();
        assert!(quiet.contains("requests=0 refused=-"), "{quiet}");
    }
}
