//! What an evidence file says about itself, and its working copy (`review::media`):
//! `open` runs both on every file a survivor sent, whatever its bytes. The library
//! catches a reader's panic for `open`; libFuzzer's panic hook aborts first, so here
//! every panic is found.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("amanat-fuzz-media-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (evidence, working) = (dir.join("evidence"), dir.join("working"));
    let _ = std::fs::remove_file(&working);
    std::fs::write(&evidence, data).unwrap();
    let _ = amanat::review::media::read_embedded(&evidence);
    let _ = amanat::review::media::write_working_copy(&evidence, &working, "working/evidence");
});
