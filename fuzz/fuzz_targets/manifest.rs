//! A decrypted manifest as `open` and `verify` parse and check it against its record.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(manifest) = serde_json::from_slice::<amanat::envelope::Manifest>(data) else {
        return;
    };
    let record = amanat::record::SubmissionRecord {
        id: manifest.submission.clone().into(),
        received_at: manifest.received_at.clone(),
        manifest: amanat::envelope::ObjectId::of(data),
        attachments: manifest
            .attachments
            .iter()
            .filter_map(|a| amanat::envelope::ObjectId::parse(&a.object))
            .collect(),
        total_bytes: 0,
        recipients: String::new(),
        case: manifest.case.clone().into(),
        log_index: None,
    };
    let _ = amanat::review::check_manifest(&manifest, &record);
    let _ = manifest.to_plaintext();
});
