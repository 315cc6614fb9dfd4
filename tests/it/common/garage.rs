//! A real Garage (the partners' S3-compatible store), started by the tests on loopback
//! ports with a generated configuration, its layout assigned and its key and bucket
//! made with the `garage` CLI, as an operator would. One node, or a cluster of three
//! with every object on all of them (replication factor 3).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The access key the tests import into Garage (its format: `GK` and 24 hex digits).
pub const KEY_ID: &str = "GK0123456789abcdef01234567";
pub const SECRET: &str = "4ac1d5e8e5a94b5b8b5d8b7d4c1e7f2a6b3c9d0e1f2a3b4c5d6e7f8091a2b3c4";
pub const BUCKET: &str = "amanat";
const RPC_SECRET: &str = "8d2b5c1e7f6a9b0c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6071829304";

/// Whether the `garage` binary is here (tests/run-all.sh installs it).
pub fn available() -> bool {
    Command::new("garage").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// Whether a test can use Garage; false (the test skips, saying so) only where the
/// suite does not require it.
pub fn here_or_skip() -> bool {
    if available() {
        return true;
    }
    assert!(
        std::env::var_os("AMANAT_REQUIRE_GARAGE").is_none(),
        "garage is not installed but the suite requires it"
    );
    eprintln!("SKIPPED: garage is not installed (tests/run-all.sh installs it)");
    false
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// One Garage process.
pub struct Node {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub s3_port: u16,
    rpc_port: u16,
    child: Option<Child>,
}

impl Node {
    fn new(dir: &Path, factor: usize) -> Node {
        std::fs::create_dir_all(dir).unwrap();
        let (s3_port, rpc_port, admin_port) = (free_port(), free_port(), free_port());
        let config = dir.join("garage.toml");
        std::fs::write(
            &config,
            format!(
                "metadata_dir = {meta:?}\ndata_dir = {data:?}\ndb_engine = \"sqlite\"\n\
                 replication_factor = {factor}\n\
                 rpc_bind_addr = \"127.0.0.1:{rpc_port}\"\nrpc_public_addr = \"127.0.0.1:{rpc_port}\"\n\
                 rpc_secret = \"{RPC_SECRET}\"\n\
                 [s3_api]\ns3_region = \"garage\"\napi_bind_addr = \"127.0.0.1:{s3_port}\"\n\
                 root_domain = \".s3.garage.localhost\"\n\
                 [admin]\napi_bind_addr = \"127.0.0.1:{admin_port}\"\n",
                meta = dir.join("meta"),
                data = dir.join("data"),
            ),
        )
        .unwrap();
        let mut node = Node { dir: dir.to_path_buf(), config, s3_port, rpc_port, child: None };
        node.start();
        node
    }

    pub fn start(&mut self) {
        let log = std::fs::File::create(self.dir.join("garage.log")).unwrap();
        let child = Command::new("garage")
            .arg("-c")
            .arg(&self.config)
            .arg("server")
            .env("RUST_LOG", "garage=warn")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("garage starts");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.s3_port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "garage did not listen: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("garage.log")).unwrap_or_default()
    }

    /// Runs the `garage` CLI against this node; its standard output.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut last = String::new();
        // Right after start the node may not have joined its layout yet.
        for _ in 0..100 {
            let out =
                Command::new("garage").arg("-c").arg(&self.config).args(args).output().unwrap();
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("garage {args:?} failed: {last}\n{}", self.log());
    }

    fn node_id(&self) -> String {
        let out = self.cli(&["node", "id", "-q"]);
        out.trim().split('@').next().unwrap().to_string()
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A Garage cluster with a bucket and a key that may read and write it.
pub struct Garage {
    pub nodes: Vec<Node>,
}

impl Garage {
    /// One node.
    pub fn single(dir: &Path) -> Garage {
        Self::cluster(dir, 1)
    }

    /// `n` nodes, each object on all of them.
    pub fn cluster(dir: &Path, n: usize) -> Garage {
        let nodes: Vec<Node> =
            (0..n).map(|i| Node::new(&dir.join(format!("garage{i}")), n)).collect();
        let ids: Vec<String> = nodes.iter().map(Node::node_id).collect();
        for (node, id) in nodes.iter().zip(&ids).skip(1) {
            nodes[0].cli(&["node", "connect", &format!("{id}@127.0.0.1:{}", node.rpc_port)]);
        }
        for (i, id) in ids.iter().enumerate() {
            nodes[0].cli(&["layout", "assign", "-z", &format!("dc{i}"), "-c", "1G", id]);
        }
        nodes[0].cli(&["layout", "apply", "--version", "1"]);
        let garage = Garage { nodes };
        garage.admin(&["bucket", "create", BUCKET]);
        garage.admin(&["key", "import", "--yes", "-n", "amanat", KEY_ID, SECRET]);
        garage.admin(&["bucket", "allow", "--read", "--write", BUCKET, "--key", KEY_ID]);
        garage
    }

    /// The CLI on the first node still running.
    pub fn admin(&self, args: &[&str]) -> String {
        let node = self.nodes.iter().find(|n| n.child.is_some()).expect("a node runs");
        node.cli(args)
    }

    pub fn endpoint(&self) -> String {
        self.nodes[0].endpoint()
    }

    /// A `[[replicas]]` table for this cluster, its secret written 0600 under `dir`.
    pub fn replica_config(&self, dir: &Path, name: &str) -> String {
        std::fs::create_dir_all(dir).unwrap();
        let secret = dir.join(format!("replica-{name}.secret"));
        std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
        std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        format!(
            "[[replicas]]\nname = {name:?}\nendpoint = {:?}\nregion = \"garage\"\nbucket = {BUCKET:?}\n\
             access_key_id = {KEY_ID:?}\nsecret_access_key_file = {secret:?}\n",
            self.endpoint()
        )
    }

    /// Every key in the bucket, listed with curl's own `SigV4` signing (an S3 client not
    /// ours), page by page.
    pub fn keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut url = format!("{}/{BUCKET}?list-type=2", self.endpoint());
            if let Some(token) = &token {
                url.push_str(&format!("&continuation-token={}", super::percent_encode(token)));
            }
            let text = String::from_utf8_lossy(&curl(&[&url])).into_owned();
            for part in text.split("<Key>").skip(1) {
                if let Some(end) = part.find("</Key>") {
                    keys.push(part[..end].to_string());
                }
            }
            token = text
                .split("<NextContinuationToken>")
                .nth(1)
                .and_then(|rest| rest.split("</NextContinuationToken>").next())
                .map(str::to_string);
            if token.is_none() || !text.contains("<IsTruncated>true</IsTruncated>") {
                break;
            }
        }
        keys.sort();
        keys
    }

    /// One object's bytes (curl).
    pub fn get(&self, key: &str) -> Vec<u8> {
        curl(&[&format!("{}/{BUCKET}/{key}", self.endpoint())])
    }

    /// Replaces one object (curl PUT), as a seized server's credentials could.
    pub fn put(&self, key: &str, bytes: &[u8], scratch: &Path) {
        let file = scratch.join("curl-upload");
        std::fs::write(&file, bytes).unwrap();
        self.put_file(key, &file);
    }

    /// Puts a file under `key` (curl PUT, streamed from disk).
    pub fn put_file(&self, key: &str, file: &Path) {
        curl(&["-T", file.to_str().unwrap(), &format!("{}/{BUCKET}/{key}", self.endpoint())]);
    }

    /// Gets one object into a file (curl).
    pub fn get_file(&self, key: &str, out: &Path) {
        curl(&["-o", out.to_str().unwrap(), &format!("{}/{BUCKET}/{key}", self.endpoint())]);
    }

    /// Deletes one object (curl DELETE).
    pub fn delete(&self, key: &str) {
        curl(&["-X", "DELETE", &format!("{}/{BUCKET}/{key}", self.endpoint())]);
    }
}

/// curl signing with the test key, failing the test on any error.
fn curl(args: &[&str]) -> Vec<u8> {
    let out = Command::new("curl")
        .args(["-sS", "--fail", "--aws-sigv4", "aws:amz:garage:s3"])
        .args(["--user", &format!("{KEY_ID}:{SECRET}")])
        // Garage wants the payload hash named; curl signs the header it is given.
        .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"])
        .args(args)
        .output()
        .expect("curl runs");
    assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}
