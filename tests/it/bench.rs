//! The reviewer's bench (`amanat review --cases DIR`) over 300 cases sent to the real
//! server in Russian, Kazakh and English, exported and opened: it answers only
//! 127.0.0.1 with its token, finds a word in another grammatical form, filters by act
//! and place to exactly the expected cases, and keeps a triage change across a
//! restart, in its audit trail.

use crate::common::*;
use crate::review::{export, open};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};

const CASES: usize = 300;

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
    for n in 0..CASES {
        let (language, said, place, acts) = testimony(n);
        let mut parts = vec![text("testimony", &said), text("language", language)];
        parts.push(text("city", "Алматы"));
        parts.push(text("place", place));
        parts.extend(acts.iter().map(|act| text("acts", act)));
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
    assert!(page.contains("aigul: status: referred to a lawyer; a note; tags: akimat shocks"));
    assert_eq!(bench.listed("status=referred"), std::slice::from_ref(case));
    let trail = std::fs::read_to_string(cases.join("triage.jsonl")).unwrap();
    assert_eq!(trail.lines().count(), 1, "{trail}");

    // The same in a real browser with JavaScript off: search, a case, a status set by
    // hand. The screenshots go to target/screenshots/ for people to look at.
    let browser = crate::browser::Browser::start(&dir.path().join("profile"));
    let url = format!("http://{}{}/", bench.addr, bench.base);
    browser.open(&url);
    assert_eq!(browser.text_of("#count"), format!("{CASES} of {CASES} cases"));
    browser.type_into("#q", "избивают");
    browser.click("form.filters button");
    assert_eq!(browser.text_of("#count"), format!("{} of {CASES} cases", CASES.div_ceil(3)));
    browser.screenshot("bench-list-search");
    let other = &ids[12];
    browser.open(&format!("{url}case/{other}"));
    browser.click("#status option[value=follow_up]");
    browser.type_into("#note", "Ask about the second night");
    browser.click("form button");
    assert!(browser.exists("#trail li"));
    assert!(browser.text_of("#trail").contains("aigul: status: needs follow-up; a note"));
    browser.screenshot("bench-case");
    assert_eq!(bench.listed("status=follow_up"), std::slice::from_ref(other));
}
