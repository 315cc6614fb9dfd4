//! Replicas (issue 18), against a real Garage started here: nothing acknowledged is
//! lost when the server is seized or destroyed, nothing readable reaches the bucket,
//! and whatever a seized server's credentials do to the bucket is found by name.

use crate::common::garage::{self, Garage};
use crate::common::*;
use crate::review::{open, submit, Sent};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Garage is installed by tests/run-all.sh; a developer's quick `cargo test` without it
/// is told so, loudly, instead of failing on a missing tool.
fn garage_or_skip() -> bool {
    garage::here_or_skip()
}

fn status(server: &Server) -> serde_json::Value {
    let out = amanat(&["status", "--json", "--data-dir", s(&server.data_dir)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Waits (up to a deadline that only stops a broken run from hanging) until every
/// replica holds the whole log.
fn wait_replicated(server: &Server) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let status = status(server);
        let replicas = status["replicas"].as_array().unwrap();
        assert!(!replicas.is_empty());
        if replicas.iter().all(|r| r["backlog"] == 0) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "replication did not finish: {status:#}\n{}",
            server.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A server replicating to `garage`'s bucket, with these `[replication]` settings.
fn start_server(dir: &Path, coalition: &Coalition, garage: &Garage, replication: &str) -> Server {
    start_server_with(dir, coalition, garage, "", replication)
}

/// `start_server`, with more settings of the replica (`replica`, lines of its table).
fn start_server_with(
    dir: &Path,
    coalition: &Coalition,
    garage: &Garage,
    replica: &str,
    replication: &str,
) -> Server {
    let replicas = garage.replica_config(dir, "partner") + replica;
    Server::start_configured(
        dir,
        &dir.join("data"),
        coalition,
        &format!("{replicas}\n[replication]\n{replication}\n"),
        "",
    )
}

/// A configuration naming only the replica, as a reviewer's networked machine has.
fn puller_config(dir: &Path, garage: &Garage) -> PathBuf {
    let path = dir.join("puller.toml");
    std::fs::write(&path, garage.replica_config(dir, "partner")).unwrap();
    path
}

fn pull(config: &Path, out: &Path) -> (bool, serde_json::Value) {
    pull_with_state(config, out, None)
}

/// `replica pull`, remembering what it carried in `state` when given.
fn pull_with_state(config: &Path, out: &Path, state: Option<&Path>) -> (bool, serde_json::Value) {
    match state {
        Some(state) => pull_with(config, out, &["--state", s(state)]),
        None => pull_with(config, out, &[]),
    }
}

/// `replica pull --json` with more arguments.
fn pull_with(config: &Path, out: &Path, more: &[&str]) -> (bool, serde_json::Value) {
    let mut args =
        vec!["replica", "pull", "--config", s(config), "--replica", "partner", "--out", s(out)];
    args.extend(more);
    args.push("--json");
    let output = amanat(&args);
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&output.stderr)));
    (output.status.success(), report)
}

fn audit(config: &Path) -> (bool, Vec<String>) {
    audit_with_state(config, None)
}

/// `replica audit`, held to (and remembering in) `state` when given.
fn audit_with_state(config: &Path, state: Option<&Path>) -> (bool, Vec<String>) {
    let mut args = vec!["replica", "audit", "--config", s(config), "--replica", "partner"];
    if let Some(state) = state {
        args.extend(["--state", s(state)]);
    }
    args.push("--json");
    let output = amanat(&args);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&output.stderr)));
    let problems = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    (output.status.success(), problems)
}

/// Every sent file comes back byte for byte from the opened cases.
fn assert_opened(
    out: &Path,
    outcomes: &std::collections::HashMap<String, serde_json::Value>,
    sent: &[Sent],
) {
    for s in sent {
        assert_eq!(outcomes[&s.id]["status"], "opened", "{:#}", outcomes[&s.id]);
        let case = out.join(&s.id);
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(case.join("testimony.json")).unwrap()).unwrap();
        let files = json["files"].as_array().unwrap();
        assert_eq!(files.len(), s.files.len());
        for (file, (name, data)) in files.iter().zip(&s.files) {
            let saved = std::fs::read(case.join(file["saved_as"].as_str().unwrap())).unwrap();
            assert!(saved == *data, "{name} comes back byte for byte");
        }
    }
}

#[test]
fn a_destroyed_server_is_recovered_from_its_replica_alone_byte_for_byte() {
    if !garage_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let garage = Garage::single(&dir.path().join("partner"));
    let coalition = Coalition::new(dir.path(), 2);
    let mut server = start_server(dir.path(), &coalition, &garage, "ack = \"local\"");
    let canary_text = "CANARY-TESTIMONY-Qw7Zp";
    let text_only = post_multipart(
        server.addr,
        "/api/v1/submissions",
        &[text("testimony", &format!("{canary_text}: beaten in the basement of the akimat"))],
    );
    assert_eq!(text_only.status, 201);
    let mut sent = vec![
        crate::review::submit_with(
            &server,
            1,
            &[("CANARY-NAME-photo.jpg", 2 << 20), ("scan.jpg", 30_000)],
            &[("consent_readers", "lawyers")],
        ),
        submit(&server, 2, &[("video.mp4", 200 << 20)]),
    ];
    let receipts: Vec<serde_json::Value> = vec![text_only.json()["receipt"].clone()];
    let status = wait_replicated(&server);
    let server_key = status["server_key"].as_str().unwrap().to_string();
    assert_eq!(status["replicas"][0]["name"], "partner");
    assert!(status["replicas"][0]["last_success"].is_string(), "{status:#}");

    // Nothing readable in the bucket: no testimony text, no file name, no file bytes.
    let keys = garage.keys();
    assert!(keys.iter().any(|k| k.contains("/journal/")), "{keys:?}");
    let photo = &sent[0].files[0].1;
    for key in &keys {
        let bytes = garage.get(key);
        for canary in
            [canary_text.as_bytes(), b"CANARY-NAME", &photo[1000..1064], "Алматы".as_bytes()]
        {
            assert!(!contains(&bytes, canary), "{key} holds plaintext");
        }
    }
    // Credentials appear in no log.
    assert!(!server.logs().contains(garage::SECRET));

    // The seizure: the server and its data directory are gone.
    server.kill();
    std::fs::remove_dir_all(&server.data_dir).unwrap();

    let config = puller_config(&dir.path().join("reviewer"), &garage);
    let pulled = dir.path().join("usb/replica.tar");
    std::fs::create_dir_all(pulled.parent().unwrap()).unwrap();
    let (ok, report) = pull(&config, &pulled);
    assert!(ok, "{report:#}");
    assert!(report["problems"].as_array().unwrap().is_empty());
    let out = dir.path().join("cases");
    let (ok, outcomes) = open(&[&pulled], &coalition.identity_files[1], &out);
    assert!(ok, "{outcomes:?}");
    sent.push(Sent::text_only(text_only.json()["id"].as_str().unwrap()));
    assert_opened(&out, &outcomes, &sent);
    let testimony = std::fs::read_to_string(out.join(&sent[2].id).join("testimony.json")).unwrap();
    assert!(testimony.contains(canary_text));

    // The survivors' receipts still verify against the key the journal carries.
    for receipt in &receipts {
        let file = dir.path().join("receipt.json");
        std::fs::write(&file, serde_json::to_vec(receipt).unwrap()).unwrap();
        let out = amanat(&["verify", s(&file), "--json", "--server-key", &server_key]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    }
    let (ok, problems) = audit(&config);
    assert!(ok && problems.is_empty(), "{problems:?}");

    // A lawyer's package made from the replica alone verifies against the server's key.
    let lawyer_path = dir.path().join("disclosure");
    std::fs::create_dir_all(lawyer_path.join("offline")).unwrap();
    let disclosed = crate::disclose::disclose_case(&lawyer_path, &coalition, &pulled, &sent[0].id);
    let out = amanat(&[
        "verify",
        s(&disclosed.package),
        "--out",
        s(&lawyer_path.join("lawyer-out")),
        "--identity",
        s(&disclosed.lawyer_key),
        "--server-key",
        &server_key,
        "--custody-key",
        &disclosed.custody_key,
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let photo_back = crate::common::all_files(&lawyer_path.join("lawyer-out"))
        .iter()
        .any(|f| std::fs::read(f).is_ok_and(|b| b == sent[0].files[0].1));
    assert!(photo_back, "the lawyer gets the photo back byte for byte");
}

/// Five submissions of a testimony and one photo of `size` bytes: each one's objects,
/// from its receipt.
fn submit_five(server: &Server, size: usize) -> Vec<Vec<String>> {
    (1..=5u64)
        .map(|n| {
            let response = post_multipart(
                server.addr,
                "/api/v1/submissions",
                &[
                    text("testimony", "held"),
                    file("evidence", "p.jpg", "image/jpeg", &noise(size, n)),
                ],
            );
            assert_eq!(response.status, 201);
            receipt_objects(&response.json())
        })
        .collect()
}

/// The bucket's object keys (journal segments aside).
fn object_keys(garage: &Garage) -> Vec<String> {
    garage.keys().into_iter().filter(|k| k.contains("/objects/")).collect()
}

/// What the server stores, as the keys its replica must hold.
fn expected_object_keys(server: &Server, server_id: &str) -> Vec<String> {
    let out = amanat(&["objects", "--data-dir", s(&server.data_dir)]);
    assert!(out.status.success());
    let mut keys: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|id| format!("{server_id}/objects/{id}"))
        .collect();
    keys.sort();
    keys
}

#[test]
fn a_replica_that_is_down_delays_no_survivor_and_a_sigkill_mid_push_leaves_it_whole() {
    if !garage_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut garage = Garage::single(&dir.path().join("partner"));
    let coalition = Coalition::new(dir.path(), 1);
    let mut server = start_server(dir.path(), &coalition, &garage, "ack = \"local\"");
    submit(&server, 1, &[("a.jpg", 100_000)]);
    let server_id = wait_replicated(&server)["server"].as_str().unwrap().to_string();

    // The partner's node goes away: intake goes on, the backlog grows and is reported.
    garage.nodes[0].kill();
    for n in 2..5 {
        submit(&server, n, &[("b.jpg", 300_000)]);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    let down = loop {
        let status = status(&server);
        if status["replicas"][0]["last_error"].is_string() {
            break status;
        }
        assert!(Instant::now() < deadline, "no failure reported: {status:#}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let replica = &down["replicas"][0];
    assert!(replica["backlog"].as_u64().unwrap() >= 3, "{down:#}");
    assert!(replica["oldest_pending"].as_str().unwrap().ends_with(":00:00Z"), "{down:#}");
    let shown = amanat(&["status", "--data-dir", s(&server.data_dir)]);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("BACKLOG") && shown.contains("LAST PUSH FAILED"), "{shown}");

    // It comes back: the backlog drains.
    garage.nodes[0].start();
    wait_replicated(&server);
    assert_eq!(object_keys(&garage), expected_object_keys(&server, &server_id));

    // SIGKILL while a large object is on its way; after restart the replica is whole,
    // with no object twice and none in part.
    let big = noise(48 << 20, 7);
    let response = post_multipart(
        server.addr,
        "/api/v1/submissions",
        &[text("testimony", "the video"), file("evidence", "v.mp4", "video/mp4", &big)],
    );
    assert_eq!(response.status, 201);
    server.kill();
    server.restart();
    wait_replicated(&server);
    assert_eq!(object_keys(&garage), expected_object_keys(&server, &server_id));
    let config = puller_config(&dir.path().join("reviewer"), &garage);
    let (ok, problems) = audit(&config);
    assert!(ok && problems.is_empty(), "{problems:?}");
}

#[test]
fn deleted_replaced_dropped_and_edited_in_the_replica_are_each_found_by_name() {
    if !garage_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let garage = Garage::single(&dir.path().join("partner"));
    let coalition = Coalition::new(dir.path(), 1);
    let mut server = start_server(dir.path(), &coalition, &garage, "segment_leaves = 2");
    // Each submission's objects, from its receipt's leaf.
    let sent = submit_five(&server, 200_000);
    let server_id = wait_replicated(&server)["server"].as_str().unwrap().to_string();
    let config = puller_config(&dir.path().join("reviewer"), &garage);
    let (ok, problems) = audit(&config);
    assert!(ok && problems.is_empty(), "{problems:?}");

    // Objects: one of the first submission replaced by other bytes of its length, one
    // of the second deleted.
    let key = |id: &String| format!("{server_id}/objects/{id}");
    let (replaced, deleted) = (&key(&sent[0][0]), &key(&sent[1][0]));
    let original = garage.get(replaced);
    garage.put(replaced, &noise(original.len(), 99), dir.path());
    garage.delete(deleted);
    let (ok, problems) = audit(&config);
    assert!(!ok);
    let id = |key: &str| key.rsplit('/').next().unwrap().to_string();
    assert!(
        problems.iter().any(|p| p.contains(&id(replaced)) && p.contains("replaced")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains(&id(deleted)) && p.contains("deleted")),
        "{problems:?}"
    );
    // `open` names them too, and opens every other submission.
    let pulled = dir.path().join("pull-1.tar");
    let (ok, report) = pull(&config, &pulled);
    assert!(!ok, "the pull reports what it could not copy: {report:#}");
    let out = dir.path().join("cases");
    let (ok, outcomes) = open(&[&pulled], &coalition.identity_files[0], &out);
    assert!(!ok);
    let failed: Vec<&serde_json::Value> =
        outcomes.values().filter(|o| o["status"] == "failed").collect();
    assert_eq!(failed.len(), 2, "{outcomes:#?}");
    for outcome in &failed {
        let reason = outcome["reason"].as_str().unwrap();
        assert!(reason.contains(&id(replaced)) || reason.contains(&id(deleted)), "{reason}");
    }
    assert_eq!(outcomes.values().filter(|o| o["status"] == "opened").count(), 3);

    // Segments: the one of leaves 2..4 dropped, the last one's body edited.
    let segments: Vec<String> =
        garage.keys().into_iter().filter(|k| k.contains("/journal/")).collect();
    assert_eq!(segments.len(), 3, "{segments:?}");
    assert!(segments[1].ends_with("00000000000000000002.seg"));
    garage.delete(&segments[1]);
    let mut edited = garage.get(&segments[2]);
    // A byte of the encrypted body (which begins with age's magic line).
    let magic = b"age-encryption.org/v1";
    let at = edited.windows(magic.len()).position(|w| w == magic).unwrap() + 40;
    edited[at] ^= 1;
    garage.put(&segments[2], &edited, dir.path());
    let (_, problems) = audit(&config);
    assert!(problems.iter().any(|p| p.contains("misses leaves 2..4")), "{problems:?}");
    assert!(
        problems.iter().any(|p| p.contains("segment 4") && p.contains("altered")),
        "{problems:?}"
    );
    let pulled = dir.path().join("pull-2.tar");
    pull(&config, &pulled);
    let (ok, outcomes) =
        open(&[&pulled], &coalition.identity_files[0], &dir.path().join("cases-2"));
    assert!(!ok);
    let refused = &outcomes[&format!("{} (server {server_id})", pulled.display())];
    assert_eq!(refused["status"], "failed");
    let reason = refused["reason"].as_str().unwrap();
    assert!(reason.contains("altered") || reason.contains("misses leaves 2..4"), "{reason}");

    // The server, at its next start, puts back what the bucket lost of what it pushed
    // (the deleted object, one cut short, the dropped segment); what was replaced or
    // edited in place, at its length, stays for the audit to name.
    let cut = key(&sent[2][0]);
    let whole = garage.get(&cut);
    garage.put(&cut, &whole[..whole.len() / 2], dir.path());
    assert!(audit(&config).1.iter().any(|p| p.contains(&id(&cut))));
    server.kill();
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(120);
    let problems = loop {
        let (_, problems) = audit(&config);
        if !problems.iter().any(|p| {
            p.contains(&id(deleted)) || p.contains(&id(&cut)) || p.contains("misses leaves")
        }) {
            break problems;
        }
        assert!(Instant::now() < deadline, "{problems:?}\n{}", server.logs());
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(problems.iter().any(|p| p.contains(&id(replaced))), "{problems:?}");
    assert!(server.logs().contains("put back"), "{}", server.logs());
}

#[test]
fn a_three_node_cluster_losing_a_node_mid_upload_still_holds_every_acknowledged_submission() {
    if !garage_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut garage = Garage::cluster(&dir.path().join("partners"), 3);
    let coalition = Coalition::new(dir.path(), 1);
    let server = start_server(dir.path(), &coalition, &garage, "ack = \"local\"");
    let mut sent = Vec::new();
    for n in 1..=8 {
        if n == 4 {
            // A partner's node dies with uploads under way.
            garage.nodes[2].kill();
        }
        sent.push(submit(&server, n, &[("f.jpg", 3 << 20)]));
    }
    let server_id = wait_replicated(&server)["server"].as_str().unwrap().to_string();
    assert_eq!(object_keys(&garage), expected_object_keys(&server, &server_id));
    let config = puller_config(&dir.path().join("reviewer"), &garage);
    let (ok, problems) = audit(&config);
    assert!(ok && problems.is_empty(), "{problems:?}");
    let pulled = dir.path().join("pull.tar");
    assert!(pull(&config, &pulled).0);
    let out = dir.path().join("cases");
    let (ok, outcomes) = open(&[&pulled], &coalition.identity_files[0], &out);
    assert!(ok, "{outcomes:#?}");
    assert_opened(&out, &outcomes, &sent);
}

#[test]
fn with_ack_replicated_the_receipt_waits_for_the_replica_and_says_plainly_when_it_cannot() {
    if !garage_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut garage = Garage::single(&dir.path().join("partner"));
    let coalition = Coalition::new(dir.path(), 1);
    let server = start_server(
        dir.path(),
        &coalition,
        &garage,
        "ack = \"replicated\"\nmin_replicas = 1\nack_deadline_secs = 3",
    );
    let send = || {
        let response = post_multipart(
            server.addr,
            "/api/v1/submissions",
            &[
                text("testimony", "held"),
                file("evidence", "p.jpg", "image/jpeg", &noise(150_000, 3)),
            ],
        );
        assert_eq!(response.status, 201, "{}", response.text());
        response.json()
    };
    let form = |lang: &str| {
        let page = post_multipart(
            server.addr,
            &format!("/{lang}/submit"),
            &[text("testimony", "held"), text("consent_readers", "coalition")],
        );
        assert_eq!(page.status, 200, "{}", page.text());
        page.text()
    };
    // Up: the 201 comes once the replica holds it, objects and journal; the form's
    // receipt page tells the survivor a copy is abroad.
    assert!(form("en").contains("kept, encrypted, by a partner organisation"));
    let first = send();
    assert_eq!(first["replication"]["complete"], true, "{first:#}");
    assert_eq!(first["replication"]["replicas"], 1);
    let server_id = status(&server)["server"].as_str().unwrap().to_string();
    let keys = garage.keys();
    for object in receipt_objects(&first) {
        assert!(keys.contains(&format!("{server_id}/objects/{object}")), "{keys:?}");
    }
    // Down: still acknowledged (it is durable here), and it says so.
    garage.nodes[0].kill();
    let second = send();
    assert_eq!(second["replication"]["complete"], false, "{second:#}");
    assert!(second["replication"]["message"].as_str().unwrap().contains("not yet copied"));
    // And the page says so in the survivor's language, and that nothing needs sending again.
    assert!(form("ru").contains("Ничего отправлять заново не нужно"));
    assert!(form("kk").contains("Ештеңені қайта жіберудің қажеті жоқ"));
    garage.nodes[0].start();
    wait_replicated(&server);
}

#[test]
fn a_purge_keeps_what_a_replica_lacks_and_replication_goes_on_after_it() {
    if !garage_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut garage = Garage::single(&dir.path().join("partner"));
    let coalition = Coalition::new(dir.path(), 1);
    let server = start_server(dir.path(), &coalition, &garage, "ack = \"local\"");
    let purge = || {
        let out = amanat(&[
            "purge",
            "--data-dir",
            s(&server.data_dir),
            "--exported-before",
            "0",
            "--json",
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()["purged_submissions"]
            .as_u64()
            .unwrap()
    };
    // Replicated, exported, purged: the growing journal segment still names it.
    crate::review::submit(&server, 1, &[("a.jpg", 50_000)]);
    wait_replicated(&server);
    crate::review::export(&server, &dir.path().join("b1.tar"), false);
    assert_eq!(purge(), 1);
    // Exported but not in the replica (it is down): the purge holds it back.
    garage.nodes[0].kill();
    crate::review::submit(&server, 2, &[("b.jpg", 60_000)]);
    crate::review::export(&server, &dir.path().join("b2.tar"), false);
    assert_eq!(purge(), 0, "a purge took what no replica holds yet");
    garage.nodes[0].start();
    crate::review::submit(&server, 3, &[("c.jpg", 70_000)]);
    wait_replicated(&server);
    assert_eq!(purge(), 1);
    let server_id = status(&server)["server"].as_str().unwrap().to_string();
    let keys = garage.keys();
    assert_eq!(
        keys.iter().filter(|k| k.starts_with(&format!("{server_id}/objects/"))).count(),
        6,
        "{keys:?}"
    );
    let config = puller_config(&dir.path().join("reviewer"), &garage);
    let (ok, problems) = audit(&config);
    assert!(ok && problems.is_empty(), "{problems:?}");
}

#[test]
fn what_is_removed_whole_is_found_by_the_next_audit_and_no_pull_skips_what_no_laptop_opened() {
    if !garage_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let garage = Garage::single(&dir.path().join("partner"));
    let coalition = Coalition::new(dir.path(), 1);
    let server = start_server(dir.path(), &coalition, &garage, "segment_leaves = 2");
    let sent = submit_five(&server, 50_000);
    let server_id = wait_replicated(&server)["server"].as_str().unwrap().to_string();
    drop(server);
    let reviewer = dir.path().join("reviewer");
    let config = puller_config(&reviewer, &garage);
    let audit_state = reviewer.join("audit-state.json");
    let (ok, problems) = audit_with_state(&config, Some(&audit_state));
    assert!(ok && problems.is_empty(), "{problems:?}");
    // A junk segment far ahead is reported, and once it is gone leaves no trace: what
    // an audit finds wrong is never learnt as the journal's new length.
    let junk = format!("{server_id}/journal/09999999999999999999.seg");
    garage.put(&junk, b"not a segment", dir.path());
    let (ok, _) = audit_with_state(&config, Some(&audit_state));
    assert!(!ok);
    garage.delete(&junk);
    let (ok, problems) = audit_with_state(&config, Some(&audit_state));
    assert!(ok && problems.is_empty(), "{problems:?}");

    // The laptop opens everything; the networked machine remembers what it pulled.
    let pull_state = reviewer.join("pull-state.json");
    // A pull that could not copy everything does not move its state on: the next one
    // carries everything again.
    let missing = format!("{server_id}/objects/{}", sent[1][0]);
    let original = garage.get(&missing);
    garage.delete(&missing);
    let (ok, _) = pull_with_state(&config, &dir.path().join("pull-0.tar"), Some(&pull_state));
    assert!(!ok);
    garage.put(&missing, &original, dir.path());
    // Junk beside the journal (a notice that is none, an attestation file of no
    // checkpoint) is reported, but excuses and skips nothing, so it holds nothing back:
    // whoever can write the bucket cannot make every pull a full one.
    let junk = [
        format!("{server_id}/purged/2026120100-0123456789abcdef.notice"),
        format!("{server_id}/attestations/3.checkpoint"),
    ];
    for key in &junk {
        garage.put(key, b"junk", dir.path());
    }
    let first = dir.path().join("pull-1.tar");
    let (ok, report) = pull_with_state(&config, &first, Some(&pull_state));
    assert!(!ok, "{report:#}");
    assert_eq!(report["problems"].as_array().unwrap().len(), 1, "{report:#}");
    assert!(report["problems"][0].as_str().unwrap().contains("purge notice"), "{report:#}");
    assert_eq!(report["servers"][0]["new_leaves"], 5, "{report:#}");
    let identity = &coalition.identity_files[0];
    let (ok, outcomes) = open(&[&first], identity, &dir.path().join("cases"));
    assert!(ok, "{outcomes:#?}");
    assert_eq!(outcomes.values().filter(|o| o["status"] == "opened").count(), 5);

    // Only the servers named come along: another in the bucket is left out by name,
    // and one named but absent is a problem.
    let named = dir.path().join("pull-named.tar");
    let (ok, report) = pull_with(&config, &named, &["--server", "0000000000000000"]);
    assert!(!ok);
    assert_eq!(report["left_out"][0], server_id, "{report:#}");
    assert!(report["servers"].as_array().unwrap().is_empty(), "{report:#}");
    assert!(report["problems"][0].as_str().unwrap().contains("holds no journal"), "{report:#}");
    let named = dir.path().join("pull-named-2.tar");
    let (_, report) = pull_with(&config, &named, &["--server", &server_id]);
    assert!(report["left_out"].as_array().unwrap().is_empty(), "{report:#}");
    assert_eq!(report["servers"][0]["objects"], 10, "five manifests, five files: {report:#}");

    // A second laptop that never opened the first pull opens what the second carries,
    // and fails by name each submission before it that it has no case of, rather than
    // skip them on the word of the pull file's unsigned index.
    let second = dir.path().join("pull-2.tar");
    let (_, report) = pull_with_state(&config, &second, Some(&pull_state));
    assert_eq!(report["servers"][0]["new_leaves"], 1, "only the last segment again: {report:#}");
    for key in &junk {
        garage.delete(key);
    }
    let other_laptop = dir.path().join("other-laptop");
    std::fs::create_dir_all(&other_laptop).unwrap();
    let other_identity = other_laptop.join("identity.txt");
    std::fs::copy(identity, &other_identity).unwrap();
    let (ok, outcomes) = open(&[&second], &other_identity, &dir.path().join("cases-other"));
    assert!(!ok);
    assert_eq!(outcomes.values().filter(|o| o["status"] == "opened").count(), 1, "{outcomes:#?}");
    let not_carried = outcomes.values().filter(|o| {
        o["status"] == "failed"
            && o["reason"].as_str().is_some_and(|r| r.contains("comes before log entry 4"))
    });
    assert_eq!(not_carried.count(), 4, "{outcomes:#?}");
    // The first laptop, which has every case, opens the same file with no word.
    let (ok, outcomes) = open(&[&second], identity, &dir.path().join("cases"));
    assert!(ok, "{outcomes:#?}");

    // A segment dropped from the middle: a laptop recovering from the replica still
    // opens every case before it, and fails, naming the gap, for the rest.
    let segments: Vec<String> =
        garage.keys().into_iter().filter(|k| k.contains("/journal/")).collect();
    let middle = garage.get(&segments[1]);
    garage.delete(&segments[1]);
    let fourth = dir.path().join("pull-4.tar");
    pull(&config, &fourth);
    let (ok, outcomes) = open(&[&fourth], &other_identity, &dir.path().join("cases-gap"));
    assert!(!ok);
    let stopped = &outcomes[&format!("{} (server {server_id})", fourth.display())];
    assert_eq!(stopped["status"], "failed", "{outcomes:#?}");
    assert!(stopped["reason"].as_str().unwrap().contains("misses leaves 2..4"), "{stopped:#}");
    assert_eq!(outcomes.values().filter(|o| o["status"] == "opened").count(), 2, "{outcomes:#?}");
    garage.put(&segments[1], &middle, dir.path());

    // The seized server's credentials remove the journal's end and its objects, whole:
    // one audit alone sees a consistent, shorter replica; the audit with its state
    // names what is gone.
    let segments: Vec<String> =
        garage.keys().into_iter().filter(|k| k.contains("/journal/")).collect();
    assert!(segments[2].ends_with("00000000000000000004.seg"), "{segments:?}");
    garage.delete(&segments[2]);
    for object in &sent[4] {
        garage.delete(&format!("{server_id}/objects/{object}"));
    }
    let (ok, problems) = audit(&config);
    assert!(ok && problems.is_empty(), "{problems:?}");
    let (ok, problems) = audit_with_state(&config, Some(&audit_state));
    assert!(!ok);
    assert!(
        problems.iter().any(|p| p.contains("ends at log entry 4") && p.contains("held 5")),
        "{problems:?}"
    );
    // And again at the next audit: what was seen once is not forgotten.
    let (_, again) = audit_with_state(&config, Some(&audit_state));
    assert_eq!(again, problems);

    // The laptop that verified five entries is told plainly the replica holds four.
    let third = dir.path().join("pull-3.tar");
    assert!(pull(&config, &third).0);
    let (ok, outcomes) = open(&[&third], identity, &dir.path().join("cases"));
    assert!(ok, "{outcomes:#?}");
    let behind = &outcomes[&format!("{} (server {server_id})", third.display())];
    assert_eq!(behind["status"], "replica_behind", "{outcomes:#?}");
    assert!(behind["reason"].as_str().unwrap().contains("only up to entry 4"), "{behind:#}");

    // Everything of the server deleted: the audit with its state says so.
    for key in garage.keys() {
        garage.delete(&key);
    }
    let (ok, problems) = audit_with_state(&config, Some(&audit_state));
    assert!(!ok);
    assert!(
        problems.iter().any(|p| p.contains(&server_id) && p.contains("whole journal is gone")),
        "{problems:?}"
    );

    // The server's id under another key, encrypting to recipients of its own (its
    // index taken and its key replaced, or an impostor holding the bucket's credentials)
    // writes to the replica: the laptop that pinned the first key names the change,
    // before it tries to decrypt anything (it could not: the recipients are others).
    let impostor_dir = dir.path().join("impostor");
    std::fs::create_dir_all(impostor_dir.join("data")).unwrap();
    copy_tree(&dir.path().join("data").join("index"), &impostor_dir.join("data").join("index"));
    let impostors = Coalition::new(&impostor_dir, 1);
    let impostor = start_server(&impostor_dir, &impostors, &garage, "segment_leaves = 2");
    submit_five(&impostor, 1_000);
    assert_eq!(wait_replicated(&impostor)["server"], server_id);
    drop(impostor);
    let fifth = dir.path().join("pull-5.tar");
    assert!(pull(&config, &fifth).0);
    let (ok, outcomes) = open(&[&fifth], identity, &dir.path().join("cases"));
    assert!(!ok);
    assert!(
        outcomes.values().any(|o| o["status"] == "failed"
            && o["reason"].as_str().is_some_and(|r| r.contains("SERVER KEY CHANGED"))),
        "{outcomes:#?}"
    );
}

#[test]
fn a_replica_that_follows_purges_loses_only_what_was_exported_and_says_so_and_a_forged_notice_excuses_nothing(
) {
    if !garage_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let garage = Garage::single(&dir.path().join("partner"));
    let coalition = Coalition::new(dir.path(), 1);
    let server = start_server_with(dir.path(), &coalition, &garage, "purge = true\n", "");
    let exported: Vec<Sent> =
        (1..=2).map(|n| submit(&server, n, &[("photo.jpg", 40_000 + n as usize)])).collect();
    wait_replicated(&server);
    let export = dir.path().join("export.tar");
    crate::review::export(&server, &export, false);
    let later = submit(&server, 3, &[("later.jpg", 50_000)]);
    let out = amanat(&["purge", "--data-dir", s(&server.data_dir), "--exported-before", "0"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let server_id = wait_replicated(&server)["server"].as_str().unwrap().to_string();
    // The replica follows: the exported submissions' objects go, announced first by a
    // notice the server signed; the later one's stay.
    let deadline = Instant::now() + Duration::from_secs(120);
    let objects = loop {
        let objects = object_keys(&garage);
        if objects.len() == 2 {
            break objects;
        }
        assert!(Instant::now() < deadline, "{objects:?}\n{}", server.logs());
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(objects, expected_object_keys(&server, &server_id));
    let notices: Vec<String> =
        garage.keys().into_iter().filter(|k| k.contains("/purged/")).collect();
    assert_eq!(notices.len(), 1, "{notices:?}");
    let notice = String::from_utf8(garage.get(&notices[0])).unwrap();
    assert!(
        notice.starts_with("amanat/purge-notice/v1\nserver ") && notice.contains("reason purged")
    );

    // Audited by a configuration that lets the server purge: all is well, and counted.
    let reviewer = dir.path().join("reviewer");
    let follows = reviewer.join("follows.toml");
    std::fs::write(&follows, garage.replica_config(&reviewer, "partner") + "purge = true\n")
        .unwrap();
    let (ok, problems) = audit(&follows);
    assert!(ok && problems.is_empty(), "{problems:?}");
    // By one that keeps everything: each deletion is named, with the notice.
    let keeps = puller_config(&reviewer, &garage);
    let (ok, problems) = audit(&keeps);
    assert!(!ok);
    assert_eq!(problems.len(), 4, "{problems:?}");
    assert!(problems.iter().all(|p| p.contains("deleted by the server")), "{problems:?}");

    // The same notices excuse nothing in a replica of another name (copied there).
    let elsewhere = reviewer.join("elsewhere.toml");
    std::fs::write(&elsewhere, garage.replica_config(&reviewer, "elsewhere") + "purge = true\n")
        .unwrap();
    let output = amanat(&[
        "replica",
        "audit",
        "--config",
        s(&elsewhere),
        "--replica",
        "elsewhere",
        "--json",
    ]);
    assert!(!output.status.success());
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(report.contains("copied here") && report.contains("is missing"), "{report}");

    // A new laptop recovering from the replica opens what is there and is told where
    // the rest is; the laptop that opened the export sees nothing amiss.
    let pulled = dir.path().join("pull.tar");
    let (ok, report) = pull(&follows, &pulled);
    assert!(ok, "{report:#}");
    let new_laptop = dir.path().join("new-laptop");
    std::fs::create_dir_all(&new_laptop).unwrap();
    let identity = new_laptop.join("identity.txt");
    std::fs::copy(&coalition.identity_files[0], &identity).unwrap();
    let (ok, outcomes) = open(&[&pulled], &identity, &dir.path().join("new-cases"));
    assert!(ok, "{outcomes:#?}");
    assert_eq!(outcomes[&later.id]["status"], "opened");
    for sent in &exported {
        assert_eq!(outcomes[&sent.id]["status"], "purged_from_replica", "{outcomes:#?}");
        assert!(outcomes[&sent.id]["reason"].as_str().unwrap().contains("export"));
    }
    let cases = dir.path().join("cases");
    let (ok, _) = open(&[&export], &coalition.identity_files[0], &cases);
    assert!(ok);
    let (ok, outcomes) = open(&[&pulled], &coalition.identity_files[0], &cases);
    assert!(ok, "{outcomes:#?}");
    assert_eq!(outcomes[&later.id]["status"], "opened");
    assert!(outcomes.values().all(|o| o["status"] != "purged_from_replica"), "{outcomes:#?}");

    // Someone holding only the bucket's credentials deletes the later submission's
    // objects and writes a notice for them, from the real one's text: it does not verify,
    // so it excuses nothing.
    let first_object = notice.lines().find(|l| l.starts_with("object ")).unwrap();
    let victim = objects[0].rsplit('/').next().unwrap();
    let forged = notice.replacen(first_object, &format!("object {victim} 1"), 1);
    let forged_key = format!("{server_id}/purged/2026120100-0123456789abcdef.notice");
    garage.put(&forged_key, forged.as_bytes(), dir.path());
    garage.delete(&objects[0]);
    let (ok, problems) = audit(&follows);
    assert!(!ok);
    assert!(problems.iter().any(|p| p.contains("0123456789abcdef.notice")), "{problems:?}");
    assert!(problems.iter().any(|p| p.contains(victim) && p.contains("missing")), "{problems:?}");
}

#[test]
fn a_replica_is_reached_through_the_socks_proxy_as_through_tor_and_never_around_it() {
    if !garage_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let garage = Garage::single(&dir.path().join("partner"));
    let coalition = Coalition::new(dir.path(), 1);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = start_server(
        dir.path(),
        &coalition,
        &garage,
        &format!("proxy = \"socks5h://127.0.0.1:{port}\""),
    );
    crate::review::submit(&server, 1, &[("a.jpg", 30_000)]);
    // Nothing listens on the proxy's port yet: replication waits and says why; it does
    // not go around the proxy, though the bucket is one hop away.
    let deadline = Instant::now() + Duration::from_secs(60);
    let replica = loop {
        let replica = status(&server)["replicas"][0].clone();
        if replica["last_error"].is_string() {
            break replica;
        }
        assert!(Instant::now() < deadline, "{replica:#}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(replica["backlog"], 1, "{replica:#}");
    assert!(garage.keys().is_empty());
    let _socks = Socks::start(port);
    let server_id = wait_replicated(&server)["server"].as_str().unwrap().to_string();
    assert_eq!(object_keys(&garage), expected_object_keys(&server, &server_id));
}

/// Copies a file or a directory's files, recursively.
fn copy_tree(from: &Path, to: &Path) {
    if from.is_file() {
        std::fs::copy(from, to).unwrap();
        return;
    }
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        copy_tree(&entry.path(), &to.join(entry.file_name()));
    }
}
