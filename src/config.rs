//! Configuration: built-in defaults, then a TOML file, then `AMANAT_*` environment
//! variables for the top-level keys. Every option is documented in `config/amanat.toml`.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The whole configuration of one amanat instance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address the intake listens on. Keep it on loopback; Tor or a reverse proxy publishes it.
    pub listen: String,
    /// Directory for ciphertext objects, the index and the instance secret.
    pub data_dir: PathBuf,
    /// The coalition's age recipients, one `age1...` per line.
    pub recipients: PathBuf,
    /// Log verbosity: error, warn, info or debug.
    pub log_level: String,
    /// Delete the ciphertext of submissions exported this many days ago (0: never).
    pub retention_days: u64,
    /// The onion service's address (<http://....onion>), sent as `Onion-Location` so Tor
    /// Browser offers to switch to it; unset on the onion service itself.
    pub onion_location: Option<String>,
    /// Run even as root (throwaway demos and test machines only).
    pub allow_root: bool,
    /// Refuse to start (and to reload) unless every recipient is a quorum key's, named
    /// by a `quorum.pub` beside the recipients file: no single key reads what arrives.
    pub require_quorum: bool,
    pub limits: Limits,
    pub replies: Replies,
    pub attestation: Attestation,
    /// S3-compatible object stores (Garage nodes run by partners) that hold a copy of
    /// every object and an encrypted, signed journal of the intake.
    #[serde(rename = "replicas")]
    pub replicas: Vec<ReplicaEndpoint>,
    pub replication: Replication,
    pub uploads: Uploads,
}

/// Resumable uploads (tus, `/api/v1/uploads`): large files over links that fail.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Uploads {
    /// Seconds an unfinished (or finished but not yet submitted) upload is kept after
    /// its last request, while the server runs; a restart ends every unfinished upload.
    pub resume_window_secs: u64,
    /// Largest file one resumable upload carries, in bytes.
    pub max_upload_bytes: u64,
    /// Uploads held at once, unfinished or waiting for their submission; past this, new
    /// ones are refused (503, `too_many_uploads`), unless one has made no progress for
    /// `evict_idle_secs`: it is ended to make room. Each holds its encrypting worker.
    pub max_held: usize,
    /// How long a new upload waits for its first byte, and how long one must have made
    /// no progress before it may be ended to make room for another.
    pub evict_idle_secs: u64,
}

impl Default for Uploads {
    fn default() -> Self {
        Uploads {
            resume_window_secs: 24 * 3600,
            max_upload_bytes: 8 * 1024 * 1024 * 1024,
            max_held: 32,
            evict_idle_secs: 600,
        }
    }
}

/// One `[[replicas]]`: a bucket on an S3-compatible store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaEndpoint {
    /// A short name (lowercase letters, digits, dashes): in `amanat status` and on the
    /// command line.
    pub name: String,
    /// The store's S3 endpoint, e.g. `http://127.0.0.1:3900` (a local tunnel to a
    /// partner's onion service), or any http(s):// address reached through
    /// `replication.proxy`.
    pub endpoint: String,
    /// The S3 region the store expects (`garage` for Garage's default).
    pub region: String,
    pub bucket: String,
    pub access_key_id: String,
    /// A file (0600) holding the secret access key: never in this file, never logged.
    pub secret_access_key_file: PathBuf,
    /// Whether ciphertext the server purges after export is deleted from this replica
    /// too. Off by default: the replica keeps every object, whatever the server purges.
    #[serde(default)]
    pub purge: bool,
    /// This replica's own retention: its copies of submissions exported more than this
    /// many days ago are deleted, whatever the server keeps (0: kept for good).
    #[serde(default)]
    pub retention_days: u64,
}

/// The longest an acknowledgement may wait for replicas.
const MAX_ACK_DEADLINE_SECS: u64 = 300;

/// How replication runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Replication {
    /// `local`: a submission is acknowledged once durable here; `replicated`: once also
    /// in at least `min_replicas` replicas (or the deadline passed, said plainly).
    pub ack: AckPolicy,
    pub min_replicas: usize,
    /// How long a submission's acknowledgement waits for its replicas under
    /// `ack = "replicated"`.
    pub ack_deadline_secs: u64,
    /// A SOCKS5 proxy that resolves names itself (`socks5h://` to a loopback address,
    /// Tor's SocksPort), through which every replica is reached.
    pub proxy: Option<String>,
    /// Log entries per journal segment (1 to 1024): a segment is rewritten whole while
    /// it grows, then closed.
    pub segment_leaves: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckPolicy {
    Local,
    Replicated,
}

impl Default for Replication {
    fn default() -> Self {
        Replication {
            ack: AckPolicy::Local,
            min_replicas: 1,
            ack_deadline_secs: 60,
            proxy: None,
            segment_leaves: 1024,
        }
    }
}

/// Outside parties that attest the intake log's checkpoints: RFC 3161 time-stamping
/// authorities and C2SP tlog-witnesses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Attestation {
    /// Attest the newest checkpoint this often, when the log grew (and once a day
    /// regardless).
    pub interval_secs: u64,
    /// A SOCKS5 proxy that resolves names itself (`socks5h://` to a loopback address,
    /// Tor's SocksPort), through which every TSA and witness is reached: then their
    /// urls may name onion services.
    pub proxy: Option<String>,
    /// The time-stamping authorities.
    #[serde(rename = "tsa")]
    pub tsas: Vec<TsaEndpoint>,
    /// The witnesses: partner organisations running `amanat witness`.
    #[serde(rename = "witness")]
    pub witnesses: Vec<WitnessEndpoint>,
}

impl Default for Attestation {
    fn default() -> Self {
        Attestation { interval_secs: 600, proxy: None, tsas: Vec::new(), witnesses: Vec::new() }
    }
}

/// One `[[attestation.tsa]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TsaEndpoint {
    /// A short name (lowercase letters, digits, dashes) used in package file names.
    pub name: String,
    /// Where it answers RFC 3161 over HTTP (`application/timestamp-query`).
    pub url: String,
    /// Its certificate chain (PEM): every token is checked against it on arrival.
    pub ca_file: PathBuf,
}

/// One `[[attestation.witness]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessEndpoint {
    /// Its tlog-witness prefix over HTTP (`add-checkpoint` is appended) on a loopback
    /// address, e.g. `http://127.0.0.1:7380/` (a local tunnel to a partner's onion).
    pub url: String,
    /// Its cosignature verifier key, the last line `amanat witness keygen` printed.
    pub key: String,
}

/// The coalition's replies waiting on the server for their survivors.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Replies {
    /// Delete a reply this many days after it was imported, read or not (0: keep it
    /// until its survivor reads it). A read reply is deleted at once.
    pub retention_days: u64,
}

impl Default for Replies {
    fn default() -> Self {
        Replies { retention_days: 60 }
    }
}

/// Limits on what one request may make the server hold or store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// All files of one submission together, in bytes.
    pub max_submission_bytes: u64,
    /// Evidence files in one submission.
    pub max_files: usize,
    /// All text fields of one submission together, in bytes.
    pub max_text_bytes: usize,
    /// Text fields in one submission (each repeated field counts).
    pub max_fields: usize,
    /// Longest wait, in seconds, for the next bytes of an upload.
    pub idle_timeout_secs: u64,
    /// Longest time, in seconds, one upload may take from its first byte to its last.
    pub upload_deadline_secs: u64,
    /// Uploads with files received at once; past this, 503 with Retry-After.
    pub max_concurrent_uploads: usize,
    /// Text-only testimonies received at once (their own lane); past this they wait.
    pub max_concurrent_texts: usize,
    /// Slowest average an upload may keep, in bytes per second, once its grace is over.
    pub min_upload_bytes_per_sec: u64,
    /// Seconds an upload may take before its average speed is held to the minimum.
    pub slow_upload_grace_secs: u64,
    /// Open client connections at once; past this, new ones wait in the listen queue.
    pub max_connections: usize,
    /// Bytes the object files and the index may take together (0: no quota beyond the disk).
    pub storage_quota_bytes: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            data_dir: "data".into(),
            recipients: "keys/recipients.txt".into(),
            log_level: "info".into(),
            retention_days: 0,
            onion_location: None,
            allow_root: false,
            require_quorum: false,
            limits: Limits::default(),
            replies: Replies::default(),
            attestation: Attestation::default(),
            replicas: Vec::new(),
            replication: Replication::default(),
            uploads: Uploads::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_submission_bytes: 2 * 1024 * 1024 * 1024,
            max_files: 20,
            max_text_bytes: 256 * 1024,
            max_fields: 200,
            idle_timeout_secs: 30,
            upload_deadline_secs: 6 * 3600,
            max_concurrent_uploads: 64,
            max_concurrent_texts: 128,
            min_upload_bytes_per_sec: 1024,
            slow_upload_grace_secs: 120,
            max_connections: 1024,
            storage_quota_bytes: 0,
        }
    }
}

/// Why the configuration was refused.
#[derive(Debug)]
pub enum ConfigError {
    Unreadable(PathBuf, std::io::Error),
    /// Not TOML of ours: a typo in a key, a wrong type (the parser's words).
    Invalid(PathBuf, String),
    /// A setting out of its range.
    Setting(&'static str),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::Unreadable(path, e) => {
                write!(f, "cannot read configuration {}: {e}", path.display())
            }
            ConfigError::Invalid(path, why) => {
                write!(f, "configuration {} is not valid: {why}", path.display())
            }
            ConfigError::Setting(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for ConfigError {}

/// `socks5h://` to a loopback address with a port: Tor's SocksPort, resolving names
/// itself.
fn is_loopback_socks(proxy: &str) -> bool {
    proxy
        .strip_prefix("socks5h://")
        .is_some_and(|rest| is_loopback_url(&format!("http://{}", rest.trim_end_matches('/'))))
}

/// `http://` to a loopback IP address with a port: no name to resolve, so no DNS query
/// can say whom the server talks to.
fn is_loopback_url(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else { return false };
    let host_port = rest.split('/').next().unwrap_or("");
    let Some((host, port)) = host_port.rsplit_once(':') else { return false };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    port.parse::<u16>().is_ok() && host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Where `load` looks when no `--config` is given.
pub const DEFAULT_CONFIG_PATH: &str = "config/amanat.toml";

impl Config {
    /// Loads the configuration: `path` if given (it must exist), else `config/amanat.toml`
    /// if present, else the defaults; then applies `AMANAT_*` overrides.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config = match path {
            Some(path) => Self::from_file(path)?,
            None if Path::new(DEFAULT_CONFIG_PATH).exists() => {
                Self::from_file(Path::new(DEFAULT_CONFIG_PATH))?
            }
            None => Config::default(),
        };
        config.apply_env(|key| std::env::var(key).ok());
        config.validate()?;
        Ok(config)
    }

    fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Unreadable(path.to_path_buf(), e))?;
        toml::from_str(&text).map_err(|e| ConfigError::Invalid(path.to_path_buf(), e.to_string()))
    }

    fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) {
        if let Some(v) = var("AMANAT_LISTEN") {
            self.listen = v;
        }
        if let Some(v) = var("AMANAT_DATA_DIR") {
            self.data_dir = v.into();
        }
        if let Some(v) = var("AMANAT_RECIPIENTS") {
            self.recipients = v.into();
        }
        if let Some(v) = var("AMANAT_LOG_LEVEL") {
            self.log_level = v;
        }
        if let Some(v) = var("AMANAT_ALLOW_ROOT") {
            self.allow_root = matches!(v.as_str(), "1" | "true" | "yes");
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let refuse = |why: &'static str| Err(ConfigError::Setting(why));
        let l = &self.limits;
        if l.max_files == 0 || l.max_text_bytes == 0 || l.max_fields == 0 {
            return refuse("limits.max_files, max_text_bytes and max_fields must be above 0");
        }
        let u = &self.uploads;
        // Each held upload keeps a thread of the blocking pool (512) waiting for its bytes.
        if !(1..=30 * 86_400).contains(&u.resume_window_secs)
            || u.max_upload_bytes == 0
            || u.evict_idle_secs == 0
            || !(1..=256).contains(&u.max_held)
        {
            return refuse(
                "uploads.resume_window_secs must be 1 to 2592000 (30 days), uploads.max_held 1 \
                 to 256, and uploads.max_upload_bytes and uploads.evict_idle_secs above 0",
            );
        }
        if let Some(onion) = &self.onion_location {
            let visible = onion.bytes().all(|b| b.is_ascii_graphic());
            if !(onion.starts_with("http://") || onion.starts_with("https://")) || !visible {
                return refuse("onion_location must be an http:// or https:// address");
            }
        }
        if l.idle_timeout_secs == 0 {
            return refuse("limits.idle_timeout_secs must be at least 1");
        }
        if l.upload_deadline_secs < l.idle_timeout_secs {
            return refuse("limits.upload_deadline_secs must be at least idle_timeout_secs");
        }
        let a = &self.attestation;
        if a.interval_secs == 0 {
            return refuse("attestation.interval_secs must be at least 1");
        }
        if let Some(proxy) = &a.proxy {
            if !is_loopback_socks(proxy) {
                return refuse(
                    "attestation.proxy must be socks5h:// to a loopback address with a port \
                     (Tor's SocksPort): socks5h, so that names are resolved by Tor, never here",
                );
            }
        }
        let urls = a.witnesses.iter().map(|w| &w.url).chain(a.tsas.iter().map(|t| &t.url));
        let reachable = |url: &String| match a.proxy {
            Some(_) => url.starts_with("http://"),
            None => is_loopback_url(url),
        };
        if !urls.into_iter().all(reachable) {
            return refuse(
                "each [[attestation.witness]] and [[attestation.tsa]] url must be http:// to a \
                 loopback address with a port, or, with attestation.proxy set, any http:// \
                 address (an onion service) reached through that proxy: the server itself \
                 resolves and reaches no other host",
            );
        }
        self.validate_replicas()?;
        if l.max_concurrent_uploads == 0 || l.max_concurrent_texts == 0 || l.max_connections == 0 {
            return refuse(
                "limits.max_concurrent_uploads, max_concurrent_texts and max_connections must be \
                 above 0",
            );
        }
        Ok(())
    }

    fn validate_replicas(&self) -> Result<(), ConfigError> {
        let refuse = |why: &'static str| Err(ConfigError::Setting(why));
        let r = &self.replication;
        if let Some(proxy) = &r.proxy {
            if !is_loopback_socks(proxy) {
                return refuse(
                    "replication.proxy must be socks5h:// to a loopback address with a port \
                     (Tor's SocksPort)",
                );
            }
        }
        let mut seen = std::collections::HashSet::new();
        for replica in &self.replicas {
            let well_formed = crate::record::is_replica_name(&replica.name);
            if !well_formed || !seen.insert(replica.name.as_str()) {
                return refuse(
                    "each [[replicas]] needs its own name of 1-32 lowercase letters, digits or \
                     dashes",
                );
            }
            let reachable = match r.proxy {
                Some(_) => {
                    replica.endpoint.starts_with("http://")
                        || replica.endpoint.starts_with("https://")
                }
                None => is_loopback_url(replica.endpoint.trim_end_matches('/')),
            };
            if !reachable {
                return refuse(
                    "each [[replicas]] endpoint must be http:// to a loopback address with a \
                     port, or, with replication.proxy set, any http(s):// address reached \
                     through that proxy: the server itself resolves and reaches no other host",
                );
            }
            if replica.bucket.is_empty() || replica.access_key_id.is_empty() {
                return refuse("each [[replicas]] needs a bucket and an access_key_id");
            }
        }
        if r.ack == AckPolicy::Replicated
            && (r.min_replicas == 0 || r.min_replicas > self.replicas.len())
        {
            return refuse(
                "replication.ack = \"replicated\" needs min_replicas between 1 and the number of \
                 [[replicas]]",
            );
        }
        if !(1..=1024).contains(&r.segment_leaves) {
            return refuse("replication.segment_leaves must be between 1 and 1024");
        }
        // A survivor on Tor waits for the answer: longer than a few minutes and clients
        // give up, and resend what is already stored.
        if !(1..=MAX_ACK_DEADLINE_SECS).contains(&r.ack_deadline_secs) {
            return refuse("replication.ack_deadline_secs must be between 1 and 300");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_environment_override_defaults() {
        let mut config: Config = toml::from_str(
            "listen = \"127.0.0.1:9000\"\ndata_dir = \"/srv/amanat\"\n[limits]\nmax_files = 3\n",
        )
        .unwrap();
        assert_eq!(config.limits.max_files, 3);
        assert_eq!(config.limits.max_text_bytes, 256 * 1024);
        config.apply_env(|k| (k == "AMANAT_LISTEN").then(|| "127.0.0.1:7000".to_string()));
        assert_eq!(config.listen, "127.0.0.1:7000");
        assert_eq!(config.data_dir, PathBuf::from("/srv/amanat"));
    }

    #[test]
    fn replication_settings_out_of_range_are_refused_by_name() {
        let replica = "[[replicas]]\nname = \"p\"\nendpoint = \"http://127.0.0.1:3900\"\n\
                       region = \"garage\"\nbucket = \"b\"\naccess_key_id = \"GK1\"\n\
                       secret_access_key_file = \"s\"\n";
        let refusal = |replication: &str| {
            let config: Config =
                toml::from_str(&format!("{replica}[replication]\n{replication}\n")).unwrap();
            config.validate_replicas().err().map(|e| e.to_string()).unwrap_or_default()
        };
        assert_eq!(refusal("ack_deadline_secs = 60"), "");
        for bad in ["ack_deadline_secs = 0", "ack_deadline_secs = 301"] {
            assert!(refusal(bad).contains("ack_deadline_secs must be between 1 and 300"), "{bad}");
        }
        assert!(refusal("segment_leaves = 0").contains("segment_leaves"));
        assert!(refusal("proxy = \"socks5://127.0.0.1:9050\"").contains("socks5h"));
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<Config>("lsiten = \"x\"").is_err());
    }

    #[test]
    fn shipped_file_matches_the_defaults() {
        let shipped: Config =
            toml::from_str(include_str!("../config/amanat.toml")).expect("shipped config parses");
        let d = Config::default();
        assert_eq!(shipped.listen, d.listen);
        assert_eq!(shipped.data_dir, d.data_dir);
        assert_eq!(shipped.recipients, d.recipients);
        assert_eq!(shipped.retention_days, d.retention_days);
        assert_eq!(shipped.limits.max_submission_bytes, d.limits.max_submission_bytes);
        assert_eq!(shipped.limits.max_files, d.limits.max_files);
        assert_eq!(shipped.limits.max_text_bytes, d.limits.max_text_bytes);
        assert_eq!(shipped.limits.max_fields, d.limits.max_fields);
        assert_eq!(shipped.limits.idle_timeout_secs, d.limits.idle_timeout_secs);
        assert_eq!(shipped.limits.upload_deadline_secs, d.limits.upload_deadline_secs);
        assert_eq!(shipped.limits.max_concurrent_uploads, d.limits.max_concurrent_uploads);
        assert_eq!(shipped.limits.max_connections, d.limits.max_connections);
        assert_eq!(shipped.limits.max_concurrent_texts, d.limits.max_concurrent_texts);
        assert_eq!(shipped.limits.min_upload_bytes_per_sec, d.limits.min_upload_bytes_per_sec);
        assert_eq!(shipped.limits.slow_upload_grace_secs, d.limits.slow_upload_grace_secs);
        assert_eq!(shipped.limits.storage_quota_bytes, d.limits.storage_quota_bytes);
        assert_eq!(shipped.allow_root, d.allow_root);
        assert_eq!(shipped.replies.retention_days, d.replies.retention_days);
        assert_eq!(shipped.attestation.interval_secs, d.attestation.interval_secs);
        assert!(shipped.attestation.witnesses.is_empty());
        assert!(is_loopback_url("http://127.0.0.1:7380/") && is_loopback_url("http://[::1]:80"));
        for far in [
            "http://example.org:80/",
            "http://abc.onion:80/",
            "https://127.0.0.1:1/",
            "http://127.0.0.1/",
        ] {
            assert!(!is_loopback_url(far), "{far}");
        }
    }
}
