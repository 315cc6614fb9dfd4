//! A bundle or sealed file as `amanat open` and `amanat verify` read it: the tar
//! structure, the index, and every member it names.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), data).unwrap();
    if let Ok(opened) = amanat::bundle::Opened::open(file.path()) {
        for record in opened.submissions() {
            for id in record.object_ids() {
                if let Some(Ok(mut object)) = opened.package().object(&id) {
                    let _ = amanat::envelope::check_header(&mut object);
                }
            }
        }
    }
});
