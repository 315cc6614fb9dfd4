//! Every page and answer: the headers that keep a survivor's browser from leaking, no
//! script, nothing from another host, small enough for a slow phone link; refusals in
//! the page's language that hand back what the survivor wrote.

use crate::common::*;

const HEADERS: [(&str, &str); 7] = [
    (
        "content-security-policy",
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("referrer-policy", "no-referrer"),
    ("x-content-type-options", "nosniff"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("cache-control", "no-store"),
    ("x-frame-options", "DENY"),
];

/// The form's policy: the same, and its own scripts (resumable uploads) may run and
/// reach this server, nothing else.
const FORM_POLICY: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

fn check_headers(what: &str, response: &Response) {
    let form = what.ends_with("/submit");
    for (name, value) in HEADERS {
        let value = if form && name == "content-security-policy" { FORM_POLICY } else { value };
        assert_eq!(response.header(name), Some(value), "{what}: {name}");
    }
    let permissions = response.header("permissions-policy").unwrap_or("");
    for feature in ["camera=()", "microphone=()", "geolocation=()"] {
        assert!(permissions.contains(feature), "{what}: Permissions-Policy {permissions}");
    }
    assert!(response.header("server").is_none(), "{what}: no Server header");
}

#[test]
fn every_route_sends_the_safety_headers_and_pages_are_small_and_script_free() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "");
    let mut sizes = Vec::new();
    for lang in ["kk", "ru", "en"] {
        for page in ["", "submit", "safety", "followup"] {
            let path = format!("/{lang}/{page}");
            let r = get(server.addr, &path);
            assert_eq!(r.status, 200, "{path}");
            check_headers(&path, &r);
            let html = r.text();
            assert!(html.contains(&format!("<html lang=\"{lang}\">")), "{path}");
            assert_scripts_are_pinned(&path, &html, page == "submit");
            assert!(
                !html.contains("http://") && !html.contains("https://"),
                "{path}: no other host"
            );
            for other in ["kk", "ru", "en"] {
                assert!(
                    html.contains(&format!("href=\"/{other}/{page}\"")) || other == lang,
                    "{path}: switch to {other}"
                );
            }
            assert!(
                html.contains(&format!("href=\"/{lang}/safety\"")),
                "{path}: the safety page is linked"
            );
            assert!(r.body.len() < 60 * 1024, "{path}: {} bytes", r.body.len());
            sizes.push((path, r.body.len()));
        }
        // A receipt page, and a refusal page.
        let receipt = post_multipart(
            server.addr,
            &format!("/{lang}/submit"),
            &[text("testimony", "beaten"), text("consent_readers", "coalition")],
        );
        assert_eq!(receipt.status, 200);
        check_headers("receipt", &receipt);
        assert!(receipt.body.len() < 60 * 1024);
        sizes.push((format!("/{lang}/submit (receipt)"), receipt.body.len()));
    }
    // The form asks every question the reviewer's report knows, under its real name.
    let form = get(server.addr, "/en/submit").text();
    for section in amanat::form::SECTIONS {
        for field in section.fields {
            let name = field.name;
            assert!(form.contains(&format!("name=\"{name}\"")), "the form asks {name}");
        }
    }
    let css = get(server.addr, "/static/amanat.css");
    check_headers("stylesheet", &css);
    // The form's scripts are the files its integrity values name.
    let form = get(server.addr, "/kk/submit").text();
    for tag in form.split("<script").skip(1) {
        let attribute = |name: &str| {
            let start = tag.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
            tag[start..start + tag[start..].find('"').unwrap()].to_string()
        };
        let script = get(server.addr, &attribute("src"));
        check_headers("script", &script);
        assert_eq!(script.header("content-type"), Some("text/javascript; charset=utf-8"));
        use base64::Engine as _;
        use sha2::Digest as _;
        let digest = sha2::Sha384::digest(&script.body);
        let integrity =
            format!("sha384-{}", base64::engine::general_purpose::STANDARD.encode(digest));
        assert_eq!(attribute("integrity"), integrity, "{}", attribute("src"));
    }
    sizes.push(("/static/amanat.css".into(), css.body.len()));
    for (what, r) in [
        ("healthz", get(server.addr, "/healthz")),
        ("not found", get(server.addr, "/nowhere/at/all")),
        ("api refusal", post_multipart(server.addr, "/api/v1/submissions", &[])),
        ("bare path", get(server.addr, "/")),
    ] {
        check_headers(what, &r);
    }
    for (path, size) in &sizes {
        println!("page size {size:>6} bytes  {path}");
    }
}

#[test]
fn a_refused_form_answers_in_its_language_names_the_limit_and_hands_back_the_text() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "max_submission_bytes = 100000");
    let story = "Меня держали трое суток в ИВС без воды.";
    let refused = post_multipart(
        server.addr,
        "/ru/submit",
        &[
            text("testimony", story),
            text("consent_readers", "coalition"),
            file("evidence", "video.mp4", "video/mp4", &noise(300_000, 4)),
        ],
    );
    assert_eq!(refused.status, 413);
    let page = refused.text();
    assert!(page.contains("<html lang=\"ru\">"));
    assert!(page.contains("data-code=\"submission_too_large\""));
    assert!(page.contains("Файлы вместе слишком большие") && page.contains("97.7 KiB"), "{page}");
    assert!(page.contains(&format!(">{story}</textarea>")), "the text is back in its box");
    // The refusal sits next to the field it is about, and the form can be sent again.
    let (label, error, input) = (
        page.find("<label for=\"evidence\"").unwrap(),
        page.find("id=\"error\"").unwrap(),
        page.find("<input id=\"evidence\"").unwrap(),
    );
    assert!(label < error && error < input, "the error is at the evidence field");
    assert!(page.contains("action=\"/ru/submit\""));
    assert!(server.stored_objects().is_empty());

    // Consent is the form's other required answer.
    let no_consent = post_multipart(server.addr, "/kk/submit", &[text("testimony", story)]);
    assert_eq!(no_consent.status, 400);
    assert!(no_consent.text().contains("data-code=\"consent_missing\""));
    assert!(no_consent.text().contains("Мұны кім оқи алатынын"));
    let page = no_consent.text();
    assert!(page.find("id=\"readers-label\"").unwrap() < page.find("id=\"error\"").unwrap());
    assert!(server.stored_objects().is_empty());
}

#[test]
fn onion_location_is_sent_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let mut server = Server::start(dir.path(), &coalition, "");
    assert!(get(server.addr, "/en/").header("onion-location").is_none());
    let onion = "http://amanatexampleonionaddressxxxxxxxxxxxxxxxxxxxxxxxxxxxx.onion";
    let config = std::fs::read_to_string(&server.config).unwrap();
    std::fs::write(&server.config, format!("onion_location = \"{onion}\"\n{config}")).unwrap();
    server.restart();
    assert_eq!(get(server.addr, "/en/").header("onion-location"), Some(onion));
}

/// No page has a script but the form, and the form's are its own files, each pinned by
/// its SHA-384 (Subresource Integrity): none inline, none from elsewhere.
fn assert_scripts_are_pinned(path: &str, html: &str, form: bool) {
    let scripts: Vec<&str> = html.split("<script").skip(1).collect();
    if !form {
        assert!(scripts.is_empty(), "{path}: no script");
        return;
    }
    assert_eq!(scripts.len(), 2, "{path}: tus-js-client and ours");
    for script in scripts {
        let tag = &script[..script.find('>').unwrap()];
        assert!(tag.contains(" src=\"/static/"), "{path}: {tag}");
        assert!(tag.contains(" integrity=\"sha384-"), "{path}: {tag}");
        assert!(script[tag.len() + 1..].starts_with("</script>"), "{path}: nothing inline");
    }
}
