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

fn check_headers(what: &str, response: &Response) {
    for (name, value) in HEADERS {
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
            assert!(!html.to_lowercase().contains("<script"), "{path}: no script");
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
