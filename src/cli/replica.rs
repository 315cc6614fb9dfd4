//! `amanat replica`: what a reviewer (or anyone holding a replica's read credentials)
//! does with a replica from any networked machine, with no decryption key.

use super::Done;
use amanat::config::{Config, ReplicaEndpoint};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub struct ReplicaArgs {
    #[command(subcommand)]
    command: ReplicaCommand,
}

#[derive(Subcommand)]
enum ReplicaCommand {
    /// Copy everything new in a replica, for every server it holds, into one file for
    /// `amanat open` on the air-gapped laptop.
    Pull {
        /// The replica's name in the configuration's [[replicas]].
        #[arg(long)]
        replica: String,
        /// The file to write (must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Remember here what this pull carried, so that the next one with the same
        /// file carries only objects new since (the journal always comes whole).
        #[arg(long, value_name = "FILE")]
        state: Option<PathBuf>,
        /// Carry only this server (its id, as `amanat status` on it prints); repeat for
        /// each. Others in the bucket (a new mirror, or one planted by whoever can
        /// write there) are named and left out. Without it, every server comes.
        #[arg(long = "server", value_name = "ID")]
        servers: Vec<String>,
        /// Carry objects from this log entry on, whatever --state says (the journal
        /// always comes whole): what `open` asks for when a journal was too large to
        /// open at once.
        #[arg(long, value_name = "ENTRY")]
        since: Option<u64>,
        #[command(flatten)]
        json: super::Json,
    },
    /// Check that the replica holds every object its journal names, with the right
    /// hash, and that no journal segment was dropped or edited. Exits 1 when not.
    Audit {
        #[arg(long)]
        replica: String,
        /// Remember here what this audit saw (each server's key, how far its journal
        /// went, its closed segments), and report what is gone or changed since.
        #[arg(long, value_name = "FILE")]
        state: Option<PathBuf>,
        #[command(flatten)]
        json: super::Json,
    },
}

pub fn replica(config: Option<&Path>, args: &ReplicaArgs) -> Done {
    let path = config.ok_or("give the configuration naming the replica with --config FILE")?;
    let config = Config::load(Some(path)).map_err(|e| e.to_string())?;
    let find = |name: &str| -> Result<&ReplicaEndpoint, String> {
        config
            .replicas
            .iter()
            .find(|r| r.name == name)
            .ok_or_else(|| format!("{} has no [[replicas]] named {name:?}", path.display()))
    };
    let proxy = config.replication.proxy.as_deref();
    match &args.command {
        ReplicaCommand::Pull { replica, out, state, servers, since, json } => {
            let report = amanat::replication::pull(
                find(replica)?,
                proxy,
                out,
                state.as_deref(),
                servers,
                *since,
            )?;
            if json.json {
                super::print_json(&report);
            } else {
                for s in &report.servers {
                    println!(
                        "server {}: {} journal segment(s), {} log entries, {} new, {} object(s)",
                        s.server, s.segments, s.leaves, s.new_leaves, s.objects
                    );
                }
                for server in &report.left_out {
                    println!("left out: server {server} (not named by --server)");
                }
                for problem in &report.problems {
                    println!("PROBLEM  {problem}");
                }
                println!("wrote {} ({} bytes)", report.out.display(), report.bytes);
            }
            Ok(if report.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        ReplicaCommand::Audit { replica, state, json } => {
            let report = amanat::replication::audit(find(replica)?, proxy, state.as_deref())?;
            if json.json {
                super::print_json(&report);
            } else {
                for s in &report.servers {
                    println!(
                        "server {}: {} journal segment(s) over {} log entries, {} object(s) \
                         checked ({} bytes hashed), {} deleted by the server's purge notices",
                        s.server, s.segments, s.leaves, s.objects, s.bytes_checked, s.purged
                    );
                }
                for problem in &report.problems {
                    println!("PROBLEM  {problem}");
                }
                if report.problems.is_empty() {
                    println!("the replica holds everything its journal names");
                }
            }
            Ok(if report.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
    }
}
