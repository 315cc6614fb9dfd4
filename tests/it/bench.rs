//! The reviewer's bench (`amanat review --cases DIR`) over 300 cases sent to the real
//! server in Russian, Kazakh and English, exported and opened: it answers only
//! 127.0.0.1 with its token, finds a word in another grammatical form, filters by
//! facility, act, dates and the rest of the form to exactly the expected cases, flags
//! the same photo in two cases, counts in charts whose bars list their cases, keeps a
//! triage change across a restart in its audit trail (and a stale page's change
//! without undoing another's), exports a CSV that Python reads back, and merges a
//! second reviewer's folder without losing either side's notes.

use crate::common::*;
use crate::review::{export, open, path_str};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};

const CASES: usize = 300;

/// The facility case `n` names, as a survivor might write it (case and spaces vary).
fn facility(n: usize) -> &'static str {
    ["ИВС ДП Алматы", "СИЗО-1", "ивс  дп алматы", "Городская больница №4", "Подвал акимата"][n % 5]
}

/// The day case `n` happened (5 to 11 January 2022), written in its language's way.
fn when(n: usize) -> String {
    let day = 5 + n % 7;
    match n % 3 {
        0 => format!("{day:02}.01.2022, вечером"),
        1 => format!("{day:02}/01/2022"),
        _ => format!("2022-01-{day:02}"),
    }
}

/// What case `n` says, in its language, and which acts and place it names.
fn testimony(n: usize) -> (&'static str, String, &'static str, Vec<&'static str>) {
    let place = ["police", "detention", "hospital", "street"][n % 4];
    let mut acts = vec!["beating"];
    if n % 3 == 0 {
        acts.push("electric_shocks");
    }
    if n % 5 == 0 {
        acts.push("taken_from_hospital");
    }
    let (language, text) = match n % 3 {
        0 => ("ru", format!("Случай {n}. Меня избивали в подвале акимата три дня.")),
        1 => ("kk", format!("Оқиға {n}. Полиция бөлімінде мені ұрып-соқты.")),
        _ => ("en", format!("Case {n}. They beat me at the station for hours.")),
    };
    (language, text, place, acts)
}

/// The bench, started on the cases folder, and its address and token path.
struct Bench {
    child: Child,
    _stdout: BufReader<std::process::ChildStdout>,
    addr: SocketAddr,
    base: String,
}

impl Bench {
    fn start(cases: &Path) -> Bench {
        let mut child = Command::new(env!("CARGO_BIN_EXE_amanat"))
            .args(["review", "--cases", cases.to_str().unwrap(), "--reviewer", "aigul"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut line).unwrap();
        let url = line.trim().rsplit(' ').next().unwrap().to_string();
        let rest = url.strip_prefix("http://").unwrap();
        let (addr, base) = rest.split_once('/').unwrap();
        Bench {
            child,
            _stdout: stdout,
            addr: addr.parse().unwrap(),
            base: format!("/{}", base.trim_end_matches('/')),
        }
    }

    /// A request from 127.0.0.1, with the bench's own address as `Host`.
    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        let stream = TcpStream::connect(self.addr).unwrap();
        try_request(stream, method, path, headers, body).unwrap()
    }

    fn get(&self, path: &str) -> Response {
        self.request("GET", &format!("{}{path}", self.base), &[], b"")
    }

    /// The case ids a list page shows, in order.
    fn listed(&self, query: &str) -> Vec<String> {
        let page = self.get(&format!("/?{query}"));
        assert_eq!(page.status, 200, "{}", page.text());
        page.text()
            .split("<tr class=\"case\">")
            .skip(1)
            .map(|row| row.split("/case/").nth(1).unwrap().split('"').next().unwrap().to_string())
            .collect()
    }
}

/// Every socket process `pid` holds, as `tcp <local address>`, `udp ...`, `unix <path>`
/// or `unix` (unnamed: a pair inside the process), read from /proc. A connection the
/// process is closing can leave its table a moment before its descriptor goes: the
/// census is read again until every descriptor is accounted for.
fn sockets_of(pid: u32) -> Vec<String> {
    let mut tries = 0;
    loop {
        let (inodes, found) = census(pid);
        tries += 1;
        if found.len() == inodes || tries == 100 {
            assert_eq!(found.len(), inodes, "every socket accounted for: {found:?}");
            return found;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The socket descriptors of `pid`, and those found in /proc's tables.
fn census(pid: u32) -> (usize, Vec<String>) {
    let inodes: BTreeSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy().into_owned();
            Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut found = Vec::new();
    for table in ["tcp", "tcp6", "udp", "udp6", "raw", "raw6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let columns: Vec<&str> = line.split_whitespace().collect();
            if columns.len() > 9 && inodes.contains(columns[9]) {
                let (ip, port) = columns[1].split_once(':').unwrap();
                let address = if ip.len() == 8 {
                    let ip = u32::from_str_radix(ip, 16).unwrap().to_le_bytes();
                    std::net::Ipv4Addr::from(ip).to_string()
                } else {
                    ip.to_string()
                };
                let port = u16::from_str_radix(port, 16).unwrap();
                found.push(format!("{table} {address}:{port}"));
            }
        }
    }
    let unix = std::fs::read_to_string(format!("/proc/{pid}/net/unix")).unwrap_or_default();
    for line in unix.lines().skip(1) {
        let columns: Vec<&str> = line.split_whitespace().collect();
        if columns.len() > 6 && inodes.contains(columns[6]) {
            found.push(columns.get(7).map_or("unix".to_string(), |path| format!("unix {path}")));
        }
    }
    (inodes.len(), found)
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_reviewer_finds_filters_and_triages_three_hundred_cases_offline() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "");
    let mut sent = Vec::new();
    let photo = std::fs::read("tests/data/media/photo.jpg").unwrap();
    for n in 0..CASES {
        let (language, said, place, acts) = testimony(n);
        let mut parts = vec![text("testimony", &said), text("language", language)];
        parts.push(text("city", "Алматы"));
        parts.push(text("place", place));
        parts.push(text("place_detail", facility(n)));
        parts.push(text("when", &when(n)));
        parts.push(text("agency", if n % 7 == 0 { "КНБ, в штатском" } else { "полиция" }));
        parts.push(text("consent_readers", if n % 2 == 0 { "lawyers" } else { "coalition" }));
        if n % 4 == 1 {
            parts.push(text("help_wanted", "legal"));
        }
        // Quotes, a comma and a line break; and a formula, as a hostile sender writes one.
        match n {
            0 => parts.push(text("what_they_said", "Сказали: \"подпиши\",\nиначе хуже.")),
            6 => parts.push(text("perpetrators", "=HYPERLINK(\"http://evil.example\",\"open\")")),
            _ => {}
        }
        parts.extend(acts.iter().map(|act| text("acts", act)));
        // Cases 3 and 4 hold the same photo; case 5 another.
        let mut other = photo.clone();
        other.extend_from_slice(b"another");
        match n {
            3 | 4 => parts.push(file("evidence", "IMG_0001.jpg", "image/jpeg", &photo)),
            5 => parts.push(file("evidence", "IMG_0002.jpg", "image/jpeg", &other)),
            _ => {}
        }
        let response = post_multipart(server.addr, "/api/v1/submissions", &parts);
        assert_eq!(response.status, 201, "{}", response.text());
        sent.push(response.json()["id"].as_str().unwrap().to_string());
    }
    let bundle = dir.path().join("b.tar");
    export(&server, &bundle, false);
    drop(server);
    let cases = dir.path().join("cases");
    let (ok, outcomes) = open(&[&bundle], &coalition.identity_files[0], &cases);
    assert!(ok);
    assert_eq!(outcomes.values().filter(|o| o["status"] == "opened").count(), CASES);
    // Each submission opened is its own case here (no follow-ups were sent).
    let case_of = |id: &str| -> String {
        let json = std::fs::read(cases.join(id).join("testimony.json")).unwrap();
        serde_json::from_slice::<serde_json::Value>(&json).unwrap()["case"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let ids: Vec<String> = sent.iter().map(|id| case_of(id)).collect();

    let bench = Bench::start(&cases);
    assert_eq!(bench.listed("").len(), CASES);
    // Nothing without the token, from another address, or to another host name.
    assert_eq!(bench.request("GET", "/", &[], b"").status, 403);
    let wrong = format!("/{}/", "0".repeat(32));
    assert_eq!(bench.request("GET", &wrong, &[], b"").status, 403);
    let elsewhere = try_request(connect(bench.addr), "GET", &format!("{}/", bench.base), &[], b"");
    assert_eq!(elsewhere.unwrap().status, 403, "a request from {CLIENT_IP}");
    let stream = TcpStream::connect(bench.addr).unwrap();
    let renamed =
        format!("GET {}/ HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n", bench.base);
    let mut stream = stream;
    std::io::Write::write_all(&mut stream, renamed.as_bytes()).unwrap();
    assert_eq!(read_response(&mut stream).status, 403, "a rebound host name");

    // It holds no socket but its own listener and the connections to it.
    let own = format!("tcp {}", bench.addr);
    let sockets = sockets_of(bench.child.id());
    assert!(sockets.contains(&own), "{sockets:?}");
    assert!(sockets.iter().all(|s| *s == own || s == "unix"), "{sockets:?}");

    // A word in another grammatical form, in each language.
    let expect = |pick: &dyn Fn(usize) -> bool| -> BTreeSet<String> {
        (0..CASES).filter(|n| pick(*n)).map(|n| ids[n].clone()).collect()
    };
    let found =
        |q: &str| -> BTreeSet<String> { bench.listed(&format!("q={q}")).into_iter().collect() };
    assert_eq!(found(&crate::followup::urlencode("избивают")), expect(&|n| n % 3 == 0));
    assert_eq!(found(&crate::followup::urlencode("бөлімі")), expect(&|n| n % 3 == 1));
    assert_eq!(found("hour"), expect(&|n| n % 3 == 2));
    // Act and place from the form: exactly the cases that ticked and named them.
    let filtered: BTreeSet<String> =
        bench.listed("act=electric_shocks&place=police").into_iter().collect();
    assert_eq!(filtered, expect(&|n| n % 3 == 0 && n % 4 == 0));
    assert!(!filtered.is_empty());
    // A facility however it was written, with an act; then the rest of the form.
    let listed = |q: &str| -> BTreeSet<String> { bench.listed(q).into_iter().collect() };
    let ivs = crate::followup::urlencode("ИВС дп");
    assert_eq!(
        listed(&format!("facility={ivs}&act=electric_shocks")),
        expect(&|n| n % 3 == 0 && n % 5 % 2 == 0 && n % 5 != 4)
    );
    let exact = crate::followup::urlencode("ивс дп алматы");
    assert_eq!(listed(&format!("facility_is={exact}")), expect(&|n| n % 5 == 0 || n % 5 == 2));
    assert_eq!(
        listed("happened_from=2022-01-06&happened_to=2022-01-07"),
        expect(&|n| n % 7 == 1 || n % 7 == 2)
    );
    let today = time::OffsetDateTime::now_utc().date();
    assert_eq!(listed(&format!("received_from={today}")).len(), CASES);
    assert!(listed(&format!("received_to={}", today.previous_day().unwrap())).is_empty());
    let knb = crate::followup::urlencode("кнб");
    assert_eq!(listed(&format!("agency={knb}")), expect(&|n| n % 7 == 0));
    assert_eq!(listed("consent=lawyers&help=legal"), expect(&|n| n % 2 == 0 && n % 4 == 1));
    assert_eq!(listed("media=photo"), expect(&|n| (3..=5).contains(&n)));
    assert_eq!(listed("media=none").len(), CASES - 3);
    // The same photo in two cases, flagged in both, each naming the other.
    assert_eq!(listed("shared=1"), expect(&|n| n == 3 || n == 4));
    let case_three = bench.get(&format!("/case/{}", ids[3])).text();
    assert!(
        case_three.contains(&format!("also in case <a href=\"{}/case/{}\"", bench.base, ids[4]))
    );
    assert!(!bench.get(&format!("/case/{}", ids[5])).text().contains("also in case"));
    // Bad filters are refused, and say why.
    let bad = bench.get("/?happened_from=yesterday");
    assert_eq!(bad.status, 400);
    assert!(bad.text().contains("is not a date"), "{}", bad.text());
    // Nothing is answered before the token, not even a malformed query's error.
    let stranger = bench.request("GET", &format!("/{}/?q=%ZZ", "0".repeat(32)), &[], b"");
    assert_eq!(stranger.status, 403);

    // Patterns: counted over what the filters keep, each bar a link to its cases.
    let patterns = bench.get("/patterns?place=police").text();
    assert!(patterns.contains(&format!("Counted over {} cases", CASES / 4)), "{patterns}");
    assert!(patterns.contains("<svg"), "{patterns}");
    let csv = bench.get("/patterns.csv").text();
    assert!(csv.starts_with("chart,value,cases\n"), "{csv}");
    assert!(csv.contains(&format!("acts,electric_shocks,{}\n", CASES / 3)), "{csv}");
    assert!(csv.contains("facilities,ивс дп алматы,120\n"), "{csv}");
    assert!(csv.contains("weeks,2022-01-03,"), "{csv}");
    for line in csv.lines().filter(|l| l.starts_with("acts,") || l.starts_with("facilities,")) {
        let (chart, rest) = line.split_once(',').unwrap();
        let (value, count) = rest.rsplit_once(',').unwrap();
        let key = if chart == "acts" { "act" } else { "facility_is" };
        let q = format!("{key}={}", crate::followup::urlencode(value.trim_matches('"')));
        assert_eq!(bench.listed(&q).len(), count.parse::<usize>().unwrap(), "{line}");
    }

    // Triage: referred to a lawyer, with a note; it survives a restart, in the trail.
    let case = &ids[7];
    let form = "status=referred&tags=akimat+shocks&note=Sent+to+Zhanar+for+the+appeal";
    let posted = bench.request(
        "POST",
        &format!("{}/case/{case}", bench.base),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        form.as_bytes(),
    );
    assert_eq!(posted.status, 303, "{}", posted.text());
    let refused = bench.request(
        "POST",
        &format!("{}/case/{case}", bench.base),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"status=burnt",
    );
    assert_eq!(refused.status, 400);
    drop(bench);
    let bench = Bench::start(&cases);
    let page = bench.get(&format!("/case/{case}")).text();
    assert!(page.contains("<option value=\"referred\" selected>"), "{page}");
    assert!(page.contains("Sent to Zhanar for the appeal"));
    assert!(page.contains("aigul: status: referred to a lawyer; a note; tags added: akimat shocks"));
    assert_eq!(bench.listed("status=referred"), std::slice::from_ref(case));
    let trail = std::fs::read_to_string(cases.join("triage.jsonl")).unwrap();
    assert_eq!(trail.lines().count(), 1, "{trail}");
    // A page opened before that change (status new, no tags) posts later: its new tag
    // is added, and the status it did not touch stays referred.
    let stale = "status=new&status_was=new&tags_was=&tags=beaten&note=From+an+old+tab";
    let posted = bench.request(
        "POST",
        &format!("{}/case/{case}", bench.base),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        stale.as_bytes(),
    );
    assert_eq!(posted.status, 303);
    let page = bench.get(&format!("/case/{case}")).text();
    assert!(page.contains("<option value=\"referred\" selected>"), "{page}");
    assert!(page.contains("value=\"akimat beaten shocks\""), "{page}");
    // A post from a page elsewhere is refused, even with the token.
    for (header, value) in
        [("Origin", "http://evil.example"), ("Origin", "null"), ("Sec-Fetch-Site", "cross-site")]
    {
        let forged = bench.request(
            "POST",
            &format!("{}/case/{case}", bench.base),
            &[("Content-Type", "application/x-www-form-urlencoded"), (header, value)],
            b"status=closed",
        );
        assert_eq!(forged.status, 403, "{header}: {value}");
    }

    // The same in a real browser with JavaScript off: search, a case, a status set by
    // hand. The screenshots go to target/screenshots/ for people to look at.
    let browser = crate::browser::Browser::start(&dir.path().join("profile"));
    let url = format!("http://{}{}/", bench.addr, bench.base);
    browser.open(&url);
    assert_eq!(browser.text_of("#count"), format!("{CASES} of {CASES} cases"));
    browser.type_into("#q", "избивают");
    browser.click("form.filters button");
    let found = format!("{} of {CASES} cases", CASES.div_ceil(3));
    crate::common::wait_until("the search's answer", || browser.text_of("#count") == found);
    browser.screenshot("bench-list-search");
    let other = &ids[12];
    browser.open(&format!("{url}case/{other}"));
    browser.click("#status option[value=follow_up]");
    browser.type_into("#note", "Ask about the second night");
    browser.click("form button");
    // The answer is a new page: wait for it (a loaded machine may take a moment).
    crate::common::wait_until("the case page shows its trail", || browser.exists("#trail li"));
    assert!(browser.text_of("#trail").contains("aigul: status: needs follow-up; a note"));
    browser.screenshot("bench-case");
    assert_eq!(bench.listed("status=follow_up"), std::slice::from_ref(other));
    // The charts, and a bar followed in the browser to the cases it counts.
    browser.open(&format!("{url}patterns"));
    browser.screenshot("bench-patterns");
    browser.click("#chart-places svg a");
    let counted = format!("{} of {CASES} cases", CASES / 4);
    crate::common::wait_until("the bar's cases", || browser.text_of("#count") == counted);
    browser.open(&format!("{url}case/{}/print", ids[3]));
    assert!(!browser.exists("form"));
    browser.screenshot("bench-case-print");
    drop(browser);
    drop(bench);

    export_reads_back_in_python(&cases, &ids);
    merge_keeps_both_reviewers_work(dir.path(), &bundle, &coalition, &cases, &ids);
}

/// The CSV export, read by Python's `csv` module: the header, and values (Cyrillic,
/// commas, quotes, newlines) as they were sent.
fn export_reads_back_in_python(cases: &Path, ids: &[String]) {
    let out = cases.parent().unwrap().join("cases.csv");
    let export = || {
        let args = ["review", "export", "--cases", path_str(cases), "--format", "csv"];
        amanat(&[&args[..], &["--out", path_str(&out)]].concat())
    };
    assert!(export().status.success());
    assert!(!export().status.success(), "an export is never written over");
    let script = "import csv, json, sys\n\
        rows = list(csv.DictReader(open(sys.argv[1], newline='', encoding='utf-8')))\n\
        print(json.dumps(rows, ensure_ascii=False))\n";
    let python = Command::new("python3").args(["-c", script, path_str(&out)]).output().unwrap();
    assert!(python.status.success(), "{}", String::from_utf8_lossy(&python.stderr));
    let rows: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_slice(&python.stdout).unwrap();
    assert_eq!(rows.len(), CASES);
    let header: Vec<&str> = rows[0].keys().map(String::as_str).collect();
    for column in ["title", "testimony", "when", "place_detail", "acts__kk", "acts__ru", "acts__en"]
    {
        assert!(header.contains(&column), "{header:?}");
    }
    let row = |n: usize| rows.iter().find(|r| r["case"] == ids[n].as_str()).unwrap();
    assert_eq!(row(0)["testimony"], testimony(0).1.as_str());
    assert_eq!(row(1)["testimony"], testimony(1).1.as_str());
    assert_eq!(row(0)["agency"], "КНБ, в штатском");
    assert_eq!(row(0)["what_they_said"], "Сказали: \"подпиши\",\nиначе хуже.");
    let formula = row(6)["perpetrators"].as_str().unwrap();
    assert!(formula.starts_with("'=HYPERLINK("), "a formula stays text: {formula}");
    assert_eq!(row(0)["when"], when(0).as_str());
    assert_eq!(row(0)["happened"], "2022-01-05");
    let acts = |lang: &str| row(0)[&format!("acts__{lang}")].as_str().unwrap().to_string();
    assert_eq!(acts("en").split('|').count(), 3, "{}", acts("en"));
    assert!(acts("ru").chars().any(|c| ('а'..='я').contains(&c)), "{}", acts("ru"));
    assert_ne!(acts("ru"), acts("kk"));
    assert_eq!(row(3)["files"], "1");
    assert_eq!(row(7)["triage_status"], "referred");
}

/// A second reviewer opened the same bundle and noted a case; this folder lacks one
/// case. Merged: both notes are kept, the later change wins, the missing case is named
/// (to be opened from its bundle, never copied), and a second merge adds nothing.
fn merge_keeps_both_reviewers_work(
    dir: &Path,
    bundle: &Path,
    coalition: &Coalition,
    cases: &Path,
    ids: &[String],
) {
    let theirs = dir.join("cases-zhanar");
    assert!(open(&[bundle], &coalition.identity_files[0], &theirs).0);
    let bench = Bench::start(&theirs);
    let posted = bench.request(
        "POST",
        &format!("{}/case/{}", bench.base, ids[7]),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"status=closed&status_was=new&note=Zhanar+spoke+to+the+family",
    );
    assert_eq!(posted.status, 303);
    drop(bench);
    // A planted folder in theirs is never copied here.
    let planted = theirs.join(ids[8].replace(char::is_alphanumeric, "f"));
    std::fs::create_dir(&planted).unwrap();
    std::fs::copy(
        theirs.join(sent_folder(&theirs, &ids[8])).join("testimony.json"),
        planted.join("testimony.json"),
    )
    .unwrap();
    let missing = sent_folder(cases, &ids[20]);
    std::fs::remove_dir_all(cases.join(&missing)).unwrap();
    let merge = || {
        let args = ["review", "merge", "--cases", path_str(cases), "--from", path_str(&theirs)];
        let output = amanat(&args);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    };
    let said = merge();
    assert!(
        said.starts_with("1 triage changes added\n2 submissions there are not opened here"),
        "{said}"
    );
    assert!(said.contains(&missing), "{said}");
    assert!(!cases.join(&missing).exists() && !cases.join(planted.file_name().unwrap()).exists());
    assert!(merge().starts_with("0 triage changes added"), "a second merge adds nothing");
    assert!(open(&[bundle], &coalition.identity_files[0], cases).0);
    let bench = Bench::start(cases);
    assert_eq!(bench.listed("").len(), CASES);
    let page = bench.get(&format!("/case/{}", ids[7])).text();
    assert!(page.contains("Sent to Zhanar for the appeal"), "{page}");
    assert!(page.contains("Zhanar spoke to the family"), "{page}");
    assert!(page.contains("<option value=\"closed\" selected>"), "the later change wins");
}

/// The folder of the (only) submission of case `case` in `cases`.
fn sent_folder(cases: &Path, case: &str) -> String {
    std::fs::read_dir(cases)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .find(|name| {
            std::fs::read(cases.join(name).join("testimony.json")).is_ok_and(|json| {
                serde_json::from_slice::<serde_json::Value>(&json).unwrap()["case"] == case
            })
        })
        .unwrap()
}
