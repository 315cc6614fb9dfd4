//! Survivors come back with their codename: they read the coalition's reply and add
//! evidence to the same case; reviewers see it grouped with the case.

use crate::common::*;
use crate::review::{export, open};
use serde_json::json;
use std::path::Path;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A first submission through the API: (submission id, codename).
pub(crate) fn first_submission(server: &Server) -> (String, String) {
    let response = post_multipart(
        server.addr,
        "/api/v1/submissions",
        &[
            text("testimony", "Taken from hospital No. 4 on 6 January, beaten in the basement."),
            file("evidence", "ribs.jpg", "image/jpeg", &noise(300_000, 5)),
        ],
    );
    assert_eq!(response.status, 201, "{}", response.text());
    let body = response.json();
    (body["id"].as_str().unwrap().into(), body["codename"].as_str().unwrap().into())
}

/// The codename as a survivor writing in Cyrillic would copy it.
pub(crate) fn in_cyrillic(codename: &str) -> String {
    codename
        .chars()
        .map(|c| match c {
            'b' => 'б',
            'd' => 'д',
            'f' => 'ф',
            'g' => 'г',
            'k' => 'к',
            'l' => 'л',
            'm' => 'м',
            'n' => 'н',
            'r' => 'р',
            's' => 'с',
            't' => 'т',
            'v' => 'в',
            'z' => 'з',
            'a' => 'а',
            'e' => 'е',
            'i' => 'и',
            'o' => 'о',
            'u' => 'у',
            other => other,
        })
        .collect()
}

pub(crate) fn followup(server: &Server, codename: &str) -> Response {
    let body = serde_json::to_vec(&json!({ "codename": codename })).unwrap();
    request(server.addr, "POST", "/api/v1/followup", &[("Content-Type", "application/json")], &body)
}

pub(crate) fn form_post(server: &Server, path: &str, body: &str, cookie: Option<&str>) -> Response {
    let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
    if let Some(cookie) = cookie {
        headers.push(("Cookie", cookie));
    }
    request(server.addr, "POST", path, &headers, body.as_bytes())
}

pub(crate) fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => (b as char).to_string(),
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `amanat reply` into `dir/reply-<length>.tar` for `case`, as it went.
pub(crate) fn reply_command(
    dir: &Path,
    coalition: &Coalition,
    cases: &Path,
    case: &str,
    text: &str,
) -> std::process::Output {
    let text_file = dir.join("reply.txt");
    std::fs::write(&text_file, text).unwrap();
    let bundle = dir.join(format!("reply-{}.tar", text.len()));
    let _ = std::fs::remove_file(&bundle);
    amanat(&[
        "reply",
        "--cases",
        s(cases),
        "--case",
        case,
        "--text-file",
        s(&text_file),
        "--recipients",
        s(&coalition.recipients_file),
        "--out",
        s(&bundle),
    ])
}

/// `amanat reply` into a reply bundle for `case`; returns the bundle.
pub(crate) fn write_reply(
    dir: &Path,
    coalition: &Coalition,
    cases: &Path,
    case: &str,
    text: &str,
) -> std::path::PathBuf {
    let out = reply_command(dir, coalition, cases, case, text);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    dir.join(format!("reply-{}.tar", text.len()))
}

/// Writes a reply offline and imports it into the running server.
pub(crate) fn reply(
    dir: &Path,
    server: &Server,
    coalition: &Coalition,
    cases: &Path,
    case: &str,
    text: &str,
) {
    let bundle = write_reply(dir, coalition, cases, case, text);
    let out = amanat(&["import-replies", s(&bundle), "--data-dir", s(&server.data_dir), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["added"], 1);
    // A second import of the same bundle adds nothing.
    let out = amanat(&["import-replies", s(&bundle), "--data-dir", s(&server.data_dir), "--json"]);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (summary["added"].clone(), summary["already_imported"].clone()),
        (json!(0), json!(1))
    );
}

#[test]
fn survivor_reads_the_reply_and_adds_a_photo_that_reviewers_see_in_the_same_case() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 2);
    let server = Server::start(dir.path(), &coalition, "");
    let (case, codename) = first_submission(&server);
    // Someone else's case, to show nothing crosses over.
    let (other_case, other_codename) = first_submission(&server);

    let cases = dir.path().join("cases");
    let b1 = dir.path().join("b1.tar");
    export(&server, &b1, false);
    assert!(open(&[&b1], &coalition.identity_files[0], &cases).0);

    let answer = "Мы получили ваше заявление. Пришлите, пожалуйста, справку из больницы.\n\
                  A lawyer can take your case.";
    reply(dir.path(), &server, &coalition, &cases, &case, answer);

    // The survivor, typing the codename in Cyrillic capitals with hyphens.
    let typed = in_cyrillic(&codename).to_uppercase().replace(' ', " - ");
    let opened = followup(&server, &typed);
    assert_eq!(opened.status, 200, "{}", opened.text());
    let body = opened.json();
    assert_eq!(body["case"], case.as_str());
    assert_eq!(body["submissions"], 1);
    assert_eq!(body["replies"].as_array().unwrap().len(), 1);
    assert_eq!(body["replies"][0]["text"], answer);
    assert!(body["replies"][0]["received_at"].as_str().unwrap().ends_with(":00:00Z"));
    // The other survivor sees no reply.
    let other = followup(&server, &other_codename).json();
    assert_eq!(
        (other["case"].as_str().unwrap(), other["replies"].clone()),
        (other_case.as_str(), json!([]))
    );

    // The survivor adds the hospital certificate to the same case.
    let certificate = noise(150_000, 9);
    let added = post_multipart(
        server.addr,
        "/api/v1/followup/submissions",
        &[
            text("codename", &codename),
            text("testimony", "The hospital letter, as you asked."),
            file("evidence", "spravka.jpg", "image/jpeg", &certificate),
        ],
    );
    assert_eq!(added.status, 201, "{}", added.text());
    let added = added.json();
    assert_eq!(added["case"], case.as_str());
    assert!(added.get("codename").is_none(), "no new codename for an addition");
    let added_id = added["id"].as_str().unwrap().to_string();
    assert_eq!(followup(&server, &codename).json()["submissions"], 2);

    // The next export and open show it in the same case.
    let b2 = dir.path().join("b2.tar");
    export(&server, &b2, false);
    let (ok, outcomes) = open(&[&b2], &coalition.identity_files[0], &cases);
    assert!(ok, "{outcomes:?}");
    assert_eq!(outcomes[&added_id]["case"], case.as_str());
    let saved = std::fs::read(cases.join(&added_id).join("evidence/spravka.jpg")).unwrap();
    assert!(saved == certificate, "the certificate is bit-identical");
    let testimony: serde_json::Value = serde_json::from_slice(
        &std::fs::read(cases.join(&added_id).join("testimony.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(testimony["case"], case.as_str());
    assert!(!testimony.to_string().contains(&codename), "the codename is never stored");
    let index = std::fs::read_to_string(cases.join("index.html")).unwrap();
    let group = index.split(&format!("id=\"case-{case}\"")).nth(1).expect("the case's group");
    let group = group.split("<h2").next().unwrap();
    assert!(
        group.contains(&format!("{case}/report.html"))
            && group.contains(&format!("{added_id}/report.html"))
    );
    assert!(!group.contains(&other_case));

    // The reply's text is nowhere in plaintext on the server's disk or in its logs.
    for needle in ["справку из больницы", "A lawyer can take your case"] {
        for path in all_files(&server.data_dir) {
            let bytes = std::fs::read(&path).unwrap_or_default();
            assert!(!contains(&bytes, needle.as_bytes()), "{needle:?} in {}", path.display());
        }
        assert!(!server.logs().contains(needle));
    }
    assert!(!server.logs().contains(&codename));
}

#[test]
fn the_same_codename_opens_despite_slips_and_one_word_off_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "");
    let (case, codename) = first_submission(&server);
    let words: Vec<&str> = codename.split(' ').collect();
    let variants = [
        codename.to_uppercase(),
        format!("  {}  ", words.join("   ")),
        words.join("-"),
        words.join(""),
        in_cyrillic(&codename),
        // Kazakh letters, and п where a hand copied Latin n.
        in_cyrillic(&codename).replace('к', "қ").replace('у', "ұ").replace('н', "п"),
        format!("{} {}", in_cyrillic(&words[..2].join(" ")), words[2..].join(" ")),
    ];
    for typed in &variants {
        let opened = followup(&server, typed);
        assert_eq!(opened.status, 200, "{typed:?}: {}", opened.text());
        assert_eq!(opened.json()["case"], case.as_str());
    }
    let mut off: Vec<String> = words.iter().map(std::string::ToString::to_string).collect();
    off[4] = off[4].chars().rev().collect::<String>();
    if off[4] == words[4] {
        off[4] = "zuzuzu".into();
    }
    let refused = followup(&server, &off.join(" "));
    assert_eq!(refused.status, 401);
    assert_eq!(refused.error_code(), "codename_not_recognized");
    let short = followup(&server, &words[..4].join(" "));
    assert_eq!(short.status, 401);
}

#[test]
fn a_flood_of_wrong_codenames_slows_them_and_never_locks_the_right_one_out() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "");
    let (case, codename) = first_submission(&server);

    // Before signing in, anyone gets the sign-in page; a wrong codename gets it again,
    // with the same status, and no cookie.
    let blank = get(server.addr, "/en/followup");
    let wrong =
        form_post(&server, "/en/followup", "codename=bafoki+bafoki+bafoki+bafoki+bafoki", None);
    assert_eq!((blank.status, wrong.status), (200, 200));
    for page in [&blank, &wrong] {
        assert!(page.text().contains("name=\"codename\""));
        assert!(page.header("Set-Cookie").is_none());
    }
    assert!(wrong.text().contains("does not open a case"));

    // 120 well-formed wrong codenames at once (each costs the server a derivation),
    // and in the middle of them the survivor's own: it gets in, and no attempt is ever
    // told to wait for others.
    let addr = server.addr;
    let flood: Vec<_> = (0..120)
        .map(|i| {
            std::thread::spawn(move || {
                let started = std::time::Instant::now();
                let syllable = ["da", "ke", "mi", "lo", "vu"][i % 5];
                let word = format!("{syllable}{}zo", ["ba", "ge", "ti"][i % 3]);
                let typed = format!("{word} {word} {word} {word} dadad{}", ["a", "e", "o"][i % 3]);
                let body = serde_json::to_vec(&json!({ "codename": typed })).unwrap();
                let headers = [("Content-Type", "application/json")];
                let r = request(addr, "POST", "/api/v1/followup", &headers, &body);
                (r.status, r.error_code(), started.elapsed())
            })
        })
        .collect();
    let right = followup(&server, &codename);
    assert_eq!(right.status, 200, "{}", right.text());
    assert_eq!(right.json()["case"], case.as_str());
    for attempt in flood {
        let (status, code, took) = attempt.join().unwrap();
        assert_eq!((status, code.as_str()), (401, "codename_not_recognized"));
        assert!(took >= std::time::Duration::from_secs(1), "a wrong codename is slowed: {took:?}");
    }
    // Input no codename could be (600 bytes of Cyrillic) is refused like any wrong one,
    // and the server is still well.
    let long = followup(&server, &"б".repeat(300));
    assert_eq!((long.status, long.error_code().as_str()), (401, "codename_not_recognized"));
    // Afterwards the right codename still opens the case at once, form and API alike.
    assert_eq!(followup(&server, &codename).status, 200);
    let page =
        form_post(&server, "/en/followup", &format!("codename={}", urlencode(&codename)), None);
    assert!(page.header("Set-Cookie").is_some(), "signed in: {}", page.text());

    // Nothing about the attempts is kept: no codename in the logs.
    let logs = server.logs();
    assert!(!logs.contains(&codename) && !logs.contains("bafoki") && !logs.contains("dadad"));
}

#[test]
fn the_follow_up_pages_keep_a_short_session_in_a_strict_cookie() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "");
    let (case, codename) = first_submission(&server);

    let signed_in =
        form_post(&server, "/en/followup", &format!("codename={}", urlencode(&codename)), None);
    assert_eq!(signed_in.status, 200);
    let set_cookie = signed_in.header("Set-Cookie").expect("a session cookie").to_string();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/en/followup"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain HTTP on loopback (Tor) cannot carry Secure");
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let session = cookie.split('=').nth(1).unwrap();
    assert_eq!(session.len(), 32);
    assert!(!set_cookie.contains(&case), "the cookie names no case");
    assert!(signed_in.text().contains("id=\"no-replies\""));

    // With the cookie: the case page, and additions go to the case.
    let page = request(server.addr, "GET", "/en/followup", &[("Cookie", &cookie)], b"");
    assert!(page.text().contains("id=\"received\"") && page.text().contains("/en/followup/add"));
    assert!(!page.text().contains("ribs.jpg"), "no file names echoed");
    let body = multipart_body(&[file("evidence", "scar.jpg", "image/jpeg", &noise(50_000, 3))]);
    let added = request(
        server.addr,
        "POST",
        "/en/followup/add",
        &[("Content-Type", &multipart_type()), ("Cookie", &cookie)],
        &body,
    );
    assert_eq!(added.status, 200, "{}", added.text());
    assert!(added.text().contains("id=\"added\""));
    assert_eq!(followup(&server, &codename).json()["submissions"], 2);

    // Without a session, an addition is refused and nothing is stored.
    let files_before = server.stored_objects().len();
    let refused = request(
        server.addr,
        "POST",
        "/en/followup/add",
        &[
            ("Content-Type", &multipart_type()),
            ("Cookie", "amanat_case=00000000000000000000000000000000"),
        ],
        &body,
    );
    assert_eq!(refused.status, 401);
    assert_eq!(server.stored_objects().len(), files_before);

    // Closing ends the session on the server too.
    let closed = form_post(&server, "/en/followup/close", "", Some(&cookie));
    assert!(closed.header("Set-Cookie").unwrap().contains("Max-Age=0"));
    let after = request(server.addr, "GET", "/en/followup", &[("Cookie", &cookie)], b"");
    assert!(
        after.text().contains("name=\"codename\"") && !after.text().contains("/en/followup/add")
    );
}

#[test]
fn the_receipt_page_lets_the_survivor_practice_the_codename() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "");
    // What the receipt page carries in its practice form.
    let page = post_multipart(
        server.addr,
        "/en/submit",
        &[text("testimony", "Beaten at the station."), text("consent_readers", "coalition")],
    );
    assert_eq!(page.status, 200);
    let html = page.text();
    let hidden = |name: &str| -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = html.find(&marker).unwrap_or_else(|| panic!("hidden {name}")) + marker.len();
        let value = &html[start..start + html[start..].find('"').unwrap()];
        value
            .replace("&quot;", "\"")
            .replace("&#34;", "\"")
            .replace("&amp;", "&")
            .replace("&#43;", "+")
    };
    let codename = hidden("codename");
    let form = |typed: &str| {
        format!(
            "codename={}&id={}&received_at={}&files=0&receipt={}&typed={}",
            urlencode(&codename),
            hidden("id"),
            urlencode(&hidden("received_at")),
            urlencode(&hidden("receipt")),
            urlencode(typed)
        )
    };
    let right = form_post(&server, "/en/receipt/practice", &form(&in_cyrillic(&codename)), None);
    assert_eq!(right.status, 200, "{}", right.text());
    assert!(right.text().contains("id=\"practice-result\" class=\"correct"));
    // The answer is the receipt page again: the download is still there.
    assert!(right.text().contains("id=\"download-receipt\""));
    let wrong = form_post(&server, "/en/receipt/practice", &form("bafoki"), None);
    assert!(wrong.text().contains("class=\"wrong") && wrong.text().contains(&codename));
    // A practice form whose receipt was tampered with is refused.
    let forged = form_post(
        &server,
        "/en/receipt/practice",
        &form(&codename).replace("&files=0&receipt=%7B", "&files=0&receipt=%7Bx"),
        None,
    );
    assert_eq!(forged.status, 400);
}

#[test]
fn a_form_post_from_another_site_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "");
    let (_, codename) = first_submission(&server);
    let body = format!("codename={}", urlencode(&codename));
    let post = |headers: &[(&str, &str)]| {
        let mut all = vec![("Content-Type", "application/x-www-form-urlencoded")];
        all.extend_from_slice(headers);
        request(server.addr, "POST", "/en/followup", &all, body.as_bytes())
    };
    for headers in [
        vec![("Origin", "http://attacker.example")],
        vec![("Sec-Fetch-Site", "cross-site")],
        vec![("Sec-Fetch-Site", "same-site"), ("Origin", "http://sub.example")],
    ] {
        let refused = post(&headers);
        assert_eq!(refused.status, 403, "{headers:?}");
        assert!(refused.header("Set-Cookie").is_none());
        assert!(refused.text().contains("another website"));
    }
    let own = format!("http://{}", server.addr);
    let accepted = post(&[("Origin", &own), ("Sec-Fetch-Site", "same-origin")]);
    assert_eq!(accepted.status, 200);
    let first = accepted.header("Set-Cookie").unwrap().split(';').next().unwrap().to_string();
    // Signing in again replaces the case's older session.
    let second = post(&[]);
    assert!(second.header("Set-Cookie").is_some());
    let stale = request(server.addr, "GET", "/en/followup", &[("Cookie", &first)], b"");
    assert!(stale.text().contains("name=\"codename\""), "the older session is closed");
}

#[test]
fn a_codename_never_reaches_the_disk_and_a_wrong_one_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "");
    let (_, codename) = first_submission(&server);
    let typed = in_cyrillic(&codename).to_uppercase();
    assert_eq!(
        form_post(&server, "/en/followup", &format!("codename={}", urlencode(&typed)), None).status,
        200
    );
    let added = post_multipart(
        server.addr,
        "/api/v1/followup/submissions",
        &[text("codename", &typed), file("evidence", "x.jpg", "image/jpeg", &noise(20_000, 8))],
    );
    assert_eq!(added.status, 201, "{}", added.text());
    let normalized = amanat::codename::normalize(&codename).to_string();
    for path in all_files(&server.data_dir) {
        let bytes = std::fs::read(&path).unwrap_or_default();
        for needle in [&codename, &typed, &normalized, &in_cyrillic(&codename)] {
            assert!(!contains(&bytes, needle.as_bytes()), "the codename is in {}", path.display());
        }
    }
    for needle in [&codename, &typed, &normalized] {
        assert!(!server.logs().contains(needle.as_str()));
    }

    // A wrong codename with a file: refused, and the file's ciphertext is gone again.
    let before = server.stored_objects().len();
    let refused = post_multipart(
        server.addr,
        "/api/v1/followup/submissions",
        &[
            text("codename", "bafoki bafoki bafoki bafoki bafoki"),
            file("evidence", "y.jpg", "image/jpeg", &noise(300_000, 9)),
        ],
    );
    assert_eq!(refused.status, 401);
    wait_until("the refused upload's objects are removed", || {
        server.stored_objects().len() == before && server.temp_files().is_empty()
    });
}

#[test]
fn a_reply_for_an_unknown_case_or_another_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "");
    let (case, _) = first_submission(&server);
    let cases = dir.path().join("cases");
    let b1 = dir.path().join("b1.tar");
    export(&server, &b1, false);
    assert!(open(&[&b1], &coalition.identity_files[0], &cases).0);
    let text_file = dir.path().join("t.txt");
    std::fs::write(&text_file, "We received it.").unwrap();
    let bundle = dir.path().join("r.tar");
    let out = amanat(&[
        "reply",
        "--cases",
        s(&cases),
        "--case",
        &case,
        "--text-file",
        s(&text_file),
        "--recipients",
        s(&coalition.recipients_file),
        "--out",
        s(&bundle),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stranger = age::x25519::Identity::generate().to_public().to_string();
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let edits: Vec<(&str, Edit)> = vec![
        (
            "holds no case",
            Box::new(|v| v["replies"][0]["case"] = "0123456789abcdef0123456789abcdef".into()),
        ),
        (
            "another recipient",
            Box::new(move |v| v["replies"][0]["reply_recipient"] = stranger.clone().into()),
        ),
    ];
    let before = server.stored_objects().len();
    for (expected, edit) in edits {
        let edited = dir.path().join("edited.tar");
        rewrite_tar(&bundle, &edited, |entries| {
            let mut v: serde_json::Value = serde_json::from_slice(&entries[0].1).unwrap();
            edit(&mut v);
            entries[0].1 = serde_json::to_vec(&v).unwrap();
        });
        let out = amanat(&["import-replies", s(&edited), "--data-dir", s(&server.data_dir)]);
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(expected),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(server.stored_objects().len(), before);
    }
}
