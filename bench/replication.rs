//! Figures 7 and 8: replicas on a real Garage (issue 18), each beside an S3 client not
//! ours (curl's own `SigV4` signing) moving the same bytes to and from the same Garage.
//!
//! Lag is measured from outside: 16 clients upload at once; each 201 carries its leaf;
//! a poller asks `amanat status --json` every 50 ms how far the replica holds the log;
//! a submission's lag is from its 201 to the first poll that finds its leaf there.

use crate::common::garage::{self, Garage};
use crate::common::{Coalition, Server};
use crate::{amanat, human, median, ms, p, rate_mib, secs, time, upload_generated, Figure, Scale};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(50);

pub fn figures(scale: &Scale) -> Vec<Figure> {
    if !garage::available() {
        eprintln!(
            "replication figures skipped: garage is not installed (tests/run-all.sh installs it)"
        );
        return vec![];
    }
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 3);
    let garage = Garage::single(&dir.path().join("partner"));
    let replicas = garage.replica_config(dir.path(), "partner");
    let server = Server::start_configured(
        dir.path(),
        &dir.path().join("data"),
        &coalition,
        &format!("{replicas}\n[replication]\nack = \"local\"\n"),
        "max_submission_bytes = 4294967296",
    );
    let (clients, size) = (scale.replica_clients, scale.replica_bytes);

    // Ours: the uploads, their 201s and leaves; the replica's progress, polled.
    let progress: Arc<Mutex<Vec<(Instant, u64)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let (progress, stop, data) = (progress.clone(), stop.clone(), server.data_dir.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let through = replica_through(&data);
                progress.lock().unwrap().push((Instant::now(), through));
                std::thread::sleep(POLL);
            }
        })
    };
    let started = Instant::now();
    let acknowledged: Vec<(Instant, u64)> = std::thread::scope(|s| {
        let uploads: Vec<_> = (0..clients)
            .map(|i| s.spawn(move || upload_for_leaf(server.addr, size, 1000 + i as u64)))
            .collect();
        uploads.into_iter().map(|u| u.join().unwrap()).collect()
    });
    let last_ack = acknowledged.iter().map(|a| a.0).max().unwrap();
    let leaves = acknowledged.iter().map(|a| a.1).max().unwrap() + 1;
    let deadline = Instant::now() + Duration::from_secs(900);
    while progress.lock().unwrap().last().is_none_or(|&(_, through)| through < leaves) {
        assert!(Instant::now() < deadline, "replication did not finish\n{}", server.logs());
        std::thread::sleep(POLL);
    }
    stop.store(true, Ordering::Relaxed);
    poller.join().unwrap();
    let progress = progress.lock().unwrap().clone();
    let mut lags: Vec<Duration> = acknowledged
        .iter()
        .map(|&(at, leaf)| {
            let held = progress.iter().find(|&&(when, through)| when >= at && through > leaf);
            held.map_or(Duration::ZERO, |&(when, _)| when - at)
        })
        .collect();
    lags.sort();
    let replicated_at = progress.iter().find(|p| p.1 >= leaves).unwrap().0;
    let drained = replicated_at - last_ack;
    let everything = replicated_at - started;

    // The reference: curl puts the same ciphertext, every object at once, to the same
    // Garage under another prefix; each object's time from the start of the batch.
    let objects = crate::common::files_in(&server.data_dir.join("objects"));
    let ciphertext: u64 = objects.iter().map(|o| std::fs::metadata(o).unwrap().len()).sum();
    let batch = Instant::now();
    let mut curl_times: Vec<Duration> = std::thread::scope(|s| {
        let puts: Vec<_> = objects
            .iter()
            .enumerate()
            .map(|(i, object)| {
                let garage = &garage;
                s.spawn(move || {
                    garage.put_file(&format!("reference/{i}"), object);
                    batch.elapsed()
                })
            })
            .collect();
        puts.into_iter().map(|t| t.join().unwrap()).collect()
    });
    curl_times.sort();
    let curl_all = *curl_times.last().unwrap();

    let lag_figure = Figure {
        name: format!(
            "Replication lag to one Garage: {clients} clients upload {} each at once (201 to \
             in the replica, p50 / p99)",
            human(size)
        ),
        amanat: format!(
            "{:.0} / {:.0} ms; {:.2} s from the first byte to all in the replica ({:.0} MiB/s), \
             {:.2} s after the last 201",
            ms(percentile(&lags, 50)),
            ms(percentile(&lags, 99)),
            secs(everything),
            rate_mib(ciphertext, everything),
            secs(drained),
        ),
        reference: format!(
            "curl PUT of the same {} ciphertext, all at once: p50 / p99 {:.0} / {:.0} ms, \
             all in {:.2} s ({:.0} MiB/s)",
            human(ciphertext),
            ms(percentile(&curl_times, 50)),
            ms(percentile(&curl_times, 99)),
            secs(curl_all),
            rate_mib(ciphertext, curl_all),
        ),
        ratio: format!(
            "{:.2}x (p99 / p99)",
            secs(percentile(&lags, 99)) / secs(percentile(&curl_times, 99))
        ),
        goal: "reported (uploads and replication share two cores)".into(),
        met: None,
    };
    let recovery = recovery(scale, dir.path(), &garage, &coalition, &objects, ciphertext);
    drop(server);
    vec![lag_figure, recovery]
}

/// Figure 8: the destroyed server's intake back from the replica alone: `replica pull`
/// then `open`, against curl getting the same objects and `age -d` decrypting them.
fn recovery(
    scale: &Scale,
    dir: &Path,
    garage: &Garage,
    coalition: &Coalition,
    objects: &[PathBuf],
    ciphertext: u64,
) -> Figure {
    let config = dir.join("puller.toml");
    std::fs::write(&config, garage.replica_config(&dir.join("reviewer"), "partner")).unwrap();
    let identity = &coalition.identity_files[0];
    let (mut pulls, mut opens, mut gets, mut decrypts) = (vec![], vec![], vec![], vec![]);
    for run in 0..scale.replica_runs {
        let pulled = dir.join(format!("pulled-{run}.tar"));
        pulls.push(time(|| {
            let out = amanat(&[
                "replica",
                "pull",
                "--config",
                p(&config),
                "--replica",
                "partner",
                "--out",
                p(&pulled),
            ]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }));
        let cases = dir.join(format!("cases-{run}"));
        let state = dir.join(format!("state-{run}"));
        opens.push(time(|| crate::open_cases(&pulled, identity, &cases, &state)));
        std::fs::remove_dir_all(&cases).unwrap();
        std::fs::remove_file(&pulled).unwrap();

        let fetched = dir.join(format!("fetched-{run}"));
        std::fs::create_dir(&fetched).unwrap();
        gets.push(time(|| {
            for (i, _) in objects.iter().enumerate() {
                garage.get_file(&format!("reference/{i}"), &fetched.join(i.to_string()));
            }
        }));
        let plain = dir.join(format!("plain-{run}"));
        std::fs::create_dir(&plain).unwrap();
        let fetched_objects: Vec<PathBuf> =
            (0..objects.len()).map(|i| fetched.join(i.to_string())).collect();
        decrypts.push(time(|| crate::age_decrypt_each(identity, &fetched_objects, &plain)));
        std::fs::remove_dir_all(&fetched).unwrap();
        std::fs::remove_dir_all(&plain).unwrap();
    }
    let (pull, open) = (median(pulls), median(opens));
    let (get, decrypt) = (median(gets), median(decrypts));
    let ours = pull + open;
    let reference = get + decrypt;
    Figure {
        name: format!(
            "Recovery from the replica alone: {} of ciphertext, `replica pull` then `open`",
            human(ciphertext)
        ),
        amanat: format!(
            "{:.2} s (pull {:.2} s + open {:.2} s; {:.0} MiB/s)",
            secs(ours),
            secs(pull),
            secs(open),
            rate_mib(ciphertext, ours)
        ),
        reference: format!(
            "curl GET {:.2} s + `age -d` {:.2} s per object: {:.2} s",
            secs(get),
            secs(decrypt),
            secs(reference)
        ),
        ratio: format!("{:.2}x", secs(ours) / secs(reference)),
        goal: "reported (`open` also checks every signature, leaf and hash)".into(),
        met: None,
    }
}

/// Uploads `len` bytes of noise; returns when its 201 came and its leaf.
fn upload_for_leaf(addr: std::net::SocketAddr, len: u64, seed: u64) -> (Instant, u64) {
    let receipt = upload_generated(addr, len, seed);
    let leaf = receipt["receipt"]["leaf_index"].as_u64().expect("the receipt names its leaf");
    (Instant::now(), leaf)
}

/// How many leaves of the log the (only) replica holds, from `amanat status --json`.
fn replica_through(data_dir: &Path) -> u64 {
    let out = amanat(&["status", "--json", "--data-dir", p(data_dir)]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    status["replicas"][0]["through"].as_u64().unwrap_or(0)
}

fn percentile(sorted: &[Duration], pct: usize) -> Duration {
    sorted[((sorted.len() * pct).div_ceil(100)).saturating_sub(1).min(sorted.len() - 1)]
}
