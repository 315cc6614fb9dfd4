//! The codename normalizer: whatever a survivor types, the result is lowercase Latin
//! letters only, and normalizing it again changes nothing (so the same words always
//! open the same case).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(typed) = std::str::from_utf8(data) else { return };
    let once = amanat::codename::normalize(typed);
    assert!(once.bytes().all(|b| b.is_ascii_lowercase()), "{:?}", once.as_str());
    let twice = amanat::codename::normalize(&once);
    assert_eq!(once.as_str(), twice.as_str());
});
