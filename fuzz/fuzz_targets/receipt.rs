//! A receipt as `amanat verify` reads it: JSON, then the leaf, the proof and the
//! signed checkpoint against the server's key (the one that signed the seed).
#![no_main]

use libfuzzer_sys::fuzz_target;

const SERVER_KEY: &str =
    "amanat/349e294e97e366b21ad7ebddc6466587+3572acd5+AW6GqkBifPBbevcJij99tR6EmU9aAOM1wgOYZjcHCwTG";

fuzz_target!(|data: &[u8]| {
    let key: amanat::keys::VerifierKey = SERVER_KEY.parse().unwrap();
    if let Ok(receipt) = serde_json::from_slice::<amanat::log::Receipt>(data) {
        let _ = receipt.verify_standalone(&key);
    }
});
