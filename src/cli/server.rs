//! The commands that run or talk to the server: `serve`, `demo`, and over the admin
//! socket `status`, `reload`, `objects`, `object`, `export`, `purge`, `import`,
//! `import-replies`.

use super::{exit_code, init_logging, print_json, printable, DataDir, Done, Json, Progress};
use amanat::admin::client::AdminClient;
use amanat::config::Config;
use clap::Args;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

fn connect(config: Option<&Path>, data_dir: &DataDir) -> Result<AdminClient, String> {
    AdminClient::connect(&data_dir.resolve(config)?).map_err(|e| e.to_string())
}

pub fn serve(config: Option<&Path>) -> Done {
    let config = Config::load(config).map_err(|e| e.to_string())?;
    init_logging(&config.log_level);
    amanat::serve::run(config).map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    data_dir: DataDir,
    #[command(flatten)]
    out: Json,
}

pub fn status(config: Option<&Path>, args: &StatusArgs) -> Done {
    let status = connect(config, &args.data_dir)?.status().map_err(|e| e.to_string())?;
    print_status(&status, args.out.json);
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct ReloadArgs {
    #[command(flatten)]
    data_dir: DataDir,
}

pub fn reload(config: Option<&Path>, args: &ReloadArgs) -> Done {
    let set = connect(config, &args.data_dir)?.reload().map_err(|e| e.to_string())?;
    println!(
        "new submissions are now sealed to {} recipient(s), fingerprint {}",
        set.recipients, set.fingerprint
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct ObjectsArgs {
    #[command(flatten)]
    data_dir: DataDir,
    #[command(flatten)]
    out: Json,
}

pub fn objects(config: Option<&Path>, args: &ObjectsArgs) -> Done {
    let list = connect(config, &args.data_dir)?.list_objects().map_err(|e| e.to_string())?;
    if args.out.json {
        print_json(&list);
    } else {
        for object in list.objects {
            println!("{} {}", object.id, object.bytes);
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct ObjectArgs {
    /// The object's id (the SHA-256 of its ciphertext, as receipts name it).
    id: String,
    #[command(flatten)]
    data_dir: DataDir,
}

pub fn object(config: Option<&Path>, args: &ObjectArgs) -> Done {
    let client = connect(config, &args.data_dir)?;
    let mut stdout = std::io::stdout().lock();
    if stdout.is_terminal() {
        return Err("an object is binary ciphertext: redirect standard output to a file or a \
                    pipe"
            .into());
    }
    client.object(&args.id, &mut stdout).map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct ExportArgs {
    #[command(flatten)]
    data_dir: DataDir,
    /// The bundle file to create (never overwritten).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Every submission still on the server, exported before or not.
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    json: Json,
}

pub fn export(config: Option<&Path>, args: &ExportArgs) -> Done {
    let (out, json) = (&args.out, args.json.json);
    let client = connect(config, &args.data_dir)?;
    let progress = Progress::new("exporting");
    let summary = client
        .export(args.all, out, |done, total| progress.update(done, total))
        .map_err(|e| e.to_string())?;
    drop(progress);
    let incomplete = summary.as_ref().is_some_and(|s| !s.missing.is_empty());
    match (&summary, json) {
        (Some(s), true) => print_json(s),
        (Some(s), false) if s.submissions > 0 => println!(
            "Wrote {} with {} submission(s), {} bytes. They are marked exported.",
            out.display(),
            s.submissions,
            s.bytes
        ),
        (Some(_), false) => println!("Nothing could be exported; no file written."),
        (None, true) => {
            print_json(&serde_json::json!({"bundle": null, "submissions": 0, "bytes": 0}));
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
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct PurgeArgs {
    #[command(flatten)]
    data_dir: DataDir,
    #[arg(long, value_name = "DAYS")]
    exported_before: u64,
    #[command(flatten)]
    out: Json,
}

pub fn purge(config: Option<&Path>, args: &PurgeArgs) -> Done {
    let client = connect(config, &args.data_dir)?;
    let report = client.purge(args.exported_before).map_err(|e| e.to_string())?;
    if args.out.json {
        print_json(&report);
    } else {
        println!(
            "Purged the ciphertext of {} submission(s), {} bytes freed.",
            report.purged_submissions, report.freed_bytes
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `import` and `import-replies`: files handed to the running server.
#[derive(Args)]
pub struct ImportArgs {
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    #[command(flatten)]
    data_dir: DataDir,
    #[command(flatten)]
    out: Json,
}

/// `amanat import`: exit code 0 only when every file was stored (or had been).
pub fn import_sealed(config: Option<&Path>, args: &ImportArgs) -> Done {
    let data_dir = args.data_dir.resolve(config)?;
    let mut failed = false;
    for file in &args.files {
        let result = AdminClient::connect(&data_dir).and_then(|c| c.import_sealed(file));
        match (result, args.out.json) {
            (Ok(done), true) => print_json(&serde_json::json!({
                "file": file, "id": done.id, "received_at": done.received_at,
                "already_imported": done.already_imported
            })),
            (Ok(done), false) => println!(
                "{}  {}  {}",
                if done.already_imported { "already " } else { "imported" },
                done.id,
                file.display()
            ),
            (Err(e), true) => {
                failed = true;
                print_json(&serde_json::json!({"file": file, "error": e.to_string()}));
            }
            (Err(e), false) => {
                failed = true;
                println!("REFUSED   {}  {}", file.display(), printable(&e.to_string()));
            }
        }
    }
    Ok(exit_code(failed))
}

pub fn import_replies(config: Option<&Path>, args: &ImportArgs) -> Done {
    let data_dir = args.data_dir.resolve(config)?;
    let (mut added, mut already) = (0usize, 0usize);
    for file in &args.files {
        let replies = amanat::bundle::reply::read_bundle(file)
            .map_err(|e| format!("{}: {e}; nothing of it was imported", file.display()))?;
        for (entry, ciphertext) in &replies {
            let client = AdminClient::connect(&data_dir).map_err(|e| e.to_string())?;
            if client.import_reply(entry, ciphertext).map_err(|e| e.to_string())? {
                added += 1;
            } else {
                already += 1;
            }
        }
    }
    if args.out.json {
        print_json(&serde_json::json!({"added": added, "already_imported": already}));
    } else {
        println!(
            "{added} reply(ies) stored for their survivors; {already} had been imported before."
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct DemoArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: String,
}

/// A newcomer's first run: a throwaway, clearly labelled key, and the server with it.
pub fn demo(args: &DemoArgs) -> Done {
    use std::os::unix::fs::DirBuilderExt;
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
        let identity = amanat::keys::generate_identity(
            "DEMO KEY made by `amanat demo`: throwaway, never use it for real testimony.",
        );
        amanat::durable::write_new(&identity_path, identity.file_text.as_bytes())
            .map_err(|e| format!("cannot create {}: {e}", identity_path.display()))?;
        std::fs::write(
            &recipients_path,
            format!("# DEMO recipient (amanat demo)\n{}\n", identity.recipient),
        )
        .map_err(|e| format!("cannot write {}: {e}", recipients_path.display()))?;
    }
    let config = Config {
        listen: args.listen.clone(),
        data_dir: demo.join("data"),
        recipients: recipients_path,
        // A throwaway key on a test machine, often a fresh one where everyone is root.
        allow_root: true,
        ..Config::default()
    };
    init_logging(&config.log_level);
    println!("{}", demo_instructions(&args.listen));
    amanat::serve::run(config).map_err(|e| e.to_string())?;
    Ok(ExitCode::SUCCESS)
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
        .map_or_else(|| "amanat".into(), |p| p.display().to_string());
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
    // One line per attester: what it last attested, and whether its last request failed.
    let attester = |label: &str,
                    name: &str,
                    did: &str,
                    size: u64,
                    at: &Option<String>,
                    error: &Option<String>| {
        println!(
            "{label:<14}{name}: {did} size {size}{}{}",
            at.as_deref().map(|at| format!(" at {at}")).unwrap_or_default(),
            error.as_deref().map(|e| format!("; LAST REQUEST FAILED ({e})")).unwrap_or_default()
        );
    };
    for w in &server.witnesses {
        let s = &w.witnessed;
        attester("witness", &w.name, "cosigned", s.size, &s.cosigned_at, &s.last_error);
    }
    for t in &server.timestamping {
        let s = &t.stamped;
        attester("tsa", &t.name, "stamped", s.size, &s.stamped_at, &s.last_error);
    }
    if !server.witnesses.is_empty() || !server.timestamping.is_empty() {
        let size = status.log_size;
        println!(
            "attested      up to size {} of {size}{}",
            server.attested_size,
            if server.attested_size < size {
                " (the newest submissions await attestation)"
            } else {
                ""
            }
        );
    }
    for r in &server.replicas {
        println!(
            "replica       {}: holds {} of {} log entries{}{}{}",
            r.name,
            r.through,
            status.log_size,
            if r.backlog > 0 { format!("; BACKLOG {}", r.backlog) } else { String::new() },
            r.oldest_pending
                .as_deref()
                .map(|h| format!(", oldest pending received {h}"))
                .unwrap_or_default(),
            match (&r.last_success, &r.last_error) {
                (_, Some(e)) => format!("; LAST PUSH FAILED ({e}, {} time(s))", r.failures),
                (Some(at), None) => format!("; last success {at}"),
                (None, None) => String::new(),
            }
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
