//! A sealed file as the server takes it (POST /api/v1/sealed, `amanat import`): any
//! bytes must be refused with a code or stored whole, never panic or hang.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

struct Target {
    _dir: tempfile::TempDir,
    store: amanat::store::Store,
    limits: amanat::config::Limits,
}

fn target() -> &'static Target {
    static TARGET: OnceLock<Target> = OnceLock::new();
    TARGET.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let store = amanat::store::Store::open(&dir.path().join("data")).unwrap();
        let limits = amanat::config::Limits { max_submission_bytes: 1 << 20, ..Default::default() };
        Target { _dir: dir, store, limits }
    })
}

fuzz_target!(|data: &[u8]| {
    let target = target();
    let _ = amanat::intake::sealed::ingest(&target.store, &target.limits, data);
});
