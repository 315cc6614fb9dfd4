//! `amanat witness`: a partner organisation's witness of another's intake log.

use super::{init_logging, Done};
use amanat::witness::{self, WitnessConfig};
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub struct WitnessArgs {
    #[command(subcommand)]
    command: WitnessCommand,
}

#[derive(Subcommand)]
enum WitnessCommand {
    /// Make the witness's Ed25519 key; the last line printed is its cosignature
    /// verifier key, for the logs it witnesses (`[[attestation.witness]] key`).
    Keygen {
        /// The witness's name (its key name in cosignatures), e.g. witness.example.org.
        #[arg(long)]
        name: String,
        /// Where to write the key (must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Run the witness (C2SP tlog-witness, POST /add-checkpoint) with the configuration
    /// given by --config.
    Serve,
}

pub fn witness(config: Option<&Path>, args: &WitnessArgs) -> Done {
    match &args.command {
        WitnessCommand::Keygen { name, out } => keygen(name, out),
        WitnessCommand::Serve => {
            let path = config.ok_or("give the witness's configuration with --config FILE")?;
            let config = WitnessConfig::load(path).map_err(|e| e.to_string())?;
            init_logging("info");
            witness::serve(&config).map_err(|e| e.to_string())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn keygen(name: &str, out: &Path) -> Done {
    if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '+') {
        return Err("--name must be non-empty, without spaces or '+'".into());
    }
    if out.exists() {
        return Err(format!("{} exists (an existing file is never overwritten)", out.display()));
    }
    let key = amanat::keys::SigningKey::load_or_create(out, name)
        .map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    eprintln!("Wrote the witness key to {}. Keep it on the witness host only.", out.display());
    println!("{}", key.cosignature_verifier());
    Ok(ExitCode::SUCCESS)
}
