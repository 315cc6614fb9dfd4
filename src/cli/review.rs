//! The reviewer's and the lawyer's offline commands: `open`, `disclose`, `verify`,
//! `reply`. None of them opens a socket.

use super::{exit_code, print_json, printable, Done, Identity, Json, Progress};
use amanat::config::Config;
use amanat::i18n::Lang;
use amanat::log::ReviewState;
use amanat::review::{self, Status};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn parse_lang(code: &str) -> Result<Lang, String> {
    Lang::from_code(code).ok_or_else(|| "kk, ru or en".to_string())
}

fn load_state(path: &Path) -> Result<ReviewState, String> {
    ReviewState::load(path)
        .map_err(|e| format!("cannot read the review state {}: {e}", path.display()))
}

#[derive(Args)]
pub struct OpenArgs {
    /// Bundles (from `amanat export`) to open.
    #[arg(required = true, value_name = "BUNDLE")]
    bundles: Vec<PathBuf>,
    #[command(flatten)]
    identity: Identity,
    /// Where the case folders go.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// One JSON line per submission.
    #[command(flatten)]
    json: Json,
    /// Where to remember the server checkpoints verified so far (default:
    /// amanat-state.json beside the identity).
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,
    /// Your language for the headings of testimony.txt and report.html (kk, ru or
    /// en); the survivor's language is shown beside it.
    #[arg(long, default_value = "en", value_parser = parse_lang)]
    lang: Lang,
}

/// `amanat open`: exit code 0 only when every submission verified.
pub fn open(args: &OpenArgs) -> Done {
    let identities = args.identity.load()?;
    let mut state = load_state(&args.identity.state_file(args.state.as_deref()))?;
    let progress = Progress::new("opening");
    let outcomes = review::open_bundles(
        &args.bundles,
        &identities,
        &args.out,
        &mut state,
        args.lang,
        |done, total| progress.update(done, total),
    )
    .map_err(|e| format!("cannot write to {}: {e}", args.out.display()))?;
    drop(progress);
    for outcome in &outcomes {
        if args.json.json {
            print_json(outcome);
            continue;
        }
        let reason = printable(outcome.reason.as_deref().unwrap_or(""));
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
            Status::NewServerKey
            | Status::ReplyKeyChanged
            | Status::ReplicaBehind
            | Status::PurgedFromReplica => {
                println!("NOTE     {reason}");
            }
            Status::Failed => {
                println!("FAILED   {}  {reason}", printable(&outcome.submission));
            }
        }
    }
    let failed = outcomes.iter().filter(|o| !o.verified()).count();
    let notes = outcomes.iter().filter(|o| o.status.is_note()).count();
    if !args.json.json {
        println!(
            "{} verified, {} failed; cases in {} (open index.html)",
            outcomes.len() - failed - notes,
            failed,
            args.out.display()
        );
    }
    Ok(exit_code(failed > 0))
}

#[derive(Args)]
pub struct DiscloseArgs {
    /// The folder `amanat open` wrote the cases to.
    #[arg(long, value_name = "DIR")]
    cases: PathBuf,
    /// The case (submission id) to disclose.
    #[arg(long, value_name = "ID")]
    case: String,
    /// The bundles that carried the case.
    #[arg(long = "bundle", required = true, value_name = "BUNDLE")]
    bundles: Vec<PathBuf>,
    #[command(flatten)]
    identity: Identity,
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
    #[command(flatten)]
    json: Json,
}

pub fn disclose(args: &DiscloseArgs) -> Done {
    let identities = args.identity.load()?;
    let signer = match &args.signer {
        Some(path) if !path.is_file() => {
            return Err(format!("no signing key at {}", path.display()))
        }
        Some(path) => Some(
            amanat::keys::SigningKey::load_or_create(path, "amanat-custody")
                .map_err(|e| format!("cannot use the signing key {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let mut state = load_state(&args.identity.state_file(args.state.as_deref()))?;
    let request = review::disclose::DiscloseRequest {
        bundles: &args.bundles,
        identities: &identities,
        cases: &args.cases,
        case: &args.case,
        to: &args.to,
        signer: signer.as_ref(),
        out: &args.out,
        override_consent: args.override_consent.as_deref(),
    };
    let summary = review::disclose::disclose(&request, &mut state).map_err(|e| e.to_string())?;
    if args.json.json {
        print_json(&summary);
    } else {
        println!(
            "Wrote {}: case {}, {} submission(s), {} objects, {} bytes. Give it to the lawyer \
             with VERIFY.txt's instructions.",
            args.out.display(),
            summary.case,
            summary.submissions,
            summary.objects,
            summary.bytes
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct VerifyArgs {
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
    /// A time-stamping authority's certificate chain (PEM) you trust, from the TSA
    /// itself: its tokens bound each submission's time. Repeatable.
    #[arg(long, value_name = "FILE")]
    tsa_cert: Vec<PathBuf>,
    /// A witness's cosignature verifier key you trust, from the witness itself.
    /// Repeatable.
    #[arg(long, value_name = "KEY")]
    witness: Vec<String>,
    /// Fail unless each submission is held by a checkpoint cosigned by at least N of
    /// the witnesses named.
    #[arg(long, value_name = "N", default_value_t = 0)]
    require_witnesses: usize,
    #[command(flatten)]
    json: Json,
}

/// The parties a lawyer trusts to attest time, read from the command line.
fn attesters(args: &VerifyArgs) -> Result<amanat::log::attested::Attesters, String> {
    let mut tsas = Vec::new();
    for path in &args.tsa_cert {
        let pem = std::fs::read(path).map_err(|e| format!("--tsa-cert {}: {e}", path.display()))?;
        let trust = amanat::log::timestamp::TsaTrust::from_pem(&pem)
            .map_err(|e| format!("--tsa-cert {}: {e}", path.display()))?;
        let label = path
            .file_name()
            .map_or_else(|| path.display().to_string(), |name| name.to_string_lossy().into_owned());
        tsas.push((printable(&label), trust));
    }
    let witnesses = args
        .witness
        .iter()
        .map(|key| key.parse().map_err(|e| format!("--witness {key:?}: {e}")))
        .collect::<Result<Vec<_>, String>>()?;
    if args.require_witnesses > witnesses.len() {
        return Err(format!(
            "--require-witnesses {} needs at least that many --witness keys",
            args.require_witnesses
        ));
    }
    Ok(amanat::log::attested::Attesters { tsas, witnesses })
}

/// `amanat verify`: exit 0 only when every check holds.
pub fn verify(args: &VerifyArgs) -> Done {
    let identities = args
        .identity
        .as_deref()
        .map(|i| amanat::keys::load_identities(i, args.passphrase_file.as_deref()))
        .transpose()
        .map_err(|e| e.to_string())?;
    let attesters = attesters(args)?;
    let trust = review::verify::Trust {
        server_key: args.server_key.as_deref(),
        custody_key: args.custody_key.as_deref(),
        accept_unverified_custody: args.accept_unverified_custody,
        attesters: Some(&attesters),
        require_witnesses: args.require_witnesses,
    };
    let report =
        review::verify::verify_any(&args.file, identities.as_deref(), args.out.as_deref(), &trust)
            .map_err(|e| {
                format!("{} cannot be verified: {}", args.file.display(), printable(&e.to_string()))
            })?;
    if args.json.json {
        print_json(&report);
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
    Ok(exit_code(!report.verified))
}

#[derive(Args)]
pub struct ReplyArgs {
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
    #[command(flatten)]
    json: Json,
}

pub fn reply(config: Option<&Path>, args: &ReplyArgs) -> Done {
    let recipients = match &args.recipients {
        Some(path) => path.clone(),
        None => Config::load(config).map_err(|e| e.to_string())?.recipients,
    };
    let coalition = amanat::keys::Recipients::load(&recipients).map_err(|e| e.to_string())?;
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(&args.text_file)
            .map_err(|e| format!("cannot read {} as UTF-8 text: {e}", args.text_file.display()))?,
    );
    let summary = review::reply::write_reply(&args.cases, &args.case, &text, &coalition, &args.out)
        .map_err(|e| e.to_string())?;
    if args.json.json {
        print_json(&summary);
    } else {
        println!(
            "Wrote {}: a reply to case {}, readable only with the survivor's codename and by \
             the coalition. Carry it to the server and run `amanat import-replies` there.",
            args.out.display(),
            summary.case
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    action: Option<ReviewAction>,
    /// The cases folder `amanat open` writes.
    #[arg(long, value_name = "DIR", required = true)]
    cases: Option<PathBuf>,
    /// Your name in the triage audit trail (default: your login name).
    #[arg(long)]
    reviewer: Option<String>,
    /// Your language for the form's headings on case pages (kk, ru or en).
    #[arg(long, default_value = "en", value_parser = parse_lang)]
    lang: Lang,
}

#[derive(clap::Subcommand)]
pub enum ReviewAction {
    /// Every case as one CSV row, in the shape Uwazi imports.
    Export(ReviewExportArgs),
    /// Another reviewer's triage brought into this cases folder (and the submissions it
    /// has that this one lacks, named).
    Merge(ReviewMergeArgs),
}

#[derive(Args)]
pub struct ReviewExportArgs {
    #[arg(long, value_name = "DIR")]
    cases: PathBuf,
    /// The only format: csv.
    #[arg(long, value_parser = ["csv"])]
    format: String,
    /// A new file (never written over).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(Args)]
pub struct ReviewMergeArgs {
    /// This reviewer's cases folder, merged into.
    #[arg(long, value_name = "DIR")]
    cases: PathBuf,
    /// The other reviewer's cases folder, read only.
    #[arg(long, value_name = "DIR")]
    from: PathBuf,
}

/// `amanat review`: the bench on 127.0.0.1 until stopped (Ctrl-C), or one of its
/// offline actions.
pub fn bench(args: &BenchArgs) -> Done {
    match &args.action {
        Some(ReviewAction::Export(export)) => return review_export(export),
        Some(ReviewAction::Merge(merge)) => return review_merge(merge),
        None => {}
    }
    let cases = args.cases.as_ref().ok_or("give the cases folder with --cases DIR")?;
    let reviewer = args
        .reviewer
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .filter(|r| !r.trim().is_empty() && r.len() <= 64)
        .ok_or("give your name for the audit trail with --reviewer NAME (at most 64 bytes)")?;
    amanat::review::bench::serve(cases, &reviewer, args.lang, |url| {
        // The address alone on standard output, for a script; the rest for a person.
        println!("the bench is at {url}");
        eprintln!(
            "open it in a browser on this laptop, best a private window or a profile of \
             its own (pages are not cached, but a browser keeps history); Ctrl-C stops it"
        );
        use std::io::Write;
        let _ = std::io::stdout().flush();
    })
    .map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

fn review_export(args: &ReviewExportArgs) -> Done {
    let done = amanat::review::bench::uwazi::export(&args.cases, &args.out)
        .map_err(|e| format!("no export written: {e}"))?;
    for warning in &done.warnings {
        eprintln!("warning: {warning}");
    }
    println!("{} cases written to {}", done.cases, args.out.display());
    eprintln!("it holds the testimonies in plain text: keep it as the cases folder is kept");
    Ok(ExitCode::SUCCESS)
}

fn review_merge(args: &ReviewMergeArgs) -> Done {
    let merged = amanat::review::bench::merge::merge(&args.cases, &args.from)
        .map_err(|e| format!("nothing merged: {e}"))?;
    println!("{} triage changes added", merged.changes);
    if !merged.not_here.is_empty() {
        println!(
            "{} submissions there are not opened here; open their bundles here with amanat open:",
            merged.not_here.len()
        );
        for id in &merged.not_here {
            println!("  {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
