//! The `amanat` command: parses arguments and dispatches, nothing else. Each command's
//! arguments and its printing live in `cli/`; the work is the library's.
#![forbid(unsafe_code)]

mod cli;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "amanat", version, about = "Secure intake for testimony and evidence")]
struct Cli {
    /// Configuration file (default: config/amanat.toml if present).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the intake server.
    Serve,
    /// Create an age identity for a coalition key holder (do this offline).
    Keygen(cli::keys::KeygenArgs),
    /// Offline: quorum keys (K of N holders together hold one identity).
    Quorum(cli::quorum::QuorumArgs),
    /// Counts and sizes from the running server (never content).
    Status(cli::server::StatusArgs),
    /// Make the running server re-read its recipients file (key rotation; as SIGHUP).
    /// Uploads under way finish with the old set; a file that fails the start-up checks
    /// is refused and the old set stays.
    Reload(cli::server::ReloadArgs),
    /// List every stored object: its id and size in bytes, one per line (never content).
    Objects(cli::server::ObjectsArgs),
    /// Write one stored object's ciphertext, exactly as kept, to standard output: to
    /// check it against a receipt (`| sha256sum`) or hand it to a key holder.
    Object(cli::server::ObjectArgs),
    /// Write the submissions not yet exported to a bundle for the offline reviewers.
    Export(cli::server::ExportArgs),
    /// Delete the ciphertext of submissions exported at least DAYS ago.
    Purge(cli::server::PurgeArgs),
    /// Offline: verify and decrypt bundles into readable case folders.
    Open(cli::review::OpenArgs),
    /// Offline: the reviewer's bench over opened cases (search, filters, triage), a
    /// local web page on 127.0.0.1 with a one-time token in its address.
    Review(cli::review::BenchArgs),
    /// Offline: package one case for a lawyer (objects as received, their file keys
    /// encrypted to the lawyer, log proofs, a signed custody record).
    Disclose(cli::review::DiscloseArgs),
    /// Offline: check a disclosure package: every hash, signature and proof; with your
    /// identity, decrypt and check every file.
    Verify(cli::review::VerifyArgs),
    /// Offline: write a reply to a survivor's case into a reply bundle. Only the survivor
    /// (with the codename) and the coalition can read it.
    Reply(cli::review::ReplyArgs),
    /// Hand reply bundles to the running server (through its admin socket).
    ImportReplies(cli::server::ImportArgs),
    /// Offline (field kit): seal a testimony and its files to the coalition's keys into
    /// one sealed file to carry out on USB or send by any messenger. Without
    /// --testimony-file, asks the form's questions on the terminal.
    Seal(cli::fieldkit::SealArgs),
    /// Field kit: send sealed files to a server (its onion service, through Tor) in
    /// resumable pieces, carrying on after every dropped link; prints the receipts.
    Send(cli::fieldkit::SendArgs),
    /// Hand sealed files (from `amanat seal`) to the running server, through its admin
    /// socket.
    Import(cli::server::ImportArgs),
    /// A witness of partner organisations' intake logs (C2SP tlog-witness): `keygen`,
    /// `serve --config witness.toml`.
    Witness(cli::witness::WitnessArgs),
    /// A replica's copy of the intake (S3-compatible storage): `pull` everything new
    /// into a file for `open`; `audit` it for deleted or replaced objects.
    Replica(cli::replica::ReplicaArgs),
    /// Try amanat on this machine: a throwaway demo key under demo/, server on 127.0.0.1:8080.
    Demo(cli::server::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = cli.config.as_deref();
    let result = match cli.command {
        Command::Serve => cli::server::serve(config),
        Command::Keygen(args) => cli::keys::keygen(&args),
        Command::Status(args) => cli::server::status(config, &args),
        Command::Reload(args) => cli::server::reload(config, &args),
        Command::Objects(args) => cli::server::objects(config, &args),
        Command::Object(args) => cli::server::object(config, &args),
        Command::Export(args) => cli::server::export(config, &args),
        Command::Purge(args) => cli::server::purge(config, &args),
        Command::Open(args) => cli::review::open(&args),
        Command::Quorum(args) => cli::quorum::quorum(&args),
        Command::Review(args) => cli::review::bench(&args),
        Command::Disclose(args) => cli::review::disclose(&args),
        Command::Verify(args) => cli::review::verify(&args),
        Command::Reply(args) => cli::review::reply(config, &args),
        Command::ImportReplies(args) => cli::server::import_replies(config, &args),
        Command::Seal(args) => cli::fieldkit::seal(&args),
        Command::Send(args) => cli::fieldkit::send(&args),
        Command::Import(args) => cli::server::import_sealed(config, &args),
        Command::Witness(args) => cli::witness::witness(config, &args),
        Command::Replica(args) => cli::replica::replica(config, &args),
        Command::Demo(args) => cli::server::demo(&args),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("amanat: {message}");
            ExitCode::FAILURE
        }
    }
}
