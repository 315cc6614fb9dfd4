//! `amanat keygen`: a coalition key holder's age identity, or a reviewer's custody
//! signing key. Done offline.

use super::Done;
use amanat::keys;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct KeygenArgs {
    /// Where to write the identity file (must not exist).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Write the identity unencrypted (only for machines that are themselves encrypted).
    #[arg(long, conflicts_with = "passphrase_file")]
    no_passphrase: bool,
    /// Read the passphrase from the first line of this file instead of the terminal.
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    /// Make an Ed25519 signing key for custody records instead (a reviewer's).
    #[arg(long, conflicts_with_all = ["no_passphrase", "passphrase_file"])]
    signing: bool,
}

pub fn keygen(args: &KeygenArgs) -> Done {
    let out = &args.out;
    if args.signing {
        return signing_keygen(args);
    }
    let identity = keys::generate_identity("");
    let contents = zeroize::Zeroizing::new(if args.no_passphrase {
        identity.file_text.as_bytes().to_vec()
    } else {
        let passphrase = match &args.passphrase_file {
            Some(path) => keys::passphrase_from_file(path),
            None => keys::prompt_new_passphrase(),
        }
        .map_err(|e| e.to_string())?;
        keys::protect_with_passphrase(&identity.file_text, passphrase)
            .map_err(|e| format!("cannot encrypt the identity: {e}"))?
    });
    amanat::durable::write_new(out, &contents)
        .map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    eprintln!("Wrote the identity to {}. Keep it offline; losing it loses access.", out.display());
    println!("{}", identity.recipient);
    Ok(ExitCode::SUCCESS)
}

/// A reviewer's custody-signing key; the last line printed is its public form.
fn signing_keygen(args: &KeygenArgs) -> Done {
    let out = &args.out;
    if out.exists() {
        return Err(format!("{} exists (an existing file is never overwritten)", out.display()));
    }
    let key = keys::SigningKey::load_or_create(out, "amanat-custody")
        .map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    eprintln!("Wrote the custody signing key to {}. Keep it with your identity.", out.display());
    println!("{}", key.verifier());
    Ok(ExitCode::SUCCESS)
}
