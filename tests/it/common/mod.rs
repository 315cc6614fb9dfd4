//! The test harness: a real server, a coalition of real age identities, and a small
//! HTTP/1.1 client on raw sockets, because the limit tests must stall, truncate and
//! stream bodies in ways a high-level client will not.

#![allow(dead_code)]

pub mod garage;
pub mod tsa;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_amanat");
/// Every test client connects from this address, so logs can be checked for it.
pub const CLIENT_IP: &str = "127.0.0.3";
/// The tests run as root on CI machines; amanat refuses root unless told.
pub const ROOT_OK: &str = "allow_root = true\n";

/// The coalition: key holders whose public keys the server encrypts to.
pub struct Coalition {
    pub identities: Vec<age::x25519::Identity>,
    pub identity_files: Vec<PathBuf>,
    pub recipients_file: PathBuf,
}

impl Coalition {
    /// `n` identities; identity files go in `dir/offline/`, recipients in `dir/keys/`.
    pub fn new(dir: &Path, n: usize) -> Coalition {
        use age::secrecy::ExposeSecret;
        let offline = dir.join("offline");
        let keys = dir.join("keys");
        std::fs::create_dir_all(&offline).unwrap();
        std::fs::create_dir_all(&keys).unwrap();
        let mut identities = Vec::new();
        let mut identity_files = Vec::new();
        let mut recipients = String::from("# test coalition\n");
        for i in 0..n {
            let identity = age::x25519::Identity::generate();
            let path = offline.join(format!("holder{i}.txt"));
            std::fs::write(&path, format!("{}\n", identity.to_string().expose_secret())).unwrap();
            recipients.push_str(&format!("{}\n", identity.to_public()));
            identities.push(identity);
            identity_files.push(path);
        }
        let recipients_file = keys.join("recipients.txt");
        std::fs::write(&recipients_file, recipients).unwrap();
        Coalition { identities, identity_files, recipients_file }
    }
}

pub struct Server {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub config: PathBuf,
    log: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `amanat serve` with data in `dir/data`; `limits` is the body of a
    /// `[limits]` table.
    pub fn start(dir: &Path, coalition: &Coalition, limits: &str) -> Server {
        Self::start_with_data(dir, &dir.join("data"), coalition, limits)
    }

    pub fn start_with_data(
        dir: &Path,
        data_dir: &Path,
        coalition: &Coalition,
        limits: &str,
    ) -> Server {
        Self::start_configured(dir, data_dir, coalition, "", limits)
    }

    /// `start_with_data`, with top-level settings `top` (such as `log_level = "debug"`).
    pub fn start_configured(
        dir: &Path,
        data_dir: &Path,
        coalition: &Coalition,
        top: &str,
        limits: &str,
    ) -> Server {
        let config = dir.join("amanat.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\nrecipients = {:?}\n{ROOT_OK}{top}\n[limits]\n{limits}\n",
                data_dir, coalition.recipients_file
            ),
        )
        .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (child, addr) = spawn(&config, &log);
        Server { child: Some(child), addr, data_dir: data_dir.to_path_buf(), config, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// Everything the server has logged so far.
    pub fn logs(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// SIGKILL: no chance to clean up, as on power loss.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        let (child, addr) = spawn(&self.config, &self.log);
        self.child = Some(child);
        self.addr = addr;
    }

    pub fn objects_dir(&self) -> PathBuf {
        self.data_dir.join("objects")
    }

    /// Object files in the store (large objects; small ones live in the index).
    pub fn object_files(&self) -> Vec<PathBuf> {
        files_in(&self.objects_dir())
    }

    /// Every stored object's id, in order, as `amanat objects` lists them.
    pub fn stored_objects(&self) -> Vec<String> {
        let output = amanat(&["objects", "--json", "--data-dir", self.data_dir.to_str().unwrap()]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let list: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        let ids = list["objects"].as_array().unwrap().iter();
        ids.map(|o| o["id"].as_str().unwrap().to_string()).collect()
    }

    /// Bytes of ciphertext stored, as `amanat status` counts them.
    pub fn store_bytes(&self) -> u64 {
        let output = amanat(&["status", "--json", "--data-dir", self.data_dir.to_str().unwrap()]);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        status["store_bytes"].as_u64().unwrap()
    }

    /// One stored object's ciphertext, as `amanat object` gives it.
    pub fn object(&self, id: &str) -> Vec<u8> {
        let output = amanat(&["object", id, "--data-dir", self.data_dir.to_str().unwrap()]);
        assert!(output.status.success(), "{id}: {}", String::from_utf8_lossy(&output.stderr));
        output.stdout
    }

    /// `object`, copied into a file beside the data directory (for the `age` tool).
    pub fn object_file(&self, id: &str) -> PathBuf {
        let path = self.data_dir.with_file_name(format!("copy-{id}.age"));
        std::fs::write(&path, self.object(id)).unwrap();
        path
    }

    pub fn temp_files(&self) -> Vec<PathBuf> {
        files_in(&self.objects_dir().join("tmp"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(config: &Path, log: &Arc<Mutex<String>>) -> (Child, SocketAddr) {
    let mut command = Command::new(BIN);
    command.args(["--config", config.to_str().unwrap(), "serve"]);
    spawn_command(command, log)
}

/// Starts a server with `command` (which runs `amanat serve` somehow) and waits until it
/// listens, collecting its log into `log`.
pub fn spawn_command(mut command: Command, log: &Arc<Mutex<String>>) -> (Child, SocketAddr) {
    let mut child =
        command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("amanat starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let shared = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(addr) = line.split("address=").nth(1) {
                let _ = tx.send(addr.trim().to_string());
            }
            let mut log = shared.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("server did not start; log:\n{}", log.lock().unwrap()));
    (child, SocketAddr::from_str(&addr).unwrap())
}

/// Runs the amanat CLI.
pub fn amanat(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).output().expect("amanat runs")
}

pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Every file under `dir`, recursively.
pub fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    out
}

/// Polls for a condition the server reaches on its own (not a timing assumption: the
/// deadline is only there so a broken server fails the test instead of hanging it).
pub fn wait_until(what: &str, condition: impl FnMut() -> bool) {
    wait_within(Duration::from_secs(20), what, condition);
}

/// `wait_until`, for something that may take up to `limit`.
pub fn wait_within(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// ---------- HTTP ----------

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The stable error code of a JSON refusal.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap_or("").to_string()
    }
}

/// A TCP connection from `CLIENT_IP`.
pub fn connect(addr: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from_str(&format!("{CLIENT_IP}:0")).unwrap().into()).unwrap();
    socket.connect(&addr.into()).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    stream
}

pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    try_request(connect(addr), method, path, headers, body).expect("the server answers")
}

/// One request on an open connection; errors (a reset, a killed server) are returned.
pub fn try_request(
    mut stream: TcpStream,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let addr = stream.peer_addr()?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    try_read_response(&mut stream)
}

pub fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path, &[], b"")
}

/// Reads one response: status, headers, and a body by Content-Length or to the close.
pub fn read_response(stream: &mut TcpStream) -> Response {
    try_read_response(stream).expect("a complete response")
}

pub fn try_read_response(stream: &mut TcpStream) -> std::io::Result<Response> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line)?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(&format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':').ok_or_else(|| bad("bad header"))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let length = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let mut body = Vec::new();
    match length {
        Some(n) => {
            body.resize(n, 0);
            reader.read_exact(&mut body)?;
        }
        None => {
            reader.read_to_end(&mut body)?;
        }
    }
    Ok(Response { status, headers, body })
}

pub struct Part {
    pub name: String,
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub data: Vec<u8>,
}

pub fn text(name: &str, value: &str) -> Part {
    Part { name: name.into(), file_name: None, content_type: None, data: value.as_bytes().to_vec() }
}

pub fn file(name: &str, file_name: &str, content_type: &str, data: &[u8]) -> Part {
    Part {
        name: name.into(),
        file_name: Some(file_name.into()),
        content_type: Some(content_type.into()),
        data: data.to_vec(),
    }
}

pub const BOUNDARY: &str = "----amanat-test-boundary-7MA4YWxkTrZu0gW";

/// The head of one part, up to and including the blank line before its data.
pub fn part_head(part: &Part) -> Vec<u8> {
    let mut head =
        format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{}\"", part.name);
    if let Some(f) = &part.file_name {
        head.push_str(&format!("; filename=\"{f}\""));
    }
    head.push_str("\r\n");
    if let Some(ct) = &part.content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

pub fn multipart_body(parts: &[Part]) -> Vec<u8> {
    let mut body = Vec::new();
    for part in parts {
        body.extend_from_slice(&part_head(part));
        body.extend_from_slice(&part.data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

pub fn multipart_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

/// The head of a multipart upload to the API whose body the caller streams itself;
/// `framing` is `Content-Length: N` or `Transfer-Encoding: chunked`.
pub fn upload_head(framing: &str) -> String {
    format!(
        "POST /api/v1/submissions HTTP/1.1\r\nHost: x\r\nContent-Type: {}\r\n{framing}\r\n\r\n",
        multipart_type()
    )
}

/// A refusal: its status, its stable code, and a message a person can act on.
pub fn assert_refused(response: &Response, status: u16, code: &str) {
    assert_eq!(response.status, status, "{}", response.text());
    assert_eq!(response.error_code(), code);
    let message = response.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.len() > 20, "a message a person understands: {message}");
}

pub fn normal_submission_works(server: &Server) {
    let ok = post_multipart(
        server.addr,
        "/api/v1/submissions",
        &[text("testimony", "still works"), file("evidence", "a.jpg", "image/jpeg", b"jpeg")],
    );
    assert_eq!(ok.status, 201, "{}", ok.text());
}

/// A complete multipart request to the API: its head, then `body`.
pub fn api_upload(body: &[u8]) -> Vec<u8> {
    let mut request = upload_head(&format!("Content-Length: {}", body.len())).into_bytes();
    request.extend_from_slice(body);
    request
}

/// An upload whose head and first `sent` bytes of `body` went out, and then nothing more.
pub fn partial_upload(addr: SocketAddr, body: &[u8], sent: usize) -> TcpStream {
    let mut stream = connect(addr);
    stream.write_all(upload_head(&format!("Content-Length: {}", body.len())).as_bytes()).unwrap();
    stream.write_all(&body[..sent]).unwrap();
    stream
}

/// One chunk of a `Transfer-Encoding: chunked` body.
pub fn chunked(data: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    out
}

pub fn post_multipart(addr: SocketAddr, path: &str, parts: &[Part]) -> Response {
    let body = multipart_body(parts);
    request(addr, "POST", path, &[("Content-Type", &multipart_type())], &body)
}

// ---------- age ----------

/// Decrypts with the age crate.
pub fn decrypt(ciphertext: &[u8], identity: &age::x25519::Identity) -> Vec<u8> {
    let decryptor = age::Decryptor::new(ciphertext).expect("an age file");
    let mut out = Vec::new();
    decryptor
        .decrypt(std::iter::once(identity as &dyn age::Identity))
        .expect("decrypts with this identity")
        .read_to_end(&mut out)
        .expect("the whole stream authenticates");
    out
}

/// Whether `identity` is among the recipients an age file was encrypted to.
pub fn opens_with(ciphertext: &[u8], identity: &age::x25519::Identity) -> bool {
    let decryptor = age::Decryptor::new(ciphertext).expect("an age file");
    decryptor.decrypt(std::iter::once(identity as &dyn age::Identity)).is_ok()
}

/// Decrypts with the stock `age` command-line tool (Debian's Go age).
pub fn decrypt_with_age_cli(object: &Path, identity_file: &Path) -> Vec<u8> {
    let out = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(identity_file)
        .arg(object)
        .output()
        .expect("the stock `age` tool is installed (apt-get install age)");
    assert!(out.status.success(), "age -d failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// The file an object decrypts to, without its padding: `size` bytes, then zeros up to
/// the PADMÉ bucket of `size` (so the stored size does not give `size` away).
pub fn unpadded(plain: &[u8], size: usize) -> &[u8] {
    assert_eq!(
        plain.len() as u64,
        amanat::envelope::padded_size(size as u64),
        "a file of {size} bytes is padded to its bucket"
    );
    assert!(plain[size..].iter().all(|&b| b == 0), "the padding is zeros");
    &plain[..size]
}

/// Whether `plain` is `original` padded as amanat pads files.
pub fn is_padded(plain: &[u8], original: &[u8]) -> bool {
    plain.len() as u64 == amanat::envelope::padded_size(original.len() as u64)
        && plain.starts_with(original)
        && plain[original.len()..].iter().all(|&b| b == 0)
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
}

/// Deterministic pseudo-random bytes (xorshift) for test files.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Reads and decrypts a submission's manifest (the last object of a receipt).
pub fn manifest(
    server: &Server,
    objects: &[String],
    identity: &age::x25519::Identity,
) -> serde_json::Value {
    let id = objects.last().expect("the manifest is the last object");
    let bytes = server.object(id);
    serde_json::from_slice(&decrypt(&bytes, identity)).expect("manifest is JSON")
}

/// Checks that every key holder reads each object identically, with the age crate and
/// with the stock `age` tool, and that each object's id is its ciphertext's SHA-256.
/// Returns the plaintexts in the order given.
pub fn every_holder_reads(
    server: &Server,
    coalition: &Coalition,
    objects: &[String],
) -> Vec<Vec<u8>> {
    objects
        .iter()
        .map(|object| {
            let path = server.object_file(object);
            let ciphertext = std::fs::read(&path).unwrap();
            assert_eq!(&sha256_hex(&ciphertext), object, "object id is the ciphertext's SHA-256");
            let plaintext = decrypt(&ciphertext, &coalition.identities[0]);
            for (identity, file) in coalition.identities.iter().zip(&coalition.identity_files) {
                assert_eq!(decrypt(&ciphertext, identity), plaintext);
                assert_eq!(decrypt_with_age_cli(&path, file), plaintext);
            }
            plaintext
        })
        .collect()
}

/// Peak resident memory of a process, in KiB (`VmHWM`).
pub fn peak_memory_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

pub fn receipt_objects(receipt: &serde_json::Value) -> Vec<String> {
    receipt["objects"]
        .as_array()
        .expect("objects in the receipt")
        .iter()
        .map(|o| o.as_str().unwrap().to_string())
        .collect()
}

/// Rewrites a tar, letting `edit` change its members (name, bytes) in order.
pub fn rewrite_tar(from: &Path, to: &Path, edit: impl FnOnce(&mut Vec<(String, Vec<u8>)>)) {
    let mut archive = tar::Archive::new(std::fs::File::open(from).unwrap());
    let mut entries = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        entries.push((name, data));
    }
    edit(&mut entries);
    let mut builder = tar::Builder::new(std::fs::File::create(to).unwrap());
    for (name, data) in &entries {
        let mut header = tar::Header::new_ustar();
        header.set_path(name).unwrap();
        header.set_size(data.len() as u64);
        header.set_mode(0o600);
        header.set_cksum();
        builder.append(&header, &data[..]).unwrap();
    }
    builder.finish().unwrap();
}

/// `text` percent-encoded for a URL's query or a form body: every byte but the
/// unreserved ones (RFC 3986).
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A SOCKS5 proxy on loopback (Debian's microsocks), as Tor's SocksPort is; stopped on
/// drop.
pub struct Socks(std::process::Child);

impl Socks {
    pub fn start(port: u16) -> Socks {
        Socks(
            Command::new("microsocks")
                .args(["-i", "127.0.0.1", "-p", &port.to_string()])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("microsocks is installed (tests/run-all.sh installs it)"),
        )
    }
}

impl Drop for Socks {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
