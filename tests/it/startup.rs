//! The server refuses to start, with a message that says what to do, rather than take
//! testimony nobody can read or sit beside a decryption key.

use crate::common::*;
use std::path::Path;
use std::process::Command;

fn serve_with_recipients(dir: &Path, recipients: &Path) -> (bool, String) {
    let config = dir.join("amanat.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\nrecipients = {:?}\n{ROOT_OK}",
            dir.join("data"),
            recipients
        ),
    )
    .unwrap();
    let out =
        Command::new(BIN).args(["--config", config.to_str().unwrap(), "serve"]).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn refuses_to_start_without_usable_recipients_or_beside_a_secret_key() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let recipients = keys.join("recipients.txt");
    let good = age::x25519::Identity::generate().to_public().to_string();

    let (ok, err) = serve_with_recipients(dir.path(), &recipients);
    assert!(!ok);
    assert!(err.contains("cannot read") && err.contains("recipients.txt"), "{err}");

    std::fs::write(&recipients, "# the coalition's keys go here\n\n").unwrap();
    let (ok, err) = serve_with_recipients(dir.path(), &recipients);
    assert!(!ok);
    assert!(err.contains("holds no recipient"), "{err}");

    std::fs::write(&recipients, format!("{good}\nage1notakey\n")).unwrap();
    let (ok, err) = serve_with_recipients(dir.path(), &recipients);
    assert!(!ok);
    assert!(err.contains("line 2") && err.contains("is not an age recipient"), "{err}");

    // A valid recipients file, but a key holder's identity left beside it.
    std::fs::write(&recipients, format!("{good}\n")).unwrap();
    let keygen = Command::new(BIN)
        .args(["keygen", "--no-passphrase", "--out"])
        .arg(keys.join("oops.txt"))
        .output()
        .unwrap();
    assert!(keygen.status.success());
    let (ok, err) = serve_with_recipients(dir.path(), &recipients);
    assert!(!ok);
    assert!(err.contains("holds an age secret key") && err.contains("oops.txt"), "{err}");

    // A link to an identity is an identity in keys/.
    std::fs::rename(keys.join("oops.txt"), dir.path().join("elsewhere.txt")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("elsewhere.txt"), keys.join("link.txt")).unwrap();
    let (ok, err) = serve_with_recipients(dir.path(), &recipients);
    assert!(!ok);
    assert!(err.contains("holds an age secret key") && err.contains("link.txt"), "{err}");
    std::fs::remove_file(keys.join("link.txt")).unwrap();

    // Passphrase-protected identities are secret keys too.
    let passphrase = dir.path().join("pass");
    std::fs::write(&passphrase, "a long passphrase\n").unwrap();
    let keygen = Command::new(BIN)
        .args(["keygen", "--passphrase-file"])
        .arg(&passphrase)
        .arg("--out")
        .arg(keys.join("protected.age"))
        .output()
        .unwrap();
    assert!(keygen.status.success());
    let (ok, err) = serve_with_recipients(dir.path(), &recipients);
    assert!(!ok);
    assert!(err.contains("holds an age secret key"), "{err}");

    // Nothing was created or served in any of these attempts.
    assert!(!dir.path().join("data").exists());
}

#[test]
fn refuses_a_configuration_with_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("amanat.toml");
    std::fs::write(&config, "lisen = \"127.0.0.1:0\"\n").unwrap();
    let out =
        Command::new(BIN).args(["--config", config.to_str().unwrap(), "serve"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not valid") && err.contains("lisen"), "{err}");
}

#[test]
fn the_shipped_configuration_refuses_until_the_coalition_adds_its_keys() {
    // Run from the repository: config/amanat.toml and keys/recipients.txt as shipped.
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("AMANAT_DATA_DIR", data.path())
        .env("AMANAT_LISTEN", "127.0.0.1:0")
        .env("AMANAT_ALLOW_ROOT", "1")
        .arg("serve")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("keys/recipients.txt holds no recipient"), "{err}");
}
