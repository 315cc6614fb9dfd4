//! Figure 10: opening a bundle with a quorum key (issue 20). The real server seals one
//! large file to a 2-of-3 quorum's recipient and to one plain key beside it; the same
//! bundle is opened with the plain key (the reference) and through the quorum (two
//! holders' shares checked against the commitments and combined, then the same open).
//! The difference is what combining the shares costs.

use crate::common::{Coalition, Server};
use crate::{amanat, human, median, open_cases, p, secs, time, upload_generated, Figure, Scale};
use std::path::Path;
use std::time::Duration;

pub fn figure(scale: &Scale) -> Figure {
    let dir = tempfile::tempdir().unwrap();
    // Holders 0-2 hold the quorum; key 3 is the plain reference.
    let coalition = Coalition::new(dir.path(), 4);
    let quorum_dir = dir.path().join("quorum");
    let mut init = vec!["quorum", "init", "--threshold", "2", "--out", p(&quorum_dir)];
    let holders: Vec<String> =
        coalition.identities[..3].iter().map(|i| i.to_public().to_string()).collect();
    for holder in &holders {
        init.extend(["--holder", holder.as_str()]);
    }
    let made = amanat(&init);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let public = quorum_dir.join("quorum.pub");
    let plain = coalition.identities[3].to_public().to_string();
    let list = format!("{}{plain}\n", std::fs::read_to_string(&public).unwrap());
    std::fs::write(&coalition.recipients_file, list).unwrap();

    let server = Server::start(dir.path(), &coalition, "max_submission_bytes = 4294967296");
    upload_generated(server.addr, scale.large_bytes, 7);
    let bundle = dir.path().join("bundle.tar");
    let out = amanat(&["export", "--all", "--data-dir", p(&server.data_dir), "--out", p(&bundle)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Then one small submission alone: a bundle where opening costs next to nothing.
    upload_generated(server.addr, 1024, 8);
    let empty = dir.path().join("small.tar");
    let out = amanat(&["export", "--data-dir", p(&server.data_dir), "--out", p(&empty)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    drop(server);

    let shares = [quorum_dir.join("1.share"), quorum_dir.join("3.share")];
    let identities = [&coalition.identity_files[0], &coalition.identity_files[2]];
    // Each open is timed on the wall and in CPU (the child's utime + stime), which
    // holds when the machine is shared.
    let key = &coalition.identity_files[3];
    let (mut with_quorum, mut with_key) = (Vec::new(), Vec::new());
    for run in 0..scale.large_runs {
        let place = |what: &str| dir.path().join(format!("{what}-{run}"));
        let (cases, state) = (place("cases-key"), place("state-key"));
        with_key.push(timed(|| open_cases(&bundle, key, &cases, &state)));
        let (cases_q, state_q) = (place("cases-quorum"), place("state-quorum"));
        let quorum =
            || open_with_quorum(&bundle, &public, &shares, &identities, &cases_q, &state_q);
        with_quorum.push(timed(quorum));
        for cases in [cases, cases_q] {
            std::fs::remove_dir_all(cases).unwrap();
        }
    }
    // Combining alone: the same two opens of the small bundle, many times.
    let (mut combine, mut plain_only) = (Vec::new(), Vec::new());
    for run in 0..20 {
        let cases = dir.path().join(format!("empty-cases-{run}"));
        let state = dir.path().join(format!("empty-state-{run}"));
        plain_only.push(time(|| open_cases(&empty, key, &cases, &state)));
        let cases = dir.path().join(format!("empty-cases-q-{run}"));
        let state = dir.path().join(format!("empty-state-q-{run}"));
        combine
            .push(time(|| open_with_quorum(&empty, &public, &shares, &identities, &cases, &state)));
    }
    let combining = secs(median(combine)) - secs(median(plain_only));
    let wall = |runs: &[(Duration, f64)]| secs(median(runs.iter().map(|r| r.0).collect()));
    let cpu = |runs: &[(Duration, f64)]| {
        let mut cpu: Vec<f64> = runs.iter().map(|r| r.1).collect();
        cpu.sort_by(f64::total_cmp);
        cpu[cpu.len() / 2]
    };
    let ratio = cpu(&with_quorum) / cpu(&with_key);
    Figure {
        name: format!(
            "Quorum: `amanat open` of a {} bundle with 2 of 3 shares (CPU, wall)",
            human(std::fs::metadata(&bundle).unwrap().len())
        ),
        amanat: format!(
            "{:.2} CPU-s, {:.2} s; combining the shares: {:.1} ms",
            cpu(&with_quorum),
            wall(&with_quorum),
            combining * 1000.0
        ),
        reference: format!(
            "the same open with one plain key: {:.2} CPU-s, {:.2} s",
            cpu(&with_key),
            wall(&with_key)
        ),
        ratio: format!("{ratio:.2}x"),
        goal: "at most 1.05x".into(),
        met: Some(ratio <= 1.05),
    }
}

/// Wall time of `f`, and the CPU seconds (user + system) of the children it waited for.
fn timed(f: impl FnOnce()) -> (Duration, f64) {
    let before = children_cpu();
    let wall = time(f);
    (wall, children_cpu() - before)
}

/// This process's waited-for children's utime + stime, from /proc/self/stat.
fn children_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    let ticks: u64 = fields[13].parse::<u64>().unwrap() + fields[14].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

fn open_with_quorum(
    bundle: &Path,
    public: &Path,
    shares: &[std::path::PathBuf],
    identities: &[&std::path::PathBuf],
    cases: &Path,
    state: &Path,
) {
    let mut args = vec!["open", p(bundle), "--quorum", p(public)];
    for (share, identity) in shares.iter().zip(identities) {
        args.extend(["--share", p(share), "--identity", p(identity)]);
    }
    args.extend(["--out", p(cases), "--state", p(state)]);
    let out = amanat(&args);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
