//! Costs that must stay flat as the store grows (issue 22): a store filled with
//! realistic submissions through the store's own commit path (`Store::commit`, each
//! durable as at intake, many threads sharing flushes), then the server started on it:
//! its first start after the load and its warm start, a receipt's latency, and the
//! disk each submission takes, at each size beside the smallest.

use crate::{disk_usage, median, secs, time, Figure, Scale};
use amanat::envelope::{self, Manifest, Origin, TextField, MANIFEST_SCHEMA};
use amanat::record::{Hour, SubmissionRecord};
use amanat::store::{CaseChoice, PendingObjects, Store};
use std::path::Path;
use std::time::{Duration, Instant};

/// Threads committing at once: they share the index's flushes, as requests do.
const FILLERS: usize = 16;

/// Submissions `from..to` committed into the store at `data` (the server stopped): a
/// 2 KB testimony and a few answers each, sealed to `recipients`, as a field kit's
/// sealed file arrives (no codename: deriving one is issue 15's Argon2id, a second per
/// core per 26, and would be what this measured).
fn fill(data: &Path, recipients: &amanat::keys::Recipients, from: usize, to: usize) -> Duration {
    let store = Store::open(data).unwrap();
    let next = std::sync::atomic::AtomicUsize::new(from);
    let words = "They took me from the hospital bed at night and beat me in the van. ";
    let testimony: String = words.repeat(2048 / words.len() + 1)[..2048].to_string();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..FILLERS {
            scope.spawn(|| loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= to {
                    return;
                }
                commit_one(&store, recipients, &testimony, n);
            });
        }
    });
    started.elapsed()
}

fn commit_one(store: &Store, recipients: &amanat::keys::Recipients, testimony: &str, n: usize) {
    let id = amanat::record::new_submission_id();
    let manifest = Manifest {
        schema: MANIFEST_SCHEMA.into(),
        submission: id.clone(),
        case: id.clone(),
        reply_recipient: None,
        reply_key_version: None,
        received_at: Hour::now(),
        declared_at: None,
        language: ["ru", "kk", "en"][n % 3].into(),
        origin: Origin::Api,
        testimony: testimony.into(),
        fields: vec![
            TextField { name: "city".into(), value: "Алматы".into() },
            TextField { name: "when".into(), value: format!("2022-01-{:02}", n % 28 + 1) },
        ],
        attachments: Vec::new(),
    };
    let plaintext = manifest.to_plaintext().unwrap();
    let pending = PendingObjects::default();
    let object = store.create_object(&pending);
    let (object, sealed) = envelope::seal_document(recipients, &plaintext, object).unwrap();
    object.persist(&sealed.id, &pending).unwrap();
    let record = SubmissionRecord {
        id: id.clone().into(),
        received_at: manifest.received_at.clone(),
        manifest: sealed.id,
        attachments: Vec::new(),
        total_bytes: sealed.ciphertext_len,
        recipients: recipients.fingerprint().to_string(),
        case: id.into(),
        log_index: None,
    };
    store.commit(&pending, &record, CaseChoice::WithoutCodename).unwrap();
}

/// What one size of store measured.
struct AtSize {
    count: usize,
    /// Submissions committed per second while filling up to this size.
    fill_rate: f64,
    first_start: Duration,
    warm_start: Duration,
    receipt: Duration,
    disk_per_submission: f64,
}

pub fn figures(scale: &Scale) -> Vec<Figure> {
    let dir = tempfile::tempdir().unwrap();
    let coalition = crate::common::Coalition::new(dir.path(), 3);
    let recipients = amanat::keys::Recipients::load(&coalition.recipients_file).unwrap();
    let data = dir.path().join("data");
    let mut sizes = Vec::new();
    let mut filled = 0;
    for &count in &scale.scale_sizes {
        let fill = fill(&data, &recipients, filled, count);
        let fill_rate = (count - filled) as f64 / secs(fill).max(1e-9);
        filled = count;
        // The first start after the load replays what sled wrote since it last opened.
        let began = Instant::now();
        let mut server = crate::common::Server::start_with_data(dir.path(), &data, &coalition, "");
        healthy(&server);
        let first_start = began.elapsed();
        let warm_start = median((0..3).map(|_| restarted(&mut server)).collect());
        let body = crate::common::api_upload(&crate::small_body());
        let receipt = median(
            (0..scale.scale_receipts)
                .map(|_| {
                    time(|| {
                        let stream = crate::common::connect(server.addr);
                        let answer = send(stream, &body);
                        assert_eq!(answer, 201);
                    })
                })
                .collect(),
        );
        drop(server);
        let disk_per_submission = disk_usage(&data) as f64 / count as f64;
        sizes.push(AtSize {
            count,
            fill_rate,
            first_start,
            warm_start,
            receipt,
            disk_per_submission,
        });
    }
    let base = &sizes[0];
    let mut figures = Vec::new();
    for at in &sizes {
        let n = at.count;
        figures.push(Figure {
            name: format!("Scale: start-up with {n} submissions (filled at {:.0}/s)", at.fill_rate),
            amanat: format!(
                "first start after the load {:.3} s; warm start {:.3} s",
                secs(at.first_start),
                secs(at.warm_start)
            ),
            reference: "-".into(),
            ratio: "-".into(),
            goal: "under 2 s; under 0.2 s".into(),
            met: Some(secs(at.first_start) < 2.0 && secs(at.warm_start) < 0.2),
        });
        let latency = secs(at.receipt) / secs(base.receipt);
        figures.push(Figure {
            name: format!("Scale: a 2 KB testimony's receipt (201) with {n} in the store"),
            amanat: format!("{:.1} ms (median)", secs(at.receipt) * 1000.0),
            reference: format!("with {}: {:.1} ms", base.count, secs(base.receipt) * 1000.0),
            ratio: format!("{latency:.2}x"),
            goal: "within 1.25x".into(),
            met: Some(latency <= 1.25),
        });
        let disk = at.disk_per_submission / base.disk_per_submission;
        figures.push(Figure {
            name: format!("Scale: disk per submission with {n} in the store"),
            amanat: format!("{:.0} bytes", at.disk_per_submission),
            reference: format!("with {}: {:.0} bytes", base.count, base.disk_per_submission),
            ratio: format!("{disk:.2}x"),
            goal: "within 1.1x".into(),
            met: Some(disk <= 1.1),
        });
    }
    figures
}

/// Waits for a healthy `/healthz`.
fn healthy(server: &crate::common::Server) {
    while crate::common::try_request(
        crate::common::connect(server.addr),
        "GET",
        "/healthz",
        &[],
        b"",
    )
    .map_or(true, |r| r.status != 200)
    {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A warm start: time from restarting the server to a healthy `/healthz`.
fn restarted(server: &mut crate::common::Server) -> Duration {
    server.kill();
    let began = Instant::now();
    server.restart();
    healthy(server);
    began.elapsed()
}

/// One request on `stream`: its status.
fn send(mut stream: std::net::TcpStream, request: &[u8]) -> u16 {
    use std::io::Write;
    stream.write_all(request).unwrap();
    crate::common::read_response(&mut stream).status
}
