//! `amanat seal`: the field kit, offline.

use super::{print_json, Done, Json, Progress};
use amanat::fieldkit::{self, SealRequest};
use amanat::record::TextField;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct SealArgs {
    /// The coalition's recipients file (age1... per line).
    #[arg(long, value_name = "FILE")]
    recipients: PathBuf,
    /// The testimony, as UTF-8 text.
    #[arg(long, value_name = "FILE")]
    testimony_file: Option<PathBuf>,
    /// Another answer, as name=value (repeatable), e.g. --field city=Almaty.
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
    #[command(flatten)]
    json: Json,
}

pub fn seal(args: &SealArgs) -> Done {
    let recipients = amanat::keys::Recipients::load(&args.recipients).map_err(|e| e.to_string())?;
    let mut fields = Vec::new();
    for field in &args.fields {
        let (name, value) = field
            .split_once('=')
            .filter(|(n, _)| !n.is_empty())
            .ok_or_else(|| format!("--field {field:?}: write it as name=value"))?;
        fields.push(TextField { name: name.into(), value: value.into() });
    }
    let testimony = if let Some(path) = &args.testimony_file {
        zeroize::Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {} as UTF-8 text: {e}", path.display()))?,
        )
    } else {
        let lang = amanat::i18n::Lang::from_code(&args.language).unwrap_or(amanat::i18n::Lang::En);
        fieldkit::ask_testimony(std::io::stdin().lock(), std::io::stderr(), lang, &mut fields)
            .map_err(|e| e.to_string())?
    };
    let progress = Progress::new("sealing");
    let request = SealRequest {
        recipients: &recipients,
        testimony,
        fields,
        evidence: &args.evidence,
        language: args.language.clone(),
        out: &args.out,
    };
    let summary = fieldkit::seal(request, |done, total| progress.update(done, total))
        .map_err(|e| e.to_string())?;
    drop(progress);
    if args.json.json {
        print_json(&summary);
    } else {
        println!(
            "Sealed {} file(s) and the testimony into {} ({} bytes). Only the coalition's keys \
             open it. Carry it out (USB, any messenger); `amanat import` or the server's \
             /api/v1/sealed takes it in. You may now delete the originals if the device may \
             be searched.",
            summary.files,
            args.out.display(),
            summary.bytes
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct SendArgs {
    /// Sealed files (from `amanat seal`), sent one after another.
    #[arg(required = true, value_name = "FILE.sealed")]
    files: Vec<PathBuf>,
    /// The server: its onion address (`http://....onion`), or a loopback address.
    #[arg(long, value_name = "URL")]
    to: String,
    /// Tor's SocksPort, e.g. `socks5h://127.0.0.1:9050` (needed for an onion address).
    #[arg(long, value_name = "URL")]
    proxy: Option<String>,
    /// Size of each piece, in MiB: a dropped link loses at most one piece.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=64))]
    piece_mib: u16,
    /// Stop after this many seconds without progress (default: keep trying until done
    /// or stopped with Ctrl-C).
    #[arg(long, value_name = "SECONDS")]
    give_up_after: Option<u64>,
    #[command(flatten)]
    json: Json,
}

/// `amanat send`: each file until the server has recorded it; exit code 0 only when
/// every one was.
pub fn send(args: &SendArgs) -> Done {
    use amanat::fieldkit::send::{Event, Server};
    let give_up_after = args.give_up_after.map(std::time::Duration::from_secs);
    let server =
        Server::new(&args.to, args.proxy.as_deref(), give_up_after).map_err(|e| e.to_string())?;
    let mut failed = false;
    for file in &args.files {
        let progress = Progress::new("sending");
        let name = file.display().to_string();
        let delivered = server.send(file, usize::from(args.piece_mib) << 20, |event| match event {
            Event::Sent { sent, total } => progress.update(sent, total),
            Event::Retrying { wait, why } => progress.say(&format!(
                "{name}: {}; carrying on in {} s",
                super::printable(why),
                wait.as_secs()
            )),
            Event::StartedOver => progress.say(&format!(
                "{name}: the server no longer has this upload (it restarted, or waited too \
                 long); sending it again from the start"
            )),
        });
        drop(progress);
        match (delivered, args.json.json) {
            (Ok(done), true) => print_json(&serde_json::json!({
                "file": file, "id": done.id, "received_at": done.received_at,
                "already_imported": done.already_imported, "receipt": done.receipt
            })),
            (Ok(done), false) => {
                println!(
                    "{}  {}  {}  {}",
                    if done.already_imported { "already " } else { "received" },
                    done.id,
                    done.received_at,
                    file.display()
                );
                println!("receipt: {}", done.receipt);
            }
            (Err(e), true) => {
                failed = true;
                print_json(&serde_json::json!({"file": file, "error": e.to_string()}));
            }
            (Err(e), false) => {
                failed = true;
                println!("NOT SENT  {}  {}", file.display(), super::printable(&e.to_string()));
            }
        }
    }
    Ok(super::exit_code(failed))
}
