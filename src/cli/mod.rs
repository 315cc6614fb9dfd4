//! The command line's rooms: each command's arguments and what it prints. Shared
//! argument groups are defined once here and flattened where a command takes them; so
//! are printing, progress and the data directory's lookup.

pub mod fieldkit;
pub mod keys;
pub mod quorum;
pub mod replica;
pub mod review;
pub mod server;
pub mod witness;

use amanat::config::Config;
use clap::Args;
use serde::Serialize;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// A command's outcome: its exit code, or the message to print before failing.
pub type Done = Result<ExitCode, String>;

/// `--data-dir`: the running server's data directory, where its admin socket is.
#[derive(Args)]
pub struct DataDir {
    /// The server's data directory (default: from the configuration).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

impl DataDir {
    /// The flag, else the configuration's.
    pub fn resolve(&self, config: Option<&Path>) -> Result<PathBuf, String> {
        match &self.data_dir {
            Some(dir) => Ok(dir.clone()),
            None => Config::load(config).map(|c| c.data_dir).map_err(|e| e.to_string()),
        }
    }
}

/// `--json`: one JSON document (or line) instead of text for people.
#[derive(Args)]
pub struct Json {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `--identity` and `--passphrase-file`: an age identity file and, when it is
/// passphrase-protected and there is no terminal, where its passphrase is. With
/// `--quorum`, K holders each bring `--share FILE --identity FILE`, in pairs, and each is
/// asked for their own passphrase (or gives `--passphrase-file`, one per holder, in order).
#[derive(Args)]
pub struct Identity {
    /// A coalition (or lawyer's) identity file (plain or passphrase-protected); with
    /// --quorum, each holder's own, in the order of their --share.
    #[arg(long, value_name = "KEY", required = true)]
    pub identity: Vec<PathBuf>,
    /// Read the identity's passphrase from the first line of this file; with --quorum,
    /// once per --identity, in the same order.
    #[arg(long, value_name = "FILE")]
    pub passphrase_file: Vec<PathBuf>,
    /// Open with a quorum key: its quorum.pub (from `amanat quorum init`).
    #[arg(long, value_name = "QUORUM_PUB", requires = "share")]
    pub quorum: Option<PathBuf>,
    /// A holder's share file, followed by that holder's --identity.
    #[arg(long, value_name = "FILE", requires = "quorum")]
    pub share: Vec<PathBuf>,
}

/// The shares holders brought, each opened with its holder's own identities.
pub struct Holders {
    pub public: amanat::keys::quorum::QuorumPublic,
    held: Vec<(String, Vec<u8>, Vec<age::x25519::Identity>)>,
}

impl Holders {
    pub fn brought(&self) -> Vec<amanat::keys::quorum::Brought<'_>> {
        self.held
            .iter()
            .map(|(name, bytes, identities)| amanat::keys::quorum::Brought {
                name: name.clone(),
                bytes: bytes.clone(),
                identities,
            })
            .collect()
    }
}

impl Identity {
    pub fn load(&self) -> Result<Vec<age::x25519::Identity>, String> {
        if self.quorum.is_none() {
            let ([identity], passphrase @ ([] | [_])) =
                (&self.identity[..], &self.passphrase_file[..])
            else {
                return Err("give one --identity and at most one --passphrase-file (several \
                            only with --quorum)"
                    .into());
            };
            return amanat::keys::load_identities(
                identity,
                passphrase.first().map(PathBuf::as_path),
            )
            .map_err(|e| e.to_string());
        }
        let holders = self.holders()?;
        let brought = holders.brought();
        let identity =
            amanat::keys::quorum::rebuild(&holders.public, &brought).map_err(|e| e.to_string())?;
        eprintln!(
            "quorum: {} shares checked; its key is rebuilt in memory for this command only",
            brought.len()
        );
        Ok(vec![identity])
    }

    /// With `--quorum`: its public part, and each share with its holder's identities.
    pub fn holders(&self) -> Result<Holders, String> {
        let quorum = self.quorum.as_ref().ok_or("give the quorum's --quorum quorum.pub")?;
        if self.share.len() != self.identity.len() {
            return Err(format!(
                "{} shares and {} identities: give each holder's --share with their --identity",
                self.share.len(),
                self.identity.len()
            ));
        }
        if !self.passphrase_file.is_empty() && self.passphrase_file.len() != self.identity.len() {
            return Err(format!(
                "{} passphrase files for {} holders: give none (each holder types theirs) or \
                 one per holder, in the order of their --identity",
                self.passphrase_file.len(),
                self.identity.len()
            ));
        }
        let text = std::fs::read_to_string(quorum)
            .map_err(|e| format!("cannot read {}: {e}", quorum.display()))?;
        let public = amanat::keys::quorum::QuorumPublic::parse(&text).map_err(|e| e.to_string())?;
        let mut held = Vec::new();
        for (n, (share, identity)) in self.share.iter().zip(&self.identity).enumerate() {
            let passphrase = self.passphrase_file.get(n).map(PathBuf::as_path);
            let identities =
                amanat::keys::load_identities(identity, passphrase).map_err(|e| e.to_string())?;
            let bytes = std::fs::read(share)
                .map_err(|e| format!("cannot read the share {}: {e}", share.display()))?;
            held.push((share.display().to_string(), bytes, identities));
        }
        Ok(Holders { public, held })
    }

    /// Where the reviewer's tracker of tree heads lives unless `--state` says.
    pub fn state_file(&self, state: Option<&Path>) -> PathBuf {
        let first = self.quorum.as_ref().or(self.identity.first());
        state.map_or_else(
            || first.map_or_else(PathBuf::new, |p| p.with_file_name("amanat-state.json")),
            Path::to_path_buf,
        )
    }
}

/// Prints `value` as one JSON line.
pub fn print_json(value: &impl Serialize) {
    println!("{}", serde_json::to_string(value).unwrap_or_default());
}

/// Text from a bundle, safe to print: no terminal escape can rewrite what was shown.
pub fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// A byte progress bar, only when a person is watching a terminal.
pub struct Progress(Option<indicatif::ProgressBar>);

impl Progress {
    pub fn new(what: &'static str) -> Progress {
        if !std::io::stdout().is_terminal() {
            return Progress(None);
        }
        let bar = indicatif::ProgressBar::new(0);
        let style = indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} ({eta})",
        )
        .map(|s| s.progress_chars("=> "));
        if let Ok(style) = style {
            bar.set_style(style);
        }
        bar.set_message(what);
        Progress(Some(bar))
    }

    /// A line for the person at the terminal (above the bar, if there is one).
    pub fn say(&self, line: &str) {
        match &self.0 {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    /// The callback the library's long jobs report to: bytes done of a total.
    pub fn update(&self, done: u64, total: u64) {
        if let Some(bar) = &self.0 {
            bar.set_length(total);
            bar.set_position(done);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// Success when nothing failed.
pub fn exit_code(failed: bool) -> ExitCode {
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

pub fn init_logging(level: &str) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let level = level.parse::<LevelFilter>().unwrap_or(LevelFilter::INFO);
    // Our own events at the chosen level; libraries only when something is wrong.
    let filter = Targets::new().with_target("amanat", level).with_default(LevelFilter::WARN);
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(false)
                .with_timer(HourClock),
        )
        .with(filter)
        .init();
}

/// Log lines carry the hour, the finest time amanat keeps anywhere.
struct HourClock;

impl tracing_subscriber::fmt::time::FormatTime for HourClock {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        w.write_str(&amanat::record::Hour::now())
    }
}
