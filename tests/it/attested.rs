//! Time that does not rest on the server's word: the real intake asks OpenSSL's own TSA
//! (`openssl ts -reply` behind an HTTP front) and two `amanat witness` partners to
//! attest its log; a lawyer's disclosure package carries the tokens and cosignatures,
//! `openssl ts -verify` accepts every token in it, and `amanat verify` reports each
//! submission's bracket, honest about what is missing.

use crate::common::tsa::{KeyKind, TestTsa, TsaMode};
use crate::common::*;
use crate::review::{export, submit, submit_with};
use crate::witness::{set_up, status, Witness};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn attested_size(server: &Server) -> (u64, u64) {
    let status = status(server);
    (status["attested_size"].as_u64().unwrap(), status["log_size"].as_u64().unwrap())
}

/// Waits until the TSA has stamped the log at its present size.
fn wait_attested(server: &Server) {
    wait_until("the log is stamped at its size", || {
        let status = status(server);
        let size = status["log_size"].as_u64().unwrap();
        status["timestamping"]
            .as_array()
            .is_some_and(|t| !t.is_empty() && t.iter().all(|t| t["size"].as_u64() == Some(size)))
            && status["witnesses"]
                .as_array()
                .is_some_and(|w| w.iter().all(|w| w["size"].as_u64() == Some(size)))
    });
}

/// The attestation settings for a TSA and witnesses.
fn attestation_config(
    tsa: &TestTsa,
    tsa_addr: std::net::SocketAddr,
    witnesses: &[(String, String)],
) -> String {
    let mut text = format!(
        "\n[attestation]\ninterval_secs = 1\n[[attestation.tsa]]\nname = \"test-tsa\"\n\
         url = \"http://{tsa_addr}/\"\nca_file = \"{}\"\n",
        tsa.ca_pem.display()
    );
    for (url, key) in witnesses {
        text.push_str(&format!("[[attestation.witness]]\nurl = \"{url}\"\nkey = \"{key}\"\n"));
    }
    text
}

#[test]
fn a_lawyer_sees_each_submission_received_between_two_attested_moments() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let mut server = Server::start(dir.path(), &coalition, "");
    let server_key = status(&server)["server_key"].as_str().unwrap().to_string();
    let origin = server_key.split('+').next().unwrap().to_string();
    let tsa = TestTsa::new(dir.path(), "journey", KeyKind::Rsa);
    let tsa_addr = tsa.serve();
    let mut witnesses = Vec::new();
    let mut endpoints = Vec::new();
    for name in ["tbilisi.example", "vilnius.example"] {
        let home = dir.path().join(name);
        std::fs::create_dir_all(&home).unwrap();
        let (config, key) = set_up(&home, name, &origin, &server_key);
        let witness = Witness::start(&config);
        endpoints.push((format!("http://{}/", witness.addr), key));
        witnesses.push(witness);
    }
    let config = std::fs::read_to_string(&server.config).unwrap();
    std::fs::write(&server.config, config + &attestation_config(&tsa, tsa_addr, &endpoints))
        .unwrap();
    server.restart();

    // Three survivors in three intervals; the second one's case goes to a lawyer.
    submit(&server, 1, &[("first.jpg", 5_000)]);
    wait_attested(&server);
    let sent_from = now();
    let sent =
        submit_with(&server, 2, &[("injury.jpg", 20_000)], &[("consent_readers", "lawyers")]);
    let answered = now();
    wait_attested(&server);
    submit(&server, 3, &[("third.jpg", 5_000)]);
    wait_attested(&server);
    let printed = amanat(&["status", "--data-dir", s(&server.data_dir)]);
    let printed = String::from_utf8_lossy(&printed.stdout).into_owned();
    assert!(printed.contains("tsa           test-tsa: stamped size"), "{printed}");
    assert!(!printed.contains("FAILED"), "{printed}");

    // The survivor's receipt grows up: the follow-up page and API offer it with the
    // first attested checkpoint holding the submission, and it verifies on its own.
    let api = crate::followup::followup(&server, &sent.codename).json();
    let receipt = &api["receipts"][0];
    assert_eq!(receipt["submission"], sent.id.as_str());
    assert!(receipt["attested"]["tokens"]["test-tsa"].is_string(), "{receipt:#}");
    let page = crate::followup::form_post(
        &server,
        "/en/followup",
        &format!("codename={}", crate::followup::urlencode(&sent.codename)),
        None,
    )
    .text();
    assert!(page.contains("Download (time confirmed by outside parties)"), "{page}");
    let hidden = page.split("name=\"receipt\" value=\"").nth(1).unwrap().split('"').next().unwrap();
    let json = hidden
        .replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#43;", "+")
        .replace("&#47;", "/")
        .replace("&#60;", "<")
        .replace("&#62;", ">")
        .replace("&#38;", "&")
        .replace("&amp;", "&");
    let downloaded = crate::followup::form_post(
        &server,
        "/receipt",
        &format!("receipt={}", crate::followup::urlencode(&json)),
        None,
    );
    assert_eq!(downloaded.status, 200, "{}", downloaded.text());
    let receipt_file = dir.path().join("receipt.json");
    std::fs::write(&receipt_file, &downloaded.body).unwrap();
    let (k1, k2) = (endpoints[0].1.clone(), endpoints[1].1.clone());
    let ca = s(&tsa.ca_pem).to_string();
    let verify_receipt = |extra: &[&str]| -> (bool, serde_json::Value) {
        let mut args = vec!["verify", s(&receipt_file), "--json", "--server-key", &server_key];
        args.extend(extra);
        let out = amanat(&args);
        (out.status.success(), serde_json::from_slice(&out.stdout).unwrap())
    };
    let (ok, report) = verify_receipt(&[
        "--tsa-cert",
        &ca,
        "--witness",
        &k1,
        "--witness",
        &k2,
        "--require-witnesses",
        "2",
    ]);
    assert!(ok, "{report:#}");
    let time = &report["times"][0];
    assert!(time["not_after"].as_u64().unwrap() + 2 >= sent_from, "{time:#}");
    assert_eq!(time["not_after_by"].as_array().unwrap().len(), 3, "a TSA and two witnesses");
    // The receipt file is unsigned: stripped of its attested part, it says so, and
    // fails where witnesses are required.
    let mut stripped: serde_json::Value = serde_json::from_slice(&downloaded.body).unwrap();
    stripped.as_object_mut().unwrap().remove("attested");
    std::fs::write(&receipt_file, serde_json::to_vec(&stripped).unwrap()).unwrap();
    let (ok, report) = verify_receipt(&["--witness", &k1, "--require-witnesses", "1"]);
    assert!(!ok);
    assert!(report["times"][0]["missing"].to_string().contains("server's clock"), "{report:#}");
    // The server echoes only receipts it signed: an edited one is not handed back.
    let forged = json.replacen("\"leaf_index\":", "\"leaf_index\":1", 1);
    let refused = crate::followup::form_post(
        &server,
        "/receipt",
        &format!("receipt={}", crate::followup::urlencode(&forged)),
        None,
    );
    assert_ne!(refused.status, 200);

    let bundle = dir.path().join("b.tar");
    export(&server, &bundle, false);
    let crate::disclose::Disclosed { package, custody_key, .. } =
        crate::disclose::disclose_case(dir.path(), &coalition, &bundle, &sent.id);

    // A seizing party holding signing.key forks an attested checkpoint (same origin and
    // key, another root): `open` refuses the bundle, since the fork is not the log
    // the bundle's head extends.
    let origin_name = origin.clone();
    let key = amanat::keys::SigningKey::load_or_create(
        &server.data_dir.join("signing.key"),
        &origin_name,
    )
    .unwrap();
    let fork = dir.path().join("forked.tar");
    rewrite_tar(&bundle, &fork, |members| {
        let (_, note) = members
            .iter_mut()
            .find(|(name, _)| name.ends_with(".checkpoint"))
            .expect("the bundle carries attested checkpoints");
        let size: u64 = String::from_utf8_lossy(note).lines().nth(1).unwrap().parse().unwrap();
        let fork = amanat::log::Checkpoint { origin: origin_name.clone(), size, root: [7; 32] };
        *note = fork.sign(&key).into_bytes();
    });
    let (ok, outcomes) = crate::review::open(
        &[&fork],
        &coalition.identity_files[0],
        &dir.path().join("forked-cases"),
    );
    assert!(!ok);
    let said = format!("{outcomes:?}");
    assert!(said.contains("do not agree with its own log"), "{said}");

    // Stock tools: every token in the package passes `openssl ts -verify` over its
    // checkpoint file, as VERIFY.txt tells the lawyer.
    let unpacked = dir.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    let tar = std::process::Command::new("tar")
        .args(["-xf", s(&package), "-C", s(&unpacked)])
        .status()
        .unwrap();
    assert!(tar.success());
    let tokens: Vec<_> = files_in(&unpacked.join("attestations"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "tsr"))
        .collect();
    assert_eq!(tokens.len(), 2, "the checkpoints before and after the second survivor");
    let verify_txt = std::fs::read_to_string(unpacked.join("VERIFY.txt")).unwrap();
    for token in &tokens {
        let name = token.file_name().unwrap().to_str().unwrap();
        let size = name.split('.').next().unwrap();
        let checkpoint = unpacked.join(format!("attestations/{size}.checkpoint"));
        assert!(tsa.openssl_verifies(&checkpoint, token), "openssl ts -verify {name}");
        assert!(verify_txt.contains(&format!(
            "openssl ts -verify -data attestations/{size}.checkpoint -in attestations/{name}"
        )));
    }

    let verify = |package: &Path, extra: &[&str]| -> (bool, serde_json::Value) {
        let out_dir = dir.path().join(format!("verified-{}", rand_suffix()));
        let mut args = vec!["verify", s(package), "--out", s(&out_dir), "--json"];
        args.extend(["--server-key", &server_key, "--custody-key", &custody_key]);
        args.extend(extra);
        let output = amanat(&args);
        let report = serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
        (output.status.success(), report)
    };
    let all_trusted = [
        "--tsa-cert",
        ca.as_str(),
        "--witness",
        k1.as_str(),
        "--witness",
        k2.as_str(),
        "--require-witnesses",
        "2",
    ];
    let (ok, report) = verify(&package, &all_trusted);
    assert!(ok, "{report:#}");
    let time = &report["times"][0];
    assert_eq!(time["submission"], sent.id.as_str());
    let (before, after) =
        (time["not_before"].as_u64().unwrap(), time["not_after"].as_u64().unwrap());
    // Honest: the real arrival lies inside the bracket (the TSA's clock is this
    // machine's; a second of rounding either way, and its stated 1.5 s accuracy).
    assert!(
        before <= answered + 2 && after + 2 >= sent_from,
        "{before} {sent_from}-{answered} {after}"
    );
    assert!(before <= after);
    for side in ["not_before_by", "not_after_by"] {
        let by: Vec<&str> =
            time[side].as_array().unwrap().iter().map(|b| b.as_str().unwrap()).collect();
        assert!(by.contains(&"TSA CN=journey TSA (trusted through ca.pem)"), "{by:?}");
        assert!(by.contains(&"witness tbilisi.example") && by.contains(&"witness vilnius.example"));
    }
    assert_eq!(time["missing"].as_array().unwrap().len(), 0, "{time:#}");
    // Each file of the submission carries its bracket, in the JSON and report.txt.
    for file in report["files"].as_array().unwrap() {
        let attested = file["attested"].as_str().unwrap();
        assert!(attested.starts_with("after 20") && attested.contains(" and by 20"), "{attested}");
    }

    // Without naming any attester: it still verifies, and says the times rest on the
    // server's clock.
    let (ok, report) = verify(&package, &[]);
    assert!(ok, "{report:#}");
    let missing = report["times"][0]["missing"].to_string();
    assert!(
        missing.contains("no party you trust") && missing.contains("server's clock"),
        "{missing}"
    );

    // Strip the attestations of the checkpoint that holds it: nothing narrows
    // silently. The custody record lists every attestation file, so the package fails
    // by name; and the report names what is missing.
    let sizes: Vec<u64> = tokens
        .iter()
        .map(|t| {
            t.file_name().unwrap().to_str().unwrap().split('.').next().unwrap().parse().unwrap()
        })
        .collect();
    let (lower, upper) = (*sizes.iter().min().unwrap(), *sizes.iter().max().unwrap());
    let stripped = dir.path().join("stripped.tar");
    rewrite_tar(&package, &stripped, |members| {
        members.retain(|(name, _)| !name.starts_with(&format!("attestations/{upper}.")));
    });
    let (ok, report) = verify(&stripped, &all_trusted);
    assert!(!ok);
    let failed = failed_checks(&report);
    assert!(failed.contains(&"attestation files".to_string()), "{failed:?}");
    assert!(failed.contains(&format!("time of submission {}", sent.id)), "two witnesses required");
    let time = &report["times"][0];
    assert!(time["not_after"].is_null() && time["not_before"].is_u64());
    assert!(time["missing"].to_string().contains("no attested checkpoint holds it"), "{time:#}");

    // A token whose time was edited is refused by name, and the package fails.
    let forged = dir.path().join("forged.tar");
    rewrite_tar(&package, &forged, |members| {
        for (name, bytes) in members.iter_mut() {
            if name.starts_with(&format!("attestations/{upper}.")) && name.ends_with(".tsr") {
                let year = b"2026";
                if let Some(at) = bytes.windows(4).position(|w| w == year) {
                    bytes[at + 3] = b'5';
                }
            }
        }
    });
    let (ok, report) = verify(&forged, &["--tsa-cert", ca.as_str()]);
    assert!(!ok);
    assert!(failed_checks(&report).contains(&"attestation files".to_string()));
    let time = &report["times"][0];
    assert!(time["not_after_by"].as_array().unwrap().is_empty(), "{time:#}");
    assert!(time["missing"].to_string().contains("test-tsa.tsr"), "{time:#}");

    // A later token over the checkpoint before it (anyone can have a checkpoint
    // stamped again) cannot push "received after" later: it is not in the custody
    // record, and the earliest attestation is the bound.
    let request = amanat::log::timestamp::TimestampRequest::new(
        &std::fs::read(unpacked.join(format!("attestations/{lower}.checkpoint"))).unwrap(),
    );
    let late = tsa.stamp(&request.der);
    let added = dir.path().join("added.tar");
    rewrite_tar(&package, &added, |members| {
        members.push((format!("attestations/{lower}.late.tsr"), late));
    });
    let (ok, report) = verify(&added, &["--tsa-cert", ca.as_str()]);
    assert!(!ok);
    assert!(failed_checks(&report).contains(&"attestation files".to_string()));
    assert_eq!(report["times"][0]["not_before"].as_u64(), Some(before));
}

fn failed_checks(report: &serde_json::Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["what"].as_str().unwrap().to_string())
        .collect()
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::SeqCst).to_string()
}

/// A TSA that is down, answers garbage, or refuses, and both witnesses down for the
/// whole run: every survivor is answered 201, `status` shows each failing, and the
/// next interval catches up once the TSA stamps again.
#[test]
fn a_failing_tsa_refuses_or_delays_nothing_and_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let mut server = Server::start(dir.path(), &coalition, "");
    let tsa = TestTsa::new(dir.path(), "flaky", KeyKind::P256);
    let tsa_addr = tsa.serve();
    tsa.set_mode(TsaMode::Down);
    // Both witnesses are down for the whole run: nothing listens where they should be.
    let mut dead = Vec::new();
    for name in ["dead-a.example", "dead-b.example"] {
        let key_file = dir.path().join(format!("{name}.key"));
        let out = amanat(&["witness", "keygen", "--name", name, "--out", s(&key_file)]);
        assert!(out.status.success());
        let key = String::from_utf8(out.stdout).unwrap().lines().last().unwrap().to_string();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        dead.push((format!("http://{port}/"), key));
    }
    let config = std::fs::read_to_string(&server.config).unwrap();
    std::fs::write(&server.config, config + &attestation_config(&tsa, tsa_addr, &dead)).unwrap();
    server.restart();
    let tsa_error = |server: &Server| {
        status(server)["timestamping"][0]["last_error"].as_str().map(str::to_string)
    };
    for (mode, word) in [
        (TsaMode::Down, "unreadable"),
        (TsaMode::Garbage, "bad_token: malformed"),
        (TsaMode::Refuse, "refused: status 500"),
    ] {
        tsa.set_mode(mode);
        for _ in 0..3 {
            normal_submission_works(&server);
        }
        wait_until(&format!("status shows the TSA failing ({word})"), || {
            tsa_error(&server).is_some_and(|e| {
                e.contains(word) || (mode == TsaMode::Down && e.contains("unreachable"))
            })
        });
    }
    let (attested, size) = attested_size(&server);
    assert!(attested < size);
    let witnesses = status(&server)["witnesses"].clone();
    assert!(
        witnesses.as_array().unwrap().iter().all(|w| w["size"] == 0 && w["last_error"].is_string()),
        "{witnesses:#}"
    );
    tsa.set_mode(TsaMode::Stamp);
    wait_until("the TSA catches up", || {
        let (attested, size) = attested_size(&server);
        attested == size && tsa_error(&server).is_none()
    });
}

/// A minimal SOCKS5 proxy that, like Tor's SocksPort, is given host names to resolve
/// itself (socks5h): it records each name asked for and connects every stream to
/// `target`, so a TSA "on an onion service" is reached without any local DNS.
fn socks5h_proxy(
    target: std::net::SocketAddr,
) -> (std::net::SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = asked.clone();
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { continue };
            let seen = seen.clone();
            std::thread::spawn(move || -> std::io::Result<()> {
                let mut head = [0u8; 2];
                client.read_exact(&mut head)?;
                let mut methods = vec![0u8; head[1] as usize];
                client.read_exact(&mut methods)?;
                client.write_all(&[5, 0])?;
                let mut request = [0u8; 4];
                client.read_exact(&mut request)?;
                let name = match request[3] {
                    3 => {
                        let mut len = [0u8; 1];
                        client.read_exact(&mut len)?;
                        let mut name = vec![0u8; len[0] as usize];
                        client.read_exact(&mut name)?;
                        String::from_utf8_lossy(&name).into_owned()
                    }
                    other => format!("address type {other}, resolved by the client"),
                };
                let mut port = [0u8; 2];
                client.read_exact(&mut port)?;
                seen.lock().unwrap().push(format!("{name}:{}", u16::from_be_bytes(port)));
                let upstream = std::net::TcpStream::connect(target)?;
                client.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0])?;
                let (mut up_read, mut down_write) = (upstream.try_clone()?, client.try_clone()?);
                std::thread::spawn(move || std::io::copy(&mut up_read, &mut down_write));
                let mut up_write = upstream;
                std::io::copy(&mut client, &mut up_write)?;
                Ok(())
            });
        }
    });
    (addr, asked)
}

/// From an onion host: `proxy = "socks5h://..."` sends every attestation request
/// through Tor's SocksPort by name, so a TSA on an onion service is reached and no
/// name is ever resolved on the server.
#[test]
fn attestation_goes_through_the_socks_proxy_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let mut server = Server::start(dir.path(), &coalition, "");
    let tsa = TestTsa::new(dir.path(), "onion", KeyKind::Rsa);
    let (proxy, asked) = socks5h_proxy(tsa.serve());
    let onion = "tsaexampleonionaddressxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.onion";
    let config = std::fs::read_to_string(&server.config).unwrap()
        + &format!(
            "\n[attestation]\ninterval_secs = 1\nproxy = \"socks5h://{proxy}\"\n\
             [[attestation.tsa]]\nname = \"onion\"\nurl = \"http://{onion}/\"\nca_file = \"{}\"\n",
            tsa.ca_pem.display()
        );
    std::fs::write(&server.config, config).unwrap();
    server.restart();
    normal_submission_works(&server);
    wait_until("the TSA behind the proxy stamps the log", || {
        let (attested, size) = attested_size(&server);
        attested == size
    });
    let asked = asked.lock().unwrap().clone();
    assert!(!asked.is_empty() && asked.iter().all(|a| *a == format!("{onion}:80")), "{asked:?}");

    // Without a proxy, a name is refused at start: the server resolves nothing.
    let config = std::fs::read_to_string(&server.config).unwrap();
    let config = config.replace(&format!("proxy = \"socks5h://{proxy}\"\n"), "");
    std::fs::write(&server.config, &config).unwrap();
    let out = amanat(&["--config", s(&server.config), "serve"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"), "{out:?}");
    // And a proxy that would resolve names here (socks5) is refused too.
    let config = config.replace(
        "interval_secs = 1\n",
        &format!("interval_secs = 1\nproxy = \"socks5://{proxy}\"\n"),
    );
    std::fs::write(&server.config, &config).unwrap();
    let out = amanat(&["--config", s(&server.config), "serve"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("socks5h"), "{out:?}");
}

/// A witness that answers what it should not: 422, 409 without a size, garbage under a
/// 200, or nothing. Survivors are answered as before and `status` names each failure
/// in fixed words, never the witness's text.
#[test]
fn a_misbehaving_witness_is_named_in_status_and_delays_no_one() {
    use std::io::{BufRead, BufReader, Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let mut server = Server::start(dir.path(), &coalition, "");
    let answer = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let said = answer.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            let answer = said.lock().unwrap().clone();
            if !answer.is_empty() {
                let _ = stream.write_all(answer.as_bytes());
            }
        }
    });
    // A well-formed cosignature key for the misbehaving witness, made by keygen.
    let home = dir.path().join("w");
    std::fs::create_dir_all(&home).unwrap();
    let out = amanat(&["witness", "keygen", "--name", "w.example", "--out", s(&home.join("k"))]);
    assert!(out.status.success());
    let key = String::from_utf8(out.stdout).unwrap().lines().last().unwrap().to_string();
    let config = std::fs::read_to_string(&server.config).unwrap()
        + &format!(
            "\n[attestation]\ninterval_secs = 1\n[[attestation.witness]]\nurl = \"http://{addr}/\"\n\
             key = \"{key}\"\n"
        );
    std::fs::write(&server.config, config).unwrap();
    server.restart();
    let witness_error =
        |server: &Server| status(server)["witnesses"][0]["last_error"].as_str().map(str::to_string);
    let reply = |status: &str, body: &str| {
        format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    for (said, word) in [
        (reply("422 Unprocessable Entity", "\u{1b}[31mforked!\n"), "refused: status 422"),
        (reply("409 Conflict", "not a number\n"), "bad_answer"),
        (reply("200 OK", "\u{2014} w.example AAAA\n"), "bad_cosignature"),
        (String::new(), "un"),
    ] {
        *answer.lock().unwrap() = said;
        for _ in 0..2 {
            normal_submission_works(&server);
        }
        wait_until(&format!("status names the witness's failure ({word})"), || {
            witness_error(&server).is_some_and(|e| e.contains(word))
        });
        let error = witness_error(&server).unwrap();
        assert!(!error.contains("forked") && !error.contains('\u{1b}'), "{error}");
    }
    let printed = amanat(&["status", "--data-dir", s(&server.data_dir)]);
    assert!(String::from_utf8_lossy(&printed.stdout).contains("LAST REQUEST FAILED"));
    assert!(!server.logs().contains("forked"));
}

#[test]
fn a_case_recovered_from_a_replica_alone_keeps_its_tsa_bracket_for_the_lawyer() {
    use crate::common::garage::{self, Garage};
    if !garage::here_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let tsa = TestTsa::new(dir.path(), "partner", KeyKind::Rsa);
    let tsa_addr = tsa.serve();
    let garage = Garage::single(&dir.path().join("partner"));
    let top =
        garage.replica_config(dir.path(), "partner") + &attestation_config(&tsa, tsa_addr, &[]);
    let server =
        Server::start_configured(dir.path(), &dir.path().join("data"), &coalition, &top, "");
    let server_key = status(&server)["server_key"].as_str().unwrap().to_string();
    submit(&server, 1, &[("first.jpg", 5_000)]);
    wait_attested(&server);
    let sent_from = now();
    let sent =
        submit_with(&server, 2, &[("injury.jpg", 20_000)], &[("consent_readers", "lawyers")]);
    let answered = now();
    wait_attested(&server);
    // The replica receives the checkpoints' files as they are stamped.
    wait_until("the replica holds the stamped checkpoint of size 2", || {
        garage.keys().iter().any(|k| k.ends_with("/attestations/2.test-tsa.tsr"))
    });
    let server_dir = server.data_dir.clone();
    drop(server);
    std::fs::remove_dir_all(&server_dir).unwrap();

    // From the replica alone: pull, open, disclose; the lawyer's package brackets the
    // survivor's arrival by the TSA's own tokens, which openssl accepts.
    let reviewer = dir.path().join("reviewer");
    let config = reviewer.join("puller.toml");
    std::fs::write(&config, garage.replica_config(&reviewer, "partner")).unwrap();
    let pulled = dir.path().join("pull.tar");
    let out = amanat(&[
        "replica",
        "pull",
        "--config",
        s(&config),
        "--replica",
        "partner",
        "--out",
        s(&pulled),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let crate::disclose::Disclosed { package, custody_key, .. } =
        crate::disclose::disclose_case(dir.path(), &coalition, &pulled, &sent.id);
    let verified = dir.path().join("verified");
    let output = amanat(&[
        "verify",
        s(&package),
        "--out",
        s(&verified),
        "--json",
        "--server-key",
        &server_key,
        "--custody-key",
        &custody_key,
        "--tsa-cert",
        tsa.ca_pem.to_str().unwrap(),
    ]);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(output.status.success(), "{report:#}");
    let time = &report["times"][0];
    assert_eq!(time["submission"], sent.id.as_str());
    let (before, after) =
        (time["not_before"].as_u64().unwrap(), time["not_after"].as_u64().unwrap());
    assert!(before <= answered + 2 && after + 2 >= sent_from, "{time:#}");
    assert_eq!(time["missing"].as_array().unwrap().len(), 0, "{time:#}");
    for side in ["not_before_by", "not_after_by"] {
        assert!(time[side].to_string().contains("TSA CN=partner TSA"), "{time:#}");
    }
}
