//! Quorum keys (`amanat quorum init`): holders' keys from Debian's `age-keygen`; the
//! quorum's recipient goes into the real server's recipients file as `quorum.pub`
//! itself; any K shares, each with its holder's identity, open the exported bundle;
//! K-1 shares, a share of another quorum, an altered share (re-sealed with stock
//! `age`), a share given twice and a share given with another holder's key are each
//! named and refused and write nothing; stock `age -R quorum.pub` encrypts to the quorum
//! alone, and the rebuilt identity (written out only by a hidden test command)
//! decrypts it with stock `age -d`.

use crate::common::*;
use crate::review::{export, path_str, submit};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A holder's identity from `age-keygen`, and its recipient.
fn age_keygen(path: &Path) -> String {
    let out = Command::new("age-keygen").arg("-o").arg(path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8(out.stderr).unwrap();
    said.trim().rsplit(' ').next().unwrap().to_string()
}

struct Quorum {
    public: PathBuf,
    shares: Vec<PathBuf>,
    holders: Vec<PathBuf>,
    recipients: Vec<String>,
}

fn make(dir: &Path, name: &str, k: usize, holders: &[PathBuf], recipients: &[String]) -> Quorum {
    let out = dir.join(name);
    let mut args = vec!["quorum", "init", "--threshold"];
    let k_text = k.to_string();
    args.push(&k_text);
    for r in recipients {
        args.extend(["--holder", r.as_str()]);
    }
    args.extend(["--out", path_str(&out)]);
    let made = amanat(&args);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    Quorum {
        public: out.join("quorum.pub"),
        shares: (1..=recipients.len()).map(|n| out.join(format!("{n}.share"))).collect(),
        holders: holders.to_vec(),
        recipients: recipients.to_vec(),
    }
}

fn holders(dir: &Path, n: usize) -> (Vec<PathBuf>, Vec<String>) {
    let files: Vec<PathBuf> = (1..=n).map(|i| dir.join(format!("holder{i}.txt"))).collect();
    let recipients = files.iter().map(|f| age_keygen(f)).collect();
    (files, recipients)
}

/// `amanat open` of `bundle` with these (share, identity) pairs.
fn open_with(quorum: &Quorum, pairs: &[(&Path, &Path)], bundle: &Path, out: &Path) -> Output {
    let mut args = vec!["open", path_str(bundle), "--quorum", path_str(&quorum.public)];
    for (share, identity) in pairs {
        args.extend(["--share", path_str(share), "--identity", path_str(identity)]);
    }
    args.extend(["--out", path_str(out), "--json"]);
    let output = amanat(&args);
    Output {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

struct Output {
    ok: bool,
    stdout: String,
    stderr: String,
}

#[test]
fn any_k_of_n_holders_open_a_bundle_and_fewer_or_wrong_shares_open_nothing() {
    for (k, n) in [(2, 3), (3, 5)] {
        let dir = tempfile::tempdir().unwrap();
        let (files, recipients) = holders(dir.path(), n);
        let quorum = make(dir.path(), "quorum", k, &files, &recipients);
        let coalition = Coalition::new(dir.path(), 1);
        std::fs::copy(&quorum.public, &coalition.recipients_file).unwrap();
        let server = Server::start(dir.path(), &coalition, "");
        let sent = submit(&server, 1, &[("photo.jpg", 3000)]);
        let bundle = dir.path().join("bundle.tar");
        export(&server, &bundle, false);
        drop(server);

        let pairs = |which: &[usize]| -> Vec<(&Path, &Path)> {
            which.iter().map(|&i| (quorum.shares[i].as_path(), files[i].as_path())).collect()
        };
        let first: Vec<usize> = (0..k).collect();
        let last: Vec<usize> = (n - k..n).collect();
        for (run, which) in [first.clone(), last].iter().enumerate() {
            let out = dir.path().join(format!("cases-{run}"));
            let opened = open_with(&quorum, &pairs(which), &bundle, &out);
            assert!(opened.ok, "{k} of {n}, holders {which:?}: {}", opened.stderr);
            assert!(opened.stdout.contains("\"opened\""), "{}", opened.stdout);
            let json = std::fs::read(out.join(&sent.id).join("testimony.json")).unwrap();
            assert!(String::from_utf8_lossy(&json).contains("Testimony 1"));
        }
        // One fewer: refused before anything is decrypted, nothing written.
        let out = dir.path().join("cases-short");
        let short = open_with(&quorum, &pairs(&first[..k - 1]), &bundle, &out);
        assert!(!short.ok);
        assert!(
            short.stderr.contains(&format!("{} of the {k} shares needed", k - 1)),
            "{}",
            short.stderr
        );
        assert!(!out.join(&sent.id).exists());
        // Disclosing to a lawyer takes the same holders: K give a package, K-1 nothing.
        let lawyer = dir.path().join("lawyer.txt");
        let lawyer_recipient = age_keygen(&lawyer);
        for (which, ok) in [(&first[..], true), (&first[..k - 1], false)] {
            let package = dir.path().join(format!("case-{}.tar", which.len()));
            let mut args = vec!["disclose", "--cases"];
            let cases = dir.path().join("cases-0");
            args.extend([path_str(&cases), "--case", &sent.id, "--bundle", path_str(&bundle)]);
            args.extend(["--quorum", path_str(&quorum.public)]);
            for (share, identity) in pairs(which) {
                args.extend(["--share", path_str(share), "--identity", path_str(identity)]);
            }
            args.extend(["--to", &lawyer_recipient, "--out", path_str(&package)]);
            // The generated testimony has no consent answer; the reason is given.
            args.extend(["--override-consent", "test of the quorum"]);
            let disclosed = amanat(&args);
            let said = String::from_utf8_lossy(&disclosed.stderr);
            assert_eq!(disclosed.status.success(), ok, "{k} of {n}, {which:?}: {said}");
            assert_eq!(package.exists(), ok, "{said}");
            assert!(ok || said.contains("shares needed"), "{said}");
        }
        // A holder alone, with a plain open, reads nothing.
        let alone = amanat(&[
            "open",
            path_str(&bundle),
            "--identity",
            path_str(&files[0]),
            "--out",
            path_str(&dir.path().join("cases-alone")),
        ]);
        assert!(!alone.status.success());
    }
}

#[test]
fn a_share_of_another_quorum_altered_repeated_or_with_the_wrong_key_is_named_and_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (files, recipients) = holders(dir.path(), 3);
    let quorum = make(dir.path(), "quorum", 2, &files, &recipients);
    let other = make(dir.path(), "other", 2, &files, &recipients);
    let coalition = Coalition::new(dir.path(), 1);
    std::fs::copy(&quorum.public, &coalition.recipients_file).unwrap();
    let server = Server::start(dir.path(), &coalition, "");
    let sent = submit(&server, 1, &[]);
    let bundle = dir.path().join("bundle.tar");
    export(&server, &bundle, false);
    drop(server);

    // Altered: opened with stock age, one digit of the value changed, sealed again to
    // the same holder with stock age.
    let plain = Command::new("age")
        .args(["-d", "-i", path_str(&files[1]), path_str(&quorum.shares[1])])
        .output()
        .unwrap();
    assert!(plain.status.success());
    let text = String::from_utf8(plain.stdout).unwrap();
    let at = text.find("\"share\":\"").unwrap() + 10;
    let mut altered = text.clone().into_bytes();
    altered[at] = if altered[at] == b'0' { b'1' } else { b'0' };
    let altered_file = dir.path().join("altered.share");
    let mut age = Command::new("age")
        .args(["-a", "-r", &quorum.recipients[1], "-o", path_str(&altered_file)])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(age.stdin.as_mut().unwrap(), &altered).unwrap();
    assert!(age.wait().unwrap().success());

    let good = (quorum.shares[0].as_path(), files[0].as_path());
    let cases: [(&str, (&Path, &Path), &str); 4] = [
        ("another quorum", (other.shares[1].as_path(), files[1].as_path()), "another quorum"),
        ("altered", (altered_file.as_path(), files[1].as_path()), "altered"),
        ("given twice", good, "given twice"),
        (
            "another holder's key",
            (quorum.shares[1].as_path(), files[2].as_path()),
            "does not open it",
        ),
    ];
    for (what, bad, said) in cases {
        let out = dir.path().join("cases");
        let refused = open_with(&quorum, &[good, bad], &bundle, &out);
        assert!(!refused.ok, "{what}");
        let name = bad.0.display().to_string();
        assert!(
            refused.stderr.contains(&format!("share {name} refused")),
            "{what}: {}",
            refused.stderr
        );
        assert!(refused.stderr.contains(said), "{what}: {}", refused.stderr);
        assert!(!out.join(&sent.id).exists(), "{what}: nothing opened");
    }
    // The quorum's own shares still open it.
    let opened = open_with(
        &quorum,
        &[good, (&quorum.shares[2], &files[2])],
        &bundle,
        &dir.path().join("ok"),
    );
    assert!(opened.ok, "{}", opened.stderr);
}

#[test]
fn stock_age_encrypts_to_the_quorum_and_the_rebuilt_identity_decrypts_with_stock_age() {
    let dir = tempfile::tempdir().unwrap();
    let (files, recipients) = holders(dir.path(), 3);
    let quorum = make(dir.path(), "quorum", 2, &files, &recipients);
    let plain = dir.path().join("plain.txt");
    std::fs::write(&plain, "Меня избивали в подвале акимата.").unwrap();
    let sealed = dir.path().join("plain.txt.age");
    let age = Command::new("age")
        .args(["-R", path_str(&quorum.public), "-o", path_str(&sealed), path_str(&plain)])
        .output()
        .unwrap();
    assert!(age.status.success(), "{}", String::from_utf8_lossy(&age.stderr));
    // No holder alone decrypts it: quorum.pub names only the quorum as a recipient.
    for holder in &quorum.holders {
        let alone = Command::new("age")
            .args(["-d", "-i", path_str(holder), path_str(&sealed)])
            .output()
            .unwrap();
        assert!(!alone.status.success());
    }
    let identity = dir.path().join("rebuilt.txt");
    // The rebuilt identity, written out here in the test (amanat has no command that
    // writes it), for the stock `age -d` to try.
    let public = amanat::keys::quorum::QuorumPublic::parse(
        &std::fs::read_to_string(&quorum.public).unwrap(),
    )
    .unwrap();
    let keys: Vec<_> =
        [2, 0].iter().map(|&n| amanat::keys::load_identities(&files[n], None).unwrap()).collect();
    let brought: Vec<_> = [2, 0]
        .iter()
        .zip(&keys)
        .map(|(&n, identities)| amanat::keys::quorum::Brought {
            name: path_str(&quorum.shares[n]).to_string(),
            bytes: std::fs::read(&quorum.shares[n]).unwrap(),
            identities,
        })
        .collect();
    let rebuilt = amanat::keys::quorum::rebuild(&public, &brought).unwrap();
    use age::secrecy::ExposeSecret;
    std::fs::write(&identity, format!("{}\n", rebuilt.to_string().expose_secret())).unwrap();
    let opened = Command::new("age")
        .args(["-d", "-i", path_str(&identity), path_str(&sealed)])
        .output()
        .unwrap();
    assert!(opened.status.success(), "{}", String::from_utf8_lossy(&opened.stderr));
    assert_eq!(opened.stdout, std::fs::read(&plain).unwrap());
    // What init wrote: no secret key anywhere in the quorum's folder.
    for file in files_in(quorum.public.parent().unwrap()) {
        let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
        assert!(!text.contains("AGE-SECRET-KEY-"), "{}", file.display());
    }
    let ceremony = std::fs::read_to_string(quorum.public.with_file_name("ceremony.txt")).unwrap();
    assert!(ceremony.contains(&format!("holder 3: {} holds 3.share", recipients[2])), "{ceremony}");
    // The ceremony's check: K holders' shares rebuild the key quorum.pub names...
    let check = |public: &Path| {
        amanat(&[
            "quorum",
            "check",
            "--quorum",
            path_str(public),
            "--share",
            path_str(&quorum.shares[1]),
            "--identity",
            path_str(&files[1]),
            "--share",
            path_str(&quorum.shares[2]),
            "--identity",
            path_str(&files[2]),
        ])
    };
    let checked = check(&quorum.public);
    assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stderr));
    assert!(String::from_utf8_lossy(&checked.stdout).starts_with(&public.recipient));
    // ...and a quorum.pub whose first line was swapped for another key is refused there.
    let text = std::fs::read_to_string(&quorum.public).unwrap();
    let swapped = dir.path().join("swapped.pub");
    std::fs::write(&swapped, text.replacen(&public.recipient, &recipients[0], 1)).unwrap();
    let refused = check(&swapped);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("another quorum"), "{said}");
}

/// `amanat serve` with `require_quorum = true` and these recipients: (started, stderr).
fn serve_requiring_quorum(dir: &Path, recipients: &Path) -> (bool, String) {
    let config = dir.join("amanat-quorum.toml");
    let data = dir.join("data-quorum");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {data:?}\nrecipients = {recipients:?}\n\
             {ROOT_OK}require_quorum = true\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["--config", path_str(&config), "serve"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A refusal ends the process; a server that starts is stopped after it says so.
    let mut stderr = child.stderr.take().unwrap();
    let mut said = String::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = std::io::Read::read(&mut stderr, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        said.push_str(&String::from_utf8_lossy(&buf[..n]));
        if said.contains("address=") {
            child.kill().unwrap();
            break;
        }
    }
    let status = child.wait().unwrap();
    (said.contains("address=") || status.success(), said)
}

#[test]
fn require_quorum_refuses_a_single_key_and_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let (files, recipients) = holders(dir.path(), 3);
    let quorum = make(dir.path(), "quorum", 2, &files, &recipients);
    let quorum_text = std::fs::read_to_string(&quorum.public).unwrap();
    let quorum_recipient = quorum_text.lines().next().unwrap().to_string();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let list = keys.join("recipients.txt");

    // A plain recipient beside the quorum's: refused, naming it and what to do.
    std::fs::copy(&quorum.public, keys.join("quorum.pub")).unwrap();
    std::fs::write(&list, format!("{quorum_recipient}\n{}\n", recipients[0])).unwrap();
    let (started, said) = serve_requiring_quorum(dir.path(), &list);
    assert!(!started, "{said}");
    assert!(said.contains("require_quorum is on"), "{said}");
    assert!(said.contains(&recipients[0]), "{said}");
    assert!(said.contains("amanat quorum init"), "{said}");
    assert!(!dir.path().join("data-quorum/objects").exists(), "nothing made: {said}");

    // The quorum's recipient copied into the list with no quorum.pub beside it: refused.
    std::fs::remove_file(keys.join("quorum.pub")).unwrap();
    std::fs::write(&list, &quorum_text).unwrap();
    let (started, said) = serve_requiring_quorum(dir.path(), &list);
    assert!(!started && said.contains(&quorum_recipient), "{said}");

    // A quorum.pub altered beside it (a commitment changed): refused as not one.
    let altered = quorum_text.replacen("# commitment 1 ", "# commitment 1 00", 1);
    std::fs::write(keys.join("quorum.pub"), altered).unwrap();
    let (started, said) = serve_requiring_quorum(dir.path(), &list);
    assert!(!started && said.contains("not a quorum.pub"), "{said}");

    // Only the quorum, its quorum.pub beside: the server starts and takes testimony.
    std::fs::copy(&quorum.public, keys.join("quorum.pub")).unwrap();
    let coalition = Coalition {
        identities: Vec::new(),
        identity_files: Vec::new(),
        recipients_file: list.clone(),
    };
    let server = Server::start_configured(
        dir.path(),
        &dir.path().join("data"),
        &coalition,
        "require_quorum = true\n",
        "",
    );
    let sent = submit(&server, 1, &[]);
    let bundle = dir.path().join("bundle.tar");
    export(&server, &bundle, false);
    drop(server);
    let out = dir.path().join("cases");
    let pairs = [(quorum.shares[0].as_path(), files[0].as_path()), (&quorum.shares[2], &files[2])];
    let opened = open_with(&quorum, &pairs, &bundle, &out);
    assert!(opened.ok, "{}", opened.stderr);
    assert!(out.join(&sent.id).join("testimony.json").is_file());
}

/// `amanat quorum reshare` from `old` with these present (share, identity) pairs.
fn reshare(
    old: &Quorum,
    present: &[(&Path, &Path)],
    k: usize,
    to: &[String],
    out: &Path,
) -> Output {
    let k = k.to_string();
    let mut args = vec!["quorum", "reshare", "--quorum", path_str(&old.public)];
    for (share, identity) in present {
        args.extend(["--share", path_str(share), "--identity", path_str(identity)]);
    }
    args.extend(["--threshold", &k]);
    for holder in to {
        args.extend(["--holder", holder.as_str()]);
    }
    args.extend(["--out", path_str(out)]);
    let output = amanat(&args);
    Output {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[test]
fn a_reshare_keeps_the_recipient_and_only_the_new_shares_count_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let (files, recipients) = holders(dir.path(), 5);
    // Holders 1-3 hold 2 of 3; holder 1 leaves, holders 2-5 get 3 of 4.
    let old = make(dir.path(), "old", 2, &files[..3], &recipients[..3]);
    let coalition = Coalition::new(dir.path(), 1);
    std::fs::copy(&old.public, &coalition.recipients_file).unwrap();
    let mut server = Server::start(dir.path(), &coalition, "");
    let before = submit(&server, 1, &[("photo.jpg", 2000)]);
    let old_bundle = dir.path().join("old.tar");
    export(&server, &old_bundle, false);

    // One present share is not enough to reshare, and nothing is written.
    let short_out = dir.path().join("short");
    let short = reshare(&old, &[(&old.shares[0], &files[0])], 3, &recipients[1..], &short_out);
    assert!(!short.ok && short.stderr.contains("1 of the 2 shares needed"), "{}", short.stderr);
    assert!(!short_out.exists());

    let new_out = dir.path().join("new");
    let present = [(old.shares[0].as_path(), files[0].as_path()), (&old.shares[2], &files[2])];
    let done = reshare(&old, &present, 3, &recipients[1..], &new_out);
    assert!(done.ok, "{}", done.stderr);
    let new = Quorum {
        public: new_out.join("quorum.pub"),
        shares: (1..=4).map(|n| new_out.join(format!("{n}.share"))).collect(),
        holders: files[1..].to_vec(),
        recipients: recipients[1..].to_vec(),
    };
    let new_text = std::fs::read_to_string(&new.public).unwrap();
    let old_text = std::fs::read_to_string(&old.public).unwrap();
    assert_eq!(new_text.lines().next(), old_text.lines().next(), "same recipient");
    assert_eq!(done.stdout.trim(), new_text.lines().next().unwrap());
    assert_ne!(new_text, old_text, "new commitments");
    let ceremony = std::fs::read_to_string(new_out.join("ceremony.txt")).unwrap();
    assert!(ceremony.contains("reshared from the holder set"), "{ceremony}");
    assert!(ceremony.contains(&format!("holder 4: {} holds 4.share", recipients[4])));

    // The server keeps its recipients file: the recipient did not change.
    std::fs::copy(&new.public, &coalition.recipients_file).unwrap();
    server.restart();
    let after = submit(&server, 2, &[]);
    let new_bundle = dir.path().join("new.tar");
    export(&server, &new_bundle, false);
    drop(server);

    // Old shares no longer combine with the new quorum.pub, alone or mixed with new ones.
    let old_pairs = [(old.shares[1].as_path(), files[1].as_path()), (&old.shares[2], &files[2])];
    let out = dir.path().join("cases-old-shares");
    let refused = open_with(&new, &old_pairs, &new_bundle, &out);
    assert!(!refused.ok && refused.stderr.contains("another holder set"), "{}", refused.stderr);
    assert!(!out.join(&after.id).exists());
    let mixed = [
        (new.shares[0].as_path(), files[1].as_path()),
        (&new.shares[1], &files[2]),
        (&old.shares[1], &files[1]),
    ];
    let refused = open_with(&new, &mixed, &new_bundle, &out);
    assert!(!refused.ok, "{}", refused.stderr);
    assert!(refused.stderr.contains(&format!("share {} refused", old.shares[1].display())));
    assert!(!out.join(&after.id).exists());
    // Two new shares are short of the new threshold.
    let two = [(new.shares[0].as_path(), files[1].as_path()), (&new.shares[3], &files[4])];
    let short = open_with(&new, &two, &new_bundle, &out);
    assert!(!short.ok && short.stderr.contains("2 of the 3 shares needed"), "{}", short.stderr);

    // Any three new shares open the bundles from before and after the reshare.
    let three = [
        (new.shares[1].as_path(), files[2].as_path()),
        (&new.shares[2], &files[3]),
        (&new.shares[3], &files[4]),
    ];
    for (bundle, sent) in [(&old_bundle, &before), (&new_bundle, &after)] {
        let out = dir.path().join(format!("cases-{}", sent.id));
        let opened = open_with(&new, &three, bundle, &out);
        assert!(opened.ok, "{}", opened.stderr);
        assert!(out.join(&sent.id).join("testimony.json").is_file());
    }
}

#[test]
fn a_quorum_pub_is_read_in_any_spelling_and_refused_with_a_commitment_to_zero() {
    use amanat::keys::quorum::QuorumPublic;
    let dir = tempfile::tempdir().unwrap();
    let (files, recipients) = holders(dir.path(), 3);
    let quorum = make(dir.path(), "quorum", 2, &files, &recipients);
    let text = std::fs::read_to_string(&quorum.public).unwrap();
    let public = QuorumPublic::parse(&text).unwrap();
    // Bech32 may be spelled in capitals; the same quorum, the same set its shares name.
    let mut capitals = text.clone();
    for recipient in recipients.iter().chain([&public.recipient]) {
        capitals = capitals.replace(recipient.as_str(), &recipient.to_uppercase());
    }
    assert_ne!(capitals, text);
    let capitals = QuorumPublic::parse(&capitals).unwrap();
    assert_eq!(capitals, public);
    assert_eq!(capitals.set(), public.set());
    // A dealer who commits to a zero top coefficient would make K - 1 shares enough while
    // the file says K: such a file is refused.
    let last = text.lines().find(|l| l.starts_with("# commitment 1 ")).unwrap();
    let forged = text.replace(last, &format!("# commitment 1 {}", "0".repeat(64)));
    let refused = QuorumPublic::parse(&forged).unwrap_err().to_string();
    assert!(refused.contains("a commitment to zero"), "{refused}");
}
