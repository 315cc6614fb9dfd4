//! `amanat keygen` makes identity files the stock `age` tool accepts.

use crate::common::*;
use std::process::Command;

fn encrypt_with_age_cli(
    recipient: &str,
    plaintext: &[u8],
    dir: &std::path::Path,
) -> std::path::PathBuf {
    let input = dir.join("message.txt");
    let output = dir.join("message.age");
    std::fs::write(&input, plaintext).unwrap();
    let status = Command::new("age")
        .args(["-r", recipient, "-o"])
        .arg(&output)
        .arg(&input)
        .status()
        .expect("the stock `age` tool is installed");
    assert!(status.success());
    output
}

#[test]
fn keygen_writes_an_identity_stock_age_decrypts_with() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("holder.txt");
    let out =
        Command::new(BIN).args(["keygen", "--no-passphrase", "--out"]).arg(&key).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let recipient = stdout.lines().last().unwrap();
    assert!(recipient.starts_with("age1"), "last line is the recipient: {stdout}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);

    let sealed = encrypt_with_age_cli(recipient, b"testimony for the coalition", dir.path());
    assert_eq!(decrypt_with_age_cli(&sealed, &key), b"testimony for the coalition");

    // Never overwrites a key.
    let again =
        Command::new(BIN).args(["keygen", "--no-passphrase", "--out"]).arg(&key).output().unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("never overwritten"));
}

#[test]
fn a_passphrase_protected_identity_opens_in_stock_age_with_its_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("holder.age");
    let pass = dir.path().join("pass.txt");
    std::fs::write(&pass, "seven long words nobody would ever guess\n").unwrap();
    let out = Command::new(BIN)
        .args(["keygen", "--passphrase-file"])
        .arg(&pass)
        .arg("--out")
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let recipient = String::from_utf8(out.stdout).unwrap().lines().last().unwrap().to_string();
    let stored = std::fs::read_to_string(&key).unwrap();
    assert!(stored.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
    assert!(!stored.contains("AGE-SECRET-KEY"), "the secret key is not stored in the clear");

    let sealed = encrypt_with_age_cli(&recipient, b"for your eyes only", dir.path());
    // Stock age asks for the passphrase on a terminal: give it one (a pty).
    let script = r#"
import os, pty, sys
key, sealed, out, passphrase = sys.argv[1:5]
pid, fd = pty.fork()
if pid == 0:
    os.execvp("age", ["age", "-d", "-i", key, "-o", out, sealed])
seen = b""
while b"assphrase" not in seen:
    seen += os.read(fd, 1024)
os.write(fd, passphrase.encode() + b"\n")
try:
    while os.read(fd, 1024):
        pass
except OSError:
    pass
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"#;
    let plain = dir.path().join("plain.txt");
    let status = Command::new("python3")
        .args(["-c", script])
        .arg(&key)
        .arg(&sealed)
        .arg(&plain)
        .arg("seven long words nobody would ever guess")
        .status()
        .unwrap();
    assert!(status.success(), "stock age decrypts with the passphrase-protected identity");
    assert_eq!(std::fs::read(&plain).unwrap(), b"for your eyes only");

    // Without a terminal and without a passphrase file, keygen explains what to do.
    let no_tty = Command::new(BIN)
        .args(["keygen", "--out"])
        .arg(dir.path().join("other.age"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!no_tty.status.success());
    assert!(String::from_utf8_lossy(&no_tty.stderr).contains("--passphrase-file"));
}
