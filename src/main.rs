//! The `amanat` command: parses arguments and dispatches, nothing else.
#![forbid(unsafe_code)]

use age::secrecy::SecretString;
use amanat::admin::client::AdminClient;
use amanat::config::Config;
use amanat::keys;
use clap::{Parser, Subcommand};
use std::io::{IsTerminal, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
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
    Keygen {
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
    },
    /// Counts and sizes from the running server (never content).
    Status {
        /// The server's data directory (default: from the configuration).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Make the running server re-read its recipients file (key rotation; as SIGHUP).
    /// Uploads under way finish with the old set; a file that fails the start-up checks
    /// is refused and the old set stays.
    Reload {
        /// The server's data directory (default: from the configuration).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// List every stored object: its id and size in bytes, one per line (never content).
    Objects {
        /// The server's data directory (default: from the configuration).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Write one stored object's ciphertext, exactly as kept, to standard output: to
    /// check it against a receipt (`| sha256sum`) or hand it to a key holder.
    Object {
        /// The object's id (the SHA-256 of its ciphertext, as receipts name it).
        id: String,
        /// The server's data directory (default: from the configuration).
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
    },
    /// Write the submissions not yet exported to a bundle for the offline reviewers.
    Export {
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// The bundle file to create (never overwritten).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Every submission still on the server, exported before or not.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Delete the ciphertext of submissions exported at least DAYS ago.
    Purge {
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        #[arg(long, value_name = "DAYS")]
        exported_before: u64,
        #[arg(long)]
        json: bool,
    },
    /// Offline: verify and decrypt bundles into readable case folders.
    Open {
        /// Bundles (from `amanat export`) to open.
        #[arg(required = true, value_name = "BUNDLE")]
        bundles: Vec<PathBuf>,
        /// A coalition identity file (plain or passphrase-protected).
        #[arg(long, value_name = "KEY")]
        identity: PathBuf,
        /// Read the identity's passphrase from the first line of this file.
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
        /// Where the case folders go.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// One JSON line per submission.
        #[arg(long)]
        json: bool,
        /// Where to remember the server checkpoints verified so far (default:
        /// amanat-state.json beside the identity).
        #[arg(long, value_name = "FILE")]
        state: Option<PathBuf>,
        /// Your language for the headings of testimony.txt and report.html (kk, ru or
        /// en); the survivor's language is shown beside it.
        #[arg(long, default_value = "en", value_parser = parse_lang)]
        lang: amanat::i18n::Lang,
    },
    /// Offline: package one case for a lawyer (objects as received, their file keys
    /// encrypted to the lawyer, log proofs, a signed custody record).
    Disclose {
        /// The folder `amanat open` wrote the cases to.
        #[arg(long, value_name = "DIR")]
        cases: PathBuf,
        /// The case (submission id) to disclose.
        #[arg(long, value_name = "ID")]
        case: String,
        /// The bundles that carried the case.
        #[arg(long = "bundle", required = true, value_name = "BUNDLE")]
        bundles: Vec<PathBuf>,
        #[arg(long, value_name = "KEY")]
        identity: PathBuf,
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
        /// The lawyer's age recipient (age1...).
        #[arg(long, value_name = "RECIPIENT")]
        to: String,
        /// Your custody signing key (`amanat keygen --signing`).
        #[arg(long, value_name = "KEY")]
        signer: Option<PathBuf>,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[arg(long, value_name = "FILE")]
        state: Option<PathBuf>,
        /// Disclose although the survivor's consent does not include a lawyer, for this
        /// reason; it is signed into the custody record and shown in the lawyer's report.
        #[arg(long, value_name = "REASON")]
        override_consent: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Offline: check a disclosure package: every hash, signature and proof; with your
    /// identity, decrypt and check every file.
    Verify {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[arg(long, value_name = "KEY")]
        identity: Option<PathBuf>,
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
        /// Where to write the files and report.html / report.txt.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// The server key the coalition published. Required for a pass: without it the
        /// checks run, but only this comparison ties the package to the coalition's server.
        #[arg(long, value_name = "KEY")]
        server_key: Option<String>,
        /// The disclosing reviewer's custody key (as the reviewer gave it to you): compared
        /// with the key that signed the custody record. Required for a pass.
        #[arg(long, value_name = "KEY")]
        custody_key: Option<String>,
        /// Accept a custody record that is unsigned, or signed by a key you did not
        /// compare (the report says so).
        #[arg(long)]
        accept_unverified_custody: bool,
        #[arg(long)]
        json: bool,
    },
    /// Offline: write a reply to a survivor's case into a reply bundle. Only the survivor
    /// (with the codename) and the coalition can read it.
    Reply {
        /// The folder `amanat open` wrote the cases to.
        #[arg(long, value_name = "DIR")]
        cases: PathBuf,
        /// The case to answer (its first submission's id).
        #[arg(long, value_name = "ID")]
        case: String,
        /// The reply, as UTF-8 text.
        #[arg(long, value_name = "FILE")]
        text_file: PathBuf,
        /// The coalition's recipients file, so reviewers can read the reply too
        /// (default: the configuration's).
        #[arg(long, value_name = "FILE")]
        recipients: Option<PathBuf>,
        /// The reply bundle to create (never overwritten).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Hand reply bundles to the running server (through its admin socket).
    ImportReplies {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Offline (field kit): seal a testimony and its files to the coalition's keys into
    /// one sealed file to carry out on USB or send by any messenger. Without
    /// --testimony-file, asks the form's questions on the terminal.
    Seal {
        /// The coalition's recipients file (age1... per line).
        #[arg(long, value_name = "FILE")]
        recipients: PathBuf,
        /// The testimony, as UTF-8 text.
        #[arg(long, value_name = "FILE")]
        testimony_file: Option<PathBuf>,
        /// Another answer, as name=value (repeatable), e.g. --field where=Almaty.
        #[arg(long = "field", value_name = "KEY=VALUE")]
        fields: Vec<String>,
        /// A photo, video or document (repeatable). Sealed bit-exact, metadata and all.
        #[arg(long = "evidence", value_name = "FILE")]
        evidence: Vec<PathBuf>,
        /// The survivor's language (kk, ru, en...).
        #[arg(long, default_value = "und")]
        language: String,
        /// The sealed file to create (never overwritten).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Hand sealed files (from `amanat seal`) to the running server, through its admin
    /// socket.
    Import {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Try amanat on this machine: a throwaway demo key under demo/, server on 127.0.0.1:8080.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve => Config::load(cli.config.as_deref()).and_then(|config| {
            init_logging(&config.log_level);
            amanat::serve::run(config)
        }),
        Command::Keygen { out, signing: true, .. } => signing_keygen(&out),
        Command::Keygen { out, no_passphrase, passphrase_file, .. } => {
            keygen(&out, no_passphrase, passphrase_file.as_deref())
        }
        Command::Demo { listen } => demo(listen),
        Command::Status { data_dir, json } => data_dir_of(cli.config.as_deref(), data_dir)
            .and_then(|dir| AdminClient::connect(&dir)?.status())
            .map(|status| print_status(&status, json)),
        Command::Reload { data_dir } => data_dir_of(cli.config.as_deref(), data_dir)
            .and_then(|dir| AdminClient::connect(&dir)?.reload())
            .map(|set| {
                println!(
                    "new submissions are now sealed to {} recipient(s), fingerprint {}",
                    set.recipients, set.fingerprint
                )
            }),
        Command::Objects { data_dir, json } => data_dir_of(cli.config.as_deref(), data_dir)
            .and_then(|dir| AdminClient::connect(&dir)?.list_objects())
            .map(|list| {
                if json {
                    println!("{}", serde_json::to_string(&list).unwrap_or_default());
                } else {
                    for object in list.objects {
                        println!("{} {}", object.id, object.bytes);
                    }
                }
            }),
        Command::Object { id, data_dir } => {
            data_dir_of(cli.config.as_deref(), data_dir).and_then(|dir| {
                let mut stdout = std::io::stdout().lock();
                if std::io::IsTerminal::is_terminal(&stdout) {
                    return Err("an object is binary ciphertext: redirect standard output to a \
                                file or a pipe"
                        .into());
                }
                AdminClient::connect(&dir)?.object(&id, &mut stdout).map(drop)
            })
        }
        Command::Export { data_dir, out, all, json } => {
            data_dir_of(cli.config.as_deref(), data_dir)
                .and_then(|dir| export(&dir, &out, all, json))
        }
        Command::Purge { data_dir, exported_before, json } => {
            data_dir_of(cli.config.as_deref(), data_dir)
                .and_then(|dir| AdminClient::connect(&dir)?.purge(exported_before))
                .map(|report| {
                    if json {
                        println!("{}", serde_json::to_string(&report).unwrap_or_default());
                    } else {
                        println!(
                            "Purged the ciphertext of {} submission(s), {} bytes freed.",
                            report.purged_submissions, report.freed_bytes
                        );
                    }
                })
        }
        Command::Disclose {
            cases,
            case,
            bundles,
            identity,
            passphrase_file,
            to,
            signer,
            out,
            state,
            override_consent,
            json,
        } => disclose(
            &cases,
            &case,
            &bundles,
            &identity,
            passphrase_file.as_deref(),
            &to,
            signer.as_deref(),
            &out,
            state,
            override_consent.as_deref(),
            json,
        ),
        Command::Verify {
            file,
            identity,
            passphrase_file,
            out,
            server_key,
            custody_key,
            accept_unverified_custody,
            json,
        } => {
            let trust = amanat::review::verify::Trust {
                server_key: server_key.as_deref(),
                custody_key: custody_key.as_deref(),
                accept_unverified_custody,
            };
            return verify(
                &file,
                identity.as_deref(),
                passphrase_file.as_deref(),
                out.as_deref(),
                &trust,
                json,
            );
        }
        Command::Seal { recipients, testimony_file, fields, evidence, language, out, json } => {
            seal(&recipients, testimony_file.as_deref(), &fields, &evidence, language, &out, json)
        }
        Command::Import { files, data_dir, json } => {
            return match data_dir_of(cli.config.as_deref(), data_dir) {
                Ok(dir) => import_sealed(&dir, &files, json),
                Err(e) => {
                    eprintln!("amanat: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Reply { cases, case, text_file, recipients, out, json } => {
            reply(cli.config.as_deref(), &cases, &case, &text_file, recipients, &out, json)
        }
        Command::ImportReplies { files, data_dir, json } => {
            data_dir_of(cli.config.as_deref(), data_dir)
                .and_then(|dir| import_replies(&dir, &files, json))
        }
        Command::Open { bundles, identity, passphrase_file, out, json, state, lang } => {
            let state = state.unwrap_or_else(|| identity.with_file_name("amanat-state.json"));
            return open(&bundles, &identity, passphrase_file.as_deref(), &out, &state, lang, json);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("amanat: {message}");
            ExitCode::FAILURE
        }
    }
}

fn parse_lang(code: &str) -> Result<amanat::i18n::Lang, String> {
    amanat::i18n::Lang::from_code(code).ok_or_else(|| "kk, ru or en".to_string())
}

/// The data directory: the flag, else the configuration's.
fn data_dir_of(config: Option<&Path>, flag: Option<PathBuf>) -> Result<PathBuf, String> {
    match flag {
        Some(dir) => Ok(dir),
        None => Config::load(config).map(|c| c.data_dir),
    }
}

fn print_status(server: &amanat::admin::ServerStatus, json: bool) {
    if json {
        println!("{}", serde_json::to_string(server).unwrap_or_default());
        return;
    }
    let status = &server.store;
    let lanes = &server.intake;
    println!("server        {}", status.server);
    println!("server key    {}", status.server_key);
    println!("log size      {}", status.log_size);
    println!("submissions   {}", status.submissions);
    println!("exported      {}", status.exported);
    println!("purged        {}", status.purged);
    println!("objects       {}", status.objects);
    println!("ciphertext    {} bytes", status.store_bytes);
    println!("index         {} bytes on disk", status.index_bytes);
    println!("replies       {} waiting for their survivors", status.replies_waiting);
    println!(
        "intake        uploads {}/{}{}, texts {}/{}, codename checks queued {}, refused busy \
         this hour {}",
        lanes.uploads_in_progress,
        lanes.upload_slots,
        if lanes.saturated { " (SATURATED: new uploads with files are refused)" } else { "" },
        lanes.texts_in_progress,
        lanes.text_slots,
        lanes.codename_checks_queued,
        lanes.busy_refusals_this_hour
    );
    if status.index_rewrite_due {
        println!(
            "INDEX         deleted bytes (an old codename tag, a read reply) are still in the \
             index's files: restart the server to rewrite it without them"
        );
    }
    if !status.submissions_missing_objects.is_empty() {
        println!(
            "MISSING       {} submission(s) lack an object in the store and cannot be \
             exported: {}",
            status.submissions_missing_objects.len(),
            status.submissions_missing_objects.join(" ")
        );
    }
    if status.cases_on_v1_keys > 0 {
        println!(
            "OLD KEYS      {} case(s) still have the reply key of before v2; {} reply(ies) \
             for them can be read by anyone with a copy of the index (resealed at each \
             survivor's next sign-in)",
            status.cases_on_v1_keys, status.replies_exposed
        );
    }
    if status.replies_exposed_before_upgrade > 0 {
        println!(
            "EXPOSED       {} reply(ies) were sealed to a key of before v2: any copy of the \
             data directory made before their case's upgrade can read them",
            status.replies_exposed_before_upgrade
        );
    }
    match &status.last_export {
        Some(last) => println!(
            "last export   {} ({} submissions, bundle {})",
            last.exported_at, last.submissions, last.bundle
        ),
        None => println!("last export   never"),
    }
}

fn export(data_dir: &Path, out: &Path, all: bool, json: bool) -> Result<(), String> {
    let bar = progress_bar("exporting");
    let summary = AdminClient::connect(data_dir)?.export(all, out, |done, total| {
        if let Some(bar) = &bar {
            bar.set_length(total);
            bar.set_position(done);
        }
    })?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let incomplete = summary.as_ref().is_some_and(|s| !s.missing.is_empty());
    match (&summary, json) {
        (Some(s), true) => println!("{}", serde_json::to_string(s).unwrap_or_default()),
        (Some(s), false) if s.submissions > 0 => println!(
            "Wrote {} with {} submission(s), {} bytes. They are marked exported.",
            out.display(),
            s.submissions,
            s.bytes
        ),
        (Some(_), false) => println!("Nothing could be exported; no file written."),
        (None, true) => {
            println!("{}", serde_json::json!({"bundle": null, "submissions": 0, "bytes": 0}))
        }
        (None, false) => println!("Nothing new to export; no file written."),
    }
    if let (Some(s), true) = (&summary, incomplete) {
        for m in &s.missing {
            eprintln!(
                "NOT EXPORTED  submission {}: object {} is missing from the store",
                m.submission, m.object
            );
        }
        return Err(format!(
            "{} submission(s) were left out because an object of theirs is missing from the \
             store (restore it from a backup, then export again); the others were exported",
            s.missing.len()
        ));
    }
    Ok(())
}

fn seal(
    recipients: &Path,
    testimony_file: Option<&Path>,
    fields: &[String],
    evidence: &[PathBuf],
    language: String,
    out: &Path,
    json: bool,
) -> Result<(), String> {
    use amanat::envelope::TextField;
    let recipients = keys::Recipients::load(recipients).map_err(|e| e.to_string())?;
    let mut text_fields = Vec::new();
    for field in fields {
        let (name, value) = field
            .split_once('=')
            .filter(|(n, _)| !n.is_empty())
            .ok_or_else(|| format!("--field {field:?}: write it as name=value"))?;
        text_fields.push(TextField { name: name.into(), value: value.into() });
    }
    let testimony = match testimony_file {
        Some(path) => zeroize::Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {} as UTF-8 text: {e}", path.display()))?,
        ),
        None => ask_testimony(&mut text_fields)?,
    };
    let bar = progress_bar("sealing");
    let summary = amanat::sealed::seal(
        amanat::sealed::SealRequest {
            recipients: &recipients,
            testimony,
            fields: text_fields,
            evidence,
            language,
            out,
        },
        |done, total| {
            if let Some(bar) = &bar {
                bar.set_length(total);
                bar.set_position(done);
            }
        },
    )?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if json {
        println!("{}", serde_json::to_string(&summary).unwrap_or_default());
    } else {
        println!(
            "Sealed {} file(s) and the testimony into {} ({} bytes). Only the coalition's keys \
             open it. Carry it out (USB, any messenger); `amanat import` or the server's \
             /api/v1/sealed takes it in. You may now delete the originals if the device may \
             be searched.",
            summary.files,
            out.display(),
            summary.bytes
        );
    }
    Ok(())
}

/// The form's main questions on the terminal, for a volunteer writing down what a
/// survivor says. Only the testimony is required.
fn ask_testimony(
    fields: &mut Vec<amanat::envelope::TextField>,
) -> Result<zeroize::Zeroizing<String>, String> {
    use std::io::BufRead;
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    eprintln!("What happened, in the survivor's own words. End with a line holding only a dot (.)");
    let mut testimony = zeroize::Zeroizing::new(String::new());
    for line in lines.by_ref() {
        let line = zeroize::Zeroizing::new(line.map_err(|e| e.to_string())?);
        if line.trim() == "." {
            break;
        }
        testimony.push_str(&line);
        testimony.push('\n');
    }
    for (name, question) in [
        ("when", "When did it happen? (an approximate date is fine; Enter to skip)"),
        ("where", "Where? City and place (Enter to skip)"),
        ("what_was_done", "What was done? (Enter to skip)"),
        ("contact", "How may the coalition reach the survivor, if they want that? (Enter to skip)"),
    ] {
        eprintln!("{question}");
        let Some(line) = lines.next() else { break };
        let line = line.map_err(|e| e.to_string())?;
        if !line.trim().is_empty() {
            fields.push(amanat::envelope::TextField { name: name.into(), value: line });
        }
    }
    Ok(testimony)
}

/// `amanat import`: exit code 0 only when every file was stored (or had been).
fn import_sealed(data_dir: &Path, files: &[PathBuf], json: bool) -> ExitCode {
    let mut failed = false;
    for file in files {
        let result = AdminClient::connect(data_dir).and_then(|c| c.import_sealed(file));
        match (result, json) {
            (Ok(done), true) => println!(
                "{}",
                serde_json::json!({"file": file, "id": done.id, "received_at": done.received_at,
                                   "already_imported": done.already_imported})
            ),
            (Ok(done), false) => println!(
                "{}  {}  {}",
                if done.already_imported { "already " } else { "imported" },
                done.id,
                file.display()
            ),
            (Err(e), true) => {
                failed = true;
                println!("{}", serde_json::json!({"file": file, "error": e}))
            }
            (Err(e), false) => {
                failed = true;
                println!("REFUSED   {}  {}", file.display(), printable(&e))
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn reply(
    config: Option<&Path>,
    cases: &Path,
    case: &str,
    text_file: &Path,
    recipients: Option<PathBuf>,
    out: &Path,
    json: bool,
) -> Result<(), String> {
    let recipients = match recipients {
        Some(path) => path,
        None => Config::load(config)?.recipients,
    };
    let coalition = keys::Recipients::load(&recipients).map_err(|e| e.to_string())?;
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(text_file)
            .map_err(|e| format!("cannot read {} as UTF-8 text: {e}", text_file.display()))?,
    );
    let summary = amanat::review::reply::write_reply(cases, case, &text, &coalition, out)?;
    if json {
        println!("{}", serde_json::to_string(&summary).unwrap_or_default());
    } else {
        println!(
            "Wrote {}: a reply to case {}, readable only with the survivor's codename and by \
             the coalition. Carry it to the server and run `amanat import-replies` there.",
            out.display(),
            summary.case
        );
    }
    Ok(())
}

fn import_replies(data_dir: &Path, files: &[PathBuf], json: bool) -> Result<(), String> {
    let (mut added, mut already) = (0usize, 0usize);
    for file in files {
        let replies = amanat::reply::read_bundle(file)
            .map_err(|e| format!("{}: {e}; nothing of it was imported", file.display()))?;
        for (entry, ciphertext) in &replies {
            if AdminClient::connect(data_dir)?.import_reply(entry, ciphertext)? {
                added += 1;
            } else {
                already += 1;
            }
        }
    }
    if json {
        println!("{}", serde_json::json!({"added": added, "already_imported": already}));
    } else {
        println!(
            "{added} reply(ies) stored for their survivors; {already} had been imported before."
        );
    }
    Ok(())
}

/// `amanat open`: exit code 0 only when every submission verified.
fn open(
    bundles: &[PathBuf],
    identity: &Path,
    passphrase_file: Option<&Path>,
    out: &Path,
    state: &Path,
    lang: amanat::i18n::Lang,
    json: bool,
) -> ExitCode {
    let identities = match load_identities(identity, passphrase_file) {
        Ok(ids) => ids,
        Err(e) => {
            eprintln!("amanat: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut state = match amanat::review::state::ReviewState::load(state) {
        Ok(state) => state,
        Err(e) => {
            eprintln!("amanat: cannot read the review state {}: {e}", state.display());
            return ExitCode::FAILURE;
        }
    };
    let bar = progress_bar("opening");
    let outcomes =
        amanat::review::open_bundles(bundles, &identities, out, &mut state, lang, |done, total| {
            if let Some(bar) = &bar {
                bar.set_length(total);
                bar.set_position(done);
            }
        });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let outcomes = match outcomes {
        Ok(outcomes) => outcomes,
        Err(e) => {
            eprintln!("amanat: cannot write to {}: {e}", out.display());
            return ExitCode::FAILURE;
        }
    };
    for outcome in &outcomes {
        if json {
            println!("{}", serde_json::to_string(outcome).unwrap_or_default());
        } else {
            use amanat::review::Status;
            match outcome.status {
                Status::Opened => println!(
                    "opened   {}  ({} files){}",
                    outcome.submission,
                    outcome.files,
                    match &outcome.case {
                        Some(case) if *case != outcome.submission => {
                            format!(", added later to case {case}")
                        }
                        _ => String::new(),
                    }
                ),
                Status::AlreadyOpen => println!("already  {}", outcome.submission),
                Status::NewServerKey | Status::ReplyKeyChanged => {
                    println!("NOTE     {}", printable(outcome.reason.as_deref().unwrap_or("")))
                }
                Status::Failed => println!(
                    "FAILED   {}  {}",
                    printable(&outcome.submission),
                    printable(outcome.reason.as_deref().unwrap_or(""))
                ),
            }
        }
    }
    let failed = outcomes.iter().filter(|o| !o.verified()).count();
    let notes = outcomes
        .iter()
        .filter(|o| {
            matches!(
                o.status,
                amanat::review::Status::NewServerKey | amanat::review::Status::ReplyKeyChanged
            )
        })
        .count();
    if !json {
        println!(
            "{} verified, {} failed; cases in {} (open index.html)",
            outcomes.len() - failed - notes,
            failed,
            out.display()
        );
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A coalition or lawyer identity, prompting for its passphrase if it has one.
fn load_identities(
    identity: &Path,
    passphrase_file: Option<&Path>,
) -> Result<Vec<age::x25519::Identity>, String> {
    keys::read_identities(identity, || match passphrase_file {
        Some(path) => read_passphrase_file(path).map_err(std::io::Error::other),
        None if std::io::stdin().is_terminal() => {
            rpassword::prompt_password(format!("Passphrase for {}: ", identity.display()))
                .map(SecretString::from)
        }
        None => Err(std::io::Error::other(
            "the identity is passphrase-protected: use --passphrase-file FILE or a terminal",
        )),
    })
    .map_err(|e| format!("cannot use the identity {}: {e}", identity.display()))
}

#[allow(clippy::too_many_arguments)]
fn disclose(
    cases: &Path,
    case: &str,
    bundles: &[PathBuf],
    identity: &Path,
    passphrase_file: Option<&Path>,
    to: &str,
    signer: Option<&Path>,
    out: &Path,
    state: Option<PathBuf>,
    override_consent: Option<&str>,
    json: bool,
) -> Result<(), String> {
    let identities = load_identities(identity, passphrase_file)?;
    let signer = match signer {
        Some(path) if !path.is_file() => {
            return Err(format!("no signing key at {}", path.display()))
        }
        Some(path) => Some(
            keys::SigningKey::load_or_create(path, "amanat-custody")
                .map_err(|e| format!("cannot use the signing key {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let state_path = state.unwrap_or_else(|| identity.with_file_name("amanat-state.json"));
    let mut state = amanat::review::state::ReviewState::load(&state_path)
        .map_err(|e| format!("cannot read the review state {}: {e}", state_path.display()))?;
    let request = amanat::review::disclose::DiscloseRequest {
        bundles,
        identities: &identities,
        cases,
        case,
        to,
        signer: signer.as_ref(),
        out,
        override_consent,
    };
    let summary = amanat::review::disclose::disclose(&request, &mut state)?;
    if json {
        println!("{}", serde_json::to_string(&summary).unwrap_or_default());
    } else {
        println!(
            "Wrote {}: case {}, {} submission(s), {} objects, {} bytes. Give it to the lawyer with VERIFY.txt's instructions.",
            out.display(),
            summary.case,
            summary.submissions,
            summary.objects,
            summary.bytes
        );
    }
    Ok(())
}

/// `amanat verify`: exit 0 only when every check holds.
fn verify(
    file: &Path,
    identity: Option<&Path>,
    passphrase_file: Option<&Path>,
    out: Option<&Path>,
    trust: &amanat::review::verify::Trust<'_>,
    json: bool,
) -> ExitCode {
    let identities = match identity.map(|i| load_identities(i, passphrase_file)).transpose() {
        Ok(ids) => ids,
        Err(e) => {
            eprintln!("amanat: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = match amanat::review::verify::verify_any(file, identities.as_deref(), out, trust) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("amanat: {} cannot be verified: {}", file.display(), printable(&e));
            return ExitCode::FAILURE;
        }
    };
    if json {
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
    } else {
        for check in &report.checks {
            println!(
                "{}  {}: {}",
                if check.ok { "ok  " } else { "FAIL" },
                printable(&check.what),
                printable(&check.detail)
            );
            if !check.not_proved.is_empty() {
                println!("      does not prove: {}", printable(&check.not_proved));
            }
        }
        println!("{}", report.verdict());
        for note in report.notes() {
            println!("NOTE: {}", printable(&note));
        }
    }
    if report.verified {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Text from a bundle, safe to print: no terminal escape can rewrite what was shown.
fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// A byte progress bar, only when a person is watching a terminal.
fn progress_bar(what: &'static str) -> Option<indicatif::ProgressBar> {
    if !std::io::stdout().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    let style =
        indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} ({eta})")
            .map(|s| s.progress_chars("=> "));
    if let Ok(style) = style {
        bar.set_style(style);
    }
    bar.set_message(what);
    Some(bar)
}

fn init_logging(level: &str) {
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
        w.write_str(&amanat::intake::upload::received_hour())
    }
}

fn keygen(out: &Path, no_passphrase: bool, passphrase_file: Option<&Path>) -> Result<(), String> {
    let identity = keys::generate_identity("");
    let contents: Vec<u8> = if no_passphrase {
        identity.file_text.as_bytes().to_vec()
    } else {
        let passphrase = match passphrase_file {
            Some(path) => read_passphrase_file(path)?,
            None => prompt_new_passphrase()?,
        };
        keys::protect_with_passphrase(&identity.file_text, passphrase)
            .map_err(|e| format!("cannot encrypt the identity: {e}"))?
    };
    write_private_file(out, &contents)?;
    eprintln!("Wrote the identity to {}. Keep it offline; losing it loses access.", out.display());
    println!("{}", identity.recipient);
    Ok(())
}

/// A reviewer's custody-signing key; the last line printed is its public form.
fn signing_keygen(out: &Path) -> Result<(), String> {
    if out.exists() {
        return Err(format!("{} exists (an existing file is never overwritten)", out.display()));
    }
    let key = keys::SigningKey::load_or_create(out, "amanat-custody")
        .map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    eprintln!("Wrote the custody signing key to {}. Keep it with your identity.", out.display());
    println!("{}", key.verifier());
    Ok(())
}

fn read_passphrase_file(path: &Path) -> Result<SecretString, String> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the passphrase file {}: {e}", path.display()))?,
    );
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(format!("the passphrase file {} is empty", path.display()));
    }
    Ok(SecretString::from(line.to_string()))
}

fn prompt_new_passphrase() -> Result<SecretString, String> {
    if !std::io::stdin().is_terminal() {
        return Err("no terminal to ask for a passphrase: use --passphrase-file FILE, or \
                    --no-passphrase on an encrypted machine"
            .into());
    }
    let first = zeroize::Zeroizing::new(
        rpassword::prompt_password("Passphrase for the new identity: ")
            .map_err(|e| e.to_string())?,
    );
    let second = zeroize::Zeroizing::new(
        rpassword::prompt_password("Same passphrase again: ").map_err(|e| e.to_string())?,
    );
    if first.is_empty() {
        return Err("the passphrase is empty".into());
    }
    if *first != *second {
        return Err("the two passphrases differ; nothing was written".into());
    }
    Ok(SecretString::from(first.to_string()))
}

fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), String> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            format!("cannot create {}: {e} (an existing file is never overwritten)", path.display())
        })?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// What `amanat demo` prints: how to send, then how to read back everything sent, with
/// amanat as a reviewer would and with the stock `age` tool. A test runs exactly these
/// commands.
fn demo_instructions(listen: &str) -> String {
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| {
            let cwd = std::env::current_dir().ok()?;
            Some(p.strip_prefix(&cwd).map(|r| Path::new(".").join(r)).unwrap_or(p))
        })
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "amanat".into());
    let exe = if exe.contains(char::is_whitespace) { format!("'{exe}'") } else { exe };
    format!(
        "\n  amanat DEMO: a throwaway key in demo/identity.txt is the only recipient.\n\
         \n  Open   http://{listen}/   and send a testimony with a photo.\n\
         \n  Then, in another terminal, read back everything that was sent, as a reviewer\n  \
         would (export it over the admin socket, open it offline with the key):\n\
         \n    {exe} export --data-dir demo/data --out demo/bundle-$(date +%s).tar\n\
         \n    {exe} open demo/bundle-*.tar --identity demo/identity.txt --out demo/cases\n\
         \n  and open demo/cases/index.html: each case has testimony.txt and its evidence/.\n\
         \n  Or with the stock age tool, every stored object as the server keeps it:\n\
         \n    mkdir -p demo/decrypted && {exe} objects --data-dir demo/data | while read id size; do \
         {exe} object $id --data-dir demo/data | age -d -i demo/identity.txt > demo/decrypted/$id; done\n\
         \n  Each submission has one JSON manifest (the testimony, and each file's name, size\n  \
         and SHA-256); the other objects are its files, exactly as sent and then padded with\n  \
         zeros so their size does not give them away: `head -c SIZE` gives the file back.\n\
         \n  Stop with Ctrl-C.\n"
    )
}

/// A newcomer's first run: a throwaway, clearly labelled key, and the server with it.
fn demo(listen: String) -> Result<(), String> {
    let demo = Path::new("demo");
    let keys_dir = demo.join("keys");
    let identity_path = demo.join("identity.txt");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&keys_dir)
        .map_err(|e| format!("cannot create {}: {e}", keys_dir.display()))?;
    let recipients_path = keys_dir.join("recipients.txt");
    if !identity_path.exists() {
        let identity = keys::generate_identity(
            "DEMO KEY made by `amanat demo`: throwaway, never use it for real testimony.",
        );
        write_private_file(&identity_path, identity.file_text.as_bytes())?;
        std::fs::write(
            &recipients_path,
            format!("# DEMO recipient (amanat demo)\n{}\n", identity.recipient),
        )
        .map_err(|e| format!("cannot write {}: {e}", recipients_path.display()))?;
    }
    let config = Config {
        listen: listen.clone(),
        data_dir: demo.join("data"),
        recipients: recipients_path,
        // A throwaway key on a test machine, often a fresh one where everyone is root.
        allow_root: true,
        ..Config::default()
    };
    init_logging(&config.log_level);
    println!("{}", demo_instructions(&listen));
    amanat::serve::run(config)
}
