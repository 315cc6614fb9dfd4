//! A survivor in a real browser (Debian's Chromium, headless, JavaScript disabled)
//! fills the form, attaches a photo, sends it, and sees a codename; the key holder
//! decrypts exactly that photo. Driven over `WebDriver` (chromedriver).

use crate::common::*;
use serde_json::{json, Value};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub(crate) struct Browser {
    driver: Child,
    addr: SocketAddr,
    session: String,
}

impl Browser {
    /// Chromium with JavaScript off, as Tor Browser at "Safest".
    pub(crate) fn start(profile: &std::path::Path) -> Browser {
        Browser::start_with(profile, false)
    }

    /// Chromium with scripts allowed (Tor Browser at "Standard").
    pub(crate) fn start_with_scripts(profile: &std::path::Path) -> Browser {
        Browser::start_with(profile, true)
    }

    fn start_with(profile: &std::path::Path, scripts: bool) -> Browser {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is installed (apt-get install chromium chromium-driver)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_until("chromedriver answers", || {
            TcpStream::connect(addr)
                .ok()
                .and_then(|s| try_request(s, "GET", "/status", &[], b"").ok())
                .is_some_and(|r| r.status == 200)
        });
        let mut browser = Browser { driver, addr, session: String::new() };
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-quic",
                    format!("--user-data-dir={}", profile.display()),
                ],
                // Tor Browser at "Safest": no JavaScript at all (1: allowed).
                "prefs": {"profile.managed_default_content_settings.javascript":
                    if scripts { 1 } else { 2 }}
            }
        }}});
        let created = browser.call("POST", "/session", capabilities);
        browser.session = created["sessionId"].as_str().expect("a session").to_string();
        browser
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let (status, value) = self.try_call(method, path, body);
        assert_eq!(status, 200, "WebDriver {method} {path}: {value}");
        value
    }

    fn try_call(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        let body = if body.is_null() { Vec::new() } else { serde_json::to_vec(&body).unwrap() };
        let stream = TcpStream::connect(self.addr).unwrap();
        let response =
            try_request(stream, method, path, &[("Content-Type", "application/json")], &body)
                .expect("chromedriver answers");
        (response.status, response.json()["value"].clone())
    }

    fn session_call(&self, method: &str, path: &str, body: Value) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    pub(crate) fn open(&self, url: &str) {
        self.session_call("POST", "/url", json!({"url": url}));
    }

    pub(crate) fn find(&self, css: &str) -> String {
        let found =
            self.session_call("POST", "/element", json!({"using": "css selector", "value": css}));
        found[ELEMENT].as_str().unwrap().to_string()
    }

    pub(crate) fn exists(&self, css: &str) -> bool {
        let found =
            self.session_call("POST", "/elements", json!({"using": "css selector", "value": css}));
        found.as_array().is_some_and(|elements| !elements.is_empty())
    }

    pub(crate) fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css);
        self.session_call("POST", &format!("/element/{element}/value"), json!({"text": text}));
    }

    pub(crate) fn click(&self, css: &str) {
        let element = self.find(css);
        self.session_call("POST", &format!("/element/{element}/click"), json!({}));
    }

    /// The element's text. An element replaced while it was read (the page it was on
    /// gave way to the next one) is found again on the new page.
    pub(crate) fn text_of(&self, css: &str) -> String {
        for _ in 0..50 {
            let element = self.find(css);
            let path = format!("/session/{}/element/{element}/text", self.session);
            match self.try_call("GET", &path, Value::Null) {
                (200, text) => return text.as_str().unwrap().to_string(),
                (404, value) if value["error"] == "stale element reference" => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                (status, value) => panic!("WebDriver GET {path}: {status} {value}"),
            }
        }
        panic!("{css} went stale fifty times in a row");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let stream = TcpStream::connect(self.addr);
            if let Ok(stream) = stream {
                let _ =
                    try_request(stream, "DELETE", &format!("/session/{}", self.session), &[], b"");
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[test]
fn survivor_sends_a_photo_from_a_browser_without_javascript() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "");
    let photo = noise(2 * 1024 * 1024, 77);
    let photo_path = dir.path().join("injury-photo.jpg");
    std::fs::write(&photo_path, &photo).unwrap();

    let browser = Browser::start(&dir.path().join("profile"));
    browser.open(&format!("http://{}/", server.addr));
    browser.click("a.button");
    browser.type_into("#testimony", "Меня забрали из больницы и били в изоляторе.");
    browser.type_into("#city", "Алматы");
    browser.click("#readers-coalition");
    browser.type_into("#evidence", photo_path.to_str().unwrap());
    browser.click("button[type=submit]");

    // The upload runs after the click returns; the old page stays until the answer.
    wait_until("the receipt page is shown", || browser.exists("#codename"));
    let codename = browser.text_of("#codename");
    assert_eq!(codename.split_whitespace().count(), 5, "codename shown: {codename:?}");
    let reference = browser.text_of("#submission-id");
    assert_eq!(reference.len(), 32);

    // The key holder gets exactly what the browser sent.
    let mut manifest = None;
    for id in server.stored_objects() {
        let plain = decrypt(&server.object(&id), &coalition.identities[0]);
        if !is_padded(&plain, &photo) {
            manifest = Some(serde_json::from_slice::<Value>(&plain).unwrap());
        }
    }
    let manifest = manifest.expect("a manifest");
    assert_eq!(manifest["submission"], reference.as_str());
    assert_eq!(manifest["testimony"], "Меня забрали из больницы и били в изоляторе.");
    assert_eq!(
        manifest["fields"],
        json!([{"name": "city", "value": "Алматы"}, {"name": "consent_readers", "value": "coalition"}])
    );
    assert_eq!(manifest["attachments"][0]["name"], "injury-photo.jpg");
    assert_eq!(manifest["attachments"][0]["media_type"], "image/jpeg");
    assert_eq!(manifest["attachments"][0]["sha256"], sha256_hex(&photo));
}

#[test]
fn survivor_practices_the_codename_and_comes_back_to_add_a_photo_without_javascript() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "");
    let scar = noise(400_000, 78);
    let scar_path = dir.path().join("scar-now.jpg");
    std::fs::write(&scar_path, &scar).unwrap();

    let browser = Browser::start(&dir.path().join("profile"));
    browser.open(&format!("http://{}/submit", server.addr));
    browser.type_into("#testimony", "Меня избили в РОВД, следы уже зажили.");
    browser.click("#readers-lawyers");
    browser.click("button[type=submit]");
    wait_until("the receipt page is shown", || browser.exists("#codename"));
    let codename = browser.text_of("#codename");
    let case = browser.text_of("#submission-id");

    // Practice: typed back from paper, in capitals.
    browser.type_into("#typed", &codename.to_uppercase());
    browser.click("#practice");
    wait_until("the practice result", || browser.exists("#practice-result"));
    assert!(!browser.text_of("#practice-result").is_empty());
    assert!(browser.exists("#practice-result.correct"));

    // Days later: the codename opens the case, and a new photo goes to it.
    browser.open(&format!("http://{}/", server.addr));
    browser.click("#followup-link");
    browser.type_into("#codename", &codename);
    browser.click("button[type=submit]");
    wait_until("the case page is shown", || browser.exists("#received"));
    assert!(browser.exists("#no-replies"));
    browser.type_into("#testimony", "Фото шрама сегодня.");
    browser.type_into("#evidence", scar_path.to_str().unwrap());
    browser.click("form[action$='/followup/add'] button");
    wait_until("the addition is confirmed", || browser.exists("#added"));
    let rows = browser.session_call(
        "POST",
        "/elements",
        json!({"using": "css selector", "value": "#received tr"}),
    );
    assert_eq!(rows.as_array().unwrap().len(), 3, "a header and two submissions");

    // The key holder finds the photo in a second submission of the same case.
    let mut found = false;
    for id in server.stored_objects() {
        let plain = decrypt(&server.object(&id), &coalition.identities[0]);
        if let Ok(manifest) = serde_json::from_slice::<Value>(&plain) {
            if manifest["attachments"][0]["sha256"] == sha256_hex(&scar) {
                assert_eq!(manifest["case"], case.as_str());
                assert_ne!(manifest["submission"], case.as_str());
                found = true;
            }
        }
    }
    assert!(found, "the added photo is in the case");
}

impl Browser {
    /// A phone's width: the pages must fit it.
    fn phone(&self) {
        self.session_call("POST", "/window/rect", json!({"width": 360, "height": 780}));
    }

    pub(crate) fn screenshot(&self, name: &str) {
        use base64::Engine;
        let png = self.session_call("GET", "/screenshot", Value::Null);
        let bytes =
            base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), bytes).unwrap();
    }

    /// The right edge of an element, in CSS pixels.
    fn right_edge(&self, css: &str) -> f64 {
        let element = self.find(css);
        let rect = self.session_call("GET", &format!("/element/{element}/rect"), Value::Null);
        rect["x"].as_f64().unwrap() + rect["width"].as_f64().unwrap()
    }
}

#[test]
fn in_each_language_a_survivor_fills_the_form_on_a_phone_and_the_reviewer_reads_every_answer() {
    use crate::review::{export, open};
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "");
    let photo = noise(500_000, 99);
    let photo_path = dir.path().join("bruise.jpg");
    std::fs::write(&photo_path, &photo).unwrap();
    let browser = Browser::start(&dir.path().join("profile"));
    browser.phone();
    let base = format!("http://{}", server.addr);
    let stories = [
        ("kk", "Мені ауруханадан алып кетіп, полиция бөлімінде ұрды."),
        ("ru", "Меня забрали из больницы и били в отделе полиции."),
        ("en", "They took me from the hospital and beat me at the police station."),
    ];
    let mut sent = Vec::new();
    for (lang, story) in stories {
        browser.open(&format!("{base}/{lang}/"));
        assert!(browser.exists(&format!("html[lang={lang}]")));
        browser.screenshot(&format!("{lang}-index"));
        browser.open(&format!("{base}/{lang}/safety"));
        browser.screenshot(&format!("{lang}-safety"));
        browser.open(&format!("{base}/{lang}/submit"));
        browser.screenshot(&format!("{lang}-form"));
        assert!(browser.right_edge("form") <= 360.0, "{lang}: the form fits a phone");
        browser.type_into("#testimony", story);
        browser.type_into("#when", "2022-01-06");
        browser.type_into("#city", "Алматы");
        browser.click("#place-hospital");
        browser.click("#act-beating");
        browser.click("#act-taken_from_hospital");
        browser.type_into("#injuries_now", "scar on the left arm");
        browser.type_into("#detained_at", "2022-01-06 night");
        browser.type_into("#witnesses", "my neighbour in the ward");
        browser.click("#readers-lawyers");
        browser.click("#contact-no");
        browser.click("#help-medical");
        browser.type_into("#evidence", photo_path.to_str().unwrap());
        browser.click("#send");
        wait_until("the receipt page is shown", || browser.exists("#codename"));
        browser.screenshot(&format!("{lang}-receipt"));
        assert!(browser.right_edge("#codename") <= 360.0, "{lang}: the codename fits a phone");
        for css in ["#submission-id", "dl", "main"] {
            assert!(browser.right_edge(css) <= 360.0, "{lang}: {css} fits a phone");
        }
        let codename = browser.text_of("#codename");
        assert_eq!(codename.split_whitespace().count(), 5);
        sent.push((lang, story, browser.text_of("#submission-id")));
        browser.open(&format!("{base}/{lang}/followup"));
        browser.screenshot(&format!("{lang}-followup"));
        // A refusal in the page's language: the form without the testimony.
        browser.open(&format!("{base}/{lang}/nowhere"));
        browser.screenshot(&format!("{lang}-not-found"));
        assert!(browser.exists("#error"));
        assert!(browser.exists(&format!("html[lang={lang}]")), "{lang}: the 404 page too");
    }

    // The reviewer finds every answer, in the survivor's words and choices.
    let bundle = dir.path().join("b.tar");
    export(&server, &bundle, false);
    let cases = dir.path().join("cases");
    assert!(open(&[&bundle], &coalition.identity_files[0], &cases).0);
    for (lang, story, id) in sent {
        let case: Value =
            serde_json::from_slice(&std::fs::read(cases.join(&id).join("testimony.json")).unwrap())
                .unwrap();
        assert_eq!(case["testimony"], story);
        assert_eq!(case["language"], lang);
        let fields: Vec<(String, String)> = case["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["name"].as_str().unwrap().into(), f["value"].as_str().unwrap().into()))
            .collect();
        for expected in [
            ("when", "2022-01-06"),
            ("city", "Алматы"),
            ("place", "hospital"),
            ("acts", "beating"),
            ("acts", "taken_from_hospital"),
            ("injuries_now", "scar on the left arm"),
            ("detained_at", "2022-01-06 night"),
            ("witnesses", "my neighbour in the ward"),
            ("consent_readers", "lawyers"),
            ("contact_ok", "no"),
            ("help_wanted", "medical"),
        ] {
            assert!(
                fields.contains(&(expected.0.to_string(), expected.1.to_string())),
                "{lang}: {expected:?} in {fields:?}"
            );
        }
        let saved = std::fs::read(cases.join(&id).join("evidence/bruise.jpg")).unwrap();
        assert!(saved == photo);
        // The reviewer reads the answers under the form's headings, in the survivor's
        // language and their own (English here).
        let text = std::fs::read_to_string(cases.join(&id).join("testimony.txt")).unwrap();
        let report = std::fs::read_to_string(cases.join(&id).join("report.html")).unwrap();
        let (heading, place) = match lang {
            "kk" => ("Қашан және қайда / When and where", "Ауруханада / In a hospital"),
            "ru" => ("Когда и где / When and where", "В больнице / In a hospital"),
            _ => ("When and where", "In a hospital"),
        };
        for shown in [heading, place, "Beating", "2022-01-06 night"] {
            assert!(text.contains(shown), "{lang}: {shown:?} in testimony.txt:\n{text}");
            assert!(report.contains(shown), "{lang}: {shown:?} in report.html");
        }
    }
}
