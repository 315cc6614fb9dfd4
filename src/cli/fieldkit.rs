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
