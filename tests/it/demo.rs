//! A newcomer's first run: `amanat demo`, a testimony with a photo, and then exactly the
//! commands the demo printed, which must give back everything that was sent.

use crate::common::*;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

#[test]
fn the_commands_the_demo_prints_give_back_the_testimony_and_every_file() {
    /// The demo server, stopped however the test ends.
    struct Demo(std::process::Child);
    impl Drop for Demo {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args(["demo", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let demo = Demo(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(addr) = line.split("address=").nth(1) {
                let _ = tx.send(addr.trim().to_string());
            }
        }
    });
    let mut printed = String::new();
    let mut stdout = BufReader::new(stdout);
    while !printed.contains("Stop with Ctrl-C") {
        assert!(stdout.read_line(&mut printed).unwrap() > 0, "the demo ended early: {printed}");
    }
    let addr: std::net::SocketAddr =
        rx.recv_timeout(Duration::from_secs(30)).unwrap().parse().unwrap();

    let photo = noise(250_000, 17);
    let letter = b"%PDF-1.4 certificate".to_vec();
    let testimony = "They beat me in the basement of the police station on 6 January.";
    let response = post_multipart(
        addr,
        "/api/v1/submissions",
        &[
            text("testimony", testimony),
            file("evidence", "ribs.jpg", "image/jpeg", &photo),
            file("evidence", "letter.pdf", "application/pdf", &letter),
        ],
    );
    assert_eq!(response.status, 201, "{}", response.text());
    let id = response.json()["id"].as_str().unwrap().to_string();

    // Every indented command line the demo printed, run as a newcomer would paste it.
    let commands: Vec<&str> = printed
        .lines()
        .filter(|l| l.starts_with("    ") && !l.trim().is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(commands.len(), 3, "export, open, and the stock-age loop: {printed}");
    for command in &commands {
        let out =
            Command::new("sh").args(["-c", command]).current_dir(dir.path()).output().unwrap();
        assert!(out.status.success(), "{command}: {}", String::from_utf8_lossy(&out.stderr));
    }
    drop(demo);

    // The reviewer's way: the testimony and both files, bit for bit.
    let case = dir.path().join("demo/cases").join(&id);
    assert!(std::fs::read_to_string(case.join("testimony.txt")).unwrap().contains(testimony));
    assert!(std::fs::read(case.join("evidence/ribs.jpg")).unwrap() == photo);
    assert!(std::fs::read(case.join("evidence/letter.pdf")).unwrap() == letter);
    // The stock tool's way: a manifest with the testimony, and each file with its padding.
    let decrypted: Vec<Vec<u8>> = files_in(&dir.path().join("demo/decrypted"))
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert_eq!(decrypted.len(), 3, "every stored object");
    let manifest = decrypted
        .iter()
        .find_map(|d| serde_json::from_slice::<serde_json::Value>(d).ok())
        .expect("the manifest is JSON");
    assert_eq!(manifest["testimony"], testimony);
    for original in [&photo, &letter] {
        assert!(decrypted.iter().any(|d| is_padded(d, original)), "a file comes back");
    }
}
