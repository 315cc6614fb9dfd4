//! The API held to its contract (docs/openapi.yaml) by tools not written here:
//! openapi-spec-validator checks the document against the `OpenAPI` 3.1 schema, and
//! schemathesis, a property-based tester, sends the live server what the document allows
//! and much that it does not. Every answer must be what the document says; the server
//! must stay up with its memory bounded; and nothing refused may be stored.

use crate::common::{amanat, get, peak_memory_kib, Coalition, Server};
use std::path::PathBuf;
use std::process::Command;

/// The cached venv with schemathesis and openapi-spec-validator (tests/run-all.sh).
fn contract_tools() -> PathBuf {
    let venv = std::env::var_os("AMANAT_CONTRACT_VENV").map_or_else(
        || {
            let home = || PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache");
            std::env::var_os("XDG_CACHE_HOME")
                .map_or_else(home, PathBuf::from)
                .join("amanat-contract")
        },
        PathBuf::from,
    );
    assert!(
        venv.join("bin/schemathesis").exists(),
        "{} is missing: tests/run-all.sh installs schemathesis",
        venv.display()
    );
    venv
}

fn said(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn the_contract_is_a_valid_openapi_3_1_document() {
    let venv = contract_tools();
    let document = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.yaml");
    let out = Command::new(venv.join("bin/openapi-spec-validator"))
        .args(["--schema", "3.1.0", document])
        .output()
        .unwrap();
    assert!(out.status.success(), "openapi-spec-validator: {}", said(&out));
}

#[test]
fn the_live_server_answers_schemathesis_as_its_contract_says_and_stores_only_what_it_acknowledged()
{
    let venv = contract_tools();
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 3);
    // Small limits keep the run short; room for every upload schemathesis creates.
    let limits = "max_submission_bytes = 1048576\n[uploads]\nmax_held = 256";
    let server = Server::start(dir.path(), &coalition, limits);
    let base = format!("http://{}", server.addr);
    let har = dir.path().join("schemathesis.har");
    // The document the server itself serves, so that serving it is tested too.
    let out = Command::new(venv.join("bin/schemathesis"))
        .current_dir(dir.path())
        .env("PYTHONPATH", concat!(env!("CARGO_MANIFEST_DIR"), "/tests"))
        .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
        .args([
            "--config-file",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis.toml"),
            "run",
            &format!("{base}/api/v1/openapi.json"),
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,\
             response_schema_conformance,response_headers_conformance,negative_data_rejection",
            "--mode",
            "all",
            "--max-examples",
            "40",
            "--seed",
            "20261208",
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--no-color",
            "--report",
            "har",
            "--report-har-path",
        ])
        .arg(&har)
        .output()
        .unwrap();
    let report = said(&out);
    assert!(out.status.success(), "schemathesis found failures:\n{report}");

    // Still up, its memory bounded.
    assert_eq!(get(server.addr, "/healthz").status, 200, "the server is down after schemathesis");
    let peak_mib = peak_memory_kib(server.pid()) / 1024;
    assert!(peak_mib < 96, "the server's peak memory was {peak_mib} MiB");

    // Nothing refused was stored: the store holds exactly the submissions acknowledged.
    let har: serde_json::Value = serde_json::from_slice(&std::fs::read(&har).unwrap()).unwrap();
    let entries = har["log"]["entries"].as_array().expect("HAR entries");
    let acknowledged = entries
        .iter()
        .filter(|e| {
            let url = e["request"]["url"].as_str().unwrap_or_default();
            let path = url.strip_prefix(&base).unwrap_or(url).split('?').next().unwrap();
            e["request"]["method"] == "POST"
                && e["response"]["status"] == 201
                && ["/api/v1/submissions", "/api/v1/sealed", "/api/v1/followup/submissions"]
                    .contains(&path)
        })
        .count();
    let status = amanat(&["status", "--json", "--data-dir", server.data_dir.to_str().unwrap()]);
    assert!(status.status.success(), "{}", said(&status));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        status["submissions"].as_u64().unwrap() as usize,
        acknowledged,
        "the store holds other submissions than the {acknowledged} acknowledged"
    );
    let summary = report.lines().skip_while(|l| !l.contains("SUMMARY")).collect::<Vec<_>>();
    eprintln!(
        "schemathesis: {} requests, {acknowledged} submissions acknowledged, server peak \
         {peak_mib} MiB\n{}",
        entries.len(),
        summary.join("\n")
    );
}
