//! A checkpoint (C2SP signed note) as reviewers and lawyers check it.
#![no_main]

use libfuzzer_sys::fuzz_target;

const SERVER_KEY: &str =
    "amanat/349e294e97e366b21ad7ebddc6466587+3572acd5+AW6GqkBifPBbevcJij99tR6EmU9aAOM1wgOYZjcHCwTG";

fuzz_target!(|data: &[u8]| {
    let key: amanat::keys::VerifierKey = SERVER_KEY.parse().unwrap();
    if let Ok(note) = std::str::from_utf8(data) {
        let _ = amanat::log::Checkpoint::verify(note, &key);
    }
});
