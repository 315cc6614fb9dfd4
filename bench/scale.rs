//! Costs that must stay flat as the store grows (issue 22): a store filled with
//! realistic submissions through the store's own commit path (`Store::commit`, each
//! durable as at intake, many threads sharing flushes), then the server started on it:
//! its first start after the load and its warm start, a receipt's latency, and the
//! disk each submission takes, and an export of the newest submissions (the older ones
//! exported before, as an operator who exports every day leaves them), at each size
//! beside the smallest; `plot` draws each against the store's size.

use crate::{disk_usage, median, secs, time, Figure, Scale};
use amanat::envelope::{self, Manifest, Origin, TextField, MANIFEST_SCHEMA};
use amanat::record::{Hour, SubmissionRecord};
use amanat::store::{CaseChoice, LastExport, PendingObjects, Store};
use std::path::Path;
use std::time::{Duration, Instant};

/// Threads committing at once: they share the index's flushes, as requests do.
const FILLERS: usize = 16;

/// Submissions `from..to` committed into the store at `data` (the server stopped): a
/// 2 KB testimony and a few answers each, sealed to `recipients`, as a field kit's
/// sealed file arrives (no codename: deriving one is issue 15's Argon2id, a second per
/// core per 26, and would be what this measured).
fn fill(store: &Store, recipients: &amanat::keys::Recipients, from: usize, to: usize) -> Duration {
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
                commit_one(store, recipients, &testimony, n);
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

/// Marks every submission not yet exported as carried out, in bundles of `per_bundle`,
/// through the store's own `mark_exported` (what a confirmed `amanat export` does; the
/// bundles themselves would only be bytes written and deleted).
fn exported_before(store: &Store, per_bundle: usize) {
    let ids: Vec<String> =
        store.submissions_to_export(false).unwrap().into_iter().map(|r| r.id.to_string()).collect();
    for bundle in ids.chunks(per_bundle) {
        let last = LastExport {
            bundle: amanat::record::random_hex(16),
            exported_at: Hour::now(),
            submissions: bundle.len(),
        };
        store.mark_exported(&last, bundle, store.log_size().unwrap()).unwrap();
    }
}

/// `amanat export` of what is new, timed: the number it carried out, and how long.
fn export_newest(data: &Path, bundle: &Path) -> (usize, Duration) {
    let began = Instant::now();
    let out = crate::amanat(&[
        "export",
        "--json",
        "--data-dir",
        crate::p(data),
        "--out",
        crate::p(bundle),
    ]);
    let took = began.elapsed();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    std::fs::remove_file(bundle).unwrap();
    (summary["submissions"].as_u64().unwrap() as usize, took)
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
    export: Duration,
}

/// The scale rows, and the plot of them.
pub struct Scaled {
    pub figures: Vec<Figure>,
    pub plot: String,
}

pub fn figures(scale: &Scale) -> Scaled {
    let dir = tempfile::tempdir().unwrap();
    let coalition = crate::common::Coalition::new(dir.path(), 3);
    let recipients = amanat::keys::Recipients::load(&coalition.recipients_file).unwrap();
    let data = dir.path().join("data");
    let mut sizes = Vec::new();
    let mut filled = 0;
    for &count in &scale.scale_sizes {
        let store = Store::open(&data).unwrap();
        let newest = scale.scale_newest.min(count);
        let split = (count - newest).max(filled);
        let mut took = fill(&store, &recipients, filled, split);
        exported_before(&store, scale.scale_newest);
        took += fill(&store, &recipients, split, count);
        drop(store);
        let fill_rate = (count - filled) as f64 / secs(took).max(1e-9);
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
        // Measured before the export, whose custody leaf and marks are not submissions.
        let disk_per_submission = disk_usage(&data) as f64 / count as f64;
        let (exported, export) = export_newest(&data, &dir.path().join("newest.tar"));
        assert_eq!(exported, newest + scale.scale_receipts, "the newest and the receipts' own");
        drop(server);
        sizes.push(AtSize {
            count,
            fill_rate,
            first_start,
            warm_start,
            receipt,
            disk_per_submission,
            export,
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
        let export = secs(at.export) / secs(base.export);
        figures.push(Figure {
            name: format!(
                "Scale: `amanat export` of the {} newest with {n} in the store",
                scale.scale_newest.min(n)
            ),
            amanat: format!("{:.2} s", secs(at.export)),
            reference: format!("with {}: {:.2} s", base.count, secs(base.export)),
            ratio: format!("{export:.2}x"),
            goal: "within 1.5x".into(),
            met: Some(export <= 1.5),
        });
    }
    Scaled { figures, plot: plot(&sizes) }
}

/// One panel of the plot: a figure at each store size, and its goal where it has one.
struct Panel {
    title: &'static str,
    unit: &'static str,
    values: Vec<f64>,
    goal: Option<f64>,
}

/// An SVG of each scale figure against the store's size (a log axis), its goal dashed.
fn plot(sizes: &[AtSize]) -> String {
    let base = &sizes[0];
    let of = |f: fn(&AtSize) -> f64| sizes.iter().map(f).collect::<Vec<_>>();
    let panels = [
        Panel {
            title: "first start after the load",
            unit: "s",
            values: of(|a| secs(a.first_start)),
            goal: Some(2.0),
        },
        Panel {
            title: "warm start",
            unit: "s",
            values: of(|a| secs(a.warm_start)),
            goal: Some(0.2),
        },
        Panel {
            title: "a receipt's latency (median)",
            unit: "ms",
            values: of(|a| secs(a.receipt) * 1000.0),
            goal: Some(secs(base.receipt) * 1000.0 * 1.25),
        },
        Panel {
            title: "disk per submission",
            unit: "bytes",
            values: of(|a| a.disk_per_submission),
            goal: Some(base.disk_per_submission * 1.1),
        },
        Panel {
            title: "export of the newest",
            unit: "s",
            values: of(|a| secs(a.export)),
            goal: Some(secs(base.export) * 1.5),
        },
    ];
    let counts: Vec<f64> = sizes.iter().map(|a| a.count as f64).collect();
    let (width, height, cols) = (320.0, 230.0, 3);
    let rows = panels.len().div_ceil(cols);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n",
        width * cols as f64,
        height * rows as f64 + 24.0
    );
    svg.push_str(&format!(
        "<text x=\"8\" y=\"16\" font-size=\"13\">amanat against the number of submissions in the \
         store (log scale); dashed: the goal ({})</text>\n",
        crate::today()
    ));
    for (i, panel) in panels.iter().enumerate() {
        let (ox, oy) = ((i % cols) as f64 * width, (i / cols) as f64 * height + 24.0);
        svg.push_str(&panel_svg(panel, &counts, ox, oy, width, height));
    }
    svg.push_str("</svg>\n");
    svg
}

fn panel_svg(panel: &Panel, counts: &[f64], ox: f64, oy: f64, width: f64, height: f64) -> String {
    let (left, right, top, bottom) = (ox + 52.0, ox + width - 16.0, oy + 26.0, oy + height - 30.0);
    let top_value =
        panel.values.iter().copied().chain(panel.goal).fold(0.0, f64::max).max(1e-9) * 1.15;
    let (lo, hi) =
        (counts[0].log10(), counts[counts.len() - 1].log10().max(counts[0].log10() + 1.0));
    let at_x = |c: f64| left + (c.log10() - lo) / (hi - lo) * (right - left);
    let at_y = |v: f64| bottom - v / top_value * (bottom - top);
    let mut out = format!(
        "<text x=\"{left}\" y=\"{}\" font-weight=\"bold\">{} ({})</text>\n\
         <line x1=\"{left}\" y1=\"{bottom}\" x2=\"{right}\" y2=\"{bottom}\" stroke=\"black\"/>\n\
         <line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{bottom}\" stroke=\"black\"/>\n",
        oy + 16.0,
        panel.title,
        panel.unit
    );
    for tick in 0..=4 {
        let v = top_value * f64::from(tick) / 4.0;
        out.push_str(&format!(
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            left - 4.0,
            at_y(v) + 4.0,
            short(v)
        ));
    }
    for &c in counts {
        out.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
            at_x(c),
            bottom + 14.0,
            short(c)
        ));
    }
    if let Some(goal) = panel.goal {
        out.push_str(&format!(
            "<line x1=\"{left}\" y1=\"{g:.1}\" x2=\"{right}\" y2=\"{g:.1}\" stroke=\"#c33\" stroke-dasharray=\"5,4\"/>\n",
            g = at_y(goal)
        ));
    }
    let points: Vec<String> = counts
        .iter()
        .zip(&panel.values)
        .map(|(&c, &v)| format!("{:.1},{:.1}", at_x(c), at_y(v)))
        .collect();
    out.push_str(&format!(
        "<polyline points=\"{}\" fill=\"none\" stroke=\"#236\" stroke-width=\"2\"/>\n",
        points.join(" ")
    ));
    for (&c, &v) in counts.iter().zip(&panel.values) {
        out.push_str(&format!(
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#236\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
            at_x(c),
            at_y(v),
            at_x(c),
            at_y(v) - 7.0,
            short(v)
        ));
    }
    out
}

/// A number short enough for an axis: 1M, 100k, 11.6k, 17.6, 0.046.
fn short(v: f64) -> String {
    let trimmed = |v: f64, unit: &str| format!("{v:.1}").trim_end_matches(".0").to_string() + unit;
    match v {
        v if v >= 1e6 => trimmed(v / 1e6, "M"),
        v if v >= 1e4 => trimmed(v / 1e3, "k"),
        v if v >= 100.0 => format!("{v:.0}"),
        v if v >= 1.0 => format!("{v:.1}"),
        v => format!("{v:.3}"),
    }
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
