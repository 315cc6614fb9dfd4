//! Figure 9: the reviewer's bench searching its cases (issue 19). Cases are sent to the
//! real server in Russian, Kazakh and English, exported and opened by `amanat open`;
//! `amanat review` serves them; a search is a GET of its list page, timed from the
//! client. The reference is `grep -rli` over the same case folders: what a reviewer
//! without the bench would run (it knows nothing of word forms).

use crate::common::{self, Coalition, Server};
use crate::{amanat, keep_alive, median, ms, open_cases, p, submit_each, Figure, Scale};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Searches: a word in another form in each language, and two words together.
const QUERIES: [(&str, &str); 4] = [
    ("избивают", "избивали"),
    ("бөлімі", "бөлімінде"),
    ("beating", "beat"),
    ("подвал акимата", "подвале"),
];

pub fn figures(scale: &Scale) -> Vec<Figure> {
    scale.search_cases.iter().map(|&count| search(count, scale.search_runs)).collect()
}

/// Case `n`'s testimony: sentences from a pool in its language, and names and numbers
/// of its own, so the index holds as many distinct words as real cases would.
fn testimony(n: usize) -> String {
    let pools: [&[&str]; 3] = [
        &[
            "Меня избивали в подвале акимата три дня.",
            "Следователь требовал подписать признание.",
            "Врач в больнице ничего не записал.",
            "Нас держали в спортзале без воды.",
        ],
        &[
            "Полиция бөлімінде мені ұрып-соқты.",
            "Тергеуші мойындауға қол қоюды талап етті.",
            "Ауруханадан түнде алып кетті.",
            "Бізді су бермей ұстады.",
        ],
        &[
            "They beat me at the station for hours.",
            "The investigator demanded that I sign a confession.",
            "They took me from the hospital bed at night.",
            "We were held in a gym without water.",
        ],
    ];
    let pool = pools[n % 3];
    let mut text = format!("Случай {n}, свидетель Кайрат{n}, дом {}. ", n * 7 % 1000);
    for k in 0..6 {
        text.push_str(pool[(n / 3 + k) % pool.len()]);
        text.push(' ');
    }
    text
}

fn search(count: usize, runs: usize) -> Figure {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "");
    submit_each(server.addr, count, 8, |n| {
        let parts = [common::text("testimony", &testimony(n))];
        Some(common::api_upload(&common::multipart_body(&parts)))
    });
    let bundle = dir.path().join("bundle.tar");
    let out = amanat(&["export", "--all", "--data-dir", p(&server.data_dir), "--out", p(&bundle)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    drop(server);
    let cases = dir.path().join("cases");
    open_cases(&bundle, &coalition.identity_files[0], &cases, &dir.path().join("state"));

    let started = Instant::now();
    let mut bench = Command::new(env!("CARGO_BIN_EXE_amanat"))
        .args(["review", "--cases", p(&cases), "--reviewer", "bench"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(bench.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let ready = started.elapsed();
    let url = line.trim().rsplit(' ').next().unwrap().to_string();
    let (addr, base) = url.strip_prefix("http://").unwrap().split_once('/').unwrap();
    let addr: SocketAddr = addr.parse().unwrap();
    let base = format!("/{}", base.trim_end_matches('/'));

    let (mut ours, mut reference) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        for (query, literal) in QUERIES {
            let path = format!("{base}/?q={}", common::percent_encode(query));
            let t = Instant::now();
            let response = common::try_request(keep_alive(addr), "GET", &path, &[], b"").unwrap();
            ours.push(t.elapsed());
            assert_eq!(response.status, 200);
            let t = Instant::now();
            let grep = Command::new("grep")
                .args(["-rli", "--include=testimony.json", "--", literal, p(&cases)])
                .output()
                .unwrap();
            reference.push(t.elapsed());
            assert!(grep.status.success());
        }
    }
    let _ = bench.kill();
    let _ = bench.wait();
    let p99 = |mut runs: Vec<Duration>| {
        runs.sort();
        runs[(runs.len() * 99 / 100).min(runs.len() - 1)]
    };
    let (ours_p99, ours, reference) = (p99(ours.clone()), median(ours), median(reference));
    let ratio = ms(ours) / ms(reference);
    Figure {
        name: format!("Bench: a search over {count} cases (the list page, to the client)"),
        amanat: format!(
            "{:.1} ms (p99 {:.1} ms; ready {:.2} s after start)",
            ms(ours),
            ms(ours_p99),
            ready.as_secs_f64()
        ),
        reference: format!("`grep -rli` one form: {:.1} ms", ms(reference)),
        ratio: format!("{ratio:.2}x"),
        goal: "under 200 ms".into(),
        met: Some(ours < Duration::from_millis(200)),
    }
}
