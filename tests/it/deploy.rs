//! The files in deploy/ are checked by the tools that will read them: `tor
//! --verify-config` for the onion service, `systemd-analyze verify` for the unit, and
//! both against the shipped configuration, so an edit that breaks one is caught here.

use std::path::Path;
use std::process::Command;

fn repo(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

fn shipped_listen() -> String {
    let config: toml::Value = toml::from_str(&repo("config/amanat.toml")).unwrap();
    config["listen"].as_str().unwrap().to_string()
}

/// `tor --verify-config` on `torrc` with its paths moved into `dir`.
fn tor_accepts(dir: &Path, torrc: &str) -> (bool, String) {
    let (service, data) = (dir.join("service"), dir.join("tor-data"));
    for d in [&service, &data] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    }
    let text = torrc.replace("/var/lib/tor/amanat/", service.to_str().unwrap())
        + &format!("\nDataDirectory {}\n", data.display());
    let file = dir.join("torrc");
    std::fs::write(&file, text).unwrap();
    let out = Command::new("tor")
        .arg("--verify-config")
        .arg("-f")
        .arg(&file)
        .output()
        .expect("tor is installed (apt-get install tor)");
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success() && said.contains("Configuration was valid"), said)
}

#[test]
fn the_torrc_is_a_valid_v3_onion_service_for_the_configured_listener() {
    let torrc = repo("deploy/torrc");
    let dir = tempfile::tempdir().unwrap();
    let (ok, said) = tor_accepts(dir.path(), &torrc);
    assert!(ok, "tor refuses deploy/torrc:\n{said}");

    let setting = |name: &str| -> Vec<String> {
        torrc
            .lines()
            .filter_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_string()))
            .collect()
    };
    assert_eq!(setting("HiddenServiceVersion "), ["3"]);
    assert_eq!(setting("HiddenServicePort "), [format!("80 {}", shipped_listen())]);
    // Tor's one client port is for amanat's outbound attestation, on loopback only,
    // where the shipped configuration's proxy points.
    assert_eq!(setting("SocksPort "), ["127.0.0.1:9050"], "loopback only");
    assert_eq!(setting("SocksPolicy "), ["accept 127.0.0.1", "reject *"]);
    assert!(repo("config/amanat.toml").contains("proxy = \"socks5h://127.0.0.1:9050\""));
    assert!(!torrc.lines().any(|l| l.trim_start().starts_with("HiddenServiceSingleHopMode")));

    // The check itself refuses a broken file (so a pass above means something).
    let broken =
        torrc.replace("HiddenServicePort 80 127.0.0.1:8080", "HiddenServicePort 80 nowhere:x");
    assert!(!tor_accepts(&dir.path().join("broken"), &broken).0);
}

#[test]
fn the_systemd_unit_is_sandboxed_and_verifies() {
    let unit = repo("deploy/amanat.service");
    let values = |key: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.trim().strip_prefix(&format!("{key}=")).map(str::to_string))
            .collect()
    };
    for (key, want) in [
        ("User", "amanat"),
        ("ProtectSystem", "strict"),
        ("ReadWritePaths", "/srv/amanat"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("CapabilityBoundingSet", ""),
        ("LimitCORE", "0"),
        ("MemorySwapMax", "0"),
        ("UMask", "0077"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
    ] {
        assert_eq!(values(key), [want], "{key}= in deploy/amanat.service");
    }
    assert!(values("SystemCallFilter").contains(&"@system-service".to_string()));
    // The filter must keep what amanat needs to harden itself at start-up.
    for denied in values("SystemCallFilter").iter().filter(|v| v.starts_with('~')) {
        assert!(!denied.contains("@resources") && !denied.contains("@process"), "{denied}");
    }

    // systemd's own parser, with the binary this build made.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("amanat.service");
    std::fs::write(&file, unit.replace("/usr/local/bin/amanat", crate::common::BIN)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&file)
        .output()
        .expect("systemd-analyze is installed (apt-get install systemd)");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify:\n{said}");
}

#[test]
fn the_container_image_runs_unprivileged_without_a_shell() {
    let dockerfile = repo("deploy/Dockerfile");
    let stages: Vec<&str> = dockerfile.split("\nFROM ").collect();
    let last = stages.last().unwrap();
    assert!(last.starts_with("gcr.io/distroless/cc-debian12:nonroot"), "no shell in the image");
    assert!(last.lines().any(|l| l == "USER 65532:65532"));
    assert!(!last.contains("RUN "), "nothing runs in the final image");
}
