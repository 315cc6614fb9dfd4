//! SIGKILL in the middle of uploads: every acknowledged submission survives and
//! decrypts to what was sent; nothing half-written is visible after the restart.

use crate::common::*;
use std::sync::{Arc, Mutex};

struct Acknowledged {
    objects: Vec<String>,
    photo: Vec<u8>,
}

#[test]
fn acknowledged_submissions_survive_sigkill_and_half_written_ones_vanish() {
    let dir = tempfile::tempdir().unwrap();
    let coalition = Coalition::new(dir.path(), 1);
    let mut server = Server::start(dir.path(), &coalition, "");
    let acknowledged: Arc<Mutex<Vec<Acknowledged>>> = Arc::default();
    let cycles = 50;
    let mut seed = 1u64;
    let mut checked = std::collections::HashSet::new();

    for cycle in 0..cycles {
        let addr = server.addr;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let clients: Vec<_> = (0..4)
            .map(|client| {
                let (acknowledged, stop) = (acknowledged.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut n = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        n += 1;
                        let size = 200_000 + ((cycle * 7 + client * 3 + n as usize) % 5) * 400_000;
                        let photo = noise(size, (cycle * 1000 + client * 100) as u64 + n);
                        let body = multipart_body(&[
                            text("testimony", &format!("cycle {cycle} client {client} n {n}")),
                            file("evidence", "p.jpg", "image/jpeg", &photo),
                        ]);
                        // A killed server resets connections: those are not acknowledged.
                        let Ok(stream) = std::net::TcpStream::connect(addr) else {
                            continue;
                        };
                        let headers = [("Content-Type", multipart_type())];
                        let headers: Vec<(&str, &str)> =
                            headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                        let result =
                            try_request(stream, "POST", "/api/v1/submissions", &headers, &body);
                        if let Ok(r) = result {
                            if r.status == 201 {
                                acknowledged.lock().unwrap().push(Acknowledged {
                                    objects: receipt_objects(&r.json()),
                                    photo,
                                });
                            }
                        }
                    }
                })
            })
            .collect();
        // Kill at a moment that varies from cycle to cycle, once uploads are under way.
        let before = acknowledged.lock().unwrap().len();
        wait_until("some uploads are acknowledged", || acknowledged.lock().unwrap().len() > before);
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        std::thread::sleep(std::time::Duration::from_millis(50 + (seed >> 33) % 400));
        server.kill();
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for c in clients {
            c.join().unwrap();
        }
        server.restart();

        // After the start-up sweep: no temp files, and every object is whole.
        assert!(server.temp_files().is_empty(), "temp files survived the sweep");
        // Objects checked after an earlier restart are not read again (they are
        // compared with what was sent at the end).
        for id in server.stored_objects() {
            if !checked.insert(id.clone()) {
                continue;
            }
            let bytes = server.object(&id);
            assert_eq!(sha256_hex(&bytes), id);
            decrypt(&bytes, &coalition.identities[0]);
        }
    }

    let acknowledged = acknowledged.lock().unwrap();
    let mut verified = 0;
    for ack in acknowledged.iter() {
        let manifest = manifest(&server, &ack.objects, &coalition.identities[0]);
        let photo_object = &ack.objects[0];
        let stored = server.object(photo_object);
        let plain = decrypt(&stored, &coalition.identities[0]);
        assert_eq!(unpadded(&plain, ack.photo.len()), &ack.photo[..]);
        assert_eq!(manifest["attachments"][0]["sha256"], sha256_hex(&ack.photo));
        verified += 1;
    }
    // Every object on disk belongs to a whole submission: at most the acknowledged
    // ones plus those whose acknowledgement was lost in the kill.
    println!(
        "crash: cycles={cycles} acknowledged={} verified={verified} lost={}",
        acknowledged.len(),
        acknowledged.len() - verified
    );
    assert!(acknowledged.len() >= cycles);
    assert_eq!(verified, acknowledged.len());

    // Whatever the store shows is whole: every record it would export opens and
    // verifies (an upload whose answer was cut by the kill may be among them).
    let bundle = dir.path().join("all.tar");
    crate::review::export(&server, &bundle, true);
    let (ok, outcomes) =
        crate::review::open(&[&bundle], &coalition.identity_files[0], &dir.path().join("cases"));
    assert!(ok, "every stored submission verifies");
    let opened = outcomes.values().filter(|o| o["status"] == "opened").count();
    assert!(opened >= acknowledged.len(), "{opened} opened, {} acknowledged", acknowledged.len());
    println!(
        "crash: stored={opened} (acknowledged {} + answers lost in the kill)",
        acknowledged.len()
    );
}
