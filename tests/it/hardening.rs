//! The process itself: not dumpable, no core files, no root unless told; and key
//! rotation by SIGHUP or `amanat reload` without dropping uploads under way.

use crate::common::*;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::sync::{Arc, Mutex};

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").unwrap().uid() == 0
}

fn proc_status_field(pid: u32, field: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap().to_string();
    line[field.len()..].trim().to_string()
}

fn max_core_file_size(pid: u32) -> String {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max core file size")).unwrap();
    line.split_whitespace().skip(4).take(2).collect::<Vec<_>>().join(" ")
}

#[test]
fn refuses_root_and_runs_hardened_as_its_own_user() {
    if !running_as_root() {
        eprintln!("skipped: needs root to start the server as another user");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let config = dir.path().join("amanat.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\nrecipients = {:?}\n",
            dir.path().join("data"),
            coalition.recipients_file
        ),
    )
    .unwrap();

    // As root, without allow_root: a clear refusal, and nothing created.
    let out =
        Command::new(BIN).args(["--config", config.to_str().unwrap(), "serve"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refuses to run as root") && err.contains("allow_root"), "{err}");
    assert!(!dir.path().join("data").exists());

    // As an unprivileged user (nobody) it serves, and the kernel shows it hardened: the
    // /proc files of a non-dumpable process belong to root, not to the process's user,
    // so neither that user's other processes nor a crash can copy its memory out.
    let status =
        Command::new("chown").args(["-R", "65534:65534"]).arg(dir.path()).status().unwrap();
    assert!(status.success());
    let mut command = Command::new("setpriv");
    command
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN, "--config"])
        .arg(&config)
        .arg("serve");
    let log = Arc::new(Mutex::new(String::new()));
    let (mut child, addr) = spawn_command(command, &log);
    let pid = child.id();
    assert_eq!(get(addr, "/healthz").status, 200);
    assert!(proc_status_field(pid, "Uid:").starts_with("65534"), "runs as nobody");
    for entry in ["environ", "mem", "status"] {
        let owner = std::fs::metadata(format!("/proc/{pid}/{entry}")).unwrap().uid();
        assert_eq!(owner, 0, "/proc/{pid}/{entry} belongs to root: the process is not dumpable");
    }
    assert_eq!(max_core_file_size(pid), "0 0", "no core files, soft and hard");
    let r = post_multipart(addr, "/api/v1/submissions", &[text("testimony", "as nobody")]);
    assert_eq!(r.status, 201);
    let data = dir.path().join("data");
    assert_eq!(std::fs::metadata(&data).unwrap().uid(), 65534, "files are the service user's");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_server_allowed_to_run_as_root_still_turns_core_dumps_off() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "");
    assert_eq!(max_core_file_size(server.pid()), "0 0");
}

/// Sends the head and the first `sent` bytes of `body`, and waits until the server is
/// sealing the file (its temp object exists): the upload has taken its recipients.
fn start_upload(server: &Server, body: &[u8], sent: usize) -> std::net::TcpStream {
    let stream = partial_upload(server.addr, body, sent);
    wait_until("the upload is being sealed", || !server.temp_files().is_empty());
    stream
}

fn submit(server: &Server, testimony: &str) -> Vec<u8> {
    let r = post_multipart(server.addr, "/api/v1/submissions", &[text("testimony", testimony)]);
    assert_eq!(r.status, 201);
    let manifest = &receipt_objects(&r.json())[0];
    server.object(manifest)
}

#[test]
fn key_rotation_seals_new_submissions_to_the_new_set_and_lets_uploads_under_way_finish() {
    let dir = tempfile::tempdir().unwrap();
    let old = Coalition::new(dir.path(), 1);
    let new = Coalition::new(&dir.path().join("new"), 2);
    let server = Server::start(dir.path(), &old, "");

    // An upload is half sent when the coalition rotates its keys.
    let photo = noise(3 << 20, 7);
    let body = multipart_body(&[
        text("testimony", "sent before the rotation"),
        file("evidence", "wound.jpg", "image/jpeg", &photo),
    ]);
    let mut in_flight = start_upload(&server, &body, 1 << 20);

    std::fs::copy(&new.recipients_file, &old.recipients_file).unwrap();
    let status = Command::new("kill").args(["-HUP", &server.pid().to_string()]).status().unwrap();
    assert!(status.success());
    wait_until("the server reloads its recipients", || {
        server.logs().contains("recipients reloaded")
    });
    assert_eq!(get(server.addr, "/healthz").status, 200, "SIGHUP does not stop the server");

    // New submissions go to the new set only.
    let after = submit(&server, "sent after the rotation");
    assert!(new.identities.iter().all(|id| opens_with(&after, id)));
    assert!(!opens_with(&after, &old.identities[0]), "the old key reads nothing new");

    // The upload under way finishes, sealed throughout to the set it started with.
    in_flight.write_all(&body[1 << 20..]).unwrap();
    let response = read_response(&mut in_flight);
    assert_eq!(response.status, 201, "{}", response.text());
    let objects = receipt_objects(&response.json());
    for object in &objects {
        let bytes = server.object(object);
        assert!(opens_with(&bytes, &old.identities[0]));
        assert!(!opens_with(&bytes, &new.identities[0]));
    }
    let photo_object = server.object(&objects[0]);
    assert_eq!(unpadded(&decrypt(&photo_object, &old.identities[0]), photo.len()), &photo[..]);

    // A bad edit is refused by `amanat reload` with the start-up check's message, and
    // the set in force stays.
    std::fs::write(&old.recipients_file, "age1notakey\n").unwrap();
    let out =
        Command::new(BIN).arg("reload").arg("--data-dir").arg(&server.data_dir).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 1") && err.contains("is not an age recipient"), "{err}");
    let still_new = submit(&server, "after a refused reload");
    assert!(opens_with(&still_new, &new.identities[1]));

    // `amanat reload` (the admin socket) switches back.
    let text = format!("# back to the first key\n{}\n", old.identities[0].to_public());
    std::fs::write(&old.recipients_file, text).unwrap();
    let out =
        Command::new(BIN).arg("reload").arg("--data-dir").arg(&server.data_dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 recipient(s)"));
    let back = submit(&server, "after rotating back");
    assert!(opens_with(&back, &old.identities[0]));
    assert!(!opens_with(&back, &new.identities[0]));
}
