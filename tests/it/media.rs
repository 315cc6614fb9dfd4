//! What evidence says about itself, held to a tool not written here: Debian's
//! `exiftool` writes the time, camera, serial number and GPS position into real
//! photos and a video; `open` must show those values, keep `evidence/` byte-identical
//! to what was sent, and write `working/` copies in which `exiftool` finds no location,
//! device or serial number left.

use crate::common::*;
use crate::review::{export, open};
use std::path::Path;
use std::process::Command;

/// Whether exiftool is here; `tests/run-all.sh` installs it, so there a missing one fails.
fn exiftool_or_skip() -> bool {
    let here = Command::new("exiftool").arg("-ver").output().is_ok_and(|o| o.status.success());
    assert!(
        here || std::env::var_os("AMANAT_REQUIRE_EXIFTOOL").is_none(),
        "exiftool is required here (tests/run-all.sh installs it)"
    );
    if !here {
        eprintln!("skipped: exiftool is not installed");
    }
    here
}

/// A vendored picture or clip (tests/data/media), with what exiftool writes into it.
fn tagged(dir: &Path, name: &str, tags: &[&str]) -> Vec<u8> {
    let path = dir.join(name);
    std::fs::copy(Path::new("tests/data/media").join(name), &path).unwrap();
    let out = Command::new("exiftool")
        .args(["-q", "-overwrite_original"])
        .args(tags)
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success(), "exiftool: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::read(&path).unwrap()
}

/// Every tag exiftool reads from a file, by group:name.
fn exiftool_tags(path: &Path) -> serde_json::Map<String, serde_json::Value> {
    let out = Command::new("exiftool").args(["-j", "-G", "-n"]).arg(path).output().unwrap();
    assert!(out.status.success(), "exiftool {}", path.display());
    let mut all: Vec<serde_json::Map<String, serde_json::Value>> =
        serde_json::from_slice(&out.stdout).unwrap();
    all.remove(0)
}

const PHOTO_TAGS: &[&str] = &[
    "-GPSLatitude=43.238",
    "-GPSLatitudeRef=N",
    "-GPSLongitude=76.945",
    "-GPSLongitudeRef=E",
    "-GPSAltitude=850",
    "-DateTimeOriginal=2022:01:06 14:03:11",
    "-Make=Canon",
    "-Model=Canon EOS 5D",
    "-SerialNumber=SN-4471",
    "-Software=FieldCam 2.1",
    "-XMP-dc:Creator=Aigerim",
];

#[test]
fn a_photo_says_when_where_and_on_what_it_was_taken_and_its_working_copy_says_none_of_it() {
    if !exiftool_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let server = Server::start(dir.path(), &coalition, "");
    let mut sent: Vec<(&str, &str, Vec<u8>)> = ["photo.jpg", "photo.png", "photo.webp"]
        .into_iter()
        .zip(["image/jpeg", "image/png", "image/webp"])
        .map(|(name, kind)| (name, kind, tagged(dir.path(), name, PHOTO_TAGS)))
        .collect();
    let video = tagged(
        dir.path(),
        "clip.mp4",
        &[
            "-QuickTime:CreateDate=2022:01:06 14:03:11",
            "-Keys:GPSCoordinates=43.238, 76.945, 850",
            "-Keys:Make=Apple",
            "-Keys:Model=iPhone 12",
        ],
    );
    sent.push(("clip.mp4", "video/mp4", video));
    let mut parts = vec![text("testimony", "photos of the bruises, taken in the flat")];
    parts.extend(sent.iter().map(|(name, kind, bytes)| file("evidence", name, kind, bytes)));
    let response = post_multipart(server.addr, "/api/v1/submissions", &parts);
    assert_eq!(response.status, 201, "{}", response.text());
    let id = response.json()["id"].as_str().unwrap().to_string();

    let bundle = dir.path().join("b.tar");
    export(&server, &bundle, false);
    let cases = dir.path().join("cases");
    let (ok, outcomes) = open(&[&bundle], &coalition.identity_files[0], &cases);
    assert!(ok, "{outcomes:#?}");
    let case = cases.join(&id);
    let testimony: serde_json::Value =
        serde_json::from_slice(&std::fs::read(case.join("testimony.json")).unwrap()).unwrap();
    let files = testimony["files"].as_array().unwrap();
    assert_eq!(files.len(), 4);
    for (file, (name, _, bytes)) in files.iter().zip(&sent) {
        // The evidence is what was sent, metadata and all.
        let evidence = case.join(file["saved_as"].as_str().unwrap());
        assert_eq!(&std::fs::read(&evidence).unwrap(), bytes, "{name}");
        let embedded = &file["embedded"];
        let taken = embedded["taken_at"].as_str().unwrap_or_default();
        assert!(taken.contains("2022") && taken.contains("14:03:11"), "{name}: {embedded:#}");
        let location = &embedded["location"];
        assert!((location["latitude"].as_f64().unwrap() - 43.238).abs() < 1e-4, "{name}");
        assert!((location["longitude"].as_f64().unwrap() - 76.945).abs() < 1e-4, "{name}");
        let working = &file["working"];
        if *name == "clip.mp4" {
            assert_eq!(embedded["format"], "mp4");
            assert_eq!(embedded["device"], "Apple iPhone 12", "{embedded:#}");
            // No crate here rewrites a video's metadata: it is said, and no copy made.
            assert!(working["saved_as"].is_null(), "{working:#}");
            assert!(working["not_cleaned"].as_str().unwrap().contains("video"), "{working:#}");
            assert!(!case.join("working").join(name).exists());
            continue;
        }
        assert_eq!(embedded["device"], "Canon EOS 5D", "{name}: {embedded:#}");
        assert_eq!(embedded["serial"], "SN-4471", "{name}: {embedded:#}");
        assert_eq!(embedded["software"], "FieldCam 2.1", "{name}: {embedded:#}");
        // The working copy: exiftool finds the same picture, and nothing of where, by
        // what or by whom it was taken.
        let copy = case.join(working["saved_as"].as_str().unwrap());
        assert!(copy.starts_with(case.join("working")), "{working:#}");
        assert!(!working["removed"].as_array().unwrap().is_empty(), "{working:#}");
        let tags = exiftool_tags(&copy);
        assert_eq!(tags["Composite:ImageSize"], "48 32", "{name}: {tags:#?}");
        for (tag, value) in &tags {
            let found =
                ["GPS", "Serial", "Model", "Make", "DateTimeOriginal", "Software", "Creator"]
                    .iter()
                    .any(|word| tag.contains(word));
            assert!(!found, "{name}: the working copy still says {tag} = {value}");
            assert!(!tag.contains("Warning") && !tag.contains("Error"), "{name}: {tag} {value}");
        }
    }

    // The case page shows it, the location marked as sensitive, and what may not be
    // handed on.
    let page = std::fs::read_to_string(case.join("report.html")).unwrap();
    assert!(page.contains("LOCATION, sensitive: 43.238000, 76.945000"), "{page}");
    assert!(page.contains("serial number SN-4471"));
    assert!(page.contains("NOT CLEANED"));
    assert!(page.contains("working/photo.jpg"));
}
