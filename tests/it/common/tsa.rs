//! A real time-stamping authority for the tests: OpenSSL's own (`openssl ts -reply`),
//! with a test CA made by `openssl req`, behind a small HTTP/1.1 front on loopback.
//! Its mode can be switched mid-test to answer garbage, refuse, or drop connections.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// How the TSA answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsaMode {
    Stamp,
    /// 200 with bytes that are not a TimeStampResp.
    Garbage,
    /// 500, as a TSA that is failing.
    Refuse,
    /// Closes every connection without an answer.
    Down,
}

/// The signing key's kind: OpenSSL writes `rsaEncryption` or `ecdsa-with-SHA256`.
#[derive(Debug, Clone, Copy)]
pub enum KeyKind {
    Rsa,
    P256,
}

pub struct TestTsa {
    pub dir: PathBuf,
    /// The CA certificate (PEM): what `ca_file` and `--tsa-cert` name.
    pub ca_pem: PathBuf,
    pub mode: Arc<Mutex<TsaMode>>,
    pub requests: Arc<AtomicUsize>,
    /// One `openssl ts -reply` at a time: it updates its serial file.
    lock: Arc<Mutex<()>>,
}

const CONFIG: &str = "\
[ tsa ]
default_tsa = tsa_config
[ tsa_config ]
serial = ./serial
crypto_device = builtin
signer_digest = sha256
default_policy = 1.3.6.1.4.1.99999.1
digests = sha256, sha384, sha512
accuracy = secs:1,millisecs:500
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
[ tsa_ext ]
basicConstraints = critical,CA:false
keyUsage = critical,digitalSignature
extendedKeyUsage = critical,timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl TestTsa {
    /// A CA and a TSA certificate under it, with the timeStamping key purpose.
    pub fn new(dir: &Path, name: &str, kind: KeyKind) -> TestTsa {
        TestTsa::with_extensions(dir, name, kind, "tsa_ext")
    }

    fn with_extensions(dir: &Path, name: &str, kind: KeyKind, extensions: &str) -> TestTsa {
        let dir = dir.join(format!("tsa-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("tsa.cnf"), CONFIG).unwrap();
        std::fs::write(dir.join("serial"), "01\n").unwrap();
        let newkey: &[&str] = match kind {
            KeyKind::Rsa => &["-newkey", "rsa:2048"],
            KeyKind::P256 => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
        };
        let ca_subject = format!("/CN={name} test root");
        let mut ca = vec!["req", "-x509", "-nodes", "-keyout", "ca.key", "-out", "ca.pem"];
        ca.extend_from_slice(newkey);
        ca.extend_from_slice(&[
            "-days",
            "3650",
            "-subj",
            &ca_subject,
            "-addext",
            "basicConstraints=critical,CA:true",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(&dir, &ca);
        let subject = format!("/CN={name} TSA");
        let mut csr = vec!["req", "-nodes", "-keyout", "tsa.key", "-out", "tsa.csr", "-subj"];
        csr.push(&subject);
        csr.extend_from_slice(newkey);
        openssl(&dir, &csr);
        openssl(
            &dir,
            &[
                "x509",
                "-req",
                "-in",
                "tsa.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "tsa.pem",
                "-days",
                "3650",
                "-extfile",
                "tsa.cnf",
                "-extensions",
                extensions,
            ],
        );
        TestTsa {
            ca_pem: dir.join("ca.pem"),
            dir,
            mode: Arc::new(Mutex::new(TsaMode::Stamp)),
            requests: Arc::new(AtomicUsize::new(0)),
            lock: Arc::new(Mutex::new(())),
        }
    }

    /// OpenSSL's answer to a DER TimeStampReq: a DER TimeStampResp.
    pub fn stamp(&self, request: &[u8]) -> Vec<u8> {
        stamp(&self.dir, &self.lock, request)
    }

    /// `openssl ts -verify` of a token over `data`, with this TSA's CA.
    pub fn openssl_verifies(&self, data: &Path, token: &Path) -> bool {
        Command::new("openssl")
            .args(["ts", "-verify", "-data"])
            .arg(data)
            .arg("-in")
            .arg(token)
            .arg("-CAfile")
            .arg(&self.ca_pem)
            .output()
            .expect("openssl runs")
            .status
            .success()
    }

    pub fn set_mode(&self, mode: TsaMode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Serves RFC 3161 over HTTP on a loopback port until the test ends.
    pub fn serve(&self) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (dir, lock, mode, requests) =
            (self.dir.clone(), self.lock.clone(), self.mode.clone(), self.requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                requests.fetch_add(1, Ordering::SeqCst);
                let mode = *mode.lock().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0usize;
                let mut kind_ok = false;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    if lower.starts_with("content-type: application/timestamp-query") {
                        kind_ok = true;
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0u8; length];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                let (status, answer) = match mode {
                    TsaMode::Down => continue,
                    TsaMode::Refuse => ("500 Internal Server Error", b"down".to_vec()),
                    TsaMode::Garbage => ("200 OK", b"\x30\x03\x02\x01\x00garbage".to_vec()),
                    TsaMode::Stamp if !kind_ok => ("415 Unsupported Media Type", Vec::new()),
                    TsaMode::Stamp => ("200 OK", stamp(&dir, &lock, &body)),
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/timestamp-reply\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n",
                    answer.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&answer);
            }
        });
        addr
    }
}

fn stamp(dir: &Path, lock: &Mutex<()>, request: &[u8]) -> Vec<u8> {
    let _one = lock.lock().unwrap();
    std::fs::write(dir.join("request.tsq"), request).unwrap();
    openssl(
        dir,
        &[
            "ts",
            "-reply",
            "-config",
            "tsa.cnf",
            "-queryfile",
            "request.tsq",
            "-signer",
            "tsa.pem",
            "-inkey",
            "tsa.key",
            "-out",
            "response.tsr",
        ],
    );
    std::fs::read(dir.join("response.tsr")).unwrap()
}
